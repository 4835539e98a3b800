"""The balloon policy: how much memory each VM may use next (its balloon target), and why.

Each cycle (`decide`):
1. Sort the VMs. Not managed (auto-balloon off, or no balloon device): left alone, their size counted.
   Not safe to shrink (no guest stats, stats older than `stale_after`, swap-in or major faults above
   their alarms): the balloon is given back in full (target = configured memory) at once and, but
   for a guest yet to report at all, the VM held off shrinking for `hold_off` seconds. A VM still
   held off keeps its full size.
   The rest are eligible.
2. The budget for the eligible VMs: with a pool, the pool minus the other VMs' sizes (a hard limit);
   else their current sizes plus the host's headroom under `host_target` of its memory (may be negative).
3. Water-filling by shares between floors and caps: floor = max(minimum memory, peak use + reserve),
   cap = configured memory. The peak use is the guest's highest own use seen within `peak_hold`
   seconds: a guest that needed more a few minutes ago (a spike, a build) is likely to again, and
   the balloon only follows one cycle late, so its floor keeps room for that peak for a while.
   When the floors do not fit, every VM gets its floor and a BUDGET decision says by how much the
   budget is missed (once, when that starts).
4. Rates: a VM below its floor grows to its share at once; above it, growing goes at the shrink's
   pace and not for less than the dead band (the guest does not need it yet). Shrinking goes at most
   `shrink_fraction` of the configured memory (capped at `shrink_cap`) a cycle, not at all when less
   than `shrink_deadband` is to be gained, and not before the guest has reported stats newer than the
   VM's last balloon change (stats of the same moment were taken before the change). With a pool the
   rate yields to the pool: VMs shrink further (never below their share) until the pool holds.
Targets are whole MiB, never below the floor, never above the configured memory. A decision is made
only when a target differs from the balloon's actual size by at least one MiB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hvdesk.control.decisions import Decision, JsonValue, Kind, mib
from hvdesk.control.inputs import MIB, HostState, Vm
from hvdesk.control.waterfill import Claim, water_fill


@dataclass(frozen=True)
class MemoryPolicyConfig:
    host_target: float = 0.80  # of the host's memory, when no pool is set
    pool: int | None = None  # bytes the VMs' balloons may sum to, all VMs together
    reserve: int = 64 * MIB  # headroom above what the guest uses
    shrink_fraction: float = 0.05  # of configured memory, per cycle
    shrink_cap: int = 100 * MIB
    shrink_deadband: int = 8 * MIB
    stale_after: float = 10.0  # seconds
    swap_in_alarm: float = 1.0 * MIB  # bytes/s
    major_fault_alarm: float = 100.0  # faults/s
    hold_off: float = 60.0  # seconds
    peak_hold: float = 900.0  # seconds a guest's highest use stays in its floor


@dataclass(frozen=True)
class MemoryState:
    """What the policy remembers between cycles, per VM name."""

    hold_until: Mapping[str, float] = field(default_factory=dict)
    last_change: Mapping[str, float] = field(default_factory=dict)  # time of the last balloon decision
    budget_unmet: bool = False
    peaks: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # (highest own use, when seen)


@dataclass
class _Eligible:
    vm: Vm
    actual: int
    floor: int
    peak: int = 0  # the highest own use within peak_hold (the floor's use)
    desired: int = 0
    target: int = 0
    note: str = ""

    @property
    def name(self) -> str:
        return self.vm.name


def decide(host: HostState, vms: Sequence[Vm], previous: MemoryState,
           config: MemoryPolicyConfig = MemoryPolicyConfig()) -> tuple[list[Decision], MemoryState]:
    now = host.time
    names = {vm.name for vm in vms}
    hold_until = {n: t for n, t in previous.hold_until.items() if n in names and t > now}
    last_change = {n: t for n, t in previous.last_change.items() if n in names}
    peaks = _peaks(vms, now, previous.peaks, config)
    decisions, eligible, fixed = _sort_out(vms, now, hold_until, peaks, config)
    budget = _budget(host, eligible, fixed, config)
    shortfall = sum(e.floor for e in eligible) - budget
    if shortfall > 0 and not previous.budget_unmet:
        decisions.append(_budget_decision(now, shortfall, budget, eligible, config))
    _share_out(eligible, budget)
    for item in eligible:
        item.target = _rate_limited(item, last_change.get(item.name), config)
    if config.pool is not None:
        _hold_pool(eligible, budget)
    for item in eligible:
        if abs(item.target - item.actual) >= MIB:
            decisions.append(_balloon_decision(now, item, budget, config))
    for d in decisions:
        if d.kind is Kind.BALLOON:
            last_change[d.vm] = now
    return decisions, MemoryState(hold_until, last_change, shortfall > 0, peaks)


def _peaks(vms: Sequence[Vm], now: float, previous: Mapping[str, tuple[int, float]],
           config: MemoryPolicyConfig) -> dict[str, tuple[int, float]]:
    """Each VM's peak own use: the highest seen, kept `peak_hold` seconds after it was last reached
    (within the reserve: a spike that recurs a little lower is the same spike), then the current use.
    A VM without stats keeps its peak."""
    peaks: dict[str, tuple[int, float]] = {}
    for vm in vms:
        use, held = vm.observed.guest_own_use(), previous.get(vm.name)
        if use is None:
            if held is not None:
                peaks[vm.name] = held
        elif held is None or now - held[1] > config.peak_hold:
            peaks[vm.name] = (use, now)
        elif use + config.reserve >= held[0]:
            peaks[vm.name] = (max(use, held[0]), now)
        else:
            peaks[vm.name] = held
    return peaks


def _sort_out(vms: Sequence[Vm], now: float, hold_until: dict[str, float], peaks: Mapping[str, tuple[int, float]],
              config: MemoryPolicyConfig) -> tuple[list[Decision], list[_Eligible], int]:
    """Step 1: (give-back decisions, the eligible VMs, bytes of the others). Updates hold_until."""
    decisions: list[Decision] = []
    fixed = 0
    eligible: list[_Eligible] = []
    for vm in sorted(vms, key=lambda v: v.name):
        actual = vm.observed.balloon_actual
        if not vm.settings.auto_balloon or actual is None:
            fixed += actual if actual is not None else vm.observed.memory_max
            continue
        alarm = _alarm(vm, now, config)
        if alarm is not None and vm.observed.guest is not None:
            # Pressure or stats gone stale: wait a while. A guest yet to report at all (it just
            # booted; stats come once polling is on) is waited for, not held off.
            hold_until[vm.name] = now + config.hold_off
        if alarm is not None or vm.name in hold_until:
            fixed += vm.observed.memory_max
            decisions += _give_back(vm, actual, now, alarm, hold_until.get(vm.name))
            continue
        peak = max(vm.observed.guest_own_use() or 0, peaks.get(vm.name, (0, now))[0])
        eligible.append(_Eligible(vm, actual, _floor(vm, peak, config), peak))
    return decisions, eligible, fixed


def _alarm(vm: Vm, now: float, config: MemoryPolicyConfig) -> tuple[str, dict[str, JsonValue]] | None:
    """Why this VM must not be shrunk now (and gets its memory back), or None."""
    seen = vm.observed
    if seen.guest is None:
        return "the guest's balloon driver reports no memory stats", {}
    age = now - seen.guest.time
    if age > config.stale_after:
        return (f"the guest's memory stats are {age:.0f} s old (limit {config.stale_after:.0f} s)",
                {"stats_age": age})
    if seen.swap_in_rate is not None and seen.swap_in_rate > config.swap_in_alarm:
        return (f"the guest swaps in {mib(seen.swap_in_rate)}/s (alarm {mib(config.swap_in_alarm)}/s)",
                {"swap_in_rate": seen.swap_in_rate})
    if seen.major_fault_rate is not None and seen.major_fault_rate > config.major_fault_alarm:
        return (f"the guest has {seen.major_fault_rate:.0f} major faults/s (alarm {config.major_fault_alarm:.0f})",
                {"major_fault_rate": seen.major_fault_rate})
    return None


def _give_back(vm: Vm, actual: int, now: float, alarm: tuple[str, dict[str, JsonValue]] | None,
               until: float | None) -> list[Decision]:
    full = vm.observed.memory_max
    if full - actual < MIB:
        return []
    why, numbers = alarm if alarm is not None else ("the VM is held off after an alarm", {})
    reason = f"{why}: the balloon gives back all {mib(full)} at once"
    if until is not None:
        reason += f"; no shrinking for the next {until - now:.0f} s"
    return [Decision(now, vm.name, Kind.BALLOON, full, reason,
                     {"actual": actual, "memory_max": full, "hold_until": until, **numbers})]


def _floor(vm: Vm, peak: int, config: MemoryPolicyConfig) -> int:
    wanted = max(vm.settings.min_memory, peak + config.reserve)
    return min(vm.observed.memory_max, math.ceil(wanted / MIB) * MIB)


def _budget(host: HostState, eligible: list[_Eligible], fixed: int, config: MemoryPolicyConfig) -> int:
    if config.pool is not None:
        return config.pool - fixed
    headroom = int(config.host_target * host.memory_total) - host.memory_used
    return sum(e.actual for e in eligible) + headroom


def _share_out(eligible: list[_Eligible], budget: int) -> None:
    claims = [Claim(e.floor, e.vm.observed.memory_max, e.vm.settings.shares) for e in eligible]
    for item, share in zip(eligible, water_fill(claims, budget)):
        item.desired = max(item.floor, int(share // MIB) * MIB)  # whole MiB, rounded towards the budget


def _rate_limited(item: _Eligible, last_change: float | None, config: MemoryPolicyConfig) -> int:
    if item.desired >= item.actual:
        return _grown(item, config)
    gap = item.actual - item.desired
    guest = item.vm.observed.guest
    if gap < config.shrink_deadband:
        item.note = "within the dead band"
        return item.actual
    if last_change is not None and guest is not None and guest.time <= last_change:
        item.note = "waiting for the guest's stats after the last change"
        return item.actual
    step = _shrink_step(item.vm.observed.memory_max, config)
    item.note = f"shrinking by at most {mib(step)} a cycle" if gap > step else ""
    return max(item.desired, item.actual - step)


def _grown(item: _Eligible, config: MemoryPolicyConfig) -> int:
    if item.actual < item.floor:
        return item.desired  # grow at once: a guest short of memory should not wait
    # above its floor the guest does not need it yet: grow at the shrink's pace, so that the others'
    # shrinking (rate-limited) pays for it as it comes, and small moves of the shares send no command
    if item.desired - item.actual < config.shrink_deadband:
        return item.actual
    step = _shrink_step(item.vm.observed.memory_max, config)
    if item.desired - item.actual > step:
        item.note = f"growing by at most {mib(step)} a cycle above its floor"
    return min(item.desired, item.actual + step)


def _shrink_step(memory_max: int, config: MemoryPolicyConfig) -> int:
    step = min(config.shrink_fraction * memory_max, config.shrink_cap)
    return max(MIB, int(step // MIB) * MIB)


def _hold_pool(eligible: list[_Eligible], budget: int) -> None:
    """The pool is a hard limit: where the rate left VMs above their share, shrink them further."""
    excess = sum(e.target for e in eligible) - max(budget, sum(e.desired for e in eligible))
    for item in sorted(eligible, key=lambda e: e.desired - e.target):  # the farthest above first
        if excess <= 0:
            return
        cut = min(excess, item.target - item.desired)
        if cut > 0:
            item.target -= cut
            item.note = "faster than the shrink rate: the pool is a hard limit"
            excess -= cut


def _balloon_decision(now: float, item: _Eligible, budget: int, config: MemoryPolicyConfig) -> Decision:
    seen, settings = item.vm.observed, item.vm.settings
    use = seen.guest_own_use()
    verb = "grows" if item.target > item.actual else "shrinks"
    source = f"pool {mib(config.pool)}" if config.pool is not None else \
        f"host target {config.host_target:.0%}"
    peak = _peak_words(use or 0, item.peak, config)
    reason = (f"guest uses {mib(use or 0)}; floor {mib(item.floor)} (minimum {mib(settings.min_memory)}, "
              f"{peak} + reserve {mib(item.peak + config.reserve)}); its share of the {source} budget is "
              f"{mib(item.desired)} at {settings.shares} shares: {verb} from {mib(item.actual)} to {mib(item.target)}")
    if item.note:
        reason += f", {item.note}"
    inputs: dict[str, JsonValue] = {
        "actual": item.actual, "memory_max": seen.memory_max, "guest_use": use, "floor": item.floor,
        "peak_use": item.peak, "min_memory": settings.min_memory, "reserve": config.reserve, "share": item.desired,
        "budget": budget, "shares": settings.shares}
    return Decision(now, item.name, Kind.BALLOON, item.target, reason, inputs)


def _peak_words(use: int, peak: int, config: MemoryPolicyConfig) -> str:
    if peak <= use:
        return "use"
    return f"peak use {mib(peak)} within {config.peak_hold / 60:.0f} min"


def _budget_decision(now: float, shortfall: int, budget: int, eligible: list[_Eligible],
                     config: MemoryPolicyConfig) -> Decision:
    floors = sum(e.floor for e in eligible)
    what = f"the pool of {mib(config.pool)}" if config.pool is not None else \
        f"the host target of {config.host_target:.0%}"
    if not eligible:
        reason = f"{what} cannot be met: {mib(shortfall)} over it, and no VM can give memory back now"
    else:
        reason = (f"{what} cannot be met: the floors of {len(eligible)} VMs sum to {mib(floors)}, "
                  f"{mib(shortfall)} over the {mib(max(0, budget))} left for them; each is held at its floor")
    return Decision(now, "", Kind.BUDGET, shortfall, reason, {"floors": floors, "budget": budget})
