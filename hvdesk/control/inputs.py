"""The policy's inputs: frozen, plain, in BYTES (memory), SECONDS (time, on the caller's clock) and
per-second rates. The policy never reads the monitor's classes; the engine converts:

    HostState.time              HostSample.time (monotonic seconds; every time below is on this clock)
    HostState.memory_total      HostSample.memory_total
    HostState.memory_used       HostSample.memory_used (total - available)
    HostState.cpus              the host's topology, read by the caller (Linux: /sys/devices/system/cpu)
    VmObservation.memory_max    VmConfig.memory_mib * MIB (the balloon's ceiling)
    VmObservation.balloon_actual  VmSample.balloon (None: no balloon device answered)
    VmObservation.guest         None when VmSample.guest_total / guest_used is None (no driver report);
                                else GuestMemory(time=when the guest last refreshed its stats, i.e.
                                QEMU's guest-stats "last-update" moved onto this clock,
                                total=guest_total, used=guest_used, available=guest_available)
    VmObservation.swap_in_rate  VmSample.swap_in (bytes/s: QEMU reports stat-swap-in in bytes)
    VmObservation.major_fault_rate  VmSample.major_faults (faults/s)
    VmObservation.cpu_load      VmSample.cpu / 100 (cores busy)
    VmObservation.vcpu_threads  query-cpus-fast thread-id per vCPU
    VmObservation.balloon_counted_as_used  VmConfig.balloon.deflate_on_oom: with deflate-on-oom the
                                Linux driver leaves ballooned pages in MemTotal, so the guest counts
                                them as used; the policy subtracts them to find what the guest itself uses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hvdesk.core.config import MAX_SHARES, MIN_SHARES

MIB = 1024 * 1024
DEFAULT_SHARES = 100  # the cgroup v2 cpu.weight default: shares are on that scale


class PinMode(enum.StrEnum):
    OFF = "off"  # the scheduler places vCPUs anywhere
    BALANCED = "balanced"  # all of a VM's vCPUs within one cache (else NUMA) domain
    DEDICATED = "dedicated"  # each vCPU thread alone on a core; emulator threads on a housekeeping core


@dataclass(frozen=True)
class Cpu:
    """One logical CPU: `id` as sched_setaffinity numbers it, `core` its physical core (SMT siblings
    share it), `cache` its last-level-cache domain, `node` its NUMA node."""

    id: int
    core: int
    cache: int = 0
    node: int = 0


@dataclass(frozen=True)
class HostState:
    time: float
    memory_total: int
    memory_used: int
    cpus: tuple[Cpu, ...] = ()


@dataclass(frozen=True)
class GuestMemory:
    """The guest's own view (virtio-balloon guest stats), as of `time`."""

    time: float
    total: int
    used: int
    available: int


@dataclass(frozen=True)
class VmObservation:
    name: str
    memory_max: int
    balloon_actual: int | None
    guest: GuestMemory | None = None
    swap_in_rate: float | None = None
    major_fault_rate: float | None = None
    vcpus: int = 1
    cpu_load: float | None = None
    vcpu_threads: tuple[int, ...] = ()
    balloon_counted_as_used: bool = True

    def guest_own_use(self) -> int | None:
        """What the guest uses for itself, without the balloon's pages (None: not known)."""
        if self.guest is None:
            return None
        held = self.memory_max - self.balloon_actual if self.balloon_actual is not None else 0
        used = self.guest.used - held if self.balloon_counted_as_used else self.guest.used
        return max(0, used)


@dataclass(frozen=True)
class VmPolicySettings:
    """Per VM: `min_memory` in bytes, `shares` on cgroup v2's scale (1..10000, 100 normal)."""

    min_memory: int = 256 * MIB
    shares: int = DEFAULT_SHARES
    pin_mode: PinMode = PinMode.OFF
    auto_balloon: bool = True

    def __post_init__(self) -> None:
        if not MIN_SHARES <= self.shares <= MAX_SHARES:
            raise ValueError(f"shares must be {MIN_SHARES}..{MAX_SHARES}, not {self.shares}")
        if self.min_memory < 0:
            raise ValueError("min_memory must not be negative")


@dataclass(frozen=True)
class Vm:
    """One VM as the policy sees it: what was observed and how it is to be treated."""

    observed: VmObservation
    settings: VmPolicySettings

    @property
    def name(self) -> str:
        return self.observed.name
