"""vCPU placement and CPU weights.

Placement per VM, by its pin mode:
- dedicated: each vCPU thread alone on a physical core (all of that core's SMT siblings), emulator
  threads on the housekeeping core (the lowest-numbered core, given to no dedicated vCPU). Without
  enough free cores the VM is placed as balanced, and the decision says so.
- balanced: every vCPU and emulator thread of the VM on one cache domain (else one NUMA node, else
  all CPUs, whichever first has as many CPUs as the VM has vCPUs), the least loaded one. Hysteresis:
  a VM stays where it is while its place is still valid, unless another domain would be less loaded
  per CPU by more than `hysteresis` (load = cores busy, the vCPU count when not measured).
- off: anywhere but the dedicated cores.
Weights: the VM's shares (cgroup v2 scale, 100 normal) as cgroup v2 cpu.weight, cgroup v1 cpu.shares
and a nice value, so the actuator can use whichever the host allows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hvdesk.control.decisions import Decision, JsonValue, Kind
from hvdesk.control.inputs import DEFAULT_SHARES, Cpu, HostState, PinMode, Vm

V1_MIN, V1_MAX, V1_DEFAULT = 2, 262144, 1024
V2_MIN, V2_MAX = 1, 10000
NICE_STEP = 1.25  # the kernel's weight ratio between two nice levels


def cgroup_v2_weight(shares: int) -> int:
    """cpu.weight: shares are on its scale already."""
    return min(V2_MAX, max(V2_MIN, shares))


def cgroup_v1_shares(shares: int) -> int:
    """cpu.shares: 100 (v2's default) maps to 1024 (v1's default), proportionally."""
    return min(V1_MAX, max(V1_MIN, round(shares * V1_DEFAULT / DEFAULT_SHARES)))


def nice_value(shares: int) -> int:
    """A nice level whose scheduler weight relative to nice 0 is closest to shares / 100."""
    return min(19, max(-20, round(-math.log(shares / DEFAULT_SHARES, NICE_STEP))))


@dataclass(frozen=True)
class Placement:
    vcpus: tuple[frozenset[int], ...]  # the CPUs each vCPU thread may run on
    emulator: frozenset[int]  # the CPUs QEMU's other threads may run on
    domain: str  # where: "cache 0", "node 1", "all", "dedicated"

    def to_json(self) -> dict[str, JsonValue]:
        return {"vcpus": [sorted(s) for s in self.vcpus], "emulator": sorted(self.emulator),
                "domain": self.domain}


@dataclass(frozen=True)
class CpuPolicyConfig:
    hysteresis: float = 0.25  # load per CPU a move must gain


@dataclass(frozen=True)
class CpuState:
    placements: Mapping[str, Placement] = field(default_factory=dict)
    shares: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Domain:
    key: str
    cpus: frozenset[int]


def decide(host: HostState, vms: Sequence[Vm], previous: CpuState,
           config: CpuPolicyConfig = CpuPolicyConfig()) -> tuple[list[Decision], CpuState]:
    if not host.cpus:  # topology unknown: place nothing (an empty CPU set cannot be applied)
        return _share_decisions(host.time, vms, previous), CpuState(
            previous.placements, {vm.name: vm.settings.shares for vm in vms})
    placements, notes = _dedicated(host.cpus, vms, previous)
    taken = frozenset(cpu for p in placements.values() for s in p.vcpus for cpu in s)
    free = frozenset(c.id for c in host.cpus) - taken
    balanced = [vm for vm in vms if vm.settings.pin_mode is PinMode.BALANCED or vm.name in notes]
    placements.update(_balanced(host.cpus, free, balanced, previous, config, notes))
    for vm in vms:
        if vm.name not in placements:
            placements[vm.name] = Placement((free,) * vm.observed.vcpus, free, "all")
    decisions = [_pin_decision(host, vm, placements[vm.name], previous, notes.get(vm.name, ""))
                 for vm in sorted(vms, key=lambda v: v.name)
                 if placements[vm.name] != previous.placements.get(vm.name, _unpinned(host, vm))]
    decisions += _share_decisions(host.time, vms, previous)
    return decisions, CpuState(placements, {vm.name: vm.settings.shares for vm in vms})


def _unpinned(host: HostState, vm: Vm) -> Placement:
    everywhere = frozenset(c.id for c in host.cpus)
    return Placement((everywhere,) * vm.observed.vcpus, everywhere, "all")


def _cores(cpus: Sequence[Cpu]) -> dict[int, frozenset[int]]:
    """Physical core -> its logical CPUs, cores in (node, cache, core) order."""
    by_core: dict[int, set[int]] = defaultdict(set)
    for cpu in sorted(cpus, key=lambda c: (c.node, c.cache, c.core, c.id)):
        by_core[cpu.core].add(cpu.id)
    return {core: frozenset(ids) for core, ids in by_core.items()}


def _dedicated(cpus: Sequence[Cpu], vms: Sequence[Vm],
               previous: CpuState) -> tuple[dict[str, Placement], dict[str, str]]:
    """Placements of the dedicated VMs, and for those that did not fit, why (they go balanced)."""
    wanted = sorted((vm for vm in vms if vm.settings.pin_mode is PinMode.DEDICATED), key=lambda v: v.name)
    cores = _cores(cpus)
    if not wanted or len(cores) < 2:
        return {}, {vm.name: "dedicated needs at least two cores: placed as balanced" for vm in wanted}
    housekeeping = min(cores, key=lambda core: min(cores[core]))
    free = {core: ids for core, ids in cores.items() if core != housekeeping}
    placements: dict[str, Placement] = {}
    for vm in wanted:  # first keep every valid earlier placement, so nobody is moved to make room
        old = previous.placements.get(vm.name)
        if old is not None and old.domain == "dedicated" and len(old.vcpus) == vm.observed.vcpus \
                and all(s in free.values() for s in old.vcpus):
            placements[vm.name] = old
            free = {core: ids for core, ids in free.items() if ids not in old.vcpus}
    notes: dict[str, str] = {}
    for vm in wanted:
        if vm.name in placements:
            continue
        if len(free) < vm.observed.vcpus:
            notes[vm.name] = (f"dedicated needs {vm.observed.vcpus} free cores, {len(free)} left: "
                              "placed as balanced")
            continue
        chosen = list(free)[:vm.observed.vcpus]
        placements[vm.name] = Placement(tuple(free[c] for c in chosen), cores[housekeeping], "dedicated")
        free = {core: ids for core, ids in free.items() if core not in chosen}
    return placements, notes


def _domains(cpus: Sequence[Cpu], free: frozenset[int]) -> list[list[_Domain]]:
    """The places a balanced VM may go, smallest kind first: cache domains, NUMA nodes, everything."""
    kinds: list[list[_Domain]] = []
    for kind in ("cache", "node"):
        groups: dict[int, set[int]] = defaultdict(set)
        for cpu in cpus:
            if cpu.id in free:
                groups[int(getattr(cpu, kind))].add(cpu.id)
        kinds.append([_Domain(f"{kind} {key}", frozenset(ids)) for key, ids in sorted(groups.items())])
    kinds.append([_Domain("all", free)])
    return kinds


class _Loads:
    """Load per CPU: a VM's load spread evenly over the CPUs it may use, so domains of different
    kinds (a cache domain inside a NUMA node) see each other's VMs."""

    def __init__(self) -> None:
        self.per_cpu: dict[int, float] = defaultdict(float)

    def add(self, domain: _Domain, load: float) -> None:
        for cpu in domain.cpus:
            self.per_cpu[cpu] += load / len(domain.cpus)

    def mean(self, domain: _Domain, extra: float = 0.0) -> float:
        """Average load per CPU of the domain, with `extra` more placed on it."""
        return (sum(self.per_cpu[cpu] for cpu in domain.cpus) + extra) / max(1, len(domain.cpus))


