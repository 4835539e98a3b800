"""A scripted QMP server on unix sockets, for tests.

The suite runs real QEMU everywhere else. This fake is only for what a real QEMU cannot be made
to do on demand: refuse a command at a chosen moment, close the connection in the middle of a
command, never answer, send garbage, or send events exactly when a test wants them (to replay
recorded event sequences without booting a guest).

It speaks QMP as QEMU does: a greeting, `qmp_capabilities`, then one reply per command carrying
the command's id, and events at any time. Each test scripts how commands are answered:

    server = FakeQmpServer([socket_path])
    server.behave("stop", Refuse("the VM cannot be paused now"))
    server.behave("cont", Hangup())                   # close the connection mid-command
    server.behave("query-status", Answer(STATUS, events_after=[("STOP", {})]))
    await server.start()
    ...
    await server.send_event("RESUME")                  # to every negotiated connection
    await server.close()

Like QEMU, events go to every connection that has negotiated capabilities, and a command that
hangs holds its connection (QEMU's monitor runs one command at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GREETING = {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "(fake)"},
                    "capabilities": ["oob"]}}
Event = tuple[str, object] | dict  # (name, data), or a whole message written as it is


def status_reply(status: str) -> dict:
    """query-status's answer, as QEMU 7.2 gives it."""
    return {"status": status, "singlestep": False, "running": status == "running"}


