"""A VM's life: the states the user sees and what moves it between them."""

from __future__ import annotations

from enum import StrEnum


class VmState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"  # the guest is shutting down, or QEMU is quitting
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


def state_from_status(status: str) -> tuple[VmState, str]:
    state = STATUS_STATES.get(status)
    if state is None:
        return VmState.PAUSED, f"QEMU reports {status}"
    return state, "" if status in ("running", "paused", "shutdown") else f"QEMU reports {status}"
