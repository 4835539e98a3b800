"""What is measured, per VM and for the host: raw readings in, rates and ring buffers out.

A reading holds counters as read (CPU seconds, bytes, faults); the series turns them into rates
and keeps the last `capacity` samples of each metric. Missing values stay missing (NaN in the
rings, None in samples): a guest without the balloon driver has no guest memory figures, not zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hvdesk.monitor.ring import Counter, Ring

DEFAULT_CAPACITY = 1800  # 30 minutes at one sample a second
# Measured values are kept as float32: 7 significant digits are plenty for a graph (the exact
# latest values are in each sample), at half the memory (~0.8 MiB less with 8 VMs). Times stay
# float64: monotonic seconds need the digits.
VALUES = np.float32


@dataclass
class VmReading:
    """Counters and levels read at one moment (None: could not be read)."""

    time: float
    pid: int
    cpu_seconds: float | None = None  # QEMU process, user + system
    vcpu_seconds: list[float | None] = field(default_factory=list)  # per vCPU thread
    rss: int | None = None  # bytes
    balloon: int | None = None  # bytes the guest may use (the balloon's "actual")
    guest: dict[str, int | None] = field(default_factory=dict)  # virtio-balloon guest stats (bytes, counts)
    guest_updated: float | None = None  # when the guest last refreshed them (monotonic seconds)
    disk: dict[str, int] | None = None  # rd_bytes, wr_bytes, rd_operations, wr_operations, summed


@dataclass
class VmSample:
    """One point of every graph, as shown (rates per second; sizes in bytes; CPU in % of a core)."""

    time: float
    cpu: float | None
    vcpus: list[float | None]
    rss: int | None
    balloon: int | None
    guest_total: int | None
    guest_used: int | None
    guest_available: int | None
    swap_in: float | None
    major_faults: float | None
    disk_read: float | None
    disk_write: float | None
    disk_read_ops: float | None
    disk_write_ops: float | None
    guest_updated: float | None = None  # monotonic time of the guest's last stats report
    network: str = "not available with user-mode NAT (the host sees no per-VM interface)"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


SCALARS = ("cpu", "rss", "balloon", "guest_total", "guest_used", "guest_available", "swap_in", "major_faults",
           "disk_read", "disk_write", "disk_read_ops", "disk_write_ops")
DISK_COUNTERS = {"disk_read": "rd_bytes", "disk_write": "wr_bytes", "disk_read_ops": "rd_operations",
                 "disk_write_ops": "wr_operations"}
GUEST_COUNTERS = {"swap_in": "stat-swap-in", "major_faults": "stat-major-faults"}


class VmSeries:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.times = Ring(capacity)
        self.rings = {name: Ring(capacity, VALUES) for name in SCALARS}
        self.vcpu_rings: list[Ring] = []
        self._counters = {name: Counter() for name in (*DISK_COUNTERS, *GUEST_COUNTERS, "cpu")}
        self._vcpu_counters: list[Counter] = []
        self._pid: int | None = None
        self.latest: VmSample | None = None

    def record(self, reading: VmReading) -> VmSample:
        if reading.pid != self._pid:  # a new QEMU: every counter starts again from zero
            self._pid = reading.pid
            for counter in (*self._counters.values(), *self._vcpu_counters):
                counter.reset()
        now = reading.time
        rate = {name: self._counters[name].rate((reading.disk or {}).get(key), now)
                for name, key in DISK_COUNTERS.items()}
        rate.update({name: self._counters[name].rate(reading.guest.get(key), now)
                     for name, key in GUEST_COUNTERS.items()})
        cpu = self._counters["cpu"].rate(reading.cpu_seconds, now)
        vcpus = [self._vcpu_counter(i).rate(seconds, now) for i, seconds in enumerate(reading.vcpu_seconds)]
        total, available = reading.guest.get("stat-total-memory"), reading.guest.get("stat-available-memory")
        free = reading.guest.get("stat-free-memory")
        sample = VmSample(
            time=now, cpu=_percent(cpu), vcpus=[_percent(v) for v in vcpus], rss=reading.rss, balloon=reading.balloon,
            guest_total=total, guest_used=total - available if total is not None and available is not None else
            (total - free if total is not None and free is not None else None),
            guest_available=available, swap_in=rate["swap_in"], major_faults=rate["major_faults"],
            disk_read=rate["disk_read"], disk_write=rate["disk_write"], disk_read_ops=rate["disk_read_ops"],
            disk_write_ops=rate["disk_write_ops"], guest_updated=reading.guest_updated)
        self.times.append(now)
        for name in SCALARS:
            self.rings[name].append(getattr(sample, name))
        while len(self.vcpu_rings) < len(sample.vcpus):
            ring = Ring(self.capacity, VALUES)
            for _ in range(len(self.times) - 1):
                ring.append(None)  # a vCPU seen late has a history of gaps, so the times line up
            self.vcpu_rings.append(ring)
        for i, ring in enumerate(self.vcpu_rings):
            ring.append(sample.vcpus[i] if i < len(sample.vcpus) else None)
        self.latest = sample
        return sample

    def _vcpu_counter(self, index: int) -> Counter:
        while len(self._vcpu_counters) <= index:
            self._vcpu_counters.append(Counter())
        return self._vcpu_counters[index]


def _percent(rate: float | None) -> float | None:
    """CPU seconds per second -> percent of one core."""
    return None if rate is None else rate * 100.0


@dataclass
class HostSample:
    time: float
    cpu_per_core: list[float]  # percent
    memory_total: int
    memory_used: int
    memory_available: int
    committed: int  # memory the running VMs were given (bytes)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class HostSeries:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.times = Ring(capacity)
        self.cpu = Ring(capacity, VALUES)  # all cores, percent of the whole host
        self.used = Ring(capacity, VALUES)
        self.committed = Ring(capacity, VALUES)
        self.latest: HostSample | None = None

    def record(self, sample: HostSample) -> HostSample:
        self.times.append(sample.time)
        cores = sample.cpu_per_core
        self.cpu.append(sum(cores) / len(cores) if cores else None)
        self.used.append(sample.memory_used)
        self.committed.append(sample.committed)
        self.latest = sample
        return sample


def guest_own_use(used: np.ndarray, balloon: np.ndarray, memory_max: int, balloon_counted_as_used: bool) -> np.ndarray:
    """The guest's use of its memory without the balloon's pages, sample by sample (as the
    controller's policy sees it: hvdesk.control.inputs.VmObservation.guest_own_use). A guest whose
    balloon may deflate on OOM counts the balloon's pages as used."""
    if not balloon_counted_as_used:
        return used
    held = memory_max - np.where(np.isnan(balloon), memory_max, balloon)
    own: np.ndarray = np.maximum(used - held, 0)  # NaN (no stats) stays NaN
    return own
