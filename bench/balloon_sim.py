"""The guest and host model the balloon replay runs every policy through, with the same rules for all.

One cycle (10 s) of the simulation, in this order:
1. The policy sees the state at the end of the previous cycle (`HostView`, one `GuestView` per VM:
   balloon size, the guest's MemTotal/MemFree/MemAvailable, swap-in and major-fault rates) and returns
   the balloon targets it sends. Every target that differs from the balloon's size is one command.
2. The balloon reaches its target within the cycle (Linux's driver moves GiBs per second; a 10 s cycle
   hides the difference). It may take pages the guest will want: nothing stops a policy from that.
3. The guest's demand for this cycle arrives (the trace). Its page cache fills what the balloon
   leaves above its own use, up to the trace's cache, less `WATERMARK` kept free.
4. Own use above the balloon's size is an **OOM pressure event** (one per VM and cycle). The guest
   has no swap; every VM runs with deflate-on-oom, whose OOM notifier gives balloon pages back
   (Linux: 1 MiB per out_of_memory() call, each after a failed direct reclaim: a stalling guest). We
   let it give back up to `DEFLATE_ON_OOM_PER_CYCLE` per cycle; a shortfall larger than that is an
   **OOM kill** (the allocating process dies, its demand is cut to what fits for that cycle).
   After a pressure event the guest reports 1000 major faults/s and swap-in of the shortfall for
   the next observation (the reclaim storm a rescued guest goes through).
5. The host: it uses `host_other` plus each VM's balloon size (a VM's untouched pages are counted as
   resident: pessimistic, the same for every policy); the host has no page cache of its own.

Memory reclaimed = the sum of the balloons' sizes (configured memory - balloon actual).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.balloon_traces import CYCLE, MIB, Scenario

DEFLATE_ON_OOM_PER_CYCLE = 64 * MIB
WATERMARK = 16 * MIB  # MemFree the guest's kernel keeps (min/low watermarks): cache never fills it
STORM_MAJOR_FAULTS = 1000.0  # per second, in the cycle after a pressure event


@dataclass(frozen=True)
class HostView:
    time: float
    total: int
    used: int  # total - MemAvailable

    @property
    def free(self) -> int:
        return self.total - self.used


@dataclass(frozen=True)
class GuestView:
    """A VM as a management daemon sees it: QEMU's balloon size and the guest's virtio-balloon stats."""

    name: str
    memory_max: int
    min_memory: int
    shares: int
    actual: int  # the balloon's size: memory the guest may use
    stats_time: float  # when the guest last refreshed its stats
    mem_total: int  # MemTotal: with deflate-on-oom the ballooned pages stay in it (counted as used)
    mem_free: int  # MemFree: neither used nor page cache
    mem_available: int  # MemAvailable: free + droppable page cache
    swap_in_rate: float  # bytes/s
    major_fault_rate: float  # faults/s


class BalloonPolicy(Protocol):
    """A policy under test: targets (bytes the guest may use) for the VMs it wants changed."""

    name: str

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]: ...


@dataclass
class _Guest:
    name: str
    memory_max: int
    min_memory: int
    shares: int
    actual: int
    own: int = 0
    cache: int = 0
    shortfall: int = 0  # want above what the balloon left, last cycle

    def view(self, now: float) -> GuestView:
        free = max(0, self.actual - self.own - self.cache)
        storm = self.shortfall > 0
        return GuestView(self.name, self.memory_max, self.min_memory, self.shares, self.actual,
                         now - 1.0, self.memory_max, free, free + self.cache,
                         self.shortfall / CYCLE if storm else 0.0, STORM_MAJOR_FAULTS if storm else 0.0)


@dataclass
class Run:
    """What one policy did on one scenario, cycle by cycle."""

    policy: str
    scenario: str
    configured: int  # bytes of all VMs' configured memory
    reclaimed: list[int] = field(default_factory=list)  # bytes in balloons after each cycle
    cache_kept: list[float] = field(default_factory=list)  # share of wanted page cache that fit
    host_used: list[float] = field(default_factory=list)  # share of the host's memory used, after each cycle
    pressure_events: int = 0
    oom_kills: int = 0
    commands: int = 0
    cpu: list[float] = field(default_factory=list)  # policy CPU seconds per cycle
    below_floor: list[tuple[float, str, int]] = field(default_factory=list)  # targets below min_memory


def simulate(scenario: Scenario, policy: BalloonPolicy, cycles: int | None = None) -> Run:
    guests = [_Guest(t.name, t.memory_max, t.min_memory, t.shares, t.memory_max) for t in scenario.vms]
    for guest, trace in zip(guests, scenario.vms):  # the state before the first cycle
        guest.own, guest.cache = trace.own[0], min(trace.cache[0], guest.actual - trace.own[0] - WATERMARK)
    run = Run(policy.name, scenario.name, sum(g.memory_max for g in guests))
    for cycle in range(cycles if cycles is not None else scenario.cycles):
        now = cycle * CYCLE
        host = HostView(now, scenario.host_total,
                        scenario.host_other[max(0, cycle - 1)] + sum(g.actual for g in guests))
        start = time.process_time()
        targets = policy.step(host, [g.view(now) for g in guests])
        run.cpu.append(time.process_time() - start)
        for guest, trace in zip(guests, scenario.vms):
            target = targets.get(guest.name)
            if target is not None and target != guest.actual:
                run.commands += 1
                if target < guest.min_memory:
                    run.below_floor.append((now, guest.name, target))
                guest.actual = max(0, min(guest.memory_max, target))
            _demand(run, guest, trace.own[cycle], trace.cache[cycle])
        run.reclaimed.append(sum(g.memory_max - g.actual for g in guests))
        run.host_used.append((scenario.host_other[cycle] + sum(g.actual for g in guests)) / scenario.host_total)
        wanted = sum(t.cache[cycle] for t in scenario.vms)
        run.cache_kept.append(sum(g.cache for g in guests) / wanted if wanted else 1.0)
    return run


def _demand(run: Run, guest: _Guest, own: int, cache: int) -> None:
    """Step 3 and 4: the guest's demand meets the balloon."""
    guest.shortfall = max(0, own - guest.actual)
    if guest.shortfall:
        run.pressure_events += 1
        rescue = min(guest.shortfall, DEFLATE_ON_OOM_PER_CYCLE, guest.memory_max - guest.actual)
        guest.actual += rescue
        if own > guest.actual:
            run.oom_kills += 1
            own = guest.actual
    guest.own = own
    guest.cache = max(0, min(cache, guest.actual - own - WATERMARK))
