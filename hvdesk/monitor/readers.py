"""Reading the numbers: a QEMU process and its vCPU threads (psutil), the host, and the
replies of QMP's query-blockstats and the balloon's guest-stats (parsed here; asked elsewhere)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import psutil

from hvdesk.monitor.series import HostSample

DISK_KEYS = ("rd_bytes", "wr_bytes", "rd_operations", "wr_operations")


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_stat(path: str) -> list[str] | None:
    """Fields of a /proc .../stat file after the command name (which may hold spaces)."""
    try:  # os-level: open() would add a buffer, an isatty() and a seek per file, 16 files a tick
        fd = os.open(path, os.O_RDONLY)
        try:
            text = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def read_process(pid: int, vcpu_tids: list[int]) -> tuple[float | None, list[float | None], int | None]:
    """(CPU seconds of the whole process, CPU seconds of each vCPU thread, RSS bytes).

    On Linux straight from /proc (a few reads; psutil would read every thread of QEMU), else psutil."""
    if sys.platform == "linux":
        fields = _proc_stat(f"/proc/{pid}/stat")
        if fields is None:
            return None, [None] * len(vcpu_tids), None
        # utime, stime are fields 14 and 15 of stat (11, 12 after the name); rss (pages) is 24 (21)
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        vcpus = []
        for tid in vcpu_tids:
            thread = _proc_stat(f"/proc/{pid}/task/{tid}/stat")
            vcpus.append((int(thread[11]) + int(thread[12])) / _TICKS if thread else None)
        return cpu, vcpus, int(fields[21]) * _PAGE
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            rss = proc.memory_info().rss
            threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
    except psutil.Error:
        return None, [None] * len(vcpu_tids), None
    return times.user + times.system, [threads.get(tid) for tid in vcpu_tids], rss


def parse_guest_stats(reply: dict[str, Any]) -> dict[str, int | None]:
    """qom-get guest-stats -> {name: value}; QEMU says -1 for a stat the guest did not report, and
    last-update 0 until the guest's balloon driver reported at all: both become None."""
    stats = reply.get("stats", {}) if isinstance(reply, dict) else {}
    if not reply or not reply.get("last-update"):
        return {name: None for name in stats}
    return {name: (value if isinstance(value, int) and value >= 0 else None) for name, value in stats.items()}


def guest_stats_time(reply: dict[str, Any], now_wall: float, now_mono: float) -> float | None:
    """When the guest last refreshed its stats, on the monotonic clock (None: never). QEMU stamps
    them with the host's wall clock in whole seconds (`last-update`)."""
    stamp = reply.get("last-update") if isinstance(reply, dict) else None
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp <= 0:
        return None
    return now_mono - max(0.0, now_wall - stamp)


def sum_blockstats(reply: list[dict[str, Any]], node_prefix: str = "disk") -> dict[str, int]:
    """Totals over the VM's own disks (nodes named disk0, disk1...; not the CD or firmware)."""
    totals = dict.fromkeys(DISK_KEYS, 0)
    for entry in reply or []:
        if not str(entry.get("node-name", "")).startswith(node_prefix):
            continue
        for key in DISK_KEYS:
            totals[key] += int(entry.get("stats", {}).get(key, 0))
    return totals


def read_host(committed_bytes: int) -> HostSample:
    memory = psutil.virtual_memory()
    return HostSample(time=time.monotonic(), cpu_per_core=psutil.cpu_percent(percpu=True),
                      memory_total=memory.total, memory_used=memory.total - memory.available,
                      memory_available=memory.available, committed=committed_bytes)
