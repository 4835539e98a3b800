"""Reading each VM's state from the world, and following it.

Two ways to run, one set of states:
- watch=False (the CLI): state is read from the outside world (pidfiles, processes, QMP
  `query-status` on the VM's short-command socket) whenever it is asked for; nothing is held open.
- watch=True (the app): each running VM's event socket is held open, QMP events drive the state
  machine, and a light poll (one stat per VM per second) notices VMs that other hvdesk processes
  created, started or changed.
The watcher also gives the operations their QMP connection to a VM (`qmp`, `command`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from hvdesk.core.errors import HvdeskError, QemuError
from hvdesk.core.storage import VmEntry
from hvdesk.engine import observe
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.states import EVENT_STATES, IO_ERROR, VmState
from hvdesk.qemu import cpu_weight
from hvdesk.qemu.process import wait_gone
from hvdesk.qemu.qmp import QmpSession

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, registry: Registry, *, watch: bool, poll_interval: float) -> None:
        self.registry = registry
        self.watch = watch
        self.poll_interval = poll_interval
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_events: dict[Path, int] = {}  # state-changing QMP events seen, per VM folder

    async def open(self, *, inspect: bool) -> None:
        """Read the library (VMs whose creation was killed half-way are removed first) and, when
        watching, start following it."""
        for folder in self.registry.library.remove_abandoned():
            log.info("removed %s: a VM whose creation was interrupted", folder)
        await self.refresh(inspect=inspect or self.watch)
        if self.watch:
            self.spawn(self._poll_forever())

    async def close(self) -> None:
        """Stop watching. The VMs keep running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for machine in self.registry.machines():
            await self.drop_session(machine)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` for as long as the watcher lives (cancelled by close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the library ----------------------------------------------------------------------------

    async def refresh(self, *, inspect: bool = True) -> None:
        """Re-read the library: new, removed and edited VMs; live state of the new ones.
        Listeners hear of each change once `machines()` already reflects it."""
        registry = self.registry
        registry.library_stamp = registry.scan_stamp()
        seen: dict[Path, Machine] = {}
        fresh: list[Machine] = []
        edited: list[Machine] = []
        for entry in registry.library.scan():
            machine = registry.at(entry.folder)
            if machine is not None and _same_vm(machine.entry, entry):
                # An unchanged stamp is an unchanged file: no need to read either config to compare.
                if not (entry.stamp and entry.stamp == machine.entry.stamp) and machine.entry.config != entry.config:
                    machine.entry = entry
                    edited.append(machine)
            else:
                machine = Machine(entry)
                fresh.append(machine)
            seen[entry.folder] = machine
        gone = registry.replace_all(seen)
        for machine in gone:
            await self.drop_session(machine)
        for machine in fresh:
            if inspect or not machine.entry.accessible:
                await self.inspect(machine)
        for machine in (*gone, *fresh, *edited):
            registry.emit(machine)

    async def refresh_state(self, machine: Machine, *, owner: bool = False) -> None:
        """Without a watched session, state may be stale: look again before acting. `owner`: the
        caller holds the VM (the guard), so it may tidy what a dead QEMU left."""
        if not (self.watch and machine.session is not None):
            machine.entry = self.registry.library.reload_if_changed(machine.entry)
            await self.inspect(machine, owner=owner)

    # -- reading state from the world -------------------------------------------------------------

    async def inspect(self, machine: Machine, *, owner: bool = False) -> None:
        """Find the VM's state from its runtime dir and QEMU itself (after start-up or for the CLI)."""
        busy_here = not owner and self.registry.lock(machine).locked()
        found = observe.read_state(machine, owner=owner, busy_here=busy_here)
        if found is not None:
            self.registry.set_state(machine, *found)
        elif self.watch and machine.session is None:
            await self._attach(machine)
        else:
            await self._query_status(machine)

    async def _query_status(self, machine: Machine) -> None:
        try:
            async with self.qmp(machine) as qmp:
                status = await qmp.execute("query-status")
            state, reason = observe.state_of(machine, status["status"])
        except QemuError as exc:
            state, reason = VmState.RUNNING, f"QEMU is not answering: {exc}"
        self.registry.set_state(machine, state, reason)

    def note_exit(self, machine: Machine, *, expected: bool, owner: bool = False) -> None:
        """QEMU is gone (or was never there): settle on stopped or aborted, and tidy up (see
        observe.settle_gone for who may)."""
        busy_here = not owner and self.registry.lock(machine).locked()
        state, reason = observe.settle_gone(machine, expected=expected, owner=owner, busy_here=busy_here)
        self.registry.set_state(machine, state, reason)
        if machine.entry.digest is not None:
            try:  # its CPU-shares cgroup, once empty (a cgroup left over is removed at a later exit)
                cpu_weight.release(machine.uuid)
            except HvdeskError as exc:
                log.warning("%s: %s", machine.name, exc)

    # -- following QMP events (watch=True) ----------------------------------------------------------

    def event_session(self, machine: Machine) -> QmpSession:
        """A QMP session whose events drive this VM's state (plain when not watching)."""
        if not self.watch:
            return QmpSession(f"hvdesk-{machine.name}")
        return QmpSession(f"hvdesk-{machine.name}",
                          on_event=lambda name, data, _t: self._on_event(machine, name, data))

    def follow(self, machine: Machine, session: QmpSession) -> None:
        """Keep `session` as the VM's watched session, until QEMU ends it."""
        machine.session = session
        self.spawn(self._follow(machine, session))

    async def _attach(self, machine: Machine) -> bool:
        """Hold the VM's event socket open and follow its events. False if another app holds it."""
        endpoint = machine.transport.qmp
        if not endpoint.present():  # its runtime folder was removed under it
            await self._query_status(machine)
            return False
        session = self.event_session(machine)
        events_before = self._state_events.get(machine.entry.folder, 0)
        try:
            await session.connect(endpoint, timeout=2.0)
            status = await session.execute("query-status")
        except QemuError as exc:
            log.info("not watching %s: %s", machine.name, exc)
            await session.close()
            await self._query_status(machine)
            return False
        if self._state_events.get(machine.entry.folder, 0) == events_before:
            # (an event that arrived with the reply was handled first and is newer than it)
            self.registry.set_state(machine, *observe.state_of(machine, status["status"]))
        self.follow(machine, session)
        return True

    def _on_event(self, machine: Machine, event: str, data: dict[str, Any]) -> None:
        for hook in list(self.registry.event_hooks):
            try:
                hook(machine, event, data)
            except Exception:  # a faulty hook must not break the engine
                log.exception("QMP event hook failed")
        if event == "BALLOON_CHANGE":
            machine.balloon = data.get("actual")
            return
        if event == "BLOCK_IO_ERROR" and data.get("action") == "stop":
            folder = machine.entry.folder
            self._state_events[folder] = self._state_events.get(folder, 0) + 1
            self.registry.set_state(machine, VmState.PAUSED, IO_ERROR)
            return
        if event == "STOP" and machine.reason == IO_ERROR:
            return  # the pause BLOCK_IO_ERROR announced: keep its reason
        state = EVENT_STATES.get(event)
        if state is None:
            return
        folder = machine.entry.folder
        self._state_events[folder] = self._state_events.get(folder, 0) + 1
        if machine.state == VmState.STARTING and self.registry.lock(machine).locked():
            return  # this process's own start: it sets the state itself once QEMU answers
        reason = data.get("reason", "") if event == "SHUTDOWN" else ""
        self.registry.set_state(machine, state, _shutdown_reason(reason))

    async def _follow(self, machine: Machine, session: QmpSession) -> None:
        await session.wait_closed()
        await session.close()
        if machine.session is not session:
            return  # we closed it ourselves
        machine.session = None
        if machine.pid is None:
            return
        if await wait_gone(machine.pid, 5.0):  # the socket closes just before the process ends
            self.note_exit(machine, expected=machine.expect_exit)
        else:  # the socket dropped but QEMU lives on: look again (and attach again), never tidy it away
            await self.inspect(machine)

    async def drop_session(self, machine: Machine) -> None:
        session, machine.session = machine.session, None
        if session is not None:
            await session.close()

    async def _poll_forever(self) -> None:
        """Catch what no event tells us: other processes' creates, starts, edits and kills."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._poll_once()
            except HvdeskError as exc:
                log.warning("watch poll: %s", exc)

    async def _poll_once(self) -> None:
        registry = self.registry
        if registry.scan_stamp() != registry.library_stamp:
            await self.refresh()
        for machine in registry.machines():
            if not machine.entry.accessible or registry.lock(machine).locked():
                continue
            if machine.session is None and (machine.pid is not None or machine.paths.pidfile.exists()):
                await self.inspect(machine)

    # -- talking to a VM's QEMU --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def qmp(self, machine: Machine) -> AsyncIterator[QmpSession]:
        """The watched session if there is one, else a short one on the command socket."""
        if machine.session is not None and machine.session.connected:
            yield machine.session
            return
        gone = observe.control_socket_gone(machine)
        if gone is not None:
            raise gone
        session = QmpSession(f"hvdesk-cli-{machine.name}")
        try:
            await session.connect(machine.transport.ctl, timeout=5.0)
            yield session
        finally:
            await session.close()

    async def command(self, machine: Machine, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float = 10.0) -> Any:
        async with self.qmp(machine) as qmp:
            return await qmp.execute(command, arguments, timeout=timeout)


def _same_vm(old: VmEntry, new: VmEntry) -> bool:
    if old.digest is None or new.digest is None:
        return old.digest is None and new.digest is None
    return old.digest.uuid == new.digest.uuid


def _shutdown_reason(reason: str) -> str:
    return {"guest-shutdown": "the guest is powering off", "host-qmp-quit": "turning off",
            "host-signal": "QEMU received a signal", "guest-reset": "the guest is resetting"}.get(reason, reason)
