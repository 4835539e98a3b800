"""The engine over a QEMU that misbehaves on QMP (the fake QMP server on the VM's sockets, a
stand-in process as its QEMU): a refused command, the connection closing mid-command, a command
that never answers, garbage. Through the CLI each is one line on stderr and exit 1; a watching
Manager keeps following the VM."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from hvdesk.core.errors import QemuError
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState
from tests.fakes.fake_qemu import FakeQemu
from tests.fakes.qmp_server import Answer, Garbage, Hang, Hangup, Refuse, Send, status_reply
from tests.unit.conftest import VM_NAME

NAME = VM_NAME


@pytest.fixture
async def qemu(vm) -> AsyncIterator[FakeQemu]:
    """The VM "running": its pidfile names a live stand-in process, the fake answers on its sockets."""
    fake = FakeQemu(vm)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def engines(hv_home) -> AsyncIterator:
    made: list[Manager] = []

    async def make(**options) -> Manager:
        manager = Manager(**options)
        await manager.open()
        made.append(manager)
        return manager
    yield make
    for manager in made:
        await manager.close()


async def hvdesk(*args: str) -> tuple[int, str, str]:
    """The CLI in its own process, as a user runs it (the fake keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hvdesk", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def one_line(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err and "unexpected error" not in err, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hvdesk: "), err
    return lines[0]


# -- the CLI: one clear line ------------------------------------------------------------------------

@pytest.mark.parametrize("verb, command, behaviour, expected", [
    ("pause", "stop", Refuse("Migration is in progress", "GenericError"),
     "hvdesk: QEMU refused stop: Migration is in progress"),
    ("reset", "system_reset", Hangup(),
     "hvdesk: lost the connection to QEMU during system_reset (QEMU closed the connection)"),
    ("pause", "stop", Hangup(b'{"return": {}, "id": '),
     "hvdesk: lost the connection to QEMU during stop (Failed to deserialize QMP message: "
     "b'{\"return\": {}, \"id\": ')"),
    ("pause", "stop", Garbage(b"\x00\xffgarbage\n"),
     "hvdesk: lost the connection to QEMU during stop (Failed to deserialize QMP message: b'\\x00\\xffgarbage\\n')"),
    ("pause", "stop", Send({"retrun": {}}),
     "hvdesk: QEMU sent a malformed reply to stop (QMP reply is missing a 'error' or 'return' member: "
     "{\"retrun\": {}, \"id\": 0})"),
    ("reset", "system_reset", Garbage(b"x" * (11 * 1024 * 1024)),  # an endless line: qemu.qmp reads 10 MiB
     "hvdesk: lost the connection to QEMU during system_reset (ValueError: Separator is not found, "
     "and chunk exceed the limit)"),
], ids=["refused", "closed mid-command", "closed mid-reply", "garbage", "malformed reply", "endless line"])
async def test_the_cli_reports_a_misbehaving_qemu_in_one_line(qemu, verb, command, behaviour, expected):
    qemu.server.behave(command, behaviour)
    code, _out, err = await hvdesk(verb, NAME)
    assert one_line(code, err) == expected
    assert qemu.server.commands("ctl.sock").count(command) == 1  # on the command socket, once


async def test_the_cli_gives_up_on_a_command_that_never_answers(qemu):
    """The CLI's commands wait 10 s (Manager.command's default): this test takes that long."""
    qemu.server.behave("system_reset", Hang())
    start = asyncio.get_running_loop().time()
    code, _out, err = await hvdesk("reset", NAME)
    assert one_line(code, err) == "hvdesk: QEMU did not answer system_reset within 10 s"
    assert asyncio.get_running_loop().time() - start < 20


async def test_info_on_a_qemu_that_refuses_query_status_says_so(qemu):
    qemu.server.behave("query-status", Refuse("not now"))
    code, out, err = await hvdesk("info", NAME)
    assert code == 0, err
    assert "State:       running (QEMU is not answering: QEMU refused query-status: not now)" in out


# -- the engine's API ----------------------------------------------------------------------------------

