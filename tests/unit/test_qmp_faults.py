"""QmpSession against a QEMU that misbehaves (the fake QMP server): a refused command, the
connection closing mid-command, a command that never answers, garbage, malformed events. Each
ends in one QemuError line that says what happened, within its timeout, and the session can
still be closed cleanly; what QEMU sent is never echoed in full."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hvdesk.core.errors import QemuError
from hvdesk.qemu.qmp import QmpSession
from tests.fakes.qmp_server import Answer, FakeQmpServer, Garbage, Hang, Hangup, Refuse, Send


class Client:
    """A QmpSession that records the events it is handed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.session = QmpSession("test", on_event=lambda name, data, _stamp: self.events.append((name, data)))

    async def connect(self, server: FakeQmpServer, timeout: float = 2.0) -> Client:
        await self.session.connect(server.sockets[0], timeout=timeout)
        return self


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    made = Client()
    yield made
    await made.session.close()  # never raises, whatever ended the session


async def failure(call, within: float) -> str:
    """The one-line QemuError `call` ends in, no later than `within` s."""
    start = time.monotonic()
    with pytest.raises(QemuError) as caught:
        await asyncio.wait_for(call, within + 2.0)
    assert time.monotonic() - start < within, f"took {time.monotonic() - start:.2f} s"
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


async def test_answers_and_events_arrive_in_the_order_sent(server, client):
    server.behave("stop", Answer(events_before=[("STOP", {})]))
    await client.connect(server)
    assert await client.session.execute("stop") == {}
    assert client.events == [("STOP", {})]  # handed over before the reply that followed it
    assert server.commands() == ["qmp_capabilities", "stop"]


async def test_a_refused_command_says_qemus_reason_and_the_session_goes_on(server, client):
    server.behave("eject", Refuse("Device 'cd9' not found", "DeviceNotFound"))
    await client.connect(server)
    message = await failure(client.session.execute("eject", {"id": "cd9"}), 1.0)
    assert message == "QEMU refused eject: Device 'cd9' not found"
    assert client.session.connected
    assert (await client.session.execute("query-status"))["status"] == "running"


@pytest.mark.parametrize("partial", [b"", b'{"return": {'], ids=["silent", "half a reply"])
async def test_the_connection_closing_mid_command_is_lost_connection(server, client, partial):
    server.behave("cont", Hangup(partial))
    await client.connect(server)
    message = await failure(client.session.execute("cont"), 1.0)
    assert message.startswith("lost the connection to QEMU during cont (")
    assert not client.session.connected
    await asyncio.wait_for(client.session.wait_closed(), 1.0)


async def test_a_command_after_the_connection_closed_fails_at_once(server, client):
    await client.connect(server)
    await server.hang_up()
    await asyncio.wait_for(client.session.wait_closed(), 1.0)
    message = await failure(client.session.execute("query-status"), 1.0)
    assert message.startswith("lost the connection to QEMU during query-status (")


async def test_a_command_that_never_answers_times_out_saying_how_long(server, client):
    server.behave("system_powerdown", Hang())
    await client.connect(server)
    start = time.monotonic()
    message = await failure(client.session.execute("system_powerdown", timeout=0.3), 1.0)
    assert time.monotonic() - start >= 0.3
    assert message == "QEMU did not answer system_powerdown within 0.3 s"


async def test_a_late_reply_is_not_taken_for_the_next_commands(server, client):
    server.behave("query-status", Answer({"status": "paused"}, delay=0.4))
    await client.connect(server)
    await failure(client.session.execute("query-status", timeout=0.1), 1.0)
    server.behave("query-status", Answer({"status": "running"}))
    # the late "paused" reply carries the first command's id: it must not answer this one
    assert (await client.session.execute("query-status"))["status"] == "running"
    await asyncio.sleep(0.4)
    assert (await client.session.execute("query-status"))["status"] == "running"


@pytest.mark.parametrize("garbage", [
    b"this is not json\n",
    b"[1, 2, 3]\n",  # JSON, but not a QMP message
    b'{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n',  # an error that names no command
    b"x" * (11 * 1024 * 1024),  # a line longer than qemu.qmp's 10 MiB buffer, never ended
], ids=["not json", "not an object", "error without id", "endless line"])
async def test_garbage_instead_of_a_reply_ends_the_command_clearly(server, client, garbage):
    server.behave("query-status", Garbage(garbage))
    await client.connect(server)
    message = await failure(client.session.execute("query-status"), 2.0)
    assert message.startswith("lost the connection to QEMU during query-status (")
    assert "Disconnected" not in message  # says why, not just that it happened


async def test_a_reply_with_neither_return_nor_error_is_malformed_not_a_lost_connection(server, client):
    server.behave("query-status", Send({"retrun": {"status": "running"}}))
    await client.connect(server)
    message = await failure(client.session.execute("query-status"), 1.0)
    assert message.startswith("QEMU sent a malformed reply to query-status")
    assert client.session.connected  # nothing wrong with the connection itself
    server.behave("query-status", Answer({"status": "running"}))
    assert (await client.session.execute("query-status"))["status"] == "running"


@pytest.mark.parametrize("event", [
    {"event": "STOP", "data": "oops", "timestamp": {"seconds": 1, "microseconds": 0}},
    {"event": "STOP", "timestamp": 5},
    {"event": "STOP", "data": {}, "timestamp": {"seconds": "soon"}},
], ids=["data not an object", "timestamp not an object", "seconds not a number"])
async def test_a_malformed_event_is_handed_over_as_well_as_it_can_be_and_the_session_lives(server, client, event):
    server.behave("stop", Answer(events_before=[event]))
    await client.connect(server)
    assert await client.session.execute("stop") == {}
    assert client.events == [("STOP", {})]
    assert client.session.connected


async def test_an_event_handler_that_fails_does_not_end_the_session(server):
    def broken(name: str, data: dict, stamp: float) -> None:
        raise RuntimeError("a bug in the handler")

    session = QmpSession("test", on_event=broken)
    await session.connect(server.sockets[0], timeout=2.0)
    try:
        await server.send_event("STOP", {})
        assert (await session.execute("query-status"))["status"] == "running"
        assert session.connected
    finally:
        await session.close()


async def test_a_greeting_that_is_not_qmp_fails_the_connect_at_once(server, client):
    server.greeting = b"SSH-2.0-OpenSSH_9.2\r\n"
    message = await failure(client.connect(server, timeout=5.0), 1.0)
    assert message.startswith(f"QEMU's control socket {server.sockets[0]} does not speak QMP (")
    assert "SSH-2.0" in message


async def test_a_socket_that_never_greets_times_out_saying_how_long(server, client):
    server.greeting = None
    message = await failure(client.connect(server, timeout=0.5), 1.5)
    assert message == f"QEMU's control socket {server.sockets[0]} did not answer within 0.5 s"


async def test_a_socket_nobody_listens_on_times_out_naming_the_error(client):
    missing = Path(tempfile.gettempdir()) / "hvdesk-no-such-dir" / "qmp.sock"
    session = client.session
    message = await failure(session.connect(missing, timeout=0.3), 1.5)
    assert message.startswith(f"QEMU's control socket {missing} did not answer within 0.3 s (")
    assert "No such file or directory" in message
