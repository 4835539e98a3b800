"""The RFB connection's byte stream: asyncio's BufferedProtocol, so that large reads land
straight in the caller's memory.

asyncio's StreamReader copies every byte three times in Python (recv into a new bytes, into its
buffer, out into another bytes) and allocates megabytes per 1080p frame, which the allocator
hands back to the kernel and faults in again. Here the socket is read with recv_into: small
messages go through one reused buffer, and `readinto` gives the kernel the destination itself
(the framebuffer's rows), so a Raw rectangle is copied once, by the kernel, as a bare reader does.

A local server's socket holds ~200 KB (its send buffer), so a 1080p frame takes ~40 reads; each
read through the event loop is a wakeup (with qasync, two Qt events and a timer). While a large
read is in progress, the stream reads on by itself as long as the socket has data: the server
refills it while we copy, and ~1 ms of a 1080p frame's ~4.5 ms of CPU in the console window goes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

CHUNK = 256 * 1024  # the reused buffer's size: more than one recv brings from a local socket


class RfbStream(asyncio.BufferedProtocol):
    """One reader (the RFB client's message loop) and any number of writers. `sock`: the
    connection's socket, if the stream may read it directly (a selector loop's: its transport
    reads only when told it may, so reading ahead of it is safe; never a proactor's)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock
        self._buffer = bytearray(CHUNK)
        self._start = self._end = 0  # the unread bytes are _buffer[_start:_end]
        self._target: memoryview | None = None  # a readinto in progress: the kernel writes here
        self._filled = 0
        self._need = 0  # bytes the reader waits for in _buffer
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Kept, as StreamReader does: with qasync, Qt may step a task while the loop is not running.
        self._loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio's side ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None:
            return self._target[self._filled:]
        if self._end == len(self._buffer):  # room at the end only: move the unread bytes to the front
            self._compact()
        return memoryview(self._buffer)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._target is not None:
            self._filled += nbytes
            self._read_ahead(self._target)
            if self._filled == len(self._target):  # done: the next recv must not get an empty buffer
                self._target = None
                self._wake()
            return
        self._end += nbytes
        if self._end - self._start >= self._need:
            self._wake()
        if self._end == len(self._buffer) and self._start == 0 and not self._reading_paused:
            # Full of bytes nobody asked for yet: leave the rest in the socket (the server waits).
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def _read_ahead(self, target: memoryview) -> None:
        """More of a large read, without a trip through the event loop, while the socket has it."""
        while self._sock is not None and self._filled < len(target):
            try:
                got = self._sock.recv_into(target[self._filled:])
            except (BlockingIOError, InterruptedError):
                return  # empty for now: the loop wakes us when it is not
            except OSError as exc:
                self._eof, self._error = True, exc  # (the transport may not see it again)
                self._wake()
                return
            if not got:
                self._eof = True
                self._wake()
                return
            self._filled += got

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- the reader's side ---------------------------------------------------------------------

    async def readexactly(self, count: int) -> bytes:
        """`count` bytes (asyncio.IncompleteReadError if the stream ends first)."""
        if self._end - self._start < count:
            if len(self._buffer) - self._start < count:
                self._make_room(count)
            await self._wait_for(count)
        start = self._start
        self._start += count
        return memoryview(self._buffer)[start:self._start].tobytes()

    async def readinto(self, view: memoryview) -> None:
        """Fill `view` from the stream; whatever is not already buffered goes from the socket
        straight into it."""
        count = len(view)
        have = min(count, self._end - self._start)
        view[:have] = memoryview(self._buffer)[self._start:self._start + have]
        self._start += have
        if have == count:
            return
        self._start = self._end = 0  # the buffer is empty: the socket's bytes go to the target
        self._target, self._filled = view, have
        try:
            await self._wait_until(lambda: self._target is None, count)
        finally:
            self._target = None

    async def _wait_for(self, count: int) -> None:
        self._need = count
        try:
            await self._wait_until(lambda: self._end - self._start >= count, count)
        finally:
            self._need = 0

    async def _wait_until(self, done: Callable[[], bool], count: int) -> None:
        self._resume_reading()
        while not done():
            if self._eof:
                if self._error is not None:
                    raise self._error
                raise asyncio.IncompleteReadError(b"", count)  # (the bytes that came are not kept)
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _compact(self) -> None:
        unread = self._end - self._start
        if self._start:
            self._buffer[:unread] = self._buffer[self._start:self._end]  # same size: no resize
            self._start, self._end = 0, unread

    def _make_room(self, count: int) -> None:
        """Room for `count` bytes from _start (a message larger than the buffer: the caller has
        checked its length against its limit)."""
        self._compact()
        if len(self._buffer) < count:
            bigger = bytearray(count)  # a new one: the old may still be exported to the transport
            bigger[:self._end] = self._buffer[:self._end]
            self._buffer = bigger

    # -- the writers' side -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._transport.write(data)

    async def drain(self) -> None:
        if self._error is not None:
            raise self._error
        if self._transport is not None and self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        if self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


async def open_unix(path: Path | str | None = None, sock: socket.socket | None = None) -> RfbStream:
    """A stream on a unix socket: connected to `path`, or `sock`, already connected."""
    loop = asyncio.get_running_loop()
    if sock is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, str(path))
        except BaseException:
            sock.close()
            raise
    readable = sock if isinstance(loop, asyncio.SelectorEventLoop) else None
    _, stream = await loop.create_unix_connection(lambda: RfbStream(readable), sock=sock)
    return stream


async def open_tcp(host: str, port: int) -> RfbStream:
    _, stream = await asyncio.get_running_loop().create_connection(RfbStream, host, port)
    return stream
