"""hvdesk's lean QMP command path (hvdesk.qemu.qmp_client, qmp_replies) against the fake QMP server:
each reply reaches the command it answers - several commands in flight, events between and around
replies, a reply in pieces, a reply that comes after its command gave up - and the end of a session
ends every command waiting on it. The error paths one command at a time are in test_qmp_faults.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hvdesk.core.errors import QemuError
from hvdesk.qemu.qmp import QmpSession
from tests.fakes.qmp_server import Answer, Behaviour, Connection, Hang, Refuse, event_message


@dataclass
class Events:
    seen: list[str] = field(default_factory=list)

    def __call__(self, name: str, _data: dict, _stamp: float) -> None:
        self.seen.append(name)


@pytest.fixture
async def events() -> Events:
    return Events()


@pytest.fixture
async def session(server, events) -> AsyncIterator[QmpSession]:
    made = QmpSession("test", on_event=events)
    await made.connect(server.sockets[0], timeout=2.0)
    yield made
    await made.close()


@dataclass
class IdsSeen(Behaviour):
    """Answer `value` (after `delay` s), noting the id each request carried."""

    value: object
    delay: float = 0.0
    ids: list[object] = field(default_factory=list)

    async def perform(self, connection: Connection, request: dict) -> bool:
        self.ids.append(request.get("id"))
        return await Answer(self.value, delay=self.delay).perform(connection, request)


@dataclass(frozen=True)
class InPieces(Behaviour):
    """The reply written in two parts, `pause` s apart (a reply larger than one read, say)."""

    value: object
    pause: float = 0.05

    async def perform(self, connection: Connection, request: dict) -> bool:
        wire = json.dumps({"return": self.value, "id": request["id"]}).encode() + b"\r\n"
        for part in (wire[:10], wire[10:]):
            connection.write(part)
            await connection.flush()
            await asyncio.sleep(self.pause)
        return True


@dataclass(frozen=True)
class GarbageThenReply(Behaviour):
    """`garbage` with no line end, then (in a later write) a well-formed reply."""

    garbage: bytes
    value: object

    async def perform(self, connection: Connection, request: dict) -> bool:
        connection.write(self.garbage)
        await connection.flush()
        await asyncio.sleep(0.05)
        return await Answer(self.value).perform(connection, request)


@dataclass(frozen=True)
class EventWhileBusy(Behaviour):
    """An event on its own, then (later) the reply: the event must not be lost or overtaken."""

    value: object
    event: str = "RTC_CHANGE"

    async def perform(self, connection: Connection, request: dict) -> bool:
        connection.write(event_message(self.event, {"offset": 1}))
        await connection.flush()
        await asyncio.sleep(0.05)
        return await Answer(self.value).perform(connection, request)


@dataclass(frozen=True)
class HangupAfter(Behaviour):
    """Hold the command `delay` s (others sent meanwhile wait behind it), then close the connection."""

    delay: float

    async def perform(self, connection: Connection, request: dict) -> bool:
        await asyncio.sleep(self.delay)
        connection.hang_up()
        return False


async def test_commands_in_flight_together_each_get_their_own_reply(server, session):
    server.behave("query-status", Answer({"status": "paused"}, delay=0.1))  # the others queue behind it
    server.behave("query-name", Answer({"name": "vm"}))
    server.behave("query-kvm", Answer({"enabled": False, "present": False}))
    results = await asyncio.gather(session.execute("query-status"), session.execute("query-name"),
                                   session.execute("query-kvm"))
    assert results == [{"status": "paused"}, {"name": "vm"}, {"enabled": False, "present": False}]


async def test_events_around_and_between_replies_come_in_the_order_sent(server, session, events):
    server.behave("stop", Answer(events_before=[("STOP", {})], events_after=[("RESUME", {})]))
    server.behave("query-name", EventWhileBusy({"name": "vm"}))
    assert await session.execute("stop") == {}
    assert events.seen[:1] == ["STOP"]  # handed over before the reply that followed it (RESUME may be too)
    assert await session.execute("query-name") == {"name": "vm"}
    assert events.seen == ["STOP", "RESUME", "RTC_CHANGE"]
    await server.send_event("SHUTDOWN")  # and with no command waiting
    await session.execute("query-status")
    assert events.seen == ["STOP", "RESUME", "RTC_CHANGE", "SHUTDOWN"]


async def test_a_reply_in_pieces_reaches_its_command(server, session):
    server.behave("query-name", InPieces({"name": "in pieces"}))
    assert await session.execute("query-name") == {"name": "in pieces"}
    assert (await session.execute("query-status"))["status"] == "running"  # and the stream is still in step


async def test_a_good_reply_completing_a_garbage_line_is_not_taken_for_an_answer(server, session):
    """QEMU's stream is one line per message: the line here is `[{...}`, which is no QMP message,
    even though its second half alone would be a fine reply."""
    server.behave("query-name", GarbageThenReply(b"[", {"name": "vm"}))
    with pytest.raises(QemuError, match="^lost the connection to QEMU during query-name"):
        await session.execute("query-name")


async def test_a_command_that_gave_up_keeps_its_id_until_its_late_reply_came(server, session):
    slow = IdsSeen({"status": "paused"}, delay=0.3)
    quick = IdsSeen({"name": "vm"})
    server.behave("query-status", slow)
    server.behave("query-name", quick)
    with pytest.raises(QemuError, match="did not answer query-status within 0.1 s"):
        await session.execute("query-status", timeout=0.1)
    # The fake answers in order, so this waits behind the late reply, which must not answer it.
    assert await session.execute("query-name") == {"name": "vm"}
    assert slow.ids[0] != quick.ids[0]
    assert await session.execute("query-name") == {"name": "vm"}
    assert quick.ids[1] == slow.ids[0]  # free again once its reply came: ids stay short


async def test_the_end_of_the_session_ends_every_command_waiting_on_it(server, session):
    server.behave("query-status", HangupAfter(0.1))
    waiting = [asyncio.ensure_future(session.execute(command)) for command in ("query-status", "query-name")]
    done, _ = await asyncio.wait(waiting, timeout=2.0)
    assert len(done) == 2
    for command, ended in zip(("query-status", "query-name"), waiting):
        error = ended.exception()
        assert isinstance(error, QemuError)
        assert str(error).startswith(f"lost the connection to QEMU during {command} ("), error
    assert not session.connected


async def test_qemu_qmps_own_execute_path_still_routes_beside_the_lean_one(server):
    from hvdesk.qemu.qmp_client import Client

    server.behave("query-name", Answer({"name": "vm"}, delay=0.05))
    client = Client("test")
    await client.connect(str(server.sockets[0]))
    try:
        ours, theirs = await asyncio.gather(client.execute("query-status"),
                                            client.execute_msg(client.make_execute_msg("query-name")))
        assert ours == {"status": "running", "singlestep": False, "running": True}
        assert theirs == {"name": "vm"}
    finally:
        await client.disconnect()


async def test_commands_sent_together_go_in_one_write_and_get_their_replies_in_order(server, session, monkeypatch):
    server.behave("query-status", Answer({"status": "paused"}, delay=0.1))
    server.behave("query-name", Answer({"name": "vm"}))
    writer = session._client._writer
    writes = []
    real_write = writer.write
    monkeypatch.setattr(writer, "write", lambda data: (writes.append(data), real_write(data)))
    results = await session.execute_many([("query-status", None), ("query-name", None)])
    assert results == [{"status": "paused"}, {"name": "vm"}]
    assert len(writes) == 1  # one wake-up of QEMU for both
    assert writes[0].count(b'"execute"') == 2 and writes[0].index(b"query-status") < writes[0].index(b"query-name")


async def test_a_refusal_among_commands_sent_together_names_its_command_and_the_session_goes_on(server, session):
    server.behave("query-status", Answer({"status": "running"}))
    server.behave("query-name", Refuse("no name here"))
    with pytest.raises(QemuError, match="QEMU refused query-name: no name here"):
        await session.execute_many([("query-status", None), ("query-name", None)])
    assert await session.execute("query-status") == {"status": "running"}


async def test_commands_sent_together_that_get_no_answer_time_out_naming_them(server, session):
    server.behave("query-status", Hang())
    with pytest.raises(QemuError, match="did not answer query-status and query-name within 0.2 s"):
        await session.execute_many([("query-status", None), ("query-name", None)], timeout=0.2)
