"""hvdesk's balloon policy behind the replay's interface: builds the policy's inputs from what the
simulated daemon sees and calls `hvdesk.control.memory.decide` unchanged (its state kept between
cycles). `HvdeskPolicy()` targets 80 % of the host; `HvdeskPolicy(pool=...)` holds the VMs to a pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.balloon_sim import GuestView, HostView
from hvdesk.control.decisions import Kind
from hvdesk.control.inputs import GuestMemory, HostState, Vm, VmObservation, VmPolicySettings
from hvdesk.control.memory import MemoryPolicyConfig, MemoryState, decide


class HvdeskPolicy:
    def __init__(self, pool: int | None = None, config: MemoryPolicyConfig | None = None) -> None:
        self.config = config or MemoryPolicyConfig(pool=pool)
        self.name = "hvdesk-80%" if self.config.pool is None else \
            f"hvdesk-pool{self.config.pool / 2**30:g}G"
        self.state = MemoryState()

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]:
        state = HostState(host.time, host.total, host.used)
        decisions, self.state = decide(state, [_vm(g) for g in guests], self.state, self.config)
        return {d.vm: d.target for d in decisions if d.kind is Kind.BALLOON and isinstance(d.target, int)}


def _vm(guest: GuestView) -> Vm:
    """The guest's stats as the engine hands them over: used = MemTotal - MemAvailable, with the
    balloon's pages inside MemTotal (deflate-on-oom), so `balloon_counted_as_used`."""
    memory = GuestMemory(guest.stats_time, guest.mem_total, guest.mem_total - guest.mem_available,
                         guest.mem_available)
    observed = VmObservation(guest.name, guest.memory_max, guest.actual, memory,
                             swap_in_rate=guest.swap_in_rate, major_fault_rate=guest.major_fault_rate,
                             balloon_counted_as_used=True)
    return Vm(observed, VmPolicySettings(min_memory=guest.min_memory, shares=guest.shares))
