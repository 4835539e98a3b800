"""MOM's (oVirt Memory Overcommitment Manager) default auto-balloon policy, reimplemented.

Source: github.com/oVirt/mom, `doc/balloon.rules` (the default policy: constants and the
shrink_guest / grow_guest functions), with the data it reads from `mom/Collectors/HostMemory.py`
(host mem_free = MemFree + Buffers + Cached, mem_available = MemTotal), libvirt's guest stats
(`mem_unused` = the guest's MemFree, caches NOT included: see mom/HypervisorInterfaces/libvirtInterface.py),
`mom/Entity.py` (StatAvg = the mean over the sample history) and `doc/mom-balloon.conf` (policy every
10 s, samples every 5 s, sample-history-length 10, i.e. a 50 s window: 5 of our 10 s cycles).

The rule, per cycle:
    host_free_percent = avg(host mem_free) / host MemTotal
    host_free_percent < 0.20 (pressure): every guest shrinks toward
        max(balloon_min, guest_used + guest_free_percent * balloon_cur)
        with guest_used = avg(balloon_cur) - avg(mem_unused) and guest_free_percent
        = 0.20 * host_free_percent / 0.20, or host_free_percent - 0.05 when that is <= 0.05 (critical:
        "force guest to swap"); by at most 5 % of balloon_cur a cycle; never grows in this branch.
    else: every ballooned guest grows to max(balloon_cur * 1.05, guest_used + 0.20 * balloon_cur),
        capped at balloon_max.
    A target is sent only if it differs from balloon_cur by more than 0.25 % of balloon_cur.
Note that MOM counts the guest's page cache as used (mem_unused excludes it): it reclaims free memory,
not cache. balloon_min is libvirt's guaranteed memory; the replay gives it the same minimum as the
other policies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from statistics import fmean

from bench.balloon_sim import GuestView, HostView

PRESSURE_THRESHOLD = 0.20
PRESSURE_CRITICAL = 0.05
MIN_GUEST_FREE_PERCENT = 0.20
MAX_BALLOON_CHANGE_PERCENT = 0.05
MIN_BALLOON_CHANGE_PERCENT = 0.0025
HISTORY = 5  # samples of our 10 s cycles in MOM's 50 s window


class MomPolicy:
    name = "MOM"

    def __init__(self, history: int = HISTORY) -> None:
        self.history = history
        self.host_free: deque[float] = deque(maxlen=history)
        self.guests: dict[str, deque[tuple[int, int]]] = {}  # (balloon_cur, mem_unused) samples

    def step(self, host: HostView, guests: Sequence[GuestView]) -> Mapping[str, int]:
        self.host_free.append(host.free)
        host_free_percent = fmean(self.host_free) / host.total
        targets: dict[str, int] = {}
        for guest in guests:
            samples = self.guests.setdefault(guest.name, deque(maxlen=self.history))
            samples.append((guest.actual, guest.mem_free))
            used = fmean(s[0] for s in samples) - fmean(s[1] for s in samples)
            if host_free_percent < PRESSURE_THRESHOLD:
                target = shrink_target(guest, used, host_free_percent)
            else:
                target = grow_target(guest, used)
            if target is not None and _big_enough(guest.actual, target):
                targets[guest.name] = int(target)
        return targets


def shrink_target(guest: GuestView, used: float, host_free_percent: float) -> float | None:
    if host_free_percent <= PRESSURE_CRITICAL:
        guest_free_percent = -0.05 + host_free_percent
    else:
        guest_free_percent = MIN_GUEST_FREE_PERCENT * (host_free_percent / PRESSURE_THRESHOLD)
    floor = max(guest.min_memory, used + guest_free_percent * guest.actual)
    size = max(floor, guest.actual * (1 - MAX_BALLOON_CHANGE_PERCENT))
    return size if size <= guest.actual else None


def grow_target(guest: GuestView, used: float) -> float | None:
    if guest.actual >= guest.memory_max:
        return None
    floor = max(guest.min_memory, used + MIN_GUEST_FREE_PERCENT * guest.actual)
    return min(guest.memory_max, max(floor, guest.actual * (1 + MAX_BALLOON_CHANGE_PERCENT)))


def _big_enough(current: int, target: float) -> bool:
    return abs(target - current) > MIN_BALLOON_CHANGE_PERCENT * current
