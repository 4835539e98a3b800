"""The balloon policy on synthetic traces: the balloon follows each decision at once (as QEMU's does
within a second), guests report fresh stats each cycle unless a test says otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from hvdesk.control.decisions import Decision, Kind
from hvdesk.control.inputs import MIB, GuestMemory, HostState, Vm, VmObservation, VmPolicySettings
from hvdesk.control.memory import MemoryPolicyConfig, MemoryState, decide
from hvdesk.control.waterfill import Claim, water_fill

CONFIG = MemoryPolicyConfig()
HOST_TOTAL = 8192 * MIB


@dataclass
class Guest:
    """A guest as the trace drives it: what it uses for itself, and what its balloon allows."""

    name: str
    use: int
    memory_max: int = 1024 * MIB
    actual: int = 0
    shares: int = 100
    min_memory: int = 128 * MIB
    stats_time: float | None = 0.0  # None: no driver report
    swap_in: float = 0.0
    auto: bool = True

    def __post_init__(self) -> None:
        self.actual = self.actual or self.memory_max

    def as_vm(self, now: float) -> Vm:
        held = self.memory_max - self.actual
        guest = None if self.stats_time is None else GuestMemory(
            self.stats_time, self.memory_max, self.use + held, self.memory_max - self.use - held)
        return Vm(VmObservation(self.name, self.memory_max, self.actual, guest, swap_in_rate=self.swap_in,
                                major_fault_rate=0.0),
                  VmPolicySettings(min_memory=self.min_memory, shares=self.shares, auto_balloon=self.auto))


class Trace:
    def __init__(self, guests: list[Guest], config: MemoryPolicyConfig = CONFIG, host_used_other: int = 0) -> None:
        self.guests = {g.name: g for g in guests}
        self.config = config
        self.state = MemoryState()
        self.now = 0.0
        self.other = host_used_other  # host memory used outside the VMs

    def step(self, fresh_stats: bool = True) -> list[Decision]:
        self.now += 1.0
        for guest in self.guests.values():
            if fresh_stats and guest.stats_time is not None:
                guest.stats_time = self.now
        host = HostState(self.now, HOST_TOTAL, self.other + sum(g.actual for g in self.guests.values()))
        decisions, self.state = decide(host, [g.as_vm(self.now) for g in self.guests.values()], self.state,
                                       self.config)
        for d in decisions:
            if d.kind is Kind.BALLOON:
                assert isinstance(d.target, int)
                self.guests[d.vm].actual = d.target
        return decisions

    def run(self, cycles: int) -> list[Decision]:
        return [d for _ in range(cycles) for d in self.step()]


def balloon(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if d.kind is Kind.BALLOON]


def floor_of(guest: Guest, config: MemoryPolicyConfig = CONFIG) -> int:
    return min(guest.memory_max, max(guest.min_memory, guest.use + config.reserve))


def over_target_host(*guests: Guest) -> Trace:
    """The host is far above its target whatever the VMs give back: they shrink to their floors."""
    return Trace(list(guests), host_used_other=HOST_TOTAL)


def test_idle_guests_shrink_at_the_bounded_rate_to_their_floor_and_stop() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB), Guest("b", use=300 * MIB, memory_max=4096 * MIB))
    sizes = {name: [g.actual] for name, g in trace.guests.items()}
    for _ in range(80):
        trace.step()
        for name, guest in trace.guests.items():
            sizes[name].append(guest.actual)
    step_a, step_b = 51 * MIB, 100 * MIB  # 5 % of 1 GiB; 5 % of 4 GiB capped at 100 MiB
    for name, step in (("a", step_a), ("b", step_b)):
        series = sizes[name]
        assert all(0 <= before - after <= step for before, after in zip(series, series[1:])), name
        floor = floor_of(trace.guests[name])
        assert floor <= series[-1] <= floor + CONFIG.shrink_deadband, name
    assert trace.run(10) == []  # stopped: nothing more to do (the budget shortfall was said once)


def test_a_spike_grows_back_to_need_in_one_cycle() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    trace.run(40)
    assert trace.guests["a"].actual < 300 * MIB
    trace.guests["a"].use = 700 * MIB
    decisions = balloon(trace.step())
    assert len(decisions) == 1
    assert trace.guests["a"].actual >= 700 * MIB + CONFIG.reserve
    assert "grows" in decisions[0].reason


def test_a_spike_keeps_its_room_for_peak_hold_then_the_balloon_shrinks_again() -> None:
    # the balloon follows a cycle late: a spike that recurs must find its memory still there
    trace = over_target_host(Guest("a", use=100 * MIB))
    trace.run(40)
    trace.guests["a"].use = 500 * MIB
    trace.step()
    trace.guests["a"].use = 100 * MIB
    kept = 500 * MIB + CONFIG.reserve
    for _ in range(int(CONFIG.peak_hold) - 100):
        trace.step()
        assert trace.guests["a"].actual >= kept
    trace.guests["a"].actual = 1024 * MIB  # given back (say, after an alarm): it shrinks to the peak's floor
    decisions = balloon(trace.run(30))
    assert kept <= trace.guests["a"].actual < kept + CONFIG.shrink_deadband
    assert "peak use 500 MiB within 15 min" in decisions[-1].reason
    assert decisions[-1].inputs["peak_use"] == 500 * MIB
    trace.guests["a"].use = 480 * MIB  # the spike again, a little lower: held for another peak_hold
    trace.step()
    trace.guests["a"].use = 100 * MIB
    trace.run(int(CONFIG.peak_hold) - 10)
    assert trace.guests["a"].actual >= kept
    trace.run(40)  # expired: down to use + reserve at the shrink rate
    assert trace.guests["a"].actual == floor_of(trace.guests["a"])


def test_room_on_the_host_is_given_back_at_the_shrink_pace_to_a_guest_above_its_floor() -> None:
    trace = Trace([Guest("a", use=100 * MIB)], host_used_other=HOST_TOTAL)
    trace.run(40)
    assert trace.guests["a"].actual < 300 * MIB
    trace.other = 0  # the host has room again: the guest, not short of memory, grows 51 MiB a cycle
    sizes = [trace.guests["a"].actual]
    for _ in range(30):
        trace.step()
        sizes.append(trace.guests["a"].actual)
    assert all(0 <= after - before <= 51 * MIB for before, after in zip(sizes, sizes[1:]))
    assert sizes[-1] == 1024 * MIB


def test_a_ramp_is_followed_cycle_by_cycle_never_below_the_floor() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    trace.run(40)
    for use in range(100, 900, 37):
        trace.guests["a"].use = use * MIB
        trace.step()
        assert trace.guests["a"].actual >= floor_of(trace.guests["a"])


def test_the_host_target_lets_guests_keep_everything_when_the_host_has_room() -> None:
    trace = Trace([Guest("a", use=100 * MIB), Guest("b", use=100 * MIB)], host_used_other=1024 * MIB)
    assert trace.run(20) == []


def test_the_host_target_shrinks_only_what_is_over_it() -> None:
    # 8 GiB host, target 80 % = 6553.6 MiB; other use 5 GiB: the VMs may have 1433.6 MiB of their 2048
    trace = Trace([Guest("a", use=100 * MIB), Guest("b", use=100 * MIB)], host_used_other=5120 * MIB)
    trace.run(60)
    total = sum(g.actual for g in trace.guests.values())
    allowed = 0.8 * HOST_TOTAL - 5120 * MIB
    assert allowed - 2 * MIB <= total <= allowed + 2 * CONFIG.shrink_deadband  # MiB rounding, dead band
    assert trace.guests["a"].actual == trace.guests["b"].actual


def test_stale_stats_give_the_memory_back_and_hold_off() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    trace.run(30)
    shrunk = trace.guests["a"].actual
    assert shrunk < 512 * MIB
    decisions = balloon([d for _ in range(15) for d in trace.step(fresh_stats=False)])
    assert [d.target for d in decisions] == [1024 * MIB]  # once, when the stats passed 10 s
    assert "old" in decisions[0].reason
    given_back_at = decisions[0].time
    while trace.now < given_back_at + CONFIG.hold_off - 1:  # fresh again, but held off
        assert balloon(trace.step()) == []
    later = balloon(trace.run(5))
    assert later and all(d.target < 1024 * MIB for d in later)  # shrinking again after the hold-off


def test_guest_pressure_gives_the_memory_back_at_once_and_holds_off() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    trace.run(30)
    trace.guests["a"].swap_in = 20 * MIB
    decisions = balloon(trace.step())
    assert [d.target for d in decisions] == [1024 * MIB]
    assert "swaps in" in decisions[0].reason
    trace.guests["a"].swap_in = 0.0
    assert balloon(trace.run(int(CONFIG.hold_off) - 2)) == []


def test_major_fault_spike_counts_as_pressure() -> None:
    guest = Guest("a", use=100 * MIB, actual=512 * MIB)
    vm = guest.as_vm(1.0)
    vm = replace(vm, observed=replace(vm.observed, major_fault_rate=5000.0))
    decisions, state = decide(HostState(1.0, HOST_TOTAL, HOST_TOTAL), [vm], MemoryState())
    assert [d.target for d in balloon(decisions)] == [1024 * MIB]
    assert state.hold_until["a"] == 1.0 + CONFIG.hold_off


def test_no_driver_report_means_no_shrinking() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB, stats_time=None))
    assert balloon(trace.run(30)) == []
    assert trace.guests["a"].actual == 1024 * MIB


def test_no_balloon_device_or_auto_balloon_off_means_no_decision() -> None:
    guest = Guest("a", use=100 * MIB)
    no_device = guest.as_vm(1.0)
    no_device = replace(no_device, observed=replace(no_device.observed, balloon_actual=None))
    manual = Guest("b", use=100 * MIB, auto=False).as_vm(1.0)
    decisions, _ = decide(HostState(1.0, HOST_TOTAL, HOST_TOTAL), [no_device, manual], MemoryState())
    assert balloon(decisions) == []


def test_a_guest_stats_older_than_the_last_change_stop_the_next_shrink() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    assert balloon(trace.step())
    for _ in range(3):  # the guest has not reported since the change
        assert balloon(trace.step(fresh_stats=False)) == []
    assert balloon(trace.step())  # it has


def test_pool_keeps_the_sum_under_it_whenever_the_floors_allow() -> None:
    pool = 1500 * MIB
    config = replace(CONFIG, pool=pool)
    trace = Trace([Guest("a", use=100 * MIB), Guest("b", use=200 * MIB), Guest("c", use=50 * MIB)], config)
    for cycle in range(60):
        decisions = trace.step()
        assert sum(g.actual for g in trace.guests.values()) <= pool, cycle
        assert not [d for d in decisions if d.kind is Kind.BUDGET]
        if cycle == 20:
            trace.guests["b"].use = 600 * MIB  # one grows: the others give way within the pool


def test_pool_below_the_floors_says_so_once_and_holds_everyone_at_the_floor() -> None:
    config = replace(CONFIG, pool=600 * MIB)
    trace = Trace([Guest("a", use=300 * MIB), Guest("b", use=300 * MIB)], config)
    decisions = trace.run(5)
    budget = [d for d in decisions if d.kind is Kind.BUDGET]
    assert len(budget) == 1
    assert budget[0].vm == "" and budget[0].target == 2 * (364 * MIB) - 600 * MIB
    assert "cannot be met" in budget[0].reason
    assert all(g.actual == floor_of(g) for g in trace.guests.values())


def test_more_shares_keep_more_and_lose_memory_no_faster() -> None:
    config = replace(CONFIG, pool=1024 * MIB)
    trace = Trace([Guest("rich", use=100 * MIB, shares=200), Guest("poor", use=100 * MIB)], config)
    for _ in range(40):
        trace.step()
        assert trace.guests["rich"].actual >= trace.guests["poor"].actual
    rich, poor = trace.guests["rich"], trace.guests["poor"]
    surplus_rich, surplus_poor = rich.actual - floor_of(rich), poor.actual - floor_of(poor)
    assert abs(surplus_rich - 2 * surplus_poor) <= 2 * MIB
    assert rich.actual + poor.actual <= 1024 * MIB


def test_fifty_vms_converge_within_the_pool() -> None:
    guests = [Guest(f"vm{i:02}", use=(50 + 13 * i) * MIB, memory_max=(1024 + 64 * (i % 5)) * MIB,
                    shares=50 + 25 * (i % 4)) for i in range(50)]
    pool = 24 * 1024 * MIB  # the floors sum to ~21 GiB, the configured memory to ~56 GiB
    trace = Trace(guests, replace(CONFIG, pool=pool))
    for _ in range(40):
        assert not [d for d in trace.step() if d.kind is Kind.BUDGET]
        assert sum(g.actual for g in trace.guests.values()) <= pool
    assert trace.run(5) == []  # converged
    assert all(g.actual >= floor_of(g) for g in trace.guests.values())


def test_decisions_serialise_to_json() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB))
    decision = balloon(trace.step())[0]
    data = json.loads(json.dumps(decision.to_json()))
    assert {"time", "vm", "kind", "target", "reason", "inputs"} <= data.keys()
    assert data["kind"] == "balloon" and data["target"] == trace.guests["a"].actual
    assert data["inputs"]["floor"] == floor_of(trace.guests["a"])


guest_strategy = st.builds(
    Guest, name=st.sampled_from(["a", "b", "c", "d"]), use=st.integers(0, 4096).map(lambda m: m * MIB),
    memory_max=st.integers(64, 4096).map(lambda m: m * MIB), actual=st.integers(1, 4096).map(lambda m: m * MIB),
    shares=st.integers(1, 10000), min_memory=st.integers(0, 2048).map(lambda m: m * MIB),
    swap_in=st.sampled_from([0.0, 10.0 * MIB]))


@settings(max_examples=200, deadline=None)
@given(guests=st.lists(guest_strategy, min_size=1, max_size=4, unique_by=lambda g: g.name),
       pool=st.one_of(st.none(), st.integers(0, 16384).map(lambda m: m * MIB)),
       host_used=st.integers(0, 16384).map(lambda m: m * MIB))
def test_targets_lie_between_the_floor_and_the_configured_memory(guests: list[Guest], pool: int | None,
                                                                 host_used: int) -> None:
    for guest in guests:
        guest.actual = min(guest.actual, guest.memory_max)
    host = HostState(1.0, HOST_TOTAL, host_used)
    decisions, _ = decide(host, [g.as_vm(1.0) for g in guests], MemoryState(), replace(CONFIG, pool=pool))
    by_name = {g.name: g for g in guests}
    for d in decisions:
        if d.kind is Kind.BALLOON:
            guest = by_name[d.vm]
            assert isinstance(d.target, int)
            assert floor_of(guest) <= d.target <= guest.memory_max


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 100)), min_size=1, max_size=8),
       st.integers(0, 20000))
def test_water_filling_stays_in_bounds_and_spends_the_budget(raw: list[tuple[int, int, int]], budget: int) -> None:
    claims = [Claim(floor, floor + room, weight) for floor, room, weight in raw]
    shares = water_fill(claims, budget)
    for claim, share in zip(claims, shares):
        assert claim.floor - 1e-6 <= share <= claim.cap + 1e-6
    floors, caps = sum(c.floor for c in claims), sum(c.cap for c in claims)
    assert abs(sum(shares) - min(max(budget, floors), caps)) < 1e-6


def test_water_filling_gives_surplus_by_weight() -> None:
    # 300 above the floors: the third fills up at 50, the other 250 go 2:1
    shares = water_fill([Claim(100, 1000, 2), Claim(100, 1000, 1), Claim(100, 150, 5)], 600)
    assert [round(s, 6) for s in shares] == [round(100 + 500 / 3, 6), round(100 + 250 / 3, 6), 150]


@settings(max_examples=200, deadline=None)
@given(guests=st.lists(guest_strategy, min_size=1, max_size=4, unique_by=lambda g: g.name),
       pool=st.integers(0, 16384).map(lambda m: m * MIB))
def test_a_pool_holds_after_one_cycle_or_the_policy_says_why(guests: list[Guest], pool: int) -> None:
    for guest in guests:
        guest.actual = min(guest.actual, guest.memory_max)
    trace = Trace(guests, replace(CONFIG, pool=pool))
    decisions = trace.step()
    if sum(g.actual for g in guests) > pool:
        assert [d for d in decisions if d.kind is Kind.BUDGET]


def test_small_drops_in_use_do_not_shrink_the_balloon() -> None:
    trace = over_target_host(Guest("a", use=300 * MIB))
    trace.run(40)
    settled = trace.guests["a"].actual
    for use in (296, 300, 297, 293, 299):  # wobbling a few MiB under its level
        trace.guests["a"].use = use * MIB
        assert balloon(trace.step()) == []
    assert trace.guests["a"].actual == settled


def test_the_balloons_own_pages_do_not_count_as_guest_use() -> None:
    # with deflate-on-oom the guest counts the balloon's 512 MiB as used: its own use is 100 MiB
    vm = Vm(VmObservation("a", 1024 * MIB, 512 * MIB, GuestMemory(1.0, 1000 * MIB, 612 * MIB, 388 * MIB)),
            VmPolicySettings(min_memory=0))
    assert vm.observed.guest_own_use() == 100 * MIB
    without = replace(vm.observed, balloon_counted_as_used=False)
    assert without.guest_own_use() == 612 * MIB


def test_a_host_over_its_target_with_nothing_to_give_says_so() -> None:
    trace = over_target_host(Guest("a", use=100 * MIB, stats_time=None))
    budget = [d for d in trace.run(3) if d.kind is Kind.BUDGET]
    assert len(budget) == 1 and "no VM can give memory back" in budget[0].reason


def test_forget_drops_only_the_named_vms_memory_and_cpu_state() -> None:
    from hvdesk.control import cpu, policy

    state = policy.PolicyState(
        MemoryState(hold_until={"a": 5.0, "b": 6.0}, last_change={"a": 1.0, "b": 2.0}, budget_unmet=True,
                           peaks={"a": (1, 1.0), "b": (2, 2.0)}),
        cpu.CpuState(shares={"a": 200, "b": 300}))
    kept = policy.forget(state, {"a"})
    assert kept.memory.hold_until == {"b": 6.0} and kept.memory.last_change == {"b": 2.0}
    assert kept.memory.peaks == {"b": (2, 2.0)} and kept.memory.budget_unmet
    assert kept.cpu.shares == {"b": 300}
    assert policy.forget(state, set()) is state


def test_a_guest_yet_to_report_is_waited_for_not_held_off() -> None:
    """A VM that just booted has no stats until the driver's first report: left at full size, and
    shrunk in the first cycle after its stats come, not a hold-off later."""
    vm = Vm(VmObservation("new", 1024 * MIB, 1024 * MIB, None), VmPolicySettings())
    host = HostState(10.0, 8 * 1024 * MIB, 7 * 1024 * MIB)
    decisions, state = decide(host, [vm], MemoryState(), MemoryPolicyConfig(pool=600 * MIB))
    assert [d for d in decisions if d.kind is Kind.BALLOON] == [] and state.hold_until == {}
    reported = replace(vm, observed=replace(vm.observed, guest=GuestMemory(11.0, 1024 * MIB, 1024 * MIB - 900 * MIB,
                                                                           900 * MIB)))
    decisions, _ = decide(replace(host, time=12.0), [reported], state, MemoryPolicyConfig(pool=600 * MIB))
    assert [d.target for d in decisions if d.kind is Kind.BALLOON] == [600 * MIB]
