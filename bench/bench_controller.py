"""The allocation controller on real tiny guests (TCG), in this process through the engine:

1. **Replay check**: three idle 512 MiB guests under a 1 GiB pool; after `--idle-cycles` cycles one
   guest allocates 200 MiB. The same trace (each guest's own use as measured, the allocation at the
   same cycle) goes through the replay's simulator (bench/balloon_sim.py) with hvdesk's policy. Per
   cycle: memory in balloons, real against replayed; cycles to converge; balloon commands; OOM kills
   (the guests' serial logs).
2. **Density**: idle 512 MiB guests started one by one into a fixed pool (`--pool-mib`, default
   2048) with the controller, until the floors no longer fit (its BUDGET decision) or `--max-vms`;
   against static allocation (pool / 512). A guest counts when the pool holds with it, every guest
   still answers QMP, and no serial log shows an OOM kill.
3. **Controller CPU per cycle**: this process's CPU time for the policy and the actuators (the
   monitor's sampling is counted by bench_monitor).

Cycles are 2 s here (the default is 10 s): the policy's rates are per cycle, so cycle counts compare.

    .venv/bin/python -m bench.bench_controller [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.balloon_sim import simulate
from bench.balloon_traces import MIB, Scenario, Trace
from bench.common import emit, private_library
from bench.peers.hvdesk_adapter import HvdeskPolicy
from hvdesk.control.memory import MemoryPolicyConfig
from hvdesk.core.control_settings import ControlSettings
from hvdesk.engine.controller import Controller, CycleReport
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.engine.modify import modify
from hvdesk.engine.monitoring import Monitor
from tests.guest.build import TinyGuest, ensure_tiny_guest
from tests.integration.conftest import wait_for_serial

CYCLE = 2  # seconds
OOM_SIGNS = ("Out of memory", "oom-kill", "invoked oom-killer")


def say(text: str) -> None:
    print(text, flush=True)


async def boot(manager: Manager, guest: TinyGuest, name: str, memory_mib: int = 512,
               min_memory_mib: int | None = None) -> None:
    await manager.create(CreateRequest(name, memory_mib=memory_mib, kernel=guest.kernel, initrd=guest.initrd,
                                       append=guest.append))
    if min_memory_mib is not None:
        await modify(manager, name, {"resources.min_memory_mib": min_memory_mib})
    await manager.start(name)
    await wait_for_serial(manager.get(name).paths.serial_log, guest.marker, timeout=180)


async def balloons(manager: Manager, names: list[str]) -> dict[str, int]:
    return {n: (await manager.command(manager.get(n), "query-balloon"))["actual"] for n in names}


def oom_kills(manager: Manager, names: list[str]) -> int:
    count = 0
    for name in names:
        text = manager.get(name).paths.serial_log.read_text(errors="replace")
        count += sum(text.count(sign) for sign in OOM_SIGNS[:1])
    return count


class Rig:
    """A watching Manager, a 1 s monitor and a controller whose cycles this bench drives."""

    def __init__(self, manager: Manager, pool_mib: int) -> None:
        self.manager = manager
        self.monitor = Monitor(manager, interval=1.0)
        self.controller = Controller(manager, self.monitor, ControlSettings(interval=CYCLE, pool_mib=pool_mib),
                                     who="bench")
        self.reports: list[CycleReport] = []

    async def cycle(self) -> CycleReport:
        """One cycle after the monitor's samples for it (ticks every second)."""
        for _ in range(CYCLE):
            await self.monitor.tick()
            await asyncio.sleep(1.0)
        await self.monitor.tick()
        report = await self.controller.cycle()
        self.reports.append(report)
        return report


