"""What is known about a VM's QEMU outside any one hvdesk process.

The runtime dir (sockets, pidfile, run.json) says a QEMU was started; the VM folder keeps the
logs and, after an unclean end, an `aborted.json` marker, so the next hvdesk still shows
"aborted" and the log that explains it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hvdesk.core.errors import HvdeskError
from hvdesk.core.paths import make_private_runtime_dir, runtime_root
from hvdesk.core.storage import atomic_write, remove_tree
from hvdesk.qemu.process import is_alive, is_our_qemu, read_pid
from hvdesk.qemu.vm_paths import VmPaths

RUN_INFO = "run.json"
ABORTED_MARKER = "aborted.json"


def vm_paths(vm_dir: Path, uuid: str) -> VmPaths:
    return VmPaths(vm_dir=vm_dir, run_dir=runtime_root() / uuid)


class RunInfo:
    """Written at start: how this QEMU was started, for `info` and for reattaching. (A plain
    class: `list` reads it and loads no dataclasses.)"""

    def __init__(self, pid: int, accel: str, accel_reason: str, started_at: float, argv: list[str],
                 config: dict[str, Any] | None = None, paused: bool = False,
                 transport: dict[str, Any] | None = None) -> None:
        self.pid = pid
        self.accel = accel
        self.accel_reason = accel_reason
        self.started_at = started_at
        self.argv = argv
        self.config = config if config is not None else {}  # the settings QEMU was started with (VmConfig.to_dict)
        self.paused = paused  # started with --paused: it stays in prelaunch on purpose
        self.transport = transport if transport is not None else {}  # how to reach it (Transport.to_dict; {}: unix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunInfo) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"RunInfo(pid={self.pid}, accel={self.accel!r}, started_at={self.started_at})"


def write_run_info(paths: VmPaths, info: RunInfo) -> None:
    # Replaced by rename so readers never see half a file; no fsync: it dies with the process.
    tmp = paths.run_dir / f".{RUN_INFO}.tmp"
    tmp.write_text(json.dumps(info.__dict__))
    os.replace(tmp, paths.run_dir / RUN_INFO)


def read_run_info(paths: VmPaths) -> RunInfo | None:
    try:
        return RunInfo(**json.loads((paths.run_dir / RUN_INFO).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def prepare_run_dir(paths: VmPaths) -> None:
    """A clean private dir for a new QEMU: nothing left from an earlier run."""
    make_private_runtime_dir(paths.run_dir.parent)
    if os.path.lexists(paths.run_dir):
        if paths.run_dir.is_symlink() or not paths.run_dir.is_dir():
            raise HvdeskError(f"runtime folder {paths.run_dir} is not a plain folder; refusing to use it "
                              "(remove it and start again)")
        remove_tree(paths.run_dir)
    make_private_runtime_dir(paths.run_dir)


def remove_run_dir(paths: VmPaths) -> None:
    if os.path.lexists(paths.run_dir):  # (most often there is none: spare `list` shutil's import)
        remove_tree(paths.run_dir, ignore_errors=True)


def live_pid(paths: VmPaths, uuid: str, *, fresh: bool = False) -> int | None:
    """The pid of this VM's QEMU if one is running (checked to be ours, not a recycled pid).

    The pidfile answers first; without one (its runtime folder was removed under it) the
    processes are searched, and the pidfile is put back where QEMU will remove it at exit.
    `fresh` skips the short-lived cache of that search: for decisions that destroy something.
    """
    pid = read_pid(paths.pidfile)
    if pid is not None and is_our_qemu(pid, uuid):
        return pid
    from hvdesk.qemu import discovery  # a search of the processes: rare, and it loads more

    found = discovery.find_vm_qemu(uuid, paths.vm_dir, fresh=fresh)
    if found is None:
        return None
    if found.option("-pidfile") == str(paths.pidfile) and not paths.pidfile.exists():
        try:
            make_private_runtime_dir(paths.run_dir)
            atomic_write(paths.pidfile, f"{found.pid}\n".encode())
        except (OSError, HvdeskError):
            pass  # still found by the search next time
    return found.pid


def left_behind(paths: VmPaths) -> bool:
    """A pidfile without its process: QEMU was killed or crashed (a clean exit removes it)."""
    pid = read_pid(paths.pidfile)
    return pid is not None and not is_alive(pid)


def prepare_logs(paths: VmPaths) -> None:
    """Keep the previous run's logs as qemu.log.1 and serial.log.1 (QEMU truncates them), and create
    the new logs 0600 ourselves: daemonized QEMU would create them with its own umask (027)."""
    paths.qemu_log.parent.mkdir(mode=0o700, exist_ok=True)
    for log in (paths.qemu_log, paths.serial_log):  # the previous run's, kept as *.1
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))
    for log in (paths.qemu_log, paths.serial_log):
        os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(log, 0o600)


def mark_aborted(paths: VmPaths, reason: str) -> None:
    marker = {"reason": reason, "at": time.time(), "log": str(paths.qemu_log)}
    paths.qemu_log.parent.mkdir(mode=0o700, exist_ok=True)
    atomic_write(paths.qemu_log.parent / ABORTED_MARKER, json.dumps(marker).encode())


def aborted_reason(paths: VmPaths) -> str | None:
    try:
        reason = json.loads((paths.qemu_log.parent / ABORTED_MARKER).read_text())["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return reason if isinstance(reason, str) else None


def clear_aborted(paths: VmPaths) -> None:
    (paths.qemu_log.parent / ABORTED_MARKER).unlink(missing_ok=True)
