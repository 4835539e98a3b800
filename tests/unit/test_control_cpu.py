"""vCPU placement and CPU weights on synthetic topologies and load traces."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from hvdesk.control.cpu import (
    V1_MAX,
    V1_MIN,
    V2_MAX,
    V2_MIN,
    CpuPolicyConfig,
    CpuState,
    Placement,
    cgroup_v1_shares,
    cgroup_v2_weight,
    decide,
    nice_value,
)
from hvdesk.control.decisions import Decision, Kind
from hvdesk.control.inputs import MIB, Cpu, HostState, PinMode, Vm, VmObservation, VmPolicySettings


def topology(caches: int, cores_per_cache: int, threads: int = 1, caches_per_node: int = 1) -> tuple[Cpu, ...]:
    """Logical CPUs numbered as Linux does: the first thread of every core, then the siblings."""
    cores = caches * cores_per_cache
    return tuple(Cpu(id=thread * cores + core, core=core, cache=core // cores_per_cache,
                     node=core // (cores_per_cache * caches_per_node))
                 for thread in range(threads) for core in range(cores))


def vm(name: str, vcpus: int, mode: PinMode, load: float | None = None, shares: int = 100) -> Vm:
    return Vm(VmObservation(name, 1024 * MIB, 1024 * MIB, vcpus=vcpus, cpu_load=load),
              VmPolicySettings(pin_mode=mode, shares=shares))


def host(cpus: tuple[Cpu, ...], now: float = 1.0) -> HostState:
    return HostState(now, 16384 * MIB, 4096 * MIB, cpus)


def pins(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.kind is Kind.PIN]


def cache_of(cpus: tuple[Cpu, ...]) -> dict[int, int]:
    return {c.id: c.cache for c in cpus}


def test_balanced_keeps_each_vm_within_one_cache_domain_and_spreads_them() -> None:
    cpus = topology(caches=2, cores_per_cache=4)
    vms = [vm(f"vm{i}", 2, PinMode.BALANCED) for i in range(4)]
    decisions, state = decide(host(cpus), vms, CpuState())
    assert len(pins(decisions)) == 4
    domains = []
    for name, placement in state.placements.items():
        used = set().union(*placement.vcpus) | placement.emulator
        assert len({cache_of(cpus)[c] for c in used}) == 1, name
        domains.append(placement.domain)
    assert sorted(domains) == ["cache 0", "cache 0", "cache 1", "cache 1"]


def test_balanced_takes_a_numa_node_when_no_cache_domain_is_big_enough() -> None:
    cpus = topology(caches=4, cores_per_cache=2, caches_per_node=2)
    _, state = decide(host(cpus), [vm("big", 4, PinMode.BALANCED)], CpuState())
    placement = state.placements["big"]
    assert placement.domain.startswith("node ")
    assert len({c.node for c in cpus if c.id in placement.emulator}) == 1
    assert len(placement.emulator) == 4


def test_dedicated_gives_distinct_cores_and_a_housekeeping_core() -> None:
    cpus = topology(caches=1, cores_per_cache=8)
    decisions, state = decide(host(cpus), [vm("a", 2, PinMode.DEDICATED), vm("b", 3, PinMode.DEDICATED)],
                              CpuState())
    vcpu_sets = [s for name in ("a", "b") for s in state.placements[name].vcpus]
    assert all(len(s) == 1 for s in vcpu_sets)
    assert len(set().union(*vcpu_sets)) == 5  # five vCPUs, five cores, none shared
    housekeeping = state.placements["a"].emulator
    assert housekeeping == state.placements["b"].emulator == frozenset({0})
    assert not housekeeping & set().union(*vcpu_sets)
    assert all("1:1" in d.reason for d in pins(decisions))


def test_dedicated_takes_whole_smt_cores() -> None:
    cpus = topology(caches=1, cores_per_cache=4, threads=2)  # core n = CPUs n and n + 4
    _, state = decide(host(cpus), [vm("a", 2, PinMode.DEDICATED)], CpuState())
    assert state.placements["a"].vcpus == (frozenset({1, 5}), frozenset({2, 6}))
    assert state.placements["a"].emulator == frozenset({0, 4})


def test_dedicated_without_enough_cores_falls_back_to_balanced_and_says_so() -> None:
    cpus = topology(caches=1, cores_per_cache=4)
    decisions, state = decide(host(cpus), [vm("a", 2, PinMode.DEDICATED), vm("b", 2, PinMode.DEDICATED)],
                              CpuState())
    assert state.placements["a"].domain == "dedicated"
    assert state.placements["b"].domain == "cache 0"
    assert not set(state.placements["b"].emulator) & set().union(*state.placements["a"].vcpus)
    reason = next(d.reason for d in decisions if d.vm == "b")
    assert "placed as balanced" in reason


def test_unpinned_vms_stay_off_the_dedicated_cores() -> None:
    cpus = topology(caches=1, cores_per_cache=4)
    decisions, state = decide(host(cpus), [vm("a", 2, PinMode.DEDICATED), vm("free", 2, PinMode.OFF)],
                              CpuState())
    dedicated = set().union(*state.placements["a"].vcpus)
    assert state.placements["free"].emulator == frozenset(range(4)) - dedicated


def test_off_means_no_decision_and_switching_off_unpins() -> None:
    cpus = topology(caches=2, cores_per_cache=2)
    decisions, state = decide(host(cpus), [vm("a", 2, PinMode.OFF)], CpuState())
    assert pins(decisions) == []
    _, state = decide(host(cpus), [vm("a", 2, PinMode.BALANCED)], state)
    decisions, state = decide(host(cpus), [vm("a", 2, PinMode.OFF)], state)
    assert [d.target for d in pins(decisions)] == [{"vcpus": [[0, 1, 2, 3]] * 2, "emulator": [0, 1, 2, 3],
                                                    "domain": "all"}]


def moves_under_jitter(config: CpuPolicyConfig) -> list[Decision]:
    """Five VMs of about equal load (±20 %) on two domains (3 + 2): jitter makes the other side look better."""
    cpus = topology(caches=2, cores_per_cache=4)
    rng = random.Random(7)
    state = CpuState()
    moves = []
    for cycle in range(200):
        vms = [vm(f"vm{i}", 2, PinMode.BALANCED, load=1.0 + rng.uniform(-0.2, 0.2)) for i in range(5)]
        decisions, state = decide(host(cpus, float(cycle)), vms, state, config)
        if cycle > 0:
            moves += pins(decisions)
    return moves


def test_hysteresis_prevents_flapping_under_small_load_changes() -> None:
    assert moves_under_jitter(CpuPolicyConfig()) == []
    assert len(moves_under_jitter(CpuPolicyConfig(hysteresis=0.0))) > 10  # the trace does tempt it


def test_a_clear_imbalance_moves_a_vm() -> None:
    cpus = topology(caches=2, cores_per_cache=2)
    state = CpuState()
    quiet = [vm("a", 1, PinMode.BALANCED, 0.1), vm("b", 1, PinMode.BALANCED, 0.1), vm("c", 1, PinMode.BALANCED, 0.1)]
    _, state = decide(host(cpus), quiet, state)
    before = dict(state.placements)
    pairs = [n for n in "abc" if sum(before[n].domain == before[m].domain for m in "abc") == 2]
    busy = [vm(n, 1, PinMode.BALANCED, 2.0 if n in pairs else 0.1) for n in "abc"]
    decisions, state = decide(host(cpus, 2.0), busy, state)
    moved = pins(decisions)
    assert len(moved) == 1 and moved[0].vm in pairs
    assert "over the hysteresis" in moved[0].reason


def test_a_placement_that_became_invalid_is_replaced() -> None:
    cpus = topology(caches=2, cores_per_cache=2)
    _, state = decide(host(cpus), [vm("a", 2, PinMode.BALANCED)], CpuState())
    old = state.placements["a"]
    fewer = tuple(c for c in cpus if c.id not in old.emulator)  # its domain went away
    decisions, state = decide(host(fewer), [vm("a", 2, PinMode.BALANCED)], state)
    assert pins(decisions) and state.placements["a"] != old


def test_earlier_dedicated_placements_are_kept() -> None:
    cpus = topology(caches=1, cores_per_cache=8)
    _, state = decide(host(cpus), [vm("b", 2, PinMode.DEDICATED)], CpuState())
    decisions, state2 = decide(host(cpus), [vm("a", 2, PinMode.DEDICATED), vm("b", 2, PinMode.DEDICATED)], state)
    assert state2.placements["b"] == state.placements["b"]
    assert [d.vm for d in pins(decisions)] == ["a"]


def test_share_decisions_come_when_shares_change() -> None:
    cpus = topology(caches=1, cores_per_cache=2)
    decisions, state = decide(host(cpus), [vm("a", 1, PinMode.OFF), vm("b", 1, PinMode.OFF, shares=400)], CpuState())
    shares = [d for d in decisions if d.kind is Kind.SHARES]
    assert [(d.vm, d.target) for d in shares] == [("b", {"cpu.weight": 400, "cpu.shares": 4096, "nice": -6})]
    decisions, _ = decide(host(cpus), [vm("a", 1, PinMode.OFF), vm("b", 1, PinMode.OFF, shares=400)], state)
    assert decisions == []
    assert json.dumps(shares[0].to_json())


def test_placements_serialise() -> None:
    placement = Placement((frozenset({3, 1}),), frozenset({0}), "dedicated")
    assert placement.to_json() == {"vcpus": [[1, 3]], "emulator": [0], "domain": "dedicated"}


def test_default_shares_map_to_each_interface_default() -> None:
    assert (cgroup_v2_weight(100), cgroup_v1_shares(100), nice_value(100)) == (100, 1024, 0)


@given(st.integers(1, 10000), st.integers(1, 10000))
def test_weights_are_monotonic_and_in_range(a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    assert V2_MIN <= cgroup_v2_weight(low) <= cgroup_v2_weight(high) <= V2_MAX
    assert V1_MIN <= cgroup_v1_shares(low) <= cgroup_v1_shares(high) <= V1_MAX
    assert 19 >= nice_value(low) >= nice_value(high) >= -20


def test_the_whole_policy_returns_memory_and_cpu_decisions_and_keeps_both_states() -> None:
    from hvdesk.control.inputs import GuestMemory
    from hvdesk.control.policy import PolicyState
    from hvdesk.control.policy import decide as decide_all

    cpus = topology(caches=2, cores_per_cache=2)
    guest = GuestMemory(1.0, 1000 * MIB, 100 * MIB, 900 * MIB)
    one = Vm(VmObservation("a", 1024 * MIB, 1024 * MIB, guest, vcpus=2),
             VmPolicySettings(min_memory=128 * MIB, shares=200, pin_mode=PinMode.BALANCED))
    over_target = HostState(1.0, 1024 * MIB, 1024 * MIB, cpus)
    decisions, state = decide_all(over_target, [one], PolicyState())
    assert {d.kind for d in decisions} == {Kind.BALLOON, Kind.PIN, Kind.SHARES}
    assert "a" in state.memory.last_change and "a" in state.cpu.placements


def test_an_unknown_topology_places_nothing() -> None:
    decisions, state = decide(host(()), [vm("a", 2, PinMode.BALANCED), vm("b", 1, PinMode.DEDICATED)], CpuState())
    assert pins(decisions) == [] and state.placements == {}
