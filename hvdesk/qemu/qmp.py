"""One QMP connection, on qemu.qmp, with hvdesk's timeouts, errors and bounded event handling.

qemu.qmp itself, and our listener and client on it, load with the first session (qmp_client): a
command that talks to no running VM never pays for that import.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from hvdesk.core.errors import QemuError
from hvdesk.qemu.transport import Endpoint

EventCallback = Callable[[str, dict[str, Any], float], None]  # name, data, QEMU's timestamp (s)


class QmpSession:
    def __init__(self, name: str, on_event: EventCallback | None = None) -> None:
        from hvdesk.qemu import qmp_client

        self._qmp = qmp_client
        self._client = qmp_client.Client(name)
        self._client.events.event_filter = lambda _event: False
        if on_event is not None:
            self._client.register_listener(qmp_client.CallbackListener(on_event))
        self.name = name
        self._closing: asyncio.Future[None] | None = None
        self._ended_by: Exception | None = None  # what ended the session, as disconnect() re-raised it

    @property
    def connected(self) -> bool:
        return self._client.runstate == self._qmp.Runstate.RUNNING

    async def connect(self, where: Endpoint | Path, timeout: float = 10.0) -> None:
        """Connect and negotiate; retry while the socket is not there yet or is busy. `where`: a
        unix socket, or an endpoint of either kind (qemu/transport.py)."""
        socket_path = where if isinstance(where, Endpoint) else Endpoint(where)  # str(): the path, or tcp:host:port
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: Exception | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                cause = None if isinstance(last_error, asyncio.TimeoutError) else last_error  # a timeout says no more
                detail = f" ({_why(cause)})" if cause is not None else ""
                raise QemuError(f"QEMU's control socket {socket_path} did not answer within {timeout:g} s{detail}")
            try:
                await asyncio.wait_for(self._client.connect(socket_path.address), remaining)
                self._ended_by = None
                return
            except (self._qmp.QMPError, OSError, asyncio.TimeoutError) as exc:
                if not isinstance(exc, asyncio.TimeoutError) or last_error is None:
                    last_error = exc  # (an attempt cut by the deadline says less than the one before it)
                await self._reset()
                if isinstance(exc, self._qmp.ConnectError) and isinstance(exc.exc, self._qmp.ProtocolError):
                    # it answered, but not in QMP (a greeting or negotiation it got wrong): trying again won't help
                    raise QemuError(f"QEMU's control socket {socket_path} does not speak QMP ({_why(exc)})") from None
                await asyncio.sleep(min(0.02, max(remaining, 0)))

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        try:
            return await self._client.execute(command, arguments, timeout=timeout)
        except Exception as exc:
            error = await self._error(exc, command, timeout)
            if error is None:
                raise
            raise error from None

    async def execute_many(self, commands: list[tuple[str, dict[str, Any] | None]],
                           timeout: float = 10.0) -> list[Any]:
        """Several commands sent at once (one write, one wake-up of QEMU): their return values,
        in order. The first that fails raises, as execute() would."""
        try:
            return await self._client.execute_many(commands, timeout=timeout)
        except Exception as exc:
            sent = getattr(exc, "sent", None)  # a refusal or a malformed reply names its command
            command = str(sent.get("execute")) if isinstance(sent, Mapping) else \
                " and ".join(name for name, _ in commands)
            error = await self._error(exc, command, timeout)
            if error is None:
                raise
            raise error from None

    async def _error(self, exc: Exception, command: str, timeout: float) -> QemuError | None:
        """What a failure of qemu.qmp's under `command` means for the user (None: not one of its)."""
        qmp = self._qmp
        if isinstance(exc, qmp.ExecuteError):  # str() is QEMU's own description, in every qemu.qmp release
            return QemuError(f"QEMU refused {command}: {_clip(str(exc), 200)}")
        if isinstance(exc, asyncio.TimeoutError):
            return QemuError(f"QEMU did not answer {command} within {timeout:g} s")
        if isinstance(exc, qmp.BadReplyError):  # this reply is wrong; the connection itself is fine
            return QemuError(f"QEMU sent a malformed reply to {command} ({_why(exc)})")
        if isinstance(exc, (qmp.ExecInterruptedError, qmp.StateError)):  # the session ended (now or before)
            return QemuError(f"lost the connection to QEMU during {command} ({await self._end_cause()})")
        if isinstance(exc, (qmp.QMPError, OSError, EOFError)):
            return QemuError(f"lost the connection to QEMU during {command} ({_why(exc)})")
        return None

    async def pass_fd(self, fd: int, name: str) -> None:
        """Hand QEMU a copy of our file descriptor `fd` (SCM_RIGHTS over the unix socket), as `name`
        for commands on this same monitor (`migrate fd:NAME`). QEMU cannot receive descriptors
        over tcp (the Windows transport): that is an error naming the limit."""
        try:
            self._client.send_fd_scm(fd)
        except (self._qmp.QMPError, OSError) as exc:
            raise QemuError(f"cannot pass a file to QEMU: {_why(exc)} (this needs the unix transport)") from None
        await self.execute("getfd", {"fdname": name})

    async def wait_closed(self) -> None:
        """Return when QEMU ends the session (it exited) or we closed it."""
        while self._client.runstate == self._qmp.Runstate.RUNNING:
            await self._client.runstate_changed()

    async def close(self) -> None:
        """Disconnect; safe to call from several tasks at once (they share one disconnect)."""
        if self._closing is None or self._closing.done():
            self._closing = asyncio.ensure_future(self._reset())
        await asyncio.shield(self._closing)

    async def _end_cause(self) -> str:
        """Why the session ended under a command. qemu.qmp only tells the command "Disconnected";
        the reason is what stopped its reader, which disconnect() re-raises."""
        await self.close()
        return _why(self._ended_by) if self._ended_by is not None else "the session was closed"

    async def _reset(self) -> None:
        try:
            await self._client.disconnect()
        except Exception as exc:
            # disconnect() re-raises whatever ended the session: the EOF of a QEMU that quit, and
            # also what QEMU's garbage raised in qemu.qmp's reader (a ValueError for an endless
            # line, say). The session is over either way; closing it must not fail.
            self._ended_by = exc


def _why(exc: BaseException) -> str:
    """One short line for an error of qemu.qmp's. Its own texts can span lines and quote what
    QEMU sent in full (up to 10 MiB); a user gets one line."""
    from hvdesk.qemu.qmp_client import ConnectError, ProtocolError  # loaded: a session raised it

    while isinstance(exc, ConnectError):  # "Failed to establish session: ...": the cause says more
        exc = exc.exc
    if isinstance(exc, EOFError):
        return "QEMU closed the connection"
    if isinstance(exc, ProtocolError):  # QEMU sent something that is not QMP
        what = exc.error_message.split(". ")[0].rstrip(".")
        cause = getattr(exc, "exc", None)  # a greeting or negotiation error wraps its cause
        if isinstance(cause, BaseException):
            return f"{what}: {_why(cause)}"
        sample = next((getattr(exc, name) for name in ("raw", "value", "msg") if hasattr(exc, name)), None)
        return what if sample is None else f"{what}: {_sample(sample)}"
    if isinstance(exc, OSError):
        return _clip(str(exc) or type(exc).__name__)
    return _clip(f"{type(exc).__name__}: {exc}")


def _sample(value: object) -> str:
    if isinstance(value, bytes):
        return _clip(repr(value))
    try:
        return _clip(json.dumps(dict(value) if isinstance(value, Mapping) else value))
    except (TypeError, ValueError):
        return _clip(repr(value))


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
