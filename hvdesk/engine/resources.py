"""Resource changes on a running VM: its balloon target, where its vCPUs run, and its CPU weight.
Each goes through the guard (find, hold, refresh, check the action table) and acts on the running
QEMU only: nothing is written to vm.toml, and the next start begins afresh.

Two kinds of caller: a person (`hvdesk balloon`, `pin`, `shares`: checked input, waits for the
result) and the allocation controller (`set_balloon`, `place`, `weigh`: the policy's targets,
never waiting for a busy VM, which it skips for a cycle)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hvdesk.control.cpu import V2_MAX, V2_MIN, cgroup_v1_shares, cgroup_v2_weight, nice_value
from hvdesk.core.errors import ConfigError, HvdeskError, StateError
from hvdesk.engine.actions import Action
from hvdesk.engine.guard import Guard
from hvdesk.engine.machine import Machine
from hvdesk.engine.watcher import Watcher
from hvdesk.qemu import affinity, cpu_weight

NO_WAIT = 0.0  # the controller's lock wait: a VM busy with something else is left for this cycle

MIB = 1024 * 1024
BALLOON_SETTLE = 3.0  # seconds to wait for the guest to reach a new balloon target before reporting


@dataclass
class BalloonResult:
    target_mib: int
    actual_mib: int  # what QEMU reports the guest has now


@dataclass
class PinResult:
    vcpu: int
    thread: int
    cpus: frozenset[int]


@dataclass
class SharesResult:
    shares: int
    mechanism: str  # e.g. "cgroup v1 cpu.shares 4096"
    why: str  # how the mechanism was chosen


class Resources:
    def __init__(self, watcher: Watcher, guard: Guard) -> None:
        self.watcher = watcher
        self.guard = guard

    async def balloon(self, name: str, mib: int) -> BalloonResult:
        """Ask the guest's balloon driver for a new memory size; report where it got to."""
        async with self.guard.operate(name, Action.BALLOON) as machine:
            limit = machine.config.memory_mib
            if not machine.config.balloon.enabled:
                raise StateError(f"{machine.name!r} has no balloon device (it is off in its settings)")
            if not 0 < mib <= limit:
                raise ConfigError(f"balloon target {mib} MiB is outside 1–{limit} MiB "
                                  f"({machine.name!r} has {limit} MiB)")
            await self.watcher.command(machine, "balloon", {"value": mib * MIB})
            actual = await self._settle(machine, mib * MIB)
            return BalloonResult(mib, actual // MIB)

    async def _settle(self, machine: Machine, target: int) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BALLOON_SETTLE
        while True:
            actual: int = (await self.watcher.command(machine, "query-balloon"))["actual"]
            if actual == target or loop.time() >= deadline:
                return actual
            await asyncio.sleep(0.1)

    async def pin(self, name: str, vcpu: int, host_cpus: str) -> PinResult:
        """Confine one vCPU's thread to the host CPUs of the list `host_cpus` ("1", "0-1,3")."""
        cpus = affinity.parse_cpu_list(host_cpus, affinity.host_cpus())
        async with self.guard.operate(name, Action.PIN) as machine:
            tids = await self.vcpu_threads(machine)
            if not 0 <= vcpu < len(tids):
                raise ConfigError(f"{machine.name!r} has no vCPU {vcpu} (its vCPUs are 0–{len(tids) - 1})")
            await asyncio.to_thread(affinity.pin_thread, tids[vcpu], cpus)
            return PinResult(vcpu, tids[vcpu], cpus)

    async def shares(self, name: str, shares: int) -> SharesResult:
        """Weigh the VM's CPU time against other VMs' (100 normal) by the host's mechanism."""
        if not V2_MIN <= shares <= V2_MAX:
            raise ConfigError(f"CPU shares {shares} are outside {V2_MIN}–{V2_MAX} (100 is normal)")
        weights = cpu_weight.Weights(cgroup_v2_weight(shares), cgroup_v1_shares(shares), nice_value(shares))
        async with self.guard.operate(name, Action.SHARES) as machine:
            return self._weigh(machine, shares, weights)

    def _weigh(self, machine: Machine, shares: int, weights: cpu_weight.Weights) -> SharesResult:
        mechanism = cpu_weight.detect()
        assert machine.pid is not None, "a running VM has a QEMU"
        cpu_weight.apply(mechanism, machine.uuid, machine.pid, weights)
        return SharesResult(shares, mechanism.describe(weights), mechanism.why)

    # -- for the controller: targets computed by the policy, no waiting -----------------------------

    async def set_balloon(self, name: str, target: int) -> None:
        """Ask for a balloon size in bytes (the policy keeps it within the VM's memory)."""
        async with self.guard.operate(name, Action.BALLOON, wait=NO_WAIT) as machine:
            await self.watcher.command(machine, "balloon", {"value": target})

    async def place(self, name: str, vcpus: list[frozenset[int]], emulator: frozenset[int]) -> None:
        """Confine vCPU i's thread to vcpus[i] and every other QEMU thread to `emulator`."""
        async with self.guard.operate(name, Action.PIN, wait=NO_WAIT) as machine:
            tids = await self.vcpu_threads(machine)
            assert machine.pid is not None, "a running VM has a QEMU"
            others = [tid for tid in affinity.process_threads(machine.pid) if tid not in tids]
            for tid, cpus in zip(tids, vcpus):
                await asyncio.to_thread(affinity.pin_thread, tid, cpus)
            for tid in others:
                try:
                    affinity.pin_thread(tid, emulator)
                except HvdeskError:
                    pass  # a short-lived worker thread that ended meanwhile

    async def weigh(self, name: str, shares: int, weights: cpu_weight.Weights) -> SharesResult:
        async with self.guard.operate(name, Action.SHARES, wait=NO_WAIT) as machine:
            return self._weigh(machine, shares, weights)

    async def vcpu_threads(self, machine: Machine) -> list[int]:
        """The host thread ids of the VM's vCPUs, in vCPU order."""
        cpus = await self.watcher.command(machine, "query-cpus-fast")
        return [cpu["thread-id"] for cpu in sorted(cpus, key=lambda c: c["cpu-index"])]
