"""One cycle of the whole policy: memory and CPU decisions for all VMs, in one call.

    decisions, state = decide(host, vms, state)   # state starts as PolicyState()

The caller keeps `state` between cycles and hands the decisions to the actuators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from hvdesk.control import cpu, memory
from hvdesk.control.decisions import Decision
from hvdesk.control.inputs import HostState, Vm


@dataclass(frozen=True)
class PolicyConfig:
    memory: memory.MemoryPolicyConfig = field(default_factory=memory.MemoryPolicyConfig)
    cpu: cpu.CpuPolicyConfig = field(default_factory=cpu.CpuPolicyConfig)


@dataclass(frozen=True)
class PolicyState:
    memory: memory.MemoryState = field(default_factory=memory.MemoryState)
    cpu: cpu.CpuState = field(default_factory=cpu.CpuState)


def decide(host: HostState, vms: Sequence[Vm], previous: PolicyState,
           config: PolicyConfig = PolicyConfig()) -> tuple[list[Decision], PolicyState]:
    memory_decisions, memory_state = memory.decide(host, vms, previous.memory, config.memory)
    cpu_decisions, cpu_state = cpu.decide(host, vms, previous.cpu, config.cpu)
    return memory_decisions + cpu_decisions, PolicyState(memory_state, cpu_state)


def forget(state: PolicyState, names: set[str]) -> PolicyState:
    """The state without what it remembers of `names` (VMs whose QEMU restarted: their balloon,
    pins and weights began afresh, so the policy must not think them applied)."""
    if not names:
        return state
    return PolicyState(
        dataclasses.replace(state.memory, hold_until=_without(state.memory.hold_until, names),
                            last_change=_without(state.memory.last_change, names),
                            peaks=_without(state.memory.peaks, names)),
        cpu.CpuState(_without(state.cpu.placements, names), _without(state.cpu.shares, names)))


_T = TypeVar("_T")


def _without(mapping: Mapping[str, _T], names: set[str]) -> dict[str, _T]:
    return {key: value for key, value in mapping.items() if key not in names}
