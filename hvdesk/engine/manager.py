"""The Manager: every VM in the library, its live state, and the lifecycle operations.

Two ways to run it, one set of operations:
- watch=False (the CLI): state is read from the outside world (pidfiles, QMP `query-status` on
  the VM's short-command socket) whenever it is asked for; nothing is held open.
- watch=True (the GUI): each running VM's event socket is held open, QMP events drive the state
  machine, and a light poll (one stat per VM per second) notices VMs that other hvdesk processes
  created, started or changed.
Closing a Manager never stops a VM: QEMU runs detached and the next Manager adopts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from hvdesk.core.errors import DiskInUseError, HvdeskError, NotFoundError, QemuError, StateError
from hvdesk.core.filelock import FileLock
from hvdesk.core.names import name_key
from hvdesk.core.paths import vms_dir
from hvdesk.core.storage import CONFIG_FILE, LOCK_FILE, Library, VmEntry
from hvdesk.engine import launch_plan, library_ops, runtime
from hvdesk.engine.library_ops import CreateRequest, DeleteResult
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import EVENT_STATES, IO_ERROR, VmState, state_from_status
from hvdesk.qemu import tpm
from hvdesk.qemu.process import launch, log_tail, terminate, wait_gone
from hvdesk.qemu.qmp import QmpSession

log = logging.getLogger(__name__)

Listener = Callable[[Machine], None]
QUIT_GRACE = 5.0  # seconds QEMU gets to exit after `quit` before it is killed


class Manager:
    def __init__(self, library: Library | None = None, *, watch: bool = False,
                 poll_interval: float = 1.0) -> None:
        self.library = library or Library(vms_dir())
        self.watch = watch
        self.poll_interval = poll_interval
        self._machines: dict[Path, Machine] = {}  # by VM folder
        self._listeners: list[Listener] = []
        self._event_hooks: list[Callable[[Machine, str, dict], None]] = []
        self._locks: dict[Path, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._library_stamp: tuple = ()

    # -- registry -------------------------------------------------------------------------

    async def open(self, *, inspect: bool = True) -> Manager:
        """Load the library. `inspect=False` skips reading every VM's live state up front (a CLI
        command about one VM reads just that one's). VMs whose creation was killed half-way
        are removed first."""
        for folder in self.library.remove_abandoned():
            log.info("removed %s: a VM whose creation was interrupted", folder)
        await self.refresh(inspect=inspect or self.watch)
        if self.watch:
            self._spawn(self._poll_forever())
        return self

    async def close(self) -> None:
        """Stop watching. The VMs keep running."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for machine in self._machines.values():
            await self._drop_session(machine)

    async def __aenter__(self) -> Manager:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def machines(self) -> list[Machine]:
        return sorted(self._machines.values(), key=lambda m: name_key(m.name))

    def get(self, name: str) -> Machine:
        for machine in self._machines.values():
            if name_key(machine.name) == name_key(name):
                return machine
        raise NotFoundError(f"no VM named {name!r} (see `hvdesk list`)")

    def on_qmp_event(self, hook: Callable[[Machine, str, dict], None]) -> None:
        """Also hand every QMP event of a watched VM to `hook(machine, event, data)`."""
        self._event_hooks.append(hook)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(machine)` on every change of a VM's state or config, and when a VM is
        added or removed (then it is, or is no longer, in `machines()`); returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    async def refresh(self, *, inspect: bool = True) -> None:
        """Re-read the library: new, removed and edited VMs; live state of the new ones.
        Listeners hear of each change once `machines()` already reflects it."""
        self._library_stamp = self._scan_stamp()
        seen: dict[Path, Machine] = {}
        fresh: list[Machine] = []
        edited: list[Machine] = []
        for entry in self.library.scan():
            machine = self._machines.get(entry.folder)
            if machine is not None and _same_vm(machine.entry, entry):
                if machine.entry.config != entry.config:
                    machine.entry = entry
                    edited.append(machine)
            else:
                machine = Machine(entry)
                fresh.append(machine)
            seen[entry.folder] = machine
        kept = set(map(id, seen.values()))
        gone = [m for m in self._machines.values() if id(m) not in kept]
        self._machines = seen
        for machine in gone:
            await self._drop_session(machine)
        for machine in fresh:
            if inspect or machine.entry.config is None:
                await self._inspect(machine)
        for machine in (*gone, *fresh, *edited):
            self._emit(machine)

    def _scan_stamp(self) -> tuple:
        """Cheap fingerprint of the library: each folder's vm.toml mtime."""
        stamp = []
        try:
            entries = list(os.scandir(self.library.root))
        except OSError:
            return ()
        for entry in entries:
            try:
                stamp.append((entry.name, os.stat(os.path.join(entry.path, CONFIG_FILE)).st_mtime_ns))
            except OSError:
                continue
        return tuple(sorted(stamp))

    # -- reading state from the world ---------------------------------------------------------

    async def _inspect(self, machine: Machine, *, owner: bool = False) -> None:
        """Find the VM's state from its runtime dir and QEMU itself (after start-up or for the CLI)."""
        if machine.entry.config is None:
            self._set(machine, VmState.INACCESSIBLE, machine.entry.error)
            return
        paths, uuid = machine.paths, machine.config.uuid
        pid = runtime.live_pid(paths, uuid)
        if pid is not None:
            machine.pid, machine.run = pid, runtime.read_run_info(paths)
            if self.watch and machine.session is None:
                await self._attach(machine)
            else:
                await self._query_status(machine)
            return
        run = runtime.read_run_info(paths)
        if run is not None and run.pid == 0 and time.time() - run.started_at < 60:
            self._set(machine, VmState.STARTING)  # another hvdesk is launching it right now
            return
        self._note_exit(machine, expected=False, owner=owner)

    async def _query_status(self, machine: Machine) -> None:
        try:
            async with self.qmp(machine) as qmp:
                status = await qmp.execute("query-status")
            state, reason = self._state_of(machine, status["status"])
        except QemuError as exc:
            state, reason = VmState.RUNNING, f"QEMU is not answering: {exc}"
        self._set(machine, state, reason)

    @staticmethod
    def _state_of(machine: Machine, status: str) -> tuple[VmState, str]:
        run = machine.run
        launching = run.started_at if run is not None and not run.paused else None
        return state_from_status(status, launching_since=launching, now=time.time())

    def _note_exit(self, machine: Machine, *, expected: bool, owner: bool = False) -> None:
        """QEMU is gone (or was never there): settle on stopped or aborted, and tidy up. Only the
        operation that holds the VM (`owner`) or, when nobody holds it, whoever can take its lock
        tidies: a start under way elsewhere (in this process or another) has files that are not
        ours to remove."""
        paths = machine.paths
        flock = None
        if not owner and not self.lock(machine).locked():
            flock = self._try_hold(machine)
        if owner or flock is not None:
            try:
                if runtime.left_behind(paths) and not expected:
                    pid = runtime.read_pid(paths.pidfile)
                    runtime.mark_aborted(paths, f"QEMU (pid {pid}) ended without a clean exit "
                                                f"(killed or crashed); see {paths.qemu_log}")
                runtime.remove_run_dir(paths)
            finally:
                if flock is not None:
                    flock.release()
        machine.pid, machine.run, machine.expect_exit, machine.balloon = None, None, False, None
        reason = runtime.aborted_reason(paths)
        self._set(machine, VmState.ABORTED if reason else VmState.STOPPED, reason or "")

    # -- watching (watch=True) ---------------------------------------------------------------

    async def _attach(self, machine: Machine) -> bool:
        """Hold the VM's event socket open and follow its events. False if another app holds it."""
        if not machine.paths.qmp_socket.exists():  # its runtime folder was removed under it
            await self._query_status(machine)
            return False
        session = QmpSession(f"hvdesk-{machine.name}", on_event=lambda name, data, _t: self._on_event(
            machine, name, data))
        try:
            await session.connect(machine.paths.qmp_socket, timeout=2.0)
            status = await session.execute("query-status")
        except QemuError as exc:
            log.info("not watching %s: %s", machine.name, exc)
            await session.close()
            await self._query_status(machine)
            return False
        machine.session = session
        self._set(machine, *self._state_of(machine, status["status"]))
        self._spawn(self._follow(machine, session))
        return True

    def _on_event(self, machine: Machine, event: str, data: dict) -> None:
        for hook in list(self._event_hooks):
            try:
                hook(machine, event, data)
            except Exception:  # a faulty hook must not break the engine
                log.exception("QMP event hook failed")
        if event == "BALLOON_CHANGE":
            machine.balloon = data.get("actual")
            return
        if event == "BLOCK_IO_ERROR" and data.get("action") == "stop":
            self._set(machine, VmState.PAUSED, IO_ERROR)
            return
        if event == "STOP" and machine.reason == IO_ERROR:
            return  # the pause BLOCK_IO_ERROR announced: keep its reason
        state = EVENT_STATES.get(event)
        if state is not None and machine.state != VmState.STARTING:
            reason = data.get("reason", "") if event == "SHUTDOWN" else ""
            self._set(machine, state, _shutdown_reason(reason))

    async def _follow(self, machine: Machine, session: QmpSession) -> None:
        await session.wait_closed()
        await session.close()
        if machine.session is not session:
            return  # we closed it ourselves
        machine.session = None
        if machine.pid is not None:
            await wait_gone(machine.pid, 5.0)  # the socket closes just before the process ends
            self._note_exit(machine, expected=machine.expect_exit)

    async def _drop_session(self, machine: Machine) -> None:
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
        if self._scan_stamp() != self._library_stamp:
            await self.refresh()
        for machine in list(self._machines.values()):
            if machine.entry.config is None or self.lock(machine).locked():
                continue
            if machine.session is None and (machine.pid is not None or
                                            machine.paths.pidfile.exists()):
                await self._inspect(machine)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, name: str, *, paused: bool = False) -> Machine:
        """Launch QEMU for the VM; return when it runs (or waits, paused) and QMP answers."""
        async with self.operate(name, "start", VmState.STOPPED, VmState.ABORTED) as machine:
            config, paths = machine.config, machine.paths
            await launch_plan.check_images(machine)
            # A first start probes the accelerator and asks QEMU its version: off the event loop then.
            if launch_plan.is_quick(machine):
                argv, choice = launch_plan.plan(machine)
            else:
                argv, choice = await asyncio.to_thread(launch_plan.plan, machine)
            runtime.prepare_run_dir(paths)
            runtime.prepare_logs(paths)
            run = runtime.RunInfo(0, choice.name, choice.reason, time.time(), argv, config.to_dict(), paused)
            runtime.write_run_info(paths, run)
            previous = machine.state
            self._set(machine, VmState.STARTING)
            try:
                if config.tpm:  # before QEMU, which connects to its socket at start-up
                    await tpm.launch(paths.tpm_state, paths.tpm_socket, paths.tpm_pidfile,
                                     paths.qemu_log.with_name("swtpm.log"))
                machine.pid = await launch(argv, paths.pidfile, paths.qemu_log)
            except QemuError as exc:
                launch_plan.stop_swtpm(paths)
                runtime.remove_run_dir(paths)
                self._set(machine, previous, machine.reason)
                raise self._explain_launch_failure(machine, exc) from None
            run.pid = machine.pid
            runtime.write_run_info(paths, run)
            machine.run = run
            await self._connect_and_go(machine, paused)
            runtime.clear_aborted(paths)
            self._set(machine, VmState.PAUSED if paused else VmState.RUNNING)
            return machine

    async def _connect_and_go(self, machine: Machine, paused: bool) -> None:
        paths = machine.paths
        session = QmpSession(f"hvdesk-{machine.name}", on_event=(
            (lambda name, data, _t: self._on_event(machine, name, data)) if self.watch else None))
        try:
            await session.connect(paths.qmp_socket if self.watch else paths.ctl_socket)
            if not paused:
                await session.execute("cont")
        except QemuError as exc:
            await session.close()
            machine.expect_exit = True
            await terminate(machine.pid)
            self._note_exit(machine, expected=True, owner=True)
            raise QemuError(f"{machine.name}: QEMU started but its control socket failed ({exc})",
                            log_tail(paths.qemu_log)) from None
        if self.watch:
            machine.session = session
            self._spawn(self._follow(machine, session))
        else:
            await session.close()

    def _explain_launch_failure(self, machine: Machine, exc: QemuError) -> HvdeskError:
        text = str(exc)
        if 'Failed to get "write" lock' in text or "Failed to get shared" in text:
            image = text.split("using the image [", 1)[-1].split("]", 1)[0] if "[" in text else "a disk image"
            holder = self.holder_of(Path(image), exclude=machine)
            by = f" by VM {holder!r}" if holder else " by another process"
            return DiskInUseError(f"cannot start {machine.name!r}: disk image {image} is in use{by}")
        return QemuError(f"cannot start {machine.name!r}: {exc.args[0]}", exc.log_tail)

    def holder_of(self, image: Path, exclude: Machine | None = None) -> str | None:
        """Name of the VM in this library whose config uses `image`, if any."""
        for other in self._machines.values():
            if other is exclude or other.entry.config is None:
                continue
            if any(other.paths.resolve(d.path) == image for d in other.config.disks):
                return other.name
        return None

    async def stop(self, name: str, *, force: bool = False, timeout: float = 60.0) -> Machine:
        """Press the ACPI power button and wait for the guest to power off; with `force`, turn it
        off after `timeout` s (at once when timeout is 0)."""
        async with self.operate(name, "stop", VmState.RUNNING, VmState.PAUSED, VmState.STOPPING) as machine:
            if timeout > 0 and machine.state == VmState.PAUSED and not force:
                raise StateError(f"{machine.name!r} is paused, so its guest cannot see the power button: "
                                 "resume it first, or force it off")
            if timeout > 0 and machine.state != VmState.PAUSED:
                await self._press_power_button(machine)
                if await wait_gone(machine.pid, timeout):
                    await self._settle_exit(machine, expected=True)
                    return machine
                if not force:
                    self._set(machine, VmState.RUNNING)
                    raise StateError(f"{machine.name!r} did not power off within {timeout:g} s "
                                     "(the guest may ignore the power button); force it off to stop it")
            await self._force_off(machine)
            return machine

    async def shutdown(self, name: str) -> Machine:
        """Press the ACPI power button and return; the guest powers off in its own time."""
        async with self.operate(name, "shut down", VmState.RUNNING) as machine:
            await self._press_power_button(machine)
            return machine

    async def _press_power_button(self, machine: Machine) -> None:
        await self.command(machine, "system_powerdown")
        self._set(machine, VmState.STOPPING, "ACPI shutdown requested")

    async def _force_off(self, machine: Machine) -> None:
        """Pull the plug: QMP `quit` (QEMU exits cleanly), else SIGTERM, then SIGKILL."""
        machine.expect_exit = True
        pid = machine.pid
        try:
            await self.command(machine, "quit", timeout=3.0)
        except QemuError:
            pass
        if pid is not None and not await wait_gone(pid, QUIT_GRACE):
            await terminate(pid)
        await self._settle_exit(machine, expected=True)

    async def _settle_exit(self, machine: Machine, *, expected: bool) -> None:
        """The end of a stop, whose operation holds the VM."""
        await self._drop_session(machine)
        self._note_exit(machine, expected=expected, owner=True)

    async def pause(self, name: str) -> Machine:
        return await self._simple(name, "stop", VmState.PAUSED, (VmState.RUNNING,), "pause")

    async def resume(self, name: str) -> Machine:
        """Let the vCPUs run again. A VM stopped by a disk error retries the failed write at once
        and stops again if the error persists: then the resume failed, and says why."""
        async with self.operate(name, "resume", VmState.PAUSED) as machine:
            after_io_error = machine.reason == IO_ERROR
            await self.command(machine, "cont")
            self._set(machine, VmState.RUNNING)
            for delay in (0.05, 0.1, 0.2) if after_io_error else ():
                await asyncio.sleep(delay)
                status = (await self.command(machine, "query-status"))["status"]
                if status == "io-error":
                    self._set(machine, VmState.PAUSED, IO_ERROR)
                    raise StateError(f"{machine.name!r} stopped again at once: the disk error persists "
                                     "(is the host's disk full? free some space, then resume)")
            return machine

    async def reset(self, name: str) -> Machine:
        return await self._simple(name, "system_reset", None, (VmState.RUNNING, VmState.PAUSED), "reset")

    async def _simple(self, name: str, command: str, after: VmState | None,
                      allowed: tuple[VmState, ...], action: str) -> Machine:
        async with self.operate(name, action, *allowed) as machine:
            await self.command(machine, command)
            if after is not None:
                self._set(machine, after)
            return machine

    # -- helpers ---------------------------------------------------------------------------------

    async def refresh_state(self, machine: Machine, *, owner: bool = False) -> None:
        """Without a watcher, state may be stale: look again before acting. `owner`: the caller
        holds the VM (operate), so it may tidy what a dead QEMU left."""
        if not (self.watch and machine.session is not None):
            machine.entry = self.library.reload_if_changed(machine.entry)
            await self._inspect(machine, owner=owner)

    @contextlib.asynccontextmanager
    async def qmp(self, machine: Machine) -> AsyncIterator[QmpSession]:
        """The watcher's session if we hold one, else a short one on the command socket."""
        if machine.session is not None and machine.session.connected:
            yield machine.session
            return
        socket = machine.paths.ctl_socket
        if not socket.exists():  # its runtime folder was removed under it: nothing can connect
            raise QemuError(f"cannot reach the QEMU of {machine.name!r} (pid {machine.pid}): its control socket "
                            f"{socket} is gone (was its runtime folder removed?); stop --force turns it off")
        session = QmpSession(f"hvdesk-cli-{machine.name}")
        try:
            await session.connect(socket, timeout=5.0)
            yield session
        finally:
            await session.close()

    async def command(self, machine: Machine, command: str, arguments: dict | None = None,
                       timeout: float = 10.0) -> object:
        async with self.qmp(machine) as qmp:
            return await qmp.execute(command, arguments, timeout=timeout)

    def lock(self, machine: Machine) -> asyncio.Lock:
        """This process's lock on the VM (the file lock in `exclusive` covers other processes)."""
        return self._locks.setdefault(machine.entry.folder, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def exclusive(self, machine: Machine, doing: str) -> AsyncIterator[Machine]:
        """Hold the VM against every other change, in this process and in any other hvdesk."""
        async with self.lock(machine):
            folder = machine.entry.folder
            flock = FileLock(folder / LOCK_FILE, f"VM {machine.name!r}")
            try:
                await flock.acquire(doing)
            except FileNotFoundError:
                raise NotFoundError(f"VM {machine.name!r} was deleted or renamed meanwhile") from None
            try:
                yield machine
            finally:
                flock.release()

    @contextlib.asynccontextmanager
    async def operate(self, name: str, action: str, *allowed: VmState) -> AsyncIterator[Machine]:
        """The door of every operation that changes a VM: find it, hold it, look again at its
        state (another process may have changed it while we waited), and check `allowed`."""
        machine = self.get(name)
        async with self.exclusive(machine, action):
            await self.refresh_state(machine, owner=True)
            if allowed:
                machine.require(*allowed, action=action)
            yield machine

    def _try_hold(self, machine: Machine) -> FileLock | None:
        """The VM's file lock if nobody holds it now (None: another process is changing it)."""
        flock = FileLock(machine.entry.folder / LOCK_FILE, f"VM {machine.name!r}")
        try:
            return flock if flock.try_acquire("tidying up after QEMU") else None
        except (OSError, HvdeskError):
            return None

    def _set(self, machine: Machine, state: VmState, reason: str = "") -> None:
        if (machine.state, machine.reason) == (state, reason):
            return
        machine.state, machine.reason = state, reason
        self._emit(machine)

    def _emit(self, machine: Machine) -> None:
        for listener in list(self._listeners):
            try:
                listener(machine)
            except Exception:  # a faulty listener must not break the engine
                log.exception("state listener failed")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the library's own changes (hvdesk.engine.library_ops) -----------------------------------

    async def create(self, request: CreateRequest) -> Machine:
        return await library_ops.create(self, request)

    async def delete(self, name: str, *, keep_disks: bool = False) -> DeleteResult:
        return await library_ops.delete(self, name, keep_disks=keep_disks)

    def reload(self, machine: Machine) -> None:
        """Take the VM's saved config from disk (after an edit) and tell the listeners."""
        machine.entry = self.library.load(machine.entry.folder)
        self._library_stamp = self._scan_stamp()
        self._emit(machine)

    def moved(self, machine: Machine, folder: Path) -> None:
        """The VM's folder was renamed (a rename of the VM)."""
        self._machines.pop(machine.entry.folder, None)
        self._locks[folder] = self._locks.pop(machine.entry.folder, asyncio.Lock())
        machine.entry = self.library.load(folder)
        self._machines[folder] = machine

    def forget(self, machine: Machine) -> None:
        self._machines.pop(machine.entry.folder, None)
        self._library_stamp = self._scan_stamp()
        self._emit(machine)

    def adopt(self, entry: VmEntry) -> Machine:
        machine = Machine(entry)
        self._machines[entry.folder] = machine
        self._library_stamp = self._scan_stamp()
        self._emit(machine)
        return machine


def _same_vm(old: VmEntry, new: VmEntry) -> bool:
    if old.config is None or new.config is None:
        return old.config is None and new.config is None
    return old.config.uuid == new.config.uuid


def _shutdown_reason(reason: str) -> str:
    return {"guest-shutdown": "the guest is powering off", "host-qmp-quit": "turning off",
            "host-signal": "QEMU received a signal", "guest-reset": "the guest is resetting"}.get(reason, reason)