def event_message(name: str, data: object = None) -> dict:
    now = time.time()
    message: dict[str, Any] = {"event": name, "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}}
    if data is not None:
        message["data"] = data
    return message


@dataclass
class Connection:
    """One client of the fake, on one of its sockets."""

    socket: str  # the socket's file name, e.g. qmp.sock
    writer: asyncio.StreamWriter
    negotiated: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, message: dict | bytes) -> None:
        if self.ended.is_set():
            return
        self.writer.write(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\r\n")

    async def flush(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def hang_up(self) -> None:
        self.ended.set()
        self.writer.close()


class Behaviour:
    """What the fake does with one command. `perform` returns False to stop serving the connection."""

    async def perform(self, connection: Connection, request: dict) -> bool:
        raise NotImplementedError


async def _reply(connection: Connection, request: dict, message: dict, events_before: Sequence[Event] = (),
                 events_after: Sequence[Event] = ()) -> bool:
    """`message` with the request's id, with events around it in the same write."""
    for event in events_before:
        connection.write(event if isinstance(event, dict) else event_message(*event))
    connection.write({**message, "id": request["id"]} if "id" in request else message)
    for event in events_after:
        connection.write(event if isinstance(event, dict) else event_message(*event))
    await connection.flush()
    return True


@dataclass(frozen=True)
class Answer(Behaviour):
    """A normal reply: {"return": value} ({} when None, as QEMU answers most commands)."""

    value: object = None
    events_before: Sequence[Event] = ()
    events_after: Sequence[Event] = ()
    delay: float = 0.0

    async def perform(self, connection: Connection, request: dict) -> bool:
        await asyncio.sleep(self.delay)
        value = {} if self.value is None else self.value
        return await _reply(connection, request, {"return": value}, self.events_before, self.events_after)


@dataclass(frozen=True)
class Refuse(Behaviour):
    """QEMU's error reply: the command failed, the connection lives on."""

    desc: str
    error_class: str = "GenericError"

    async def perform(self, connection: Connection, request: dict) -> bool:
        return await _reply(connection, request, {"error": {"class": self.error_class, "desc": self.desc}})


@dataclass(frozen=True)
class Send(Behaviour):
    """Reply with any `message` (a malformed one, say); the request's id is added."""

    message: dict

    async def perform(self, connection: Connection, request: dict) -> bool:
        return await _reply(connection, request, self.message)


@dataclass(frozen=True)
class Hangup(Behaviour):
    """Close the connection in the middle of the command, after writing `partial` (e.g. half a reply)."""

    partial: bytes = b""

    async def perform(self, connection: Connection, request: dict) -> bool:
        connection.write(self.partial)
        await connection.flush()
        connection.hang_up()
        return False


@dataclass(frozen=True)
class Hang(Behaviour):
    """Never answer; hold the connection (and its next commands) until the client leaves."""

    async def perform(self, connection: Connection, request: dict) -> bool:
        await connection.ended.wait()
        return False


@dataclass(frozen=True)
class Garbage(Behaviour):
    """Write `data` as it is instead of a reply, and go on reading."""

    data: bytes

    async def perform(self, connection: Connection, request: dict) -> bool:
        connection.write(self.data)
        await connection.flush()
        return True


class FakeQmpServer:
    def __init__(self, sockets: list[Path], *, status: str = "running") -> None:
        self.sockets = sockets
        self.greeting: dict | bytes | None = GREETING  # None: accept, then never greet
        self.behaviours: dict[str, Behaviour] = {"query-status": Answer(status_reply(status))}
        self.default: Behaviour = Answer()
        self.requests: list[tuple[str, str]] = []  # (socket name, command), every connection
        self.connections: list[Connection] = []
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task] = set()
        self._changed = asyncio.Condition()

    # -- scripting ------------------------------------------------------------------------------

    def behave(self, command: str, behaviour: Behaviour) -> None:
        """How to treat `command` from now on (on every socket)."""
        self.behaviours[command] = behaviour

    def set_status(self, status: str) -> None:
        self.behave("query-status", Answer(status_reply(status)))

    async def send_event(self, name: str, data: dict | None = None, *, socket: str | None = None) -> None:
        """An event to every negotiated connection (or those on `socket`), as QEMU broadcasts them."""
        for connection in self.live(socket):
            if connection.negotiated:
                connection.write(event_message(name, data))
                await connection.flush()

    async def hang_up(self, socket: str | None = None) -> None:
        """Close every open connection (or those on `socket`): QEMU exiting, or its monitor going away."""
        for connection in self.live(socket):
            connection.hang_up()
        await asyncio.sleep(0)

    def live(self, socket: str | None = None) -> list[Connection]:
        return [c for c in self.connections if not c.ended.is_set() and socket in (None, c.socket)]

    async def wait_for(self, command: str, count: int = 1, timeout: float = 5.0) -> None:
        """Until `command` has been received `count` times in all."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.commands().count(command) >= count)

    def commands(self, socket: str | None = None) -> list[str]:
        return [name for where, name in self.requests if socket in (None, where)]

    # -- serving --------------------------------------------------------------------------------

    async def start(self) -> FakeQmpServer:
        for path in self.sockets:
            self._servers.append(await asyncio.start_unix_server(
                lambda r, w, name=path.name: self._track(self._serve(r, w, name)), path))
        return self

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        await self.hang_up()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for path in self.sockets:
            path.unlink(missing_ok=True)

    async def __aenter__(self) -> FakeQmpServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _track(self, serving: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await serving
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket: str) -> None:
        connection = Connection(socket, writer)
        self.connections.append(connection)
        try:
            if self.greeting is None:
                await connection.ended.wait()
                return
            connection.write(self.greeting)
            await connection.flush()
            async for request in _json_stream(reader):
                if connection.ended.is_set() or not await self._handle(connection, request):
                    break
        except ConnectionError:
            pass  # the client went away: as QEMU, just drop it
        finally:
            connection.hang_up()

    async def _handle(self, connection: Connection, request: object) -> bool:
        try:
            command = request["execute"] if "execute" in request else request["exec-oob"]  # type: ignore[index]
        except (KeyError, TypeError):
            connection.write({"error": {"class": "GenericError", "desc": "QMP input member 'execute' is missing"}})
            return True
        assert isinstance(request, dict)
        async with self._changed:
            self.requests.append((connection.socket, command))
            self._changed.notify_all()
        if command == "qmp_capabilities" and command not in self.behaviours:
            connection.negotiated = True
            return await Answer().perform(connection, request)
        return await self.behaviours.get(command, self.default).perform(connection, request)


async def _json_stream(reader: asyncio.StreamReader) -> AsyncIterator[object]:
    """The JSON values a client sends, as QEMU reads them: one after another, newlines optional
    (qemu.qmp sends none). Input that never becomes valid JSON is waited on, not answered."""
    decoder = json.JSONDecoder()
    buffer = ""
    while chunk := await reader.read(65536):
        buffer += chunk.decode(errors="replace")
        while buffer.strip():
            try:
                value, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                break  # not complete yet
            buffer = buffer.lstrip()[end:]
            yield value
