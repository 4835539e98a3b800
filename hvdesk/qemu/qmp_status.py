"""One question to a running QEMU, over a plain blocking socket: its run state (`query-status`).

`hvdesk list` and `hvdesk info` only read and print, and a person runs them as often as `virsh
list`; their whole process should take about as long. qemu.qmp needs asyncio, whose import alone
takes longer than that budget (~50-60 ms here), so these two commands ask this one question
without it: read the greeting, negotiate, send the command, skip any event that comes before the
answer. Everything else, and everything that changes a VM, goes through qemu.qmp (qemu/qmp.py).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from hvdesk.core.errors import QemuError
from hvdesk.qemu.transport import Endpoint

MAX_LINE = 1 << 20  # a QMP message longer than this is not one QEMU would send for these commands


def query_status(where: Endpoint | Path, timeout: float = 5.0) -> str:
    """QEMU's run state ("running", "paused", "prelaunch", "io-error", ...). `where`: a unix socket,
    or an endpoint of either kind (qemu/transport.py)."""
    socket_path = where if isinstance(where, Endpoint) else Endpoint(where)  # str(): the path, or tcp:host:port
    reply = _ask(socket_path, "query-status", timeout)
    status = reply.get("status") if isinstance(reply, dict) else None
    if not isinstance(status, str):
        raise QemuError(f"QEMU's control socket {socket_path} gave a malformed query-status answer")
    return status


def _ask(socket_path: Endpoint, command: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    family = socket.AF_UNIX if socket_path.path is not None else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect(socket_path.address)
            stream = sock.makefile("rb")
            greeting = _message(stream, sock, deadline)
            if "QMP" not in greeting:
                raise _not_qmp(socket_path, "its greeting is not QMP's")
            for name in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": name}).encode() + b"\n")
                reply = _reply(stream, sock, deadline, socket_path, name)
            return reply
        except (TimeoutError, socket.timeout):
            raise QemuError(f"QEMU's control socket {socket_path} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise QemuError(f"cannot reach QEMU's control socket {socket_path}: "
                            f"{exc.strerror or exc}") from None


def _reply(stream: Any, sock: socket.socket, deadline: float, socket_path: Endpoint, command: str) -> Any:
    """The next answer to a command, skipping the events that come first."""
    while True:
        message = _message(stream, sock, deadline)
        if "return" in message:
            return message["return"]
        if "error" in message:
            error = message["error"]
            text = error.get("desc", error) if isinstance(error, dict) else error
            raise QemuError(f"QEMU refused {command}: {text}")
        if "event" not in message:
            raise _not_qmp(socket_path, "it sent a message that is neither an answer nor an event")


def _message(stream: Any, sock: socket.socket, deadline: float) -> dict[str, Any]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)
    line = stream.readline(MAX_LINE)
    if not line:
        raise ConnectionResetError(0, "QEMU closed the connection")
    if not line.endswith(b"\n"):
        if len(line) < MAX_LINE:
            raise ConnectionResetError(0, "QEMU closed the connection in the middle of a message")
        raise QemuError("QEMU sent an over-long QMP message")
    try:
        message = json.loads(line)
    except ValueError:
        raise QemuError("QEMU sent a QMP message that is not JSON") from None
    if not isinstance(message, dict):
        raise QemuError("QEMU sent a QMP message that is not a JSON object")
    return message


def _not_qmp(socket_path: Endpoint, why: str) -> QemuError:
    return QemuError(f"QEMU's control socket {socket_path} does not speak QMP ({why})")
