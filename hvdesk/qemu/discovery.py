"""Finding a VM's QEMU by the process itself, when its pidfile cannot be trusted to be there.

A pidfile lives in the runtime folder, which a /tmp cleaner or a logout (removing
/run/user/UID) can take away while QEMU runs on. Before anything destructive (start over it,
delete its disks) hvdesk therefore also looks at the processes: a QEMU whose command line
carries the VM's uuid or logs into the VM's folder, and any QEMU that holds one of its files open.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

CACHE_SECONDS = 0.5  # one scan serves every VM of a `list` or a poll tick


class QemuProcess(NamedTuple):  # not a dataclass: `hvdesk list` loads no dataclasses
    pid: int
    cmdline: tuple[str, ...]

    def option(self, name: str) -> str | None:
        """The value after `name` on the command line (e.g. -uuid), if present."""
        args = self.cmdline
        return next((b for a, b in zip(args, args[1:]) if a == name), None)

    def logs_into(self, folder: Path) -> bool:
        """Whether QEMU writes its log (-D) inside `folder`: it was started for that VM folder.
        (Disk paths are no proof: another VM may have attached a disk from this folder.)"""
        log = self.option("-D")
        return log is not None and log.startswith(str(folder).rstrip(os.sep) + os.sep)


_cache: tuple[float, list[QemuProcess]] = (0.0, [])


def forget_processes() -> None:
    """A QEMU was just started here: the next search must see it, not a list from before it."""
    global _cache
    _cache = (0.0, [])


def qemu_processes(*, fresh: bool = False) -> list[QemuProcess]:
    """Every live qemu-system process this user can see (cached for half a second)."""
    global _cache
    stamp, found = _cache
    now = time.monotonic()
    if fresh or now - stamp >= CACHE_SECONDS:
        found = _scan_proc() if sys.platform == "linux" else _scan_psutil()
        _cache = (now, found)
    return found


def _scan_proc() -> list[QemuProcess]:
    """Linux: each process's 15-character name from /proc, the command line only for QEMUs
    (~1 ms for a hundred processes; psutil's iteration takes ~10)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", "rb") as handle:
                if not handle.read().startswith(b"qemu-system"):
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        if args and args[-1] == b"":
            args.pop()
        if args:  # a zombie has no command line
            found.append(QemuProcess(int(entry.name), tuple(a.decode(errors="surrogateescape") for a in args)))
    return found


def _scan_psutil() -> list[QemuProcess]:
    import psutil  # not on Linux: a CLI command that only looks is quicker without its import

    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if not (proc.info["name"] or "").startswith("qemu-system"):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(QemuProcess(proc.pid, tuple(proc.cmdline())))
        except psutil.Error:
            continue
    return found


def find_vm_qemu(uuid: str | None, folder: Path, *, fresh: bool = False) -> QemuProcess | None:
    """The QEMU running this VM: started with its uuid, or logging into its folder."""
    for proc in qemu_processes(fresh=fresh):
        if (uuid is not None and proc.option("-uuid") == uuid) or proc.logs_into(folder):
            return proc
    return None


def holders_of(files: list[Path]) -> dict[Path, int]:
    """Which of `files` a live QEMU holds open, and its pid (checked by device and inode)."""
    wanted: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            info = os.stat(path)
        except OSError:
            continue
        wanted[(info.st_dev, info.st_ino)] = path
    held: dict[Path, int] = {}
    if not wanted:
        return held
    import psutil  # open files: only `delete` and attaching a disk ask, so `list` and `info` never load it

    for proc in qemu_processes(fresh=True):
        try:
            opened = psutil.Process(proc.pid).open_files()
        except psutil.Error:
            continue
        for item in opened:
            try:
                info = os.stat(item.path)
            except OSError:
                continue
            target = wanted.get((info.st_dev, info.st_ino))
            if target is not None:
                held.setdefault(target, proc.pid)
    return held
