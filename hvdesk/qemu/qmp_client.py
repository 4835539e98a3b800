"""qemu.qmp and hvdesk's adaptations of it, imported by hvdesk.qemu.qmp with its first session: a
command that talks to no running VM (`hvdesk list` of stopped VMs, `create`, `delete`) never loads it.

qemu.qmp's default `events` listener keeps every event forever; we filter it to nothing and
hand each event to a callback as it arrives instead, so a session that runs for weeks stays small.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from qemu.qmp import (
    ConnectError,
    EventListener,
    ExecInterruptedError,
    ExecuteError,
    QMPClient,
    QMPError,
    Runstate,
    StateError,
)
from qemu.qmp.error import ProtocolError
from qemu.qmp.qmp_client import BadReplyError

__all__ = ["BadReplyError", "CallbackListener", "Client", "ConnectError", "ExecInterruptedError", "ExecuteError",
           "ProtocolError", "QMPError", "Runstate", "StateError"]

log = logging.getLogger("hvdesk.qemu.qmp")

# qemu.qmp logs a traceback at ERROR level when QEMU goes away mid-session; for us that is
# an expected end (the guest powered off), reported through our own state instead.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


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
    """Two costs of qemu.qmp's general design, trimmed through its own hooks:
    - it formats every message for its debug log even when that log is off (two json.dumps per
      command, ~30 µs each); its documented message hooks let us skip that;
    - a command goes to a writer task through a queue before it reaches the socket (one task
      switch per command); `_issue` writes it straight to the stream instead. The reply is still
      routed by qemu.qmp's reader task, which is registered for it before the write."""

    async def _issue(self, msg: Any) -> str | None:
        msg_id = msg["id"] if "id" in msg else None
        self._pending[msg_id] = asyncio.Queue(maxsize=1)
        try:
            self._do_send(self._cb_outbound(msg))  # StreamWriter.write: buffered, never blocks
        except BaseException:
            del self._pending[msg_id]
            raise
        return msg_id

    def _cb_outbound(self, msg: Any) -> Any:
        return super()._cb_outbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

    def _cb_inbound(self, msg: Any) -> Any:
        return super()._cb_inbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg
