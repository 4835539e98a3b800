"""Starting and stopping VMs: start, stop (power button, or off), shut down, pause, resume, reset.
Each goes through the guard, which holds the VM and checks the action against its state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hvdesk.core.errors import DiskInUseError, HvdeskError, QemuError, StateError
from hvdesk.engine import launch_plan, runtime, savestate
from hvdesk.engine.actions import Action
from hvdesk.engine.guard import Guard
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.states import IO_ERROR, VmState
from hvdesk.engine.watcher import Watcher
from hvdesk.qemu import cpu_weight, tpm
from hvdesk.qemu import transport as transports
from hvdesk.qemu.argv import HostSetup
from hvdesk.qemu.process import (
    LAUNCH_TIMEOUT,
    log_tail,
    spawn,
    spawn_detached,
    terminate,
    wait_gone,
    wait_launched,
    wait_ready,
)
from hvdesk.qemu.qmp import QmpSession
from hvdesk.qemu.transport import Endpoint, Transport

if TYPE_CHECKING:
    from hvdesk.qemu.accel import AccelChoice

QUIT_GRACE = 5.0  # seconds QEMU gets to exit after `quit` before it is killed
RESUME_CHECKS = (0.05, 0.1, 0.2)  # after a disk error, seconds between looks for a stop again
PORT_ATTEMPTS = 5  # tcp: starts on new ports when another program took one of ours first


class Lifecycle:
    def __init__(self, registry: Registry, watcher: Watcher, guard: Guard) -> None:
        self.registry = registry
        self.watcher = watcher
        self.guard = guard

    async def start(self, name: str, *, paused: bool = False, discard_saved_state: bool = False) -> Machine:
        """Launch QEMU for the VM; return when it runs (or waits, paused) and QMP answers. A saved
        VM resumes its saved state (engine/savestate.py), unless `discard_saved_state`."""
        async with self.guard.operate(name, Action.START) as machine:
            return await self.start_held(machine, paused=paused, discard_saved_state=discard_saved_state)

    async def start_held(self, machine: Machine, *, paused: bool = False,
                         discard_saved_state: bool = False) -> Machine:
        """start, for an operation that holds the VM already (a snapshot's restore)."""
        paths = machine.paths
        saved = None
        if machine.state == VmState.SAVED and not discard_saved_state:
            saved = savestate.read_info(machine)
        else:
            savestate.discard(paths)  # asked to, or what a save that was cut short left
        view = savestate.saved_view(machine, saved) if saved is not None else machine
        config = view.config
        paused = paused or (saved is not None and saved.paused)
        # QEMU takes the state file over a unix socket only (a saved VM was saved over one)
        kind = "unix" if saved is not None else transports.default_kind()
        await launch_plan.check_images(view)
        # A first start probes the accelerator and asks QEMU its version: off the event loop then.
        if launch_plan.is_quick(view):
            host, choice = launch_plan.plan(view)
        else:
            host, choice = await asyncio.to_thread(launch_plan.plan, view)
        runtime.prepare_run_dir(paths)
        runtime.prepare_logs(paths)
        previous = machine.state
        self.registry.set_state(machine, VmState.STARTING)
        try:
            if config.tpm:  # before QEMU, which connects to its socket at start-up
                await tpm.launch(paths.tpm_state, paths.tpm_socket, paths.tpm_pidfile,
                                 paths.qemu_log.with_name("swtpm.log"))
            session = await self._launch(machine, host, choice, kind, paused, view,
                                         incoming=saved is not None)
        except QemuError as exc:
            launch_plan.stop_swtpm(paths)
            runtime.remove_run_dir(paths)
            self.registry.set_state(machine, previous, machine.reason)
            raise self._explain_launch_failure(machine, exc) from None
        await self._connect_and_go(machine, session, paused, restore=saved is not None)
        if saved is not None:
            savestate.discard(paths)  # resumed: the guest has moved on from it
        runtime.clear_aborted(paths)
        self.registry.set_state(machine, VmState.PAUSED if paused else VmState.RUNNING)
        return machine

    async def _launch(self, machine: Machine, host: HostSetup, choice: AccelChoice, kind: str,
                      paused: bool, view: Machine, *, incoming: bool = False) -> QmpSession:
        """Run QEMU until it is set up. With tcp, another program may take a port between our pick
        and QEMU's bind: then again on new ports, a few times, and the error says so."""
        paths = machine.paths
        attempt = 1
        while True:
            link = transports.new(kind, paths)
            argv = launch_plan.argv(view, host, link) + (["-incoming", "defer"] if incoming else [])
            run = runtime.RunInfo(0, choice.name, choice.reason, time.time(), argv, view.config.to_dict(),
                                  paused, link.to_dict())
            runtime.write_run_info(paths, run)  # pid 0: other hvdesk processes see a start under way
            try:
                machine.pid, session = await self._run_qemu(machine, argv, link)
                break
            except QemuError as exc:
                if not (link.kind == "tcp" and transports.port_taken(exc.args[0])):
                    raise
                if attempt == PORT_ATTEMPTS:
                    raise QemuError(f"QEMU could not listen on {transports.HOST}: the free ports picked for it "
                                    f"were taken by the time it started, in all {PORT_ATTEMPTS} tries ({exc.args[0]})",
                                    exc.log_tail) from None
            attempt += 1
            paths.qemu_log.write_bytes(b"")  # that attempt's error is answered by the next one
        run.pid = machine.pid
        runtime.write_run_info(paths, run)
        machine.run = run
        return session

    async def _run_qemu(self, machine: Machine, argv: list[str], link: Transport) -> tuple[int, QmpSession]:
        """QEMU's pid once it is set up, and a QMP session for it (connected when the launch needed
        it to tell that QEMU is set up)."""
        paths = machine.paths
        if link.daemonize:
            qemu = await spawn(argv)
            session = self.watcher.event_session(machine)  # loads the QMP client while QEMU sets itself up
            return await wait_launched(qemu, paths.pidfile, paths.qemu_log), session
        child = spawn_detached(argv, paths.qemu_log)
        session = self.watcher.event_session(machine)
        try:
            ready = session.connect(self._session_end(link), timeout=LAUNCH_TIMEOUT)  # it exits sooner on errors
            return await wait_ready(child, paths.pidfile, paths.qemu_log, ready), session
        except QemuError:
            await session.close()
            raise

    def _session_end(self, link: Transport) -> Endpoint:
        return link.qmp if self.watcher.watch else link.ctl

    async def _connect_and_go(self, machine: Machine, session: QmpSession, paused: bool, *,
                              restore: bool = False) -> None:
        paths = machine.paths
        loading = False
        try:
            if not session.connected:
                await session.connect(self._session_end(machine.transport))
            if restore:
                loading = True
                await savestate.restore(session, paths)
                loading = False
            if not paused:
                await session.execute("cont")
        except HvdeskError as exc:
            await session.close()
            machine.expect_exit = True
            if machine.pid is not None:
                await terminate(machine.pid)
            self.watcher.note_exit(machine, expected=True, owner=True)  # saved still, when the load failed
            if loading:
                raise QemuError(f"cannot resume the saved state of {machine.name!r}: {exc}; the saved state is "
                                f"kept ({paths.saved_state}); `hvdesk start {machine.name} --discard-saved-state` "
                                "boots it afresh instead (the saved state is lost)", log_tail(paths.qemu_log)) from None
            raise QemuError(f"{machine.name}: QEMU started but its control socket failed ({exc})",
                            log_tail(paths.qemu_log)) from None
        if self.watcher.watch:
            self.watcher.follow(machine, session)
        else:
            await session.close()

    def _explain_launch_failure(self, machine: Machine, exc: QemuError) -> HvdeskError:
        text = str(exc)
        if 'Failed to get "write" lock' in text or "Failed to get shared" in text:
            image = text.split("using the image [", 1)[-1].split("]", 1)[0] if "[" in text else "a disk image"
            holder = self.registry.holder_of(Path(image), exclude=machine)
            by = f" by VM {holder!r}" if holder else " by another process"
            return DiskInUseError(f"cannot start {machine.name!r}: disk image {image} is in use{by}")
        return QemuError(f"cannot start {machine.name!r}: {exc.args[0]}", exc.log_tail)

    async def stop(self, name: str, *, force: bool = False, timeout: float = 60.0) -> Machine:
        """Press the ACPI power button and wait for the guest to power off; with `force`, turn it
        off after `timeout` s (at once when timeout is 0)."""
        async with self.guard.operate(name, Action.STOP) as machine:
            if timeout > 0 and machine.state == VmState.PAUSED and not force:
                raise StateError(f"{machine.name!r} is paused, so its guest cannot see the power button: "
                                 "resume it first, or force it off")
            if timeout > 0 and machine.state != VmState.PAUSED:
                await self._press_power_button(machine)
                if machine.pid is not None and await wait_gone(machine.pid, timeout):
                    await self._settle_exit(machine)
                    return machine
                if not force:
                    self.registry.set_state(machine, VmState.RUNNING)
                    raise StateError(f"{machine.name!r} did not power off within {timeout:g} s "
                                     "(the guest may ignore the power button); force it off to stop it")
            await self.force_off_held(machine)
            return machine

    async def shutdown(self, name: str) -> Machine:
        """Press the ACPI power button and return; the guest powers off in its own time."""
        async with self.guard.operate(name, Action.SHUTDOWN) as machine:
            await self._press_power_button(machine)
            return machine

    async def _press_power_button(self, machine: Machine) -> None:
        await self.watcher.command(machine, "system_powerdown")
        self.registry.set_state(machine, VmState.STOPPING, "ACPI shutdown requested")

    async def turn_off(self, machine: Machine) -> None:
        """End the QEMU of a VM the caller holds (the guard): a save, once its state is written."""
        await self.force_off_held(machine)

    async def force_off_held(self, machine: Machine) -> None:
        """Pull the plug: QMP `quit` (QEMU exits cleanly), else SIGTERM, then SIGKILL. (Also for
        operations that hold the VM already: a snapshot's restore.)"""
        machine.expect_exit = True
        pid = machine.pid
        try:
            await self.watcher.command(machine, "quit", timeout=3.0)
        except QemuError:
            pass
        if pid is not None and not await wait_gone(pid, QUIT_GRACE):
            await terminate(pid)
        await self._settle_exit(machine)

    async def _settle_exit(self, machine: Machine) -> None:
        """The end of a stop, whose operation holds the VM."""
        await self.watcher.drop_session(machine)
        self.watcher.note_exit(machine, expected=True, owner=True)
        await release_cpu_groups(machine)

    async def pause(self, name: str) -> Machine:
        async with self.guard.operate(name, Action.PAUSE) as machine:
            await self.watcher.command(machine, "stop")
            self.registry.set_state(machine, VmState.PAUSED)
            return machine

    async def resume(self, name: str) -> Machine:
        """Let the vCPUs run again. A VM stopped by a disk error retries the failed write at once
        and stops again if the error persists: then the resume failed, and says why."""
        async with self.guard.operate(name, Action.RESUME) as machine:
            after_io_error = machine.reason == IO_ERROR
            await self.watcher.command(machine, "cont")
            self.registry.set_state(machine, VmState.RUNNING)
            for delay in RESUME_CHECKS if after_io_error else ():
                await asyncio.sleep(delay)
                status = (await self.watcher.command(machine, "query-status"))["status"]
                if status == "io-error":
                    self.registry.set_state(machine, VmState.PAUSED, IO_ERROR)
                    raise StateError(f"{machine.name!r} stopped again at once: the disk error persists "
                                     "(is the host's disk full? free some space, then resume)")
            return machine

    async def reset(self, name: str) -> Machine:
        async with self.guard.operate(name, Action.RESET) as machine:
            await self.watcher.command(machine, "system_reset")
            return machine


async def release_cpu_groups(machine: Machine, timeout: float = 2.0) -> None:
    """Remove the VM's CPU-shares cgroups once QEMU's exiting threads have left them (they may
    still be listed for a moment after its pid is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if not cpu_weight.release(machine.uuid) or loop.time() >= deadline:
            return
        await asyncio.sleep(0.05)
