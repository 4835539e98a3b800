"""Advisory file locks between hvdesk processes (the app, CLI commands, tests).

One lock file per thing that is changed: the library (create, rename, delete) and each VM. The
holder writes who it is and what it is doing into the file, so a process that waits too long can
say what it waited for. A lock dies with its process, so a killed hvdesk never leaves one behind.
POSIX uses flock(2) (per open file, so two opens in one process exclude each other too);
Windows uses msvcrt.locking on the file's first byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from hvdesk.core.errors import BusyError, HvdeskError

if sys.platform == "win32":  # pragma: no cover - Windows has no flock
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

POLL = 0.02  # seconds between attempts while another process holds the lock
DEFAULT_WAIT = 30.0


class FileLock:
    """An exclusive lock on `path`, created 0600 if missing. Not re-entrant.

    `what` is the thing locked, for messages ("VM 'web'"); `doing` is written into the file
    for the processes that wait ("starting").
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def try_acquire(self, doing: str = "") -> bool:
        """Take the lock if it is free now; False if another holder has it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            raise  # the folder is gone: the caller knows what that means
        except OSError as exc:  # a read-only or full file system, a permission
            raise HvdeskError(f"cannot lock {self.what} to change it: {exc.strerror} ({self.path})") from None
        if not _try_lock(fd):
            os.close(fd)
            return False
        if not _same_file(fd, self.path):
            # The file was unlinked (its VM deleted) between our open and our lock: a stale inode.
            _unlock(fd)
            os.close(fd)
            return self.try_acquire(doing)
        self._fd = fd
        self._write_holder(doing)
        return True

    async def acquire(self, doing: str = "", timeout: float = DEFAULT_WAIT) -> None:
        """Wait up to `timeout` s for the lock; BusyError naming the holder after that."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire(doing):
            if time.monotonic() >= deadline:
                raise BusyError(f"{self.what} is busy: {self.holder() or 'another hvdesk process holds it'}"
                                f"; waited {timeout:g} s, try again when it is done")
            await _sleep(POLL)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def holder(self) -> str:
        """Who holds the lock and what it is doing, as the holder wrote it ("" if unknown)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            since = time.time() - float(data["since"])
            doing = f"{data['doing']}, " if data["doing"] else ""
            return f"hvdesk (pid {int(data['pid'])}) holds it ({doing}{since:.0f} s so far)"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def _write_holder(self, doing: str) -> None:
        assert self._fd is not None
        text = json.dumps({"pid": os.getpid(), "doing": doing, "since": time.time()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    @contextlib.asynccontextmanager
    async def held(self, doing: str, timeout: float = DEFAULT_WAIT) -> AsyncIterator[FileLock]:
        """`async with lock.held("creating VM 'x'"):` waits for the lock and releases it after."""
        await self.acquire(doing, timeout)
        try:
            yield self
        finally:
            self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


async def _sleep(seconds: float) -> None:
    import asyncio  # here: reading the library (`hvdesk list`) takes locks without an event loop

    await asyncio.sleep(seconds)