async def test_a_refused_pause_raises_and_leaves_the_vm_running(qemu, engines):
    manager = await engines()
    qemu.server.behave("stop", Refuse("Migration is in progress"))
    with pytest.raises(QemuError, match=r"^QEMU refused stop: Migration is in progress$"):
        await manager.pause(NAME)
    assert manager.get(NAME).state == VmState.RUNNING


async def test_a_command_that_never_answers_ends_at_its_timeout(qemu, engines):
    manager = await engines()
    qemu.server.behave("system_powerdown", Hang())
    machine = manager.get(NAME)
    start = asyncio.get_running_loop().time()
    with pytest.raises(QemuError, match=r"^QEMU did not answer system_powerdown within 0.4 s$"):
        await manager.command(machine, "system_powerdown", timeout=0.4)
    assert 0.4 <= asyncio.get_running_loop().time() - start < 2.0


async def test_a_watcher_attaches_to_the_event_socket_and_follows_events(qemu, engines):
    watcher = await engines(watch=True, poll_interval=60)
    machine = watcher.get(NAME)
    assert machine.state == VmState.RUNNING and machine.session is not None
    assert qemu.server.commands("qmp.sock") == ["qmp_capabilities", "query-status"]
    await qemu.server.send_event("STOP", {})
    await watcher.command(machine, "query-status")  # its reply comes after the event: the event is handled
    assert machine.state == VmState.PAUSED


async def test_a_malformed_event_does_not_stop_a_watcher_following_the_vm(qemu, engines):
    watcher = await engines(watch=True, poll_interval=60)
    machine = watcher.get(NAME)
    await qemu.server.send_event("BLOCK_IO_ERROR", "not an object")
    await qemu.server.send_event("STOP", {})
    await watcher.command(machine, "query-status")
    assert machine.session is not None and machine.session.connected
    assert (machine.state, machine.reason) == (VmState.PAUSED, "")


async def test_a_watcher_refused_query_status_shows_the_vm_running_with_the_reason(qemu, engines):
    qemu.server.behave("query-status", Refuse("not now"))
    watcher = await engines(watch=True, poll_interval=60)
    machine = watcher.get(NAME)
    assert machine.session is None  # it fell back to the command socket, which refused as well
    assert (machine.state, machine.reason) == (
        VmState.RUNNING, "QEMU is not answering: QEMU refused query-status: not now")


async def test_an_event_right_after_the_attach_status_is_not_overwritten_by_it(qemu, engines):
    """QEMU answers the watcher's first query-status "running", and the VM is paused (by another
    process) at once: the STOP event follows the reply on the same socket. The watcher must end
    up paused; the status it asked for is older than the event."""
    qemu.server.behave("query-status", Answer(status_reply("running"), events_after=[("STOP", {})]))
    watcher = await engines(watch=True, poll_interval=60)
    machine = watcher.get(NAME)
    qemu.server.set_status("paused")
    await watcher.command(machine, "query-status")  # a barrier: every event before its reply is handled
    assert machine.state == VmState.PAUSED


async def test_a_watcher_whose_event_socket_drops_while_qemu_runs_does_not_call_it_stopped(qemu, engines):
    """QEMU's monitor connection ends but the process runs on (a monitor that went away, garbage
    that made qemu.qmp drop the session). The VM still runs: it must not be shown stopped, and
    its runtime folder (pidfile, sockets) must stay, or nothing can reach that QEMU again."""
    watcher = await engines(watch=True, poll_interval=0.2)
    machine = watcher.get(NAME)
    await qemu.server.hang_up(socket="qmp.sock")
    await asyncio.sleep(6.0)  # the watcher waits up to 5 s for a process whose socket closed to end
    assert qemu.process is not None and qemu.process.poll() is None  # "QEMU" still runs
    seen = (machine.state, machine.reason, qemu.paths.pidfile.exists(), qemu.paths.ctl_socket.exists())
    assert seen == (VmState.RUNNING, "", True, True)
    fresh = await engines()  # and another hvdesk (the CLI) still finds it running
    assert fresh.get(NAME).state == VmState.RUNNING