def _balanced(cpus: Sequence[Cpu], free: frozenset[int], vms: Sequence[Vm], previous: CpuState,
              config: CpuPolicyConfig, notes: dict[str, str]) -> dict[str, Placement]:
    """Keep every VM whose place is still valid, place the others on the least loaded domain (the
    heaviest first), then move a kept VM only where it would be clearly less loaded."""
    kinds = _domains(cpus, free)
    loads = _Loads()
    chosen: dict[str, _Domain] = {}
    ordered = sorted(vms, key=lambda v: (-_load(v), v.name))
    for vm in ordered:
        current = _still_valid(previous.placements.get(vm.name), _candidates(kinds, vm.observed.vcpus))
        if current is not None:
            chosen[vm.name] = current
            loads.add(current, _load(vm))
    kept = set(chosen)
    for vm in ordered:
        if vm.name not in kept:
            chosen[vm.name] = _least_loaded(_candidates(kinds, vm.observed.vcpus), loads, _load(vm))
            loads.add(chosen[vm.name], _load(vm))
    for vm in ordered:
        if vm.name in kept:
            _maybe_move(vm, chosen, loads, _candidates(kinds, vm.observed.vcpus), config, notes)
    return {vm.name: Placement((chosen[vm.name].cpus,) * vm.observed.vcpus, chosen[vm.name].cpus,
                               chosen[vm.name].key) for vm in vms}


