"""The balloon replay bench (bench/bench_balloon_replay.py): its simulator counts what it should, the
peer reimplementations follow their published rules, and hvdesk's policy keeps its floors on the traces."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from bench.balloon_sim import DEFLATE_ON_OOM_PER_CYCLE, GuestView, HostView, simulate
from bench.balloon_traces import GIB, MIB, Scenario, Trace, host_pressure, mixed
from bench.bench_balloon_replay import converged_at, figures
from bench.peers.hvdesk_adapter import HvdeskPolicy
from bench.peers.mom import MomPolicy
from bench.peers.proxmox import MAXCHANGE, ProxmoxPolicy
from hvdesk.control.memory import MemoryPolicyConfig

SHORT = 90  # cycles: 15 minutes, the first spike and the start of the build included


class FloorChecked(HvdeskPolicy):
    """hvdesk's policy, with every target checked against the floor of what it was shown."""

    def __init__(self, pool: int | None = None) -> None:
        super().__init__(pool=pool)
        self.checked = 0

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]:
        targets = super().step(host, guests)
        reserve = MemoryPolicyConfig().reserve
        for guest in guests:
            if guest.name in targets:
                own = guest.actual - guest.mem_available
                floor = min(guest.memory_max, max(guest.min_memory, own + reserve))
                assert targets[guest.name] >= floor - MIB, (guest.name, targets[guest.name], floor)
                self.checked += 1
        return targets


class Fixed:
    """A deliberately bad policy: every balloon to the guest's use less `below_use`, each cycle."""

    name = "fixed"

    def __init__(self, below_use: int) -> None:
        self.below_use = below_use

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]:
        return {g.name: g.actual - g.mem_available - self.below_use for g in guests}


def _flat(cycles: int = 30) -> Scenario:
    """One 1 GiB guest using 300 MiB and wanting 100 MiB of cache, all along."""
    trace = Trace("g", GIB, 256 * MIB, (300 * MIB,) * cycles, (100 * MIB,) * cycles)
    return Scenario("flat", "", 8 * GIB, (0,) * cycles, (trace,))


def _guest(actual: int, free: int, cache: int = 0, memory_max: int = 2 * GIB) -> GuestView:
    return GuestView("g", memory_max, 256 * MIB, 100, actual, 0.0, memory_max, free, free + cache, 0.0, 0.0)


@pytest.mark.parametrize("pool", [None, 3 * GIB])
@pytest.mark.parametrize("scenario", [mixed, host_pressure])
def test_hvdesk_targets_never_below_the_floor(scenario: Callable[[int], Scenario], pool: int | None) -> None:
    policy = FloorChecked(pool)
    run = simulate(scenario(SHORT), policy)
    assert policy.checked > 0 and run.commands == policy.checked
    assert run.below_floor == []


def test_a_balloon_below_the_guests_use_is_an_oom_kill() -> None:
    run = simulate(_flat(), Fixed(below_use=DEFLATE_ON_OOM_PER_CYCLE + 50 * MIB))
    assert run.pressure_events == run.oom_kills == 30


def test_deflate_on_oom_rescues_a_small_shortfall() -> None:
    run = simulate(_flat(), Fixed(below_use=DEFLATE_ON_OOM_PER_CYCLE // 2))
    assert run.pressure_events == 30 and run.oom_kills == 0


def test_the_balloons_hold_what_was_reclaimed() -> None:
    run = simulate(mixed(SHORT), Fixed(below_use=0))
    assert all(r > 2 * GIB for r in run.reclaimed[1:])  # every guest left with its use and no cache
    assert figures(run)["cache_kept_percent"] < 10


def test_mom_shrinks_under_host_pressure_by_at_most_5_percent() -> None:
    host = HostView(0.0, 8 * GIB, int(0.9 * 8 * GIB))
    targets = MomPolicy().step(host, [_guest(2 * GIB, free=GIB)])
    assert int(0.95 * 2 * GIB) <= targets["g"] < 2 * GIB


def test_mom_grows_a_guest_short_of_free_memory_past_5_percent() -> None:
    host = HostView(0.0, 8 * GIB, 4 * GIB)  # 50 % free: no pressure
    targets = MomPolicy().step(host, [_guest(GIB, free=10 * MIB)])
    assert targets["g"] >= int((GIB - 10 * MIB) + 0.2 * GIB) > 1.05 * GIB  # used + 20 % free


def test_mom_counts_page_cache_as_used() -> None:
    host = HostView(0.0, 8 * GIB, int(0.9 * 8 * GIB))
    assert MomPolicy().step(host, [_guest(GIB, free=20 * MIB, cache=800 * MIB)]) == {}


def test_proxmox_grows_when_the_host_is_below_its_target() -> None:
    host = HostView(0.0, 8 * GIB, 4 * GIB)
    targets = ProxmoxPolicy().step(host, [_guest(GIB, free=GIB // 2)])
    assert targets["g"] == GIB + MAXCHANGE


def test_proxmox_shrinks_toward_balloon_min_ignoring_the_guests_use() -> None:
    host = HostView(0.0, 8 * GIB, 8 * GIB)
    targets = ProxmoxPolicy().step(host, [_guest(300 * MIB, free=10 * MIB)])
    assert targets["g"] == 256 * MIB  # below the guest's ~290 MiB use: only balloon_min protects it


def test_convergence_is_when_the_total_stays_near_its_final_level() -> None:
    assert converged_at([0] * 6 + [GIB] * 12) == 1.0
    assert converged_at([GIB] * 6 + [0] * 6 + [GIB] * 6) == 2.0
