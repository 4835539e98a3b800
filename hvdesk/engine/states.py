"""A VM's life: the states the user sees and what moves it between them."""

from __future__ import annotations

from enum import StrEnum


class VmState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"  # the guest is shutting down, or QEMU is quitting
    SAVED = "saved"  # no QEMU, and its folder holds a complete saved state: a start resumes the guest
    ABORTED = "aborted"  # QEMU ended without a clean exit; its log is kept
    INACCESSIBLE = "inaccessible"  # vm.toml unreadable or invalid; the reason says why

    @property
    def active(self) -> bool:
        """A QEMU process exists for the VM."""
        return self in (VmState.STARTING, VmState.RUNNING, VmState.PAUSED, VmState.STOPPING)


# QMP events that move a running VM. SHUTDOWN comes before QEMU exits; the exit itself ends
# the session, and whether the pidfile is left behind then says stopped or aborted.
EVENT_STATES = {
    "STOP": VmState.PAUSED,
    "RESUME": VmState.RUNNING,
    "SHUTDOWN": VmState.STOPPING,
}

# query-status "status" values; any other (e.g. internal-error, guest-panicked) is shown as
# paused with the status as the reason, since the vCPUs are not running.
STATUS_STATES = {
    "running": VmState.RUNNING,
    "paused": VmState.PAUSED,
    "prelaunch": VmState.PAUSED,
    "suspended": VmState.PAUSED,
    "debug": VmState.PAUSED,
    "shutdown": VmState.STOPPING,
}


IO_ERROR = "stopped by a disk I/O error (is the host's disk full?)"
NEVER_RESUMED = "QEMU was started but never resumed (its start was interrupted)"
LAUNCH_GRACE = 60.0  # seconds a start may take between launching QEMU and resuming it


def state_from_status(status: str, *, launching_since: float | None = None,
                      now: float = 0.0) -> tuple[VmState, str]:
    """The state for QMP's query-status. `launching_since`: when a start that will resume the VM
    launched it (QEMU waits in prelaunch until that start says `cont`)."""
    if status in ("prelaunch", "inmigrate") and launching_since is not None:  # (inmigrate: restoring a saved state)
        if now - launching_since < LAUNCH_GRACE:
            return VmState.STARTING, ""
        return VmState.PAUSED, NEVER_RESUMED
    if status == "io-error":
        return VmState.PAUSED, IO_ERROR
    state = STATUS_STATES.get(status)
    if state is None:
        return VmState.PAUSED, f"QEMU reports {status}"
    return state, "" if status in ("running", "paused", "shutdown") else f"QEMU reports {status}"
