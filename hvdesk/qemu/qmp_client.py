"""qemu.qmp and hvdesk's adaptations of it, imported by hvdesk.qemu.qmp with its first session: a
command that talks to no running VM (`hvdesk list` of stopped VMs, `create`, `delete`) never loads it.

qemu.qmp's default `events` listener keeps every event forever; we filter it to nothing and
hand each event to a callback as it arrives instead, so a session that runs for weeks stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qemu.qmp import (
    ConnectError,
    EventListener,
    ExecInterruptedError,
    ExecuteError,
    Message,
    QMPClient,
    QMPError,
    Runstate,
    StateError,
)
from qemu.qmp.error import ProtocolError
from qemu.qmp.models import ErrorResponse
from qemu.qmp.protocol import require
from qemu.qmp.qmp_client import BadReplyError

from hvdesk.qemu import qmp_replies

__all__ = ["BadReplyError", "CallbackListener", "Client", "ConnectError", "ExecInterruptedError", "ExecuteError",
           "ProtocolError", "QMPError", "Runstate", "StateError"]

log = logging.getLogger("hvdesk.qemu.qmp")

# qemu.qmp logs a traceback at ERROR level when QEMU goes away mid-session; for us that is
# an expected end (the guest powered off), reported through our own state instead.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

_encode = json.JSONEncoder(separators=(",", ":")).encode  # compact, as qemu.qmp sends


class CallbackListener(EventListener):
    """Hands each event to the callback at once, keeping no queue or history. It runs inside
    qemu.qmp's reader, where any exception ends the session: a malformed event or a failing
    callback is logged instead, and the session goes on."""

    def __init__(self, callback: Callable[[str, dict[str, Any], float], None]) -> None:  # qmp.EventCallback
        super().__init__()
        self._callback = callback

    async def put(self, event: Any) -> None:
        data = event.get("data")
        try:
            self._callback(str(event["event"]), dict(data) if isinstance(data, dict) else {},
                           _seconds(event.get("timestamp")))
        except Exception:
            log.exception("QMP event %.100r: its handler failed", event.get("event"))


def _seconds(stamp: object) -> float:
    """QEMU's event timestamp in seconds; 0 if it is missing or malformed."""
    if not isinstance(stamp, dict):
        return 0.0
    try:
        return float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6
    except (TypeError, ValueError):
        return 0.0