async def replay_check(manager: Manager, guest: TinyGuest, args: argparse.Namespace) -> dict:
    names = ["r0", "r1", "r2"]
    for name in names:
        await boot(manager, guest, name)
    rig = Rig(manager, pool_mib=1024)
    real: list[int] = []
    uses: dict[str, list[int]] = {n: [] for n in names}
    commands = 0
    total = args.idle_cycles + args.busy_cycles
    for cycle in range(total):
        if cycle == args.idle_cycles:
            from hvdesk.console.keys import keys_for_text
            from hvdesk.engine import console

            await console.send_keys(manager, "r0", keys_for_text(
                "dd if=/dev/zero of=/run/hvdesk-alloc/x bs=1M count=200\n"))
        report = await rig.cycle()
        commands += sum(1 for d in report.decisions if d["kind"] == "balloon")
        sizes = await balloons(manager, names)
        real.append(sum(512 * MIB - size for size in sizes.values()))
        for name in names:
            sample = rig.monitor.series_of(manager.get(name)).latest
            used = sample.guest_used if sample is not None and sample.guest_used is not None else 0
            held = 512 * MIB - sizes[name]
            uses[name].append(max(0, used - held))  # what the guest uses itself (deflate-on-oom counts the balloon)
    cpu = [r.cpu_seconds for r in rig.reports]
    await rig.controller.release()
    # The same own use, cycle by cycle, through the simulator with hvdesk's policy and the same pool.
    traces = tuple(Trace(n, 512 * MIB, 256 * MIB, tuple(uses[n]), tuple(0 for _ in uses[n])) for n in names)
    scenario = Scenario("real", "the real run's own use", 24 * 1024 * MIB, tuple(0 for _ in range(total)), traces)
    replayed = simulate(scenario, HvdeskPolicy(config=MemoryPolicyConfig(pool=1024 * MIB)))
    figures = {
        "real_reclaimed_mib": [r // MIB for r in real], "replay_reclaimed_mib": [r // MIB for r in replayed.reclaimed],
        "real_commands": commands, "replay_commands": replayed.commands,
        "real_converged_cycle": converged(real), "replay_converged_cycle": converged(replayed.reclaimed),
        "real_oom_kills": oom_kills(manager, names), "replay_oom_kills": replayed.oom_kills,
        "controller_cpu_ms_median": statistics.median(cpu) * 1000, "controller_cpu_ms_max": max(cpu) * 1000,
        "vms": len(names)}
    for name in names:
        await manager.stop(name, force=True, timeout=0)
    return figures


def converged(series: list[int]) -> int:
    """The first cycle from which the series stays within 2 % of its idle level (the level before
    the allocation): how many cycles the controller needs to reclaim what it will."""
    idle = series[: len(series) // 2] or series
    final = idle[-1]
    for i in range(len(idle)):
        if all(abs(v - final) <= 0.02 * max(final, 1) for v in idle[i:]):
            return i + 1
    return len(idle)


async def density(manager: Manager, guest: TinyGuest, args: argparse.Namespace) -> dict:
    rig = Rig(manager, pool_mib=args.pool_mib)
    static = args.pool_mib // 512
    names: list[str] = []
    fitted, reason = 0, f"stopped at --max-vms {args.max_vms}"
    for n in range(args.max_vms):
        name = f"d{n}"
        await boot(manager, guest, name, min_memory_mib=args.min_memory)
        names.append(name)
        deadline = time.monotonic() + 90
        held = False
        while time.monotonic() < deadline:
            report = await rig.cycle()
            if any(d["kind"] == "budget" for d in report.decisions):
                reason = f"guest {n + 1}: {next(d['reason'] for d in report.decisions if d['kind'] == 'budget')}"
                break
            if sum((await balloons(manager, names)).values()) <= args.pool_mib * MIB:
                held = True
                break
        if not held or oom_kills(manager, names):
            if held:
                reason = f"guest {n + 1}: an OOM kill"
            break
        fitted = n + 1
        say(f"  density: {fitted} guests of 512 MiB fit the {args.pool_mib} MiB pool")
    sizes = await balloons(manager, names)
    await rig.controller.release()
    for name in names:
        await manager.stop(name, force=True, timeout=0)
    return {"pool_mib": args.pool_mib, "min_memory_mib": args.min_memory or 256, "static_vms": static,
            "controller_vms": fitted,
            "density_ratio": fitted / static, "why_it_ended": reason,
            "balloons_mib_at_end": {n: s // MIB for n, s in sizes.items()}}


async def main_async(args: argparse.Namespace) -> dict:
    guest = ensure_tiny_guest()
    manager = Manager(watch=True)
    await manager.open()
    try:
        figures = {} if args.skip_replay else {"replay": await replay_check(manager, guest, args)}
        if not args.skip_density:
            figures["density"] = await density(manager, guest, args)
    finally:
        await manager.close()
    return figures


def report(figures: dict) -> list[str]:
    lines = []
    r = figures.get("replay")
    if r:
        lines += _replay_lines(r)
    d = figures.get("density")
    if d:
        lines.append(f"Density (minimum memory {d['min_memory_mib']} MiB): {d['controller_vms']} idle 512 MiB "
                     f"guests in a {d['pool_mib']} MiB pool with the controller vs {d['static_vms']} static: "
                     f"{d['density_ratio']:.2f}x (goal >= 2x); ended: {d['why_it_ended']}")
    return lines


def _replay_lines(r: dict) -> list[str]:
    lines = [f"Replay check: {r['vms']} idle 512 MiB guests, pool 1024 MiB, {CYCLE} s cycles; one guest "
             "allocates 200 MiB halfway. Memory in balloons (MiB) per cycle, real / replayed:"]
    lines.append("  " + " ".join(f"{a}/{b}" for a, b in zip(r["real_reclaimed_mib"], r["replay_reclaimed_mib"])))
    lines.append(f"  converged after {r['real_converged_cycle']} / {r['replay_converged_cycle']} cycles; "
                 f"balloon commands {r['real_commands']} / {r['replay_commands']}; "
                 f"OOM kills {r['real_oom_kills']} / {r['replay_oom_kills']}")
    lines.append(f"Controller CPU per cycle (policy + actuators, {r['vms']} VMs): median "
                 f"{r['controller_cpu_ms_median']:.2f} ms, max {r['controller_cpu_ms_max']:.2f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-cycles", type=int, default=10)
    parser.add_argument("--busy-cycles", type=int, default=8)
    parser.add_argument("--pool-mib", type=int, default=2048)
    parser.add_argument("--max-vms", type=int, default=9)
    parser.add_argument("--min-memory", type=int, help="each density guest's minimum memory (MiB; default 256)")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-density", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_library():
        figures = asyncio.run(main_async(args))
    emit(report(figures), figures, args.json)


if __name__ == "__main__":
    main()
