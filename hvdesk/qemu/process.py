"""QEMU processes: launch detached, recognise ours again, end them.

QEMU daemonizes itself (-daemonize): the launching process exits once the VM is set up, so
start-up errors (a locked image, a bad option) arrive synchronously with QEMU's own message,
the VM lives on in its own session when hvdesk exits, and hvdesk never has zombies to reap.
QEMU removes its pidfile when it exits cleanly (guest power-off, quit, SIGTERM); a pidfile
whose process is gone therefore means QEMU was killed or crashed.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hvdesk.core.errors import QemuError

if TYPE_CHECKING:
    import asyncio

_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\dT\S+\s+)?(qemu-system-[^:]+: )?")
LAUNCH_TIMEOUT = 60.0  # QEMU sets up the machine before the daemon's parent exits


def log_tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


async def launch(argv: list[str], pidfile: Path, log: Path) -> int:
    """Run a `-daemonize` argv; return the running QEMU's pid or raise QemuError with its message."""
    return await wait_launched(await spawn(argv), pidfile, log)


async def spawn(argv: list[str]) -> asyncio.subprocess.Process:
    """Start a `-daemonize` argv. QEMU then sets the machine up (~0.1 s) before its launching
    process exits: a caller may do other work meanwhile, then wait_launched()."""
    import asyncio  # here: `list` and `info` read pidfiles without an event loop

    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, umask=0o077)
    except OSError as exc:
        raise QemuError(f"cannot run {argv[0]}: {exc.strerror}") from None


async def wait_launched(proc: asyncio.subprocess.Process, pidfile: Path, log: Path) -> int:
    """The pid of the QEMU that `proc` (spawn) launched once it is set up, or QemuError with its message."""
    import asyncio

    try:
        out, err = await asyncio.wait_for(proc.communicate(), LAUNCH_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise QemuError(f"QEMU did not finish starting within {LAUNCH_TIMEOUT:.0f} s", log_tail(log)) from None
    message = (err or out).decode(errors="replace").strip()
    if proc.returncode != 0:
        if message:
            with open(log, "a", encoding="utf-8") as handle:  # noqa: ASYNC230 - a few bytes, local: keep it with the VM's log
                handle.write(message + "\n")
        # With -D, QEMU writes its start-up errors to the log file rather than to stderr.
        message = message or log_tail(log)
        raise QemuError(first_error(message) or f"QEMU exited with code {proc.returncode}", message)
    pid = read_pid(pidfile)
    if pid is None or not is_alive(pid):
        raise QemuError("QEMU started but exited at once", log_tail(log))
    return pid


def first_error(message: str) -> str:
    """QEMU's first message line, without its timestamp and program-name prefix."""
    for line in message.splitlines():
        line = _PREFIX.sub("", line.strip())
        if line:
            return line
    return ""


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_alive(pid: int) -> bool:
    if sys.platform == "linux":
        return _linux_state(pid) not in (None, "Z", "X")
    import psutil  # elsewhere only: on Linux /proc answers without psutil's import (~10 ms per CLI command)

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_our_qemu(pid: int, uuid: str) -> bool:
    """The process is alive and is QEMU started for this VM (a recycled pid is not)."""
    cmdline = _cmdline(pid) if is_alive(pid) else None
    if not cmdline or "qemu-system" not in os.path.basename(cmdline[0]):
        return False
    return any(a == "-uuid" and b == uuid for a, b in zip(cmdline, cmdline[1:]))


def _linux_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, Z...), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (OSError, ValueError):
        return None
    # After the name, which is in parentheses and may itself hold ") ".
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[0].decode() if fields else None


def _cmdline(pid: int) -> list[str] | None:
    if sys.platform == "linux":
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            return None
        return [a.decode(errors="surrogateescape") for a in (args[:-1] if args and args[-1] == b"" else args)]
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return None


async def wait_gone(pid: int, timeout: float, poll: float = 0.05) -> bool:
    """Wait up to `timeout` s for `pid` to end; True if it did."""
    import asyncio

    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


async def terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM (QEMU exits cleanly and removes its pidfile), then SIGKILL after `grace` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if await wait_gone(pid, wait):
            return
    raise QemuError(f"QEMU (pid {pid}) did not end even after SIGKILL")
