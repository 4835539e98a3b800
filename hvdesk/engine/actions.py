"""Which VM states allow which action: the one table the engine's guard, the command line and the
app's menus all ask (in the manner of virt-manager's is_runable/is_pauseable, said once)."""

from __future__ import annotations

from enum import StrEnum

from hvdesk.engine.states import VmState

S = VmState


class Action(StrEnum):
    """What a person can do to a VM; the value reads in a sentence: "cannot <value> 'web'"."""

    START = "start"
    SHOW = "show the screen of"
    PAUSE = "pause"
    RESUME = "resume"
    SHUTDOWN = "shut down"
    STOP = "stop"  # the power button and wait, or turn it off
    RESET = "reset"
    DELETE = "delete"
    CLONE = "clone"  # its disks must be still: a stopped VM only
    EDIT = "change the settings of"
    EDIT_DISKS = "change the disks of"  # add, attach, remove
    RESIZE_DISK = "resize a disk of"
    CHANGE_CD = "change the CD of"
    SHOW_LOG = "show the log of"
    SAMPLE = "sample"  # live CPU, memory and disk figures
    TYPE = "type on"  # keys and screenshots through the console
    BALLOON = "set the balloon of"
    PIN = "pin the vCPUs of"
    SHARES = "set the CPU shares of"
    SAVE = "save the state of"  # write the guest's RAM and devices to a file and stop; START resumes it
    SNAPSHOT_TAKE = "take a snapshot of"  # running: with its RAM (live); stopped: its disks
    SNAPSHOT_RESTORE = "restore a snapshot of"
    SNAPSHOT_DELETE = "delete a snapshot of"


_LIVE = frozenset({S.RUNNING, S.PAUSED})
_HAS_CONFIG = frozenset(S) - {S.INACCESSIBLE}
# Snapshots: a running VM's live (RAM too), a stopped one's offline. Not while paused, nor on the way
# up or down: a paused guest may be stopped by a disk error, and a snapshot of it would hold that.
# Not while saved either: the saved state believes its disks as they were.
_SNAPSHOTS = frozenset({S.RUNNING, S.STOPPED, S.ABORTED})

ALLOWED: dict[Action, frozenset[VmState]] = {
    Action.START: frozenset({S.STOPPED, S.ABORTED, S.SAVED}),
    Action.SHOW: _LIVE,
    Action.PAUSE: frozenset({S.RUNNING}),
    Action.RESUME: frozenset({S.PAUSED}),
    Action.SHUTDOWN: frozenset({S.RUNNING}),
    Action.STOP: frozenset({S.RUNNING, S.PAUSED, S.STOPPING}),
    Action.RESET: _LIVE,
    Action.DELETE: frozenset({S.STOPPED, S.ABORTED, S.SAVED, S.INACCESSIBLE}),  # (a saved state goes too)
    Action.EDIT: _HAS_CONFIG,  # saved: the resume uses the settings saved with the state; edits wait for a fresh boot
    Action.CLONE: frozenset({S.STOPPED, S.ABORTED}),  # not saved: a linked clone moves the disks under the state
    Action.EDIT_DISKS: frozenset({S.STOPPED, S.ABORTED}),
    # A saved guest resumes believing its disks and CD as they were: they must not change meanwhile.
    Action.RESIZE_DISK: _HAS_CONFIG - {S.SAVED},
    Action.CHANGE_CD: _HAS_CONFIG - {S.SAVED},
    Action.SHOW_LOG: _HAS_CONFIG,
    Action.SAMPLE: _LIVE,
    Action.TYPE: _LIVE,
    Action.BALLOON: _LIVE,
    Action.PIN: _LIVE,
    Action.SHARES: _LIVE,
    Action.SAVE: _LIVE,
    Action.SNAPSHOT_TAKE: _SNAPSHOTS,
    Action.SNAPSHOT_RESTORE: _SNAPSHOTS,
    Action.SNAPSHOT_DELETE: _SNAPSHOTS,
}


# What to do about a refusal, where there is one thing to do.
HINTS: dict[tuple[Action, VmState], str] = {
    **{(action, state): "stop it first" for action in (Action.DELETE, Action.EDIT_DISKS, Action.CLONE)
       for state in (S.RUNNING, S.PAUSED, S.STARTING, S.STOPPING)},
    (Action.START, S.INACCESSIBLE): "fix or remove its vm.toml",
    **{(action, S.SAVED): "start it (which resumes the saved state) and shut it down first, or start it with "
       "--discard-saved-state" for action in (Action.EDIT_DISKS, Action.RESIZE_DISK, Action.CHANGE_CD,
                                               Action.CLONE, Action.SNAPSHOT_TAKE, Action.SNAPSHOT_RESTORE,
                                               Action.SNAPSHOT_DELETE)},
    **{(action, S.PAUSED): "resume it first (or stop it)"
       for action in (Action.SNAPSHOT_TAKE, Action.SNAPSHOT_RESTORE, Action.SNAPSHOT_DELETE)},
    **{(action, state): "wait until it has started or stopped"
       for action in (Action.SNAPSHOT_TAKE, Action.SNAPSHOT_RESTORE, Action.SNAPSHOT_DELETE)
       for state in (S.STARTING, S.STOPPING)},
}


def allows(action: Action, state: VmState) -> bool:
    return state in ALLOWED[action]


def refusal(action: Action, name: str, state: VmState, reason: str = "") -> str:
    """The one-line reason `action` cannot be done to the VM `name` in `state`."""
    what = f"inaccessible ({reason})" if state == S.INACCESSIBLE else str(state)
    hint = HINTS.get((action, state))
    return f"cannot {action} {name!r}: it is {what}" + (f"; {hint}" if hint else "")
