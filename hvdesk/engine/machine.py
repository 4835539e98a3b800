"""One VM as the engine sees it: its library entry and its live state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hvdesk.core.errors import StateError
from hvdesk.core.storage import VmEntry
from hvdesk.engine.actions import Action, allows, refusal
from hvdesk.engine.runtime import RunInfo, vm_paths
from hvdesk.engine.states import VmState
from hvdesk.qemu import transport as transports
from hvdesk.qemu.vm_paths import VmPaths

if TYPE_CHECKING:
    from hvdesk.core.config import VmConfig
    from hvdesk.qemu.qmp import QmpSession


class Machine:
    """A plain class, not a dataclass: `hvdesk list` loads no dataclasses (see core/digests.py).
    Machines compare by identity."""

    def __init__(self, entry: VmEntry, state: VmState = VmState.STOPPED, reason: str = "",
                 pid: int | None = None, run: RunInfo | None = None) -> None:
        self.entry = entry
        self.state = state
        self.reason = reason  # why it is aborted, inaccessible or in an unusual QEMU status
        self.pid = pid
        self.run = run
        self.session: QmpSession | None = None  # the watcher's QMP session
        self.expect_exit = False  # we asked QEMU to end: its exit is a stop, not an abort
        self.balloon: int | None = None  # bytes, from BALLOON_CHANGE events while watched
        self.notice = ""  # something the engine decided that the user should hear about (e.g. detected OS)
        self._paths: tuple[tuple[Path, str], VmPaths] | None = None  # ((folder, uuid), paths)

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, {self.state}, pid={self.pid})"

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def config(self) -> VmConfig:
        if self.entry.config is None:
            raise StateError(f"VM {self.name!r} is inaccessible: {self.entry.error}")
        return self.entry.config

    @property
    def uuid(self) -> str:
        """Known without reading vm.toml (from the library's memo: core/digests.py)."""
        if self.entry.digest is None:
            raise StateError(f"VM {self.name!r} is inaccessible: {self.entry.error}")
        return self.entry.digest.uuid

    @property
    def paths(self) -> VmPaths:
        # Computed once per folder and uuid: the runtime root is hashed from the data dir, and
        # the Manager's once-a-second poll asks for these paths for every VM.
        key = (self.entry.folder, self.uuid)
        if self._paths is None or self._paths[0] != key:
            self._paths = (key, vm_paths(*key))
        return self._paths[1]

    @property
    def transport(self) -> transports.Transport:
        """How to reach its QEMU, as its run info says (unix sockets without one: then, for a tcp
        VM whose runtime folder was removed, they are missing, and that is the error shown)."""
        return transports.from_dict(self.paths, self.run.transport if self.run is not None else None)

    def require(self, action: Action) -> None:
        """Raise StateError unless the VM's state allows `action` (the one table, in actions.py)."""
        if not allows(action, self.state):
            raise StateError(refusal(action, self.name, self.state, self.reason))
