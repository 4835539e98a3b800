"""The RFB byte stream: reads in any mix of sizes return exactly the bytes sent, in order, however
the socket cuts them; large reads land in the caller's buffer; an early end is reported."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import pytest

from hvdesk.console import stream as stream_module
from hvdesk.console.stream import CHUNK, open_unix


async def serve(data: bytes, pieces: int = 50, seed: int = 1,
                gate: asyncio.Event | None = None) -> tuple[socket.socket, asyncio.Task[None]]:
    """The client's socket, and a task that sends `data` in `pieces` random cuts (once `gate` is
    set), then closes."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    cuts = sorted(random.Random(seed).sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []

    async def send() -> None:
        loop = asyncio.get_running_loop()
        if gate is not None:
            await gate.wait()
        with theirs:
            for start, end in zip([0, *cuts], [*cuts, len(data)]):
                await loop.sock_sendall(theirs, data[start:end])
                await asyncio.sleep(0)
    return ours, asyncio.ensure_future(send())


async def test_mixed_reads_return_the_bytes_in_order():
    data = os.urandom(3 * CHUNK + 12345)
    sock, sender = await serve(data, pieces=200)
    stream = await open_unix(sock=sock)
    sizes = [1, 3, 12, CHUNK + 7, 4, 2 * CHUNK // 3, 100, CHUNK * 2 // 5]
    got, cursor = [], 0
    for i, size in enumerate(sizes):
        if i % 2:  # alternate: copies of the reused buffer, and reads into our own memory
            got.append(await stream.readexactly(size))
        else:
            target = bytearray(size)
            await stream.readinto(memoryview(target))
            got.append(bytes(target))
        cursor += size
    rest = bytearray(len(data) - cursor)
    await stream.readinto(memoryview(rest))
    assert b"".join(got) + rest == data
    await sender
    stream.close()
    await stream.wait_closed()


async def test_a_large_read_is_written_by_the_kernel_into_the_target(monkeypatch):
    data = os.urandom(8 * CHUNK)
    gate = asyncio.Event()
    sock, sender = await serve(data, pieces=1, gate=gate)
    handed = []  # what each recv_into wrote into
    get_buffer = stream_module.RfbStream.get_buffer

    def recording(self, sizehint: int) -> memoryview:
        handed.append((view := get_buffer(self, sizehint)).obj)
        return view
    monkeypatch.setattr(stream_module.RfbStream, "get_buffer", recording)
    stream = await open_unix(sock=sock)
    target = bytearray(len(data))
    reading = asyncio.ensure_future(stream.readinto(memoryview(target)))
    await asyncio.sleep(0)  # the read is waiting before the first byte is sent
    gate.set()
    await reading
    assert target == data
    assert len(handed) > 1 and all(obj is target for obj in handed)  # never the stream's own buffer
    await sender
    stream.close()


async def test_bytes_nobody_asked_for_yet_wait_in_the_socket():
    """A server far ahead of the reader: the stream keeps one buffer's worth, the rest stays in
    the socket, and all of it arrives once asked for."""
    data = os.urandom(6 * CHUNK)
    sock, sender = await serve(data, pieces=4)
    stream = await open_unix(sock=sock)
    await asyncio.sleep(0.2)  # the server writes what the socket takes
    assert stream._end - stream._start <= CHUNK
    head = await stream.readexactly(10)
    rest = bytearray(len(data) - 10)
    await stream.readinto(memoryview(rest))
    assert head + rest == data
    await sender
    stream.close()


@pytest.mark.parametrize("into", [False, True])
async def test_an_early_end_is_an_incomplete_read(into):
    sock, sender = await serve(b"x" * 1000, pieces=3)
    stream = await open_unix(sock=sock)
    with pytest.raises(asyncio.IncompleteReadError):
        if into:
            await stream.readinto(memoryview(bytearray(2000)))
        else:
            await stream.readexactly(2000)
    await sender
    stream.close()


async def test_a_large_read_reads_on_without_the_event_loop(monkeypatch):
    """The loop's own reads made tiny: what the socket holds beyond them is read by the stream
    itself, in the same wakeup, and every byte still lands in order."""
    data = os.urandom(4 * CHUNK)
    gate = asyncio.Event()
    sock, sender = await serve(data, pieces=8, gate=gate)
    get_buffer, read_ahead, ahead = stream_module.RfbStream.get_buffer, stream_module.RfbStream._read_ahead, []

    def counting(self, target: memoryview) -> None:
        before = self._filled
        read_ahead(self, target)
        ahead.append(self._filled - before)
    monkeypatch.setattr(stream_module.RfbStream, "get_buffer", lambda self, hint: get_buffer(self, hint)[:1000])
    monkeypatch.setattr(stream_module.RfbStream, "_read_ahead", counting)
    stream = await open_unix(sock=sock)
    target = bytearray(len(data))
    reading = asyncio.ensure_future(stream.readinto(memoryview(target)))
    await asyncio.sleep(0)
    gate.set()
    await reading
    assert target == data
    assert sum(ahead) > len(data) // 2  # most of it came without a trip through the loop
    await sender
    stream.close()
