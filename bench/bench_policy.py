"""What one cycle of the allocation policy costs: CPU time of `hvdesk.control.policy.decide` for
8 and 100 VMs on a 16-CPU host (2 cache domains), over a synthetic trace where guests' use wanders,
a pool is set, and VMs are pinned balanced, dedicated or not at all. Pure computation: no QEMU.

    .venv/bin/python -m bench.bench_policy [--cycles 300] [--json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.common import emit
from hvdesk.control.inputs import MIB, Cpu, GuestMemory, HostState, PinMode, Vm, VmObservation, VmPolicySettings
from hvdesk.control.memory import MemoryPolicyConfig
from hvdesk.control.policy import PolicyConfig, PolicyState, decide

MODES = (PinMode.BALANCED, PinMode.OFF, PinMode.BALANCED, PinMode.DEDICATED)


def run(vm_count: int, cycles: int) -> list[float]:
    rng = random.Random(vm_count)
    cpus = tuple(Cpu(id=i, core=i, cache=i // 8) for i in range(16))
    sizes = {f"vm{i}": 2048 * MIB for i in range(vm_count)}
    uses = {name: rng.randrange(100, 1500) * MIB for name in sizes}
    config = PolicyConfig(memory=MemoryPolicyConfig(pool=vm_count * 1024 * MIB))
    state = PolicyState()
    costs = []
    for cycle in range(cycles):
        now = float(cycle)
        vms = []
        for i, name in enumerate(sizes):
            uses[name] = max(50 * MIB, min(1900 * MIB, uses[name] + rng.randrange(-20, 21) * MIB))
            held = 2048 * MIB - sizes[name]
            guest = GuestMemory(now, 2000 * MIB, uses[name] + held, 2000 * MIB - uses[name] - held)
            mode = MODES[i % 4] if i < 8 else PinMode.BALANCED  # few dedicated: 16 cores only
            vms.append(Vm(VmObservation(name, 2048 * MIB, sizes[name], guest, 0.0, 0.0, vcpus=2,
                                        cpu_load=rng.uniform(0.1, 1.5)),
                          VmPolicySettings(min_memory=256 * MIB, shares=50 + 50 * (i % 4), pin_mode=mode)))
        host = HostState(now, 64 * 1024 * MIB, 40 * 1024 * MIB, cpus)
        start = time.process_time()
        decisions, state = decide(host, vms, state, config)
        costs.append(time.process_time() - start)
        for d in decisions:
            if d.kind == "balloon" and isinstance(d.target, int):
                sizes[d.vm] = d.target
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lines, figures = [], {}
    for count in (8, 100):
        costs = run(count, args.cycles)[1:]  # the first cycle places everything
        median, worst = statistics.median(costs) * 1e3, max(costs) * 1e3
        lines.append(f"{count:4} VMs: decide() median {median:.3f} ms CPU per cycle, worst {worst:.3f} ms "
                     f"({args.cycles} cycles)")
        figures[f"vms_{count}"] = {"median_ms": round(median, 4), "worst_ms": round(worst, 4)}
    emit(lines, figures, args.json)


if __name__ == "__main__":
    main()
