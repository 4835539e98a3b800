"""A VM's state as the world shows it, read without an event loop: its pidfile, its process, and
what a QEMU that is gone left behind. The watcher (the engine's way, with QMP over qemu.qmp) and
the quick read path of `list` and `info` (engine/glance.py) both decide from here, so they agree."""

from __future__ import annotations

import time
from typing import NamedTuple

from hvdesk.core.errors import HvdeskError, QemuError
from hvdesk.core.filelock import FileLock
from hvdesk.core.storage import LOCK_FILE
from hvdesk.engine import runtime
from hvdesk.engine.machine import Machine
from hvdesk.engine.runtime import RunInfo
from hvdesk.engine.states import VmState, state_from_status
from hvdesk.qemu.process import read_pid

LAUNCHING_GRACE = 60.0  # seconds a run.json without a pid means "another hvdesk is launching it"


class Sighting(NamedTuple):
    """What the runtime folder and the process table say. With a live `pid`, only QEMU itself
    (QMP's query-status) can say whether it runs or is paused."""
    pid: int | None
    run: RunInfo | None
    launching: bool  # no QEMU yet, but another hvdesk has just begun to launch one


def sight(machine: Machine) -> Sighting:
    paths = machine.paths
    pid = runtime.live_pid(paths, machine.uuid)
    run = runtime.read_run_info(paths)
    if pid is not None:
        return Sighting(pid, run, launching=False)
    launching = run is not None and run.pid == 0 and time.time() - run.started_at < LAUNCHING_GRACE
    return Sighting(None, None, launching=launching)


def read_state(machine: Machine, *, owner: bool, busy_here: bool) -> tuple[VmState, str] | None:
    """The VM's state as far as the world shows it, tidying after a QEMU that is gone (see
    settle_gone); None if its QEMU runs: then only QEMU can say how (query-status), and the VM's
    pid and run info are set."""
    if not machine.entry.accessible:
        return VmState.INACCESSIBLE, machine.entry.error
    seen = sight(machine)
    if seen.pid is not None:
        machine.pid, machine.run = seen.pid, seen.run
        return None
    if seen.launching:
        return VmState.STARTING, ""
    return settle_gone(machine, expected=False, owner=owner, busy_here=busy_here)


def state_of(machine: Machine, status: str) -> tuple[VmState, str]:
    """The state for a query-status answer, knowing whether a start is about to resume the VM."""
    run = machine.run
    launching = run.started_at if run is not None and not run.paused else None
    return state_from_status(status, launching_since=launching, now=time.time())


def control_socket_gone(machine: Machine) -> QemuError | None:
    """Why nothing can connect to the VM's running QEMU, if its control socket is gone."""
    socket = machine.transport.ctl
    if socket.present():
        return None
    return QemuError(f"cannot reach the QEMU of {machine.name!r} (pid {machine.pid}): its control socket "
                     f"{socket} is gone (was its runtime folder removed?); stop --force turns it off")


def settle_gone(machine: Machine, *, expected: bool, owner: bool, busy_here: bool) -> tuple[VmState, str]:
    """QEMU is gone (or was never there): stopped or aborted, after tidying what it left. Only the
    operation that holds the VM (`owner`) or, when nobody holds it, whoever can take its lock
    tidies: a start under way elsewhere (`busy_here`: in this process; or in another) has files
    that are not ours to remove."""
    paths = machine.paths
    flock = None if owner or busy_here else _try_hold(machine)
    if owner or flock is not None:
        try:
            if runtime.left_behind(paths) and not expected:
                pid = read_pid(paths.pidfile)
                runtime.mark_aborted(paths, f"QEMU (pid {pid}) ended without a clean exit "
                                            f"(killed or crashed); see {paths.qemu_log}")
            runtime.remove_run_dir(paths)
        finally:
            if flock is not None:
                flock.release()
    machine.pid, machine.run, machine.expect_exit, machine.balloon = None, None, False, None
    reason = runtime.aborted_reason(paths)
    if paths.saved_state_info.exists():  # (written last, once the state file is complete: engine/savestate.py)
        return VmState.SAVED, reason or ""
    return (VmState.ABORTED, reason) if reason else (VmState.STOPPED, "")


def _try_hold(machine: Machine) -> FileLock | None:
    """The VM's file lock if nobody holds it now (None: another process is changing it)."""
    flock = FileLock(machine.entry.folder / LOCK_FILE, f"VM {machine.name!r}")
    try:
        return flock if flock.try_acquire("tidying up after QEMU") else None
    except (OSError, HvdeskError):
        return None