def _candidates(kinds: list[list[_Domain]], vcpus: int) -> list[_Domain]:
    """The domains of the smallest kind that has one with at least `vcpus` CPUs (else everything)."""
    for kind in kinds:
        fitting = [d for d in kind if len(d.cpus) >= vcpus]
        if fitting:
            return fitting
    return kinds[-1]


def _still_valid(old: Placement | None, candidates: list[_Domain]) -> _Domain | None:
    if old is None:
        return None
    return next((d for d in candidates if d.key == old.domain and d.cpus == old.emulator), None)


def _least_loaded(domains: list[_Domain], loads: _Loads, load: float) -> _Domain:
    return min(domains, key=lambda d: (loads.mean(d, load), d.key))


def _maybe_move(vm: Vm, chosen: dict[str, _Domain], loads: _Loads, candidates: list[_Domain],
                config: CpuPolicyConfig, notes: dict[str, str]) -> None:
    current, load = chosen[vm.name], _load(vm)
    here = loads.mean(current)
    others = [d for d in candidates if d != current]
    if not others:
        return
    best = _least_loaded(others, loads, load)
    there = loads.mean(best, load)
    if here - there <= config.hysteresis:
        return  # not clearly better elsewhere: stay
    notes[vm.name] = (f"{current.key} carries {here:.2f} load per CPU, {best.key} would carry {there:.2f}: "
                      f"a gain over the hysteresis of {config.hysteresis}")
    loads.add(current, -load)
    loads.add(best, load)
    chosen[vm.name] = best


def _load(vm: Vm) -> float:
    load = vm.observed.cpu_load
    return float(vm.observed.vcpus) if load is None else load


def _pin_decision(host: HostState, vm: Vm, placement: Placement, previous: CpuState, note: str) -> Decision:
    mode = vm.settings.pin_mode
    old = previous.placements.get(vm.name)
    where = "anywhere" if placement.domain == "all" else placement.domain
    reason = f"pinning {mode}: vCPUs {where}" + (f" (was {old.domain})" if old is not None else "")
    if mode is PinMode.DEDICATED and placement.domain == "dedicated":
        reason = (f"pinning dedicated: {vm.observed.vcpus} vCPU threads 1:1 on cores "
                  f"{[sorted(s) for s in placement.vcpus]}, emulator threads on {sorted(placement.emulator)}")
    if note:
        reason += f"; {note}"
    inputs: dict[str, JsonValue] = {"vcpus": vm.observed.vcpus, "cpu_load": vm.observed.cpu_load,
                                    "host_cpus": len(host.cpus), "mode": str(mode)}
    return Decision(host.time, vm.name, Kind.PIN, placement.to_json(), reason, inputs)


def _share_decisions(now: float, vms: Sequence[Vm], previous: CpuState) -> list[Decision]:
    decisions = []
    for vm in sorted(vms, key=lambda v: v.name):
        shares = vm.settings.shares
        if previous.shares.get(vm.name, DEFAULT_SHARES) == shares:
            continue
        target: dict[str, JsonValue] = {"cpu.weight": cgroup_v2_weight(shares),
                                        "cpu.shares": cgroup_v1_shares(shares), "nice": nice_value(shares)}
        reason = f"{shares} shares (100 is normal): CPU time in that proportion against other VMs when they compete"
        decisions.append(Decision(now, vm.name, Kind.SHARES, target, reason, {"shares": shares}))
    return decisions