class Client(QMPClient):
    """qemu.qmp's client with a lean path for `execute`. Connecting, negotiation, events, the
    end of a session and the errors of each stay qemu.qmp's own; per command, qemu.qmp
    - serialises it three times (two Message copies, then the wire form): here once;
    - parses every message into a Message, whose every lookup goes through the MutableMapping
      machinery: here once into a dict, which its routing and listeners read just as well;
    - queues the command for a writer task and the reply through a queue: here the command is
      written straight to the stream and the reply resolves the command's future;
    - wakes its reader task for the reply, which then wakes the command: here a lone reply is
      handed over from the stream (qmp_replies), one event-loop turn sooner;
    - names it "__qmp#00042": QEMU reads its monitor one byte at a time (~5 us a byte, the
      largest part of a round trip), so the id here is the smallest number not awaiting a reply.
    qemu.qmp's own execute_msg() still works beside it (its string ids route as before)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        # Commands sent whose reply has not come, by id, whether or not their caller still waits:
        # an id is used again only once its reply came, so a late reply never answers a newer command.
        self._in_flight: dict[int, asyncio.Future[dict[str, Any]]] = {}

    @require(Runstate.RUNNING)
    async def execute(self, cmd: str, arguments: Mapping[str, object] | None = None, oob: bool = False,
                      *, timeout: float | None = None) -> object:
        """As QMPClient.execute: the command's return value; ExecuteError when QEMU refuses it,
        BadReplyError for a reply with neither, ExecInterruptedError if the session ends first;
        TimeoutError after `timeout` s (a timer on the reply, lighter than asyncio.timeout)."""
        msg = self._message(cmd, arguments, oob)
        reply = self._write_commands([msg])[0]
        return _result(await _within(reply, timeout), msg)

    @require(Runstate.RUNNING)
    async def execute_many(self, commands: Sequence[tuple[str, Mapping[str, object] | None]], *,
                           timeout: float | None = None) -> list[object]:
        """Several commands in one write, their return values in order; the first that fails
        raises as execute() would, and TimeoutError when not all are answered within `timeout` s.
        One write is one send() and one wake-up of QEMU (the send() of a command, which wakes
        QEMU, is its dearest system call here); QEMU answers a stream's commands in order."""
        msgs = [self._message(cmd, arguments) for cmd, arguments in commands]
        replies = self._write_commands(msgs)
        # one timer for them all (under qasync each timer is a Qt timer, which fires even cancelled)
        timer = None if timeout is None else asyncio.get_running_loop().call_later(timeout, _expire_all, replies)
        try:
            answers = [await reply for reply in replies]
        except BaseException:
            for reply in replies:  # the rest are not awaited: their late replies or errors go unheard
                if not reply.done():
                    reply.cancel()
                elif not reply.cancelled():
                    reply.exception()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return [_result(answer, msg) for answer, msg in zip(answers, msgs, strict=True)]

    def _message(self, cmd: str, arguments: Mapping[str, object] | None, oob: bool = False) -> dict[str, object]:
        msg: dict[str, object] = {"exec-oob" if oob else "execute": cmd}
        if arguments is not None:
            msg["arguments"] = arguments
        return msg

    def _write_commands(self, msgs: list[dict[str, object]]) -> list[asyncio.Future[dict[str, Any]]]:
        """Give each message an id and write them all at once; the futures of their replies."""
        loop = asyncio.get_running_loop()
        replies = []
        wire = []
        for msg in msgs:
            msg["id"] = exec_id = self._free_id()
            if self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("--> %s", json.dumps(msg, indent=2))
            reply: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._in_flight[exec_id] = reply
            replies.append(reply)
            wire.append(_encode(msg).encode())
        assert self._writer is not None
        self._writer.write(b"".join(wire))  # buffered, never blocks
        return replies

    def _free_id(self) -> int:
        exec_id = 0
        while exec_id in self._in_flight:
            exec_id += 1
        return exec_id

    def _take_reply(self, line: bytes) -> bool:
        """Resolve the command that `line` answers; False if it answers none of ours (an event,
        qemu.qmp's own command, garbage: qemu.qmp's reader deals with those)."""
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return False
        if not isinstance(msg, dict) or "event" in msg or not self._resolve(msg):
            return False
        if self.logger.isEnabledFor(logging.DEBUG):  # what qemu.qmp's reader would have logged
            self.logger.debug("<-- %s", json.dumps(msg, indent=2))
        return True

    def _resolve(self, msg: dict[str, Any]) -> bool:
        exec_id = msg.get("id")
        reply = self._in_flight.pop(exec_id, None) if type(exec_id) is int else None
        if reply is None:
            return False
        if not reply.done():  # its caller may have given up (a timeout)
            reply.set_result(msg)
        return True

    # -- qemu.qmp's hooks ---------------------------------------------------------------------

    async def _do_connect(self, address: Any, ssl: Any = None) -> None:
        """A unix socket path or a (host, port) (QEMU's, here) gets the reader that hands replies
        over (qmp_replies)."""
        if ssl is not None or not isinstance(address, (str, tuple)):
            await super()._do_connect(address, ssl)
            return
        self._set_state(Runstate.CONNECTING)
        await asyncio.sleep(0)  # as qemu.qmp: let runstate watchers see CONNECTING
        self._reader, self._writer = await qmp_replies.open_connection(address, self.readbuflen, self._take_reply)

    async def _do_recv(self) -> Any:
        """One message, parsed once into a dict (qemu.qmp's own parse, with its errors for what is
        not a JSON object)."""
        return Message._deserialize(await self._readline())  # noqa: SLF001 - qemu.qmp's parse and its errors

    async def _on_message(self, msg: Any) -> None:
        if "event" in msg or not self._resolve(msg):
            await super()._on_message(msg)  # events, and what answers no command of ours: qemu.qmp's rules

    async def _bh_disconnect(self) -> None:
        try:
            await super()._bh_disconnect()
        finally:
            for reply in self._in_flight.values():
                if not reply.done():
                    reply.set_exception(ExecInterruptedError("Disconnected"))
            self._in_flight.clear()

    def _cb_outbound(self, msg: Any) -> Any:
        return super()._cb_outbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

    def _cb_inbound(self, msg: Any) -> Any:
        return super()._cb_inbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg


def _expire(reply: asyncio.Future[Any]) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError())


def _expire_all(replies: list[asyncio.Future[Any]]) -> None:
    for reply in replies:
        _expire(reply)


async def _within(reply: asyncio.Future[dict[str, Any]], timeout: float | None) -> dict[str, Any]:
    """The reply, or TimeoutError after `timeout` s."""
    if reply.done() or timeout is None:
        return await reply
    timer = asyncio.get_running_loop().call_later(timeout, _expire, reply)
    try:
        return await reply
    finally:
        timer.cancel()


def _result(answer: dict[str, Any], sent: dict[str, object]) -> object:
    """The return value in QEMU's `answer`, or qemu.qmp's error for a refusal or a malformed reply."""
    if "error" in answer:
        try:
            error = ErrorResponse(answer)
        except (KeyError, TypeError) as err:
            raise BadReplyError("QMP error reply is malformed", Message(answer), Message(sent)) from err
        raise ExecuteError(error, Message(sent), Message(answer))
    if "return" not in answer:
        raise BadReplyError("QMP reply is missing a 'error' or 'return' member", Message(answer), Message(sent))
    return answer["return"]
