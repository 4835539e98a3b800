"""The door every operation that changes a VM goes through (as qemu.qmp's `@require` says once,
at the door, which state a call needs): find the VM, hold it against every other change in this
process and in any other hvdesk, look again at its state, and check it against the one table of
which states allow which action."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from hvdesk.core.errors import BusyError, NotFoundError
from hvdesk.core.filelock import DEFAULT_WAIT, FileLock
from hvdesk.core.storage import LOCK_FILE
from hvdesk.engine.actions import Action
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.watcher import Watcher


class Guard:
    def __init__(self, registry: Registry, watcher: Watcher) -> None:
        self.registry = registry
        self.watcher = watcher

    @contextlib.asynccontextmanager
    async def exclusive(self, machine: Machine, doing: str, wait: float = DEFAULT_WAIT) -> AsyncIterator[Machine]:
        """Hold the VM: this process's lock, then its file lock (`doing` tells waiters why). With
        `wait` 0 a VM that this process is busy with raises BusyError at once (the controller
        skips it for a cycle rather than queue behind a shutdown)."""
        lock = self.registry.lock(machine)
        if wait <= 0 and lock.locked():
            raise BusyError(f"VM {machine.name!r} is busy with another operation in this process")
        async with lock:
            flock = FileLock(machine.entry.folder / LOCK_FILE, f"VM {machine.name!r}")
            try:
                await flock.acquire(doing, timeout=wait)
            except FileNotFoundError:
                raise NotFoundError(f"VM {machine.name!r} was deleted or renamed meanwhile") from None
            try:
                yield machine
            finally:
                flock.release()

    @contextlib.asynccontextmanager
    async def operate(self, name: str, action: Action, wait: float = DEFAULT_WAIT) -> AsyncIterator[Machine]:
        """Find, hold, refresh, check: the VM comes out in a state that allows `action`, and stays
        so (no other hvdesk changes it) until the block ends."""
        machine = self.registry.get(name)
        async with self.exclusive(machine, action.value, wait):
            await self.watcher.refresh_state(machine, owner=True)
            machine.require(action)
            yield machine
