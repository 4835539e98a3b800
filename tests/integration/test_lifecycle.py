"""Lifecycle of real VMs through the engine: boot, pause/resume, ACPI and forced stop, reset,
a killed QEMU, and adoption by a new engine."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from hvdesk.core.errors import StateError
from hvdesk.engine.states import VmState
from hvdesk.qemu.process import is_alive
from tests.guest.build import POWEROFF_MARKER
from tests.integration.conftest import qmp_call, wait_for_serial, wait_until

pytestmark = pytest.mark.qemu


async def query_status(machine) -> str:
    return (await qmp_call(machine, "query-status"))["status"]


async def test_boot_to_marker_and_acpi_stop(manager, guest_request, tiny_guest):
    await manager.create(guest_request("boot"))
    machine = await manager.start("boot")
    assert machine.state == VmState.RUNNING and is_alive(machine.pid)
    assert machine.run.accel == "tcg"
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    assert await query_status(machine) == "running"
    # sockets and logs are private to the user
    assert stat.S_IMODE(machine.paths.run_dir.stat().st_mode) == 0o700
    for private in (machine.paths.serial_log, machine.paths.qemu_log):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600

    pid = machine.pid
    await manager.stop("boot", timeout=60)  # the guest's acpid powers it off
    assert machine.state == VmState.STOPPED and machine.reason == ""
    assert not is_alive(pid)
    assert POWEROFF_MARKER in machine.paths.serial_log.read_text()
    assert not machine.paths.run_dir.exists()


async def test_pause_resume_and_reset(manager, guest_request, tiny_guest):
    await manager.create(guest_request("pr"))
    machine = await manager.start("pr")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    await manager.pause("pr")
    assert machine.state == VmState.PAUSED and await query_status(machine) == "paused"
    with pytest.raises(StateError, match="cannot pause 'pr': it is paused"):
        await manager.pause("pr")
    with pytest.raises(StateError, match="paused, so its guest cannot see the power button"):
        await manager.stop("pr")
    await manager.resume("pr")
    assert machine.state == VmState.RUNNING and await query_status(machine) == "running"
    await manager.reset("pr")  # a hard reset reboots the guest: the marker comes a second time
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker, count=2)
    assert machine.state == VmState.RUNNING


async def test_start_paused(manager, guest_request):
    await manager.create(guest_request("sp"))
    machine = await manager.start("sp", paused=True)
    assert machine.state == VmState.PAUSED and await query_status(machine) == "prelaunch"
    await manager.resume("sp")
    assert await query_status(machine) == "running"


async def test_force_off_at_once_and_after_timeout(manager, guest_request, tiny_guest):
    # hvdesk.noacpi=1: the guest runs no acpid, so it ignores the power button.
    await manager.create(guest_request("deaf", append=tiny_guest.append + " hvdesk.noacpi=1"))
    machine = await manager.start("deaf")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    with pytest.raises(StateError, match="did not power off within 2 s"):
        await manager.stop("deaf", timeout=2)
    assert machine.state == VmState.RUNNING
    pid = machine.pid
    await manager.stop("deaf", force=True, timeout=1)
    assert machine.state == VmState.STOPPED and not is_alive(pid)

    await manager.start("deaf")
    await manager.stop("deaf", force=True, timeout=0)
    assert machine.state == VmState.STOPPED and machine.reason == ""


async def test_killed_qemu_is_aborted_with_log_kept(manager, engines, guest_request, tiny_guest):
    await manager.create(guest_request("victim"))
    machine = await manager.start("victim")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    os.kill(machine.pid, signal.SIGKILL)
    await wait_until(lambda: not is_alive(machine.pid), what="QEMU to die")

    fresh = await engines()  # a new engine, as after an app restart, finds it aborted
    found = fresh.get("victim")
    assert found.state == VmState.ABORTED
    assert "ended without a clean exit" in found.reason and str(found.paths.qemu_log) in found.reason
    assert found.paths.serial_log.read_text().count(tiny_guest.marker) == 1  # the logs are kept
    assert not found.paths.run_dir.exists()  # stale sockets and pidfile are cleaned up

    again = await engines()  # still aborted for the next one, until it is started again
    assert again.get("victim").state == VmState.ABORTED
    await again.start("victim")
    assert again.get("victim").state == VmState.RUNNING and again.get("victim").reason == ""
    await again.stop("victim", force=True, timeout=0)


async def test_watching_engine_follows_events_and_a_kill(engines, guest_request):
    watcher = await engines(watch=True, poll_interval=0.2)
    changes = []
    watcher.subscribe(lambda m: changes.append((m.name, str(m.state))))
    await watcher.create(guest_request("w"))
    machine = await watcher.start("w")  # QEMU's events, not the guest's: no need to wait for its boot

    cli = await engines()  # another process's engine (the CLI) pauses it: the watcher hears STOP
    await cli.pause("w")
    await wait_until(lambda: machine.state == VmState.PAUSED, 5, "STOP event")
    await cli.resume("w")
    await wait_until(lambda: machine.state == VmState.RUNNING, 5, "RESUME event")

    os.kill(machine.pid, signal.SIGKILL)
    await wait_until(lambda: machine.state == VmState.ABORTED, 10, "aborted after kill -9")
    assert ("w", "paused") in changes and ("w", "aborted") in changes


async def test_new_engine_adopts_running_vm(engines, guest_request, tiny_guest):
    first = await engines(watch=True)
    await first.create(guest_request("adopt"))
    machine = await first.start("adopt")
    pid = machine.pid
    await first.close()  # the app exits; the VM must keep running
    assert is_alive(pid)

    second = await engines(watch=True, poll_interval=0.2)
    adopted = second.get("adopt")
    assert adopted.state == VmState.RUNNING and adopted.pid == pid and adopted.session is not None
    await wait_for_serial(adopted.paths.serial_log, tiny_guest.marker)
    await second.stop("adopt", timeout=60)  # through the adopted session, guest powers off
    assert adopted.state == VmState.STOPPED and not is_alive(pid)


async def test_watcher_sees_vm_started_elsewhere(engines, guest_request):
    watcher = await engines(watch=True, poll_interval=0.2)
    cli = await engines()
    await cli.create(guest_request("elsewhere"))
    await wait_until(lambda: any(m.name == "elsewhere" for m in watcher.machines()), 5, "new VM listed")
    await cli.start("elsewhere")
    machine = watcher.get("elsewhere")
    await wait_until(lambda: machine.state == VmState.RUNNING and machine.session is not None, 5,
                     "watcher to adopt the VM")
    await cli.stop("elsewhere", force=True, timeout=0)
    await wait_until(lambda: machine.state == VmState.STOPPED, 5, "watcher to see it stopped")
