"""The VMs in memory: one Machine per folder of the library, who listens to their changes, and
this process's lock on each. It reads nothing from the world itself (the watcher does that) and
runs nothing (the lifecycle operations do)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.errors import NotFoundError
from hvdesk.core.names import name_key
from hvdesk.core.storage import Library, VmEntry, config_stamp
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState

if TYPE_CHECKING:
    import asyncio  # loaded by the first lock(): `list` and `info` run without an event loop

Listener = Callable[[Machine], None]
EventHook = Callable[[Machine, str, dict[str, Any]], None]  # VM, QMP event name, its data


class Registry:
    def __init__(self, library: Library) -> None:
        self.library = library
        self._machines: dict[Path, Machine] = {}  # by VM folder
        self._listeners: list[Listener] = []
        self.event_hooks: list[EventHook] = []
        self._locks: dict[Path, asyncio.Lock] = {}
        self.library_stamp: tuple[tuple[str, int], ...] = ()  # scan_stamp() when the library was last read

    def machines(self) -> list[Machine]:
        return sorted(self._machines.values(), key=lambda m: name_key(m.name))

    def get(self, name: str) -> Machine:
        for machine in self._machines.values():
            if name_key(machine.name) == name_key(name):
                return machine
        raise NotFoundError(f"no VM named {name!r} (see `hvdesk list`)")

    def at(self, folder: Path) -> Machine | None:
        return self._machines.get(folder)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(machine)` on every change of a VM's state or config, and when a VM is
        added or removed (then it is, or is no longer, in `machines()`); returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    def lock(self, machine: Machine) -> asyncio.Lock:
        """This process's lock on the VM (the guard's file lock covers other processes)."""
        lock = self._locks.get(machine.entry.folder)
        if lock is None:
            import asyncio

            lock = self._locks[machine.entry.folder] = asyncio.Lock()
        return lock

    def set_state(self, machine: Machine, state: VmState, reason: str = "") -> None:
        if (machine.state, machine.reason) == (state, reason):
            return
        machine.state, machine.reason = state, reason
        self.emit(machine)

    def emit(self, machine: Machine) -> None:
        for listener in list(self._listeners):
            try:
                listener(machine)
            except Exception:  # a faulty listener must not break the engine
                import logging  # here: `hvdesk list` runs without loading logging

                logging.getLogger(__name__).exception("state listener failed")

    def replace_all(self, machines: dict[Path, Machine]) -> list[Machine]:
        """The library as now read; returns the machines that are gone from it."""
        kept = set(map(id, machines.values()))
        gone = [m for m in self._machines.values() if id(m) not in kept]
        self._machines = machines
        return gone

    # -- the library's own changes (create, delete, rename, edit) --------------------------------

    def adopt(self, entry: VmEntry) -> Machine:
        machine = Machine(entry)
        self._machines[entry.folder] = machine
        self.library_stamp = self.scan_stamp()
        self.emit(machine)
        return machine

    def forget(self, machine: Machine) -> None:
        self._machines.pop(machine.entry.folder, None)
        self.library_stamp = self.scan_stamp()
        self.emit(machine)

    def moved(self, machine: Machine, folder: Path) -> None:
        """The VM's folder was renamed (a rename of the VM)."""
        self._machines.pop(machine.entry.folder, None)
        lock = self.lock(machine)
        del self._locks[machine.entry.folder]
        self._locks[folder] = lock
        machine.entry = self.library.load(folder)
        self._machines[folder] = machine

    def reload(self, machine: Machine) -> None:
        """Take the VM's saved config from disk (after an edit) and tell the listeners."""
        machine.entry = self.library.load(machine.entry.folder)
        self.library_stamp = self.scan_stamp()
        self.emit(machine)

    def holder_of(self, image: Path, exclude: Machine | None = None) -> str | None:
        """Name of the VM in this library whose config uses `image`, if any."""
        for other in self._machines.values():
            if other is exclude or other.entry.config is None:
                continue
            if any(other.paths.resolve(d.path) == image for d in other.config.disks):
                return other.name
        return None

    def scan_stamp(self) -> tuple[tuple[str, int], ...]:
        """Cheap fingerprint of the library: each folder's vm.toml stamp (storage.config_stamp)."""
        stamp = []
        try:
            entries = list(os.scandir(self.library.root))
        except OSError:
            return ()
        for entry in entries:
            config = config_stamp(Path(entry.path))
            if config:  # (a folder without a vm.toml is not a VM, e.g. one being created)
                stamp.append((entry.name, config))
        return tuple(sorted(stamp))
