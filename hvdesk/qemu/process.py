"""QEMU processes: launch detached, recognise ours again, end them.

Two ways to launch (qemu/transport.py says which):
- QEMU daemonizes itself (-daemonize): the launching process exits once the VM is set up, so
  start-up errors (a locked image, a bad option) arrive synchronously with QEMU's own message,
  the VM lives on in its own session when hvdesk exits, and hvdesk never has zombies to reap.
- Windows has no -daemonize: QEMU is started as a detached child (its own process group, no
  console; on POSIX its own session), its output into its log, and is set up once its QMP
  socket answers; if it exits first, its log says why. A child that ends while hvdesk runs is
  reaped by asyncio's child watcher.
Either way QEMU writes its pidfile (-pidfile) and removes it when it exits cleanly (guest
power-off, quit, SIGTERM); a pidfile whose process is gone therefore means QEMU was killed or crashed.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.errors import QemuError
from hvdesk.qemu import discovery

if TYPE_CHECKING:
    import asyncio
    import subprocess

# Windows process creation flags (winbase.h), spelled out: subprocess defines them only on Windows.
CREATE_NEW_PROCESS_GROUP = 0x00000200  # Ctrl+C in hvdesk's console does not reach QEMU
DETACHED_PROCESS = 0x00000008  # no console of its own, and none inherited: it outlives hvdesk's
_children: list[subprocess.Popen[bytes]] = []  # detached QEMUs this process started, reaped once they end

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
            stderr=asyncio.subprocess.PIPE, **detach_options(sys.platform))
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
    discovery.forget_processes()  # a search from before it would miss it
    return pid


def spawn_detached(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start QEMU itself (no -daemonize), detached, its output appended to its log; then
    wait_ready(). Plain Popen, not asyncio's: asyncio kills a child whose transport is closed."""
    import subprocess  # here: `list` and `info` never start a process

    try:
        with open(log, "ab") as output:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                     **detach_options(sys.platform))
    except OSError as exc:
        raise QemuError(f"cannot run {argv[0]}: {exc.strerror}") from None
    _children.append(child)
    discovery.forget_processes()  # a search from before it would miss it
    return child


def detach_options(platform: str) -> dict[str, Any]:
    """How a QEMU is started so that it outlives hvdesk: its own session on POSIX (no terminal's
    signals reach it); on Windows its own process group and no console."""
    if platform == "win32":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS}
    return {"start_new_session": True, "umask": 0o077}


async def wait_ready(child: subprocess.Popen[bytes], pidfile: Path, log: Path, ready: Awaitable[object]) -> int:
    """The pid of a detached QEMU (spawn_detached) once `ready` is done (its QMP socket answered:
    QEMU has set the machine up), or QemuError with its message if it exits first."""
    import asyncio

    readiness = asyncio.ensure_future(ready)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not readiness.done() and child.poll() is None and time.monotonic() < deadline:
            await asyncio.wait({readiness}, timeout=0.02)
    finally:
        readiness.cancel()
        await asyncio.gather(readiness, return_exceptions=True)  # ended before the caller closes its session
    if child.returncode is not None:
        message = log_tail(log)
        raise QemuError(first_error(message) or f"QEMU exited with code {child.returncode}", message)
    if not readiness.done():
        child.kill()
        raise QemuError(f"QEMU did not finish starting within {LAUNCH_TIMEOUT:.0f} s", log_tail(log))
    error = readiness.exception()
    if error is not None:  # its socket never answered: a QEMU of no use
        child.kill()
        raise error
    pid = read_pid(pidfile)
    if pid != child.pid or not is_alive(pid):
        raise QemuError("QEMU started but its pidfile does not name it", log_tail(log))
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
    _reap()
    if sys.platform == "linux":
        return _linux_state(pid) not in (None, "Z", "X")
    import psutil  # elsewhere only: on Linux /proc answers without psutil's import (~10 ms per CLI command)

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap() -> None:
    """Collect the exit of detached QEMUs we started (a POSIX child that ended stays a zombie
    until its parent waits for it)."""
    if _children:
        _children[:] = [child for child in _children if child.poll() is None]


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
    """SIGTERM (QEMU exits cleanly and removes its pidfile), then SIGKILL after `grace` s. (Windows
    has no SIGKILL: os.kill ends the process there, with either signal.)"""
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    for sig, wait in ((signal.SIGTERM, grace), (kill, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if await wait_gone(pid, wait):
            return
    raise QemuError(f"QEMU (pid {pid}) did not end even after SIGKILL")
