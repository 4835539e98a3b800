"""vCPU affinity: a host CPU list ("0-1,3") parsed and checked, and one thread pinned to it.

Linux pins a thread with sched_setaffinity on its thread id; Windows with SetThreadAffinityMask on
a thread handle (Windows thread ids are what QEMU's query-cpus-fast reports there); macOS has no
call that pins a thread to CPUs (thread affinity tags are hints), so it says so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from hvdesk.core.errors import ConfigError, HvdeskError

MAX_CPU = 4095  # a bound on what a list may name before it is checked against the host


class NotSupportedError(HvdeskError):
    """This host has no way to do what was asked."""


def host_cpus() -> frozenset[int]:
    """The CPUs this process may run on (what a vCPU may be pinned to)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


class HostCpu(NamedTuple):
    """One logical CPU: its physical core, last-level-cache domain and NUMA node (ids as the OS
    numbers them; SMT siblings share a core)."""

    id: int
    core: int
    cache: int
    node: int


SYS_CPU = Path("/sys/devices/system/cpu")


def host_topology(root: Path = SYS_CPU) -> list[HostCpu]:
    """The CPUs this process may use, with their topology (Linux sysfs). Where sysfs says nothing
    (other systems, containers hiding it), each CPU is its own core in one cache and one node."""
    topology = []
    for cpu in sorted(host_cpus()):
        base = root / f"cpu{cpu}"
        package = _sys_int(base / "topology/physical_package_id", 0)
        core = _sys_int(base / "topology/core_id", cpu)
        cache = _last_level_cache(base)
        nodes = sorted(int(p.name[4:]) for p in base.glob("node[0-9]*")) if base.is_dir() else []
        topology.append(HostCpu(cpu, package * 100000 + core, cache if cache is not None else package,
                                nodes[0] if nodes else 0))
    return topology


def _sys_int(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def _last_level_cache(cpu_dir: Path) -> int | None:
    """The lowest CPU id sharing this CPU's highest-level cache: one id per cache domain."""
    best: tuple[int, int] | None = None
    for index in cpu_dir.glob("cache/index[0-9]*"):
        level = _sys_int(index / "level", -1)
        try:
            shared = parse_cpu_list((index / "shared_cpu_list").read_text(), range(MAX_CPU + 1))
        except (OSError, ConfigError):
            continue
        if shared and (best is None or level > best[0]):
            best = (level, min(shared))
    return best[1] if best is not None else None


def process_threads(pid: int) -> list[int]:
    """The thread ids of a process (Linux; empty elsewhere)."""
    try:
        return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise HvdeskError(f"process {pid} is gone (did the VM just stop?)") from None
    except OSError:
        return []


def parse_cpu_list(text: str, available: Iterable[int]) -> frozenset[int]:
    """The CPUs of a list like "1", "0-1" or "0-1,3", each one of `available`; a clear error otherwise."""
    allowed = frozenset(available)
    shown = format_cpu_list(allowed)
    cpus: set[int] = set()
    for part in text.strip().split(","):
        low, dash, high = part.strip().partition("-")
        if not (low.isdigit() and (high.isdigit() if dash else not high)):
            raise ConfigError(f"host CPU list {text!r} is not like 0-1,3 (CPU numbers, ranges and commas)")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ConfigError(f"host CPU list {text!r}: range {part.strip()} runs backwards")
        if last > MAX_CPU:
            raise ConfigError(f"host CPU list {text!r}: CPU {last} is not on this host (it has {shown})")
        cpus.update(range(first, last + 1))
    missing = sorted(cpus - allowed)
    if missing:
        raise ConfigError(f"host CPU list {text!r}: CPU {format_cpu_list(missing)} is not on this host "
                          f"(it has {shown})")
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """0,1,2,5 -> "0-2,5" (as /proc/<pid>/status's Cpus_allowed_list shows it)."""
    ordered = sorted(set(cpus))
    runs: list[str] = []
    start = prev = None
    for cpu in [*ordered, None]:
        if prev is not None and (cpu is None or cpu != prev + 1):
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if start is None:
            start = cpu
        prev = cpu
    return ",".join(runs)


def pin_thread(tid: int, cpus: frozenset[int]) -> None:
    """Confine one thread (a vCPU's) to `cpus`."""
    if sys.platform == "win32":
        _pin_windows(tid, cpus)
    elif hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            raise HvdeskError(f"thread {tid} is gone (did the VM just stop?)") from None
        except OSError as exc:
            raise HvdeskError(f"cannot pin thread {tid} to CPUs {format_cpu_list(cpus)}: {exc.strerror}") from None
    else:
        raise NotSupportedError(f"pinning vCPUs is not supported on {sys.platform} (the OS has no call "
                                "that confines a thread to CPUs)")


def thread_cpus(tid: int) -> frozenset[int]:
    """The CPUs a thread may run on now (Linux)."""
    return frozenset(os.sched_getaffinity(tid))


def _pin_windows(tid: int, cpus: frozenset[int]) -> None:  # pragma: no cover - Windows only
    import ctypes

    thread_set_information, thread_query_information = 0x0020, 0x0040
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    if max(cpus) >= 64:
        raise NotSupportedError("pinning to CPUs past 63 (processor groups) is not supported on Windows yet")
    handle = kernel32.OpenThread(thread_set_information | thread_query_information, False, tid)
    if not handle:
        raise HvdeskError(f"cannot open thread {tid}: Windows error {ctypes.get_last_error()}")  # type: ignore[attr-defined,unused-ignore]
    try:
        mask = sum(1 << cpu for cpu in cpus)
        if not kernel32.SetThreadAffinityMask(handle, ctypes.c_size_t(mask)):
            raise HvdeskError(f"cannot pin thread {tid}: Windows error {ctypes.get_last_error()}")  # type: ignore[attr-defined,unused-ignore]
    finally:
        kernel32.CloseHandle(handle)
