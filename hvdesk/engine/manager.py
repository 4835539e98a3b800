"""The Manager: the engine as the faces (the app, the command line) see it.

It puts the parts together and offers their operations in one place; the work is done in modules
with one job each:
- registry: the VMs in memory, their listeners and this process's locks;
- watcher: each VM's state read from the world (pidfiles, processes, QMP), and followed by QMP
  events and a light poll when watching (the app); QMP connections for the operations;
- guard: the door of every change (find, hold with file locks, refresh, check the action table);
- lifecycle: start, stop, shut down, pause, resume, reset;
- savestate: save a running VM's state and stop it (a start resumes it);
- resources: one-off balloon, vCPU pinning and CPU shares on a running VM;
- library_ops: create and delete; clone: full and linked clones; editing: settings and disks
  (called by the faces directly);
- snapshots: take, list, restore and delete a VM's snapshots (`manager.snapshots`).
Closing a Manager never stops a VM: QEMU runs detached and the next Manager adopts it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.paths import vms_dir
from hvdesk.core.storage import Library, VmEntry
from hvdesk.engine.actions import Action
from hvdesk.engine.guard import Guard
from hvdesk.engine.lifecycle import Lifecycle
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import EventHook, Listener, Registry
from hvdesk.engine.resources import BalloonResult, PinResult, Resources, SharesResult
from hvdesk.engine.savestate import ProgressCallback, Saver, SaveResult
from hvdesk.engine.watcher import Watcher
from hvdesk.qemu.qmp import QmpSession

if TYPE_CHECKING:  # library_ops loads when a VM is created or deleted: `hvdesk start` spares its imports
    from hvdesk.engine.clone import CloneResult, Progress
    from hvdesk.engine.library_ops import CreateRequest, DeleteResult
    from hvdesk.engine.snapshots import Snapshots  # so do snapshots, when first used


class Manager:
    def __init__(self, library: Library | None = None, *, watch: bool = False,
                 poll_interval: float = 1.0) -> None:
        self.registry = Registry(library or Library(vms_dir()))
        self.watcher = Watcher(self.registry, watch=watch, poll_interval=poll_interval)
        self.guard = Guard(self.registry, self.watcher)
        self.lifecycle = Lifecycle(self.registry, self.watcher, self.guard)
        self.resources = Resources(self.watcher, self.guard)
        self.saver = Saver(self.registry, self.watcher, self.guard, self.lifecycle.turn_off)
        self._snapshots: Snapshots | None = None

    @property
    def library(self) -> Library:
        return self.registry.library

    @property
    def snapshots(self) -> Snapshots:
        """Take, list, restore and delete snapshots (engine/snapshots.py)."""
        if self._snapshots is None:
            from hvdesk.engine.snapshots import Snapshots

            self._snapshots = Snapshots(self.registry, self.watcher, self.guard, self.lifecycle)
        return self._snapshots

    @property
    def watch(self) -> bool:
        return self.watcher.watch

    async def open(self, *, inspect: bool = True) -> Manager:
        """Load the library. `inspect=False` skips reading every VM's live state up front (a CLI
        command about one VM reads just that one's)."""
        await self.watcher.open(inspect=inspect)
        return self

    async def close(self) -> None:
        """Stop watching. The VMs keep running."""
        await self.watcher.close()

    async def __aenter__(self) -> Manager:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the VMs and their changes (registry) ---------------------------------------------------

    def machines(self) -> list[Machine]:
        return self.registry.machines()

    def get(self, name: str) -> Machine:
        return self.registry.get(name)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self.registry.subscribe(listener)

    def on_qmp_event(self, hook: EventHook) -> None:
        """Also hand every QMP event of a watched VM to `hook(machine, event, data)`."""
        self.registry.event_hooks.append(hook)

    def holder_of(self, image: Path, exclude: Machine | None = None) -> str | None:
        return self.registry.holder_of(image, exclude)

    def adopt(self, entry: VmEntry) -> Machine:
        return self.registry.adopt(entry)

    def forget(self, machine: Machine) -> None:
        self.registry.forget(machine)

    def moved(self, machine: Machine, folder: Path) -> None:
        self.registry.moved(machine, folder)

    def reload(self, machine: Machine) -> None:
        self.registry.reload(machine)

    # -- the world (watcher) ------------------------------------------------------------------------

    async def refresh(self, *, inspect: bool = True) -> None:
        await self.watcher.refresh(inspect=inspect)

    async def refresh_state(self, machine: Machine) -> None:
        await self.watcher.refresh_state(machine)

    def qmp(self, machine: Machine) -> AbstractAsyncContextManager[QmpSession]:
        return self.watcher.qmp(machine)

    async def command(self, machine: Machine, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 10.0) -> Any:
        return await self.watcher.command(machine, command, arguments, timeout)

    def operate(self, name: str, action: Action) -> AbstractAsyncContextManager[Machine]:
        return self.guard.operate(name, action)

    # -- operations ----------------------------------------------------------------------------------

    async def start(self, name: str, *, paused: bool = False, discard_saved_state: bool = False) -> Machine:
        return await self.lifecycle.start(name, paused=paused, discard_saved_state=discard_saved_state)

    async def save(self, name: str, progress: ProgressCallback | None = None) -> SaveResult:
        """Save the VM's state to its folder and end its QEMU; `start` resumes it."""
        return await self.saver.save(name, progress)

    async def stop(self, name: str, *, force: bool = False, timeout: float = 60.0) -> Machine:
        return await self.lifecycle.stop(name, force=force, timeout=timeout)

    async def shutdown(self, name: str) -> Machine:
        return await self.lifecycle.shutdown(name)

    async def pause(self, name: str) -> Machine:
        return await self.lifecycle.pause(name)

    async def resume(self, name: str) -> Machine:
        return await self.lifecycle.resume(name)

    async def reset(self, name: str) -> Machine:
        return await self.lifecycle.reset(name)

    async def balloon(self, name: str, mib: int) -> BalloonResult:
        return await self.resources.balloon(name, mib)

    async def pin(self, name: str, vcpu: int, host_cpus: str) -> PinResult:
        return await self.resources.pin(name, vcpu, host_cpus)

    async def shares(self, name: str, shares: int) -> SharesResult:
        return await self.resources.shares(name, shares)

    async def create(self, request: CreateRequest) -> Machine:
        from hvdesk.engine import library_ops

        return await library_ops.create(self, request)

    async def delete(self, name: str, *, keep_disks: bool = False) -> DeleteResult:
        from hvdesk.engine import library_ops

        return await library_ops.delete(self, name, keep_disks=keep_disks)


    async def clone(self, name: str, new_name: str, *, linked: bool = False,
                    progress: Progress | None = None, keep_macs: bool = False) -> CloneResult:
        """A copy of the stopped VM `name` as `new_name` (new uuid; new MACs unless `keep_macs`);
        `linked`: sharing its disks as they are now, each keeping its own writes. `progress` hears a
        full copy's percent."""
        from hvdesk.engine import clone

        return await clone.clone(self, name, new_name, linked=linked, progress=progress, keep_macs=keep_macs)
