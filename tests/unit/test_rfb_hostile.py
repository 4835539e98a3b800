"""The RFB client against servers that lie: every bad stream ends in ConsoleError, quickly, with
bounded memory; never a crash, a hang in the handshake, or a huge allocation."""

from __future__ import annotations

import asyncio
import struct
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvdesk.console.rfb import PIXEL_FORMAT, RfbClient
from hvdesk.core.errors import ConsoleError

NAME = b"fake"


def server_init(width: int = 16, height: int = 8) -> bytes:
    return struct.pack(">HH", width, height) + PIXEL_FORMAT + struct.pack(">I", len(NAME)) + NAME


HANDSHAKE = b"RFB 003.008\n" + b"\x01\x01" + b"\0\0\0\0" + server_init()


async def talk(stream: bytes, password: str | None = None, timeout: float = 5.0,
               client: RfbClient | None = None) -> RfbClient:
    """Serve `stream` to a fresh client on a unix socket (then close), and run the client on it."""
    folder = Path(tempfile.mkdtemp(prefix="rfb-", dir="/tmp"))
    path = folder / "s.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(stream)
            await writer.drain()
            await asyncio.sleep(0.05)  # let the client read before the close
        except (asyncio.CancelledError, ConnectionError):
            pass  # the client hung up first: fine
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path)
    client = client or RfbClient(password=password)
    try:
        async with asyncio.timeout(timeout):
            await client.connect_unix(path)
            await client.run()
    finally:
        server.close()
        await client.close()
        path.unlink(missing_ok=True)
        folder.rmdir()
    return client


def update(*rects: bytes) -> bytes:
    return struct.pack(">BxH", 0, len(rects)) + b"".join(rects)


def rect(x: int, y: int, w: int, h: int, encoding: int, body: bytes = b"") -> bytes:
    return struct.pack(">HHHHi", x, y, w, h, encoding) + body


async def test_a_good_stream_is_applied_then_eof_is_reported():
    pixels = bytes(range(32))  # a 4x2 rectangle
    stream = HANDSHAKE + update(rect(0, 0, 16, 8, 0, bytes(16 * 8 * 4))) + update(rect(0, 0, 4, 2, 0, pixels))
    client = RfbClient()
    with pytest.raises(ConsoleError, match="closed the connection"):
        await talk(stream, client=client)
    assert client.frames == 2 and client.server.name == "fake"
    data = client.framebuffer.data  # 16 pixels (64 bytes) a row: the 4x2 rectangle is in two rows
    assert data[0:16] == pixels[:16] and data[64:80] == pixels[16:]
    assert not any(data[16:64]) and not any(data[80:])


@pytest.mark.parametrize("stream, message", [
    (b"HTTP/1.1 200 OK\r\n", "not a VNC server"),
    (b"RFB 002.002\n", "too old"),
    (b"RFB 003.008\n\x00" + struct.pack(">I", 7) + b"go away", "refused the connection: go away"),
    (b"RFB 003.008\n\x01\x10", "no security type this client supports"),
    (b"RFB 003.008\n\x01\x02", "requires a password"),
    (b"RFB 003.008\n\x00" + struct.pack(">I", 2**32 - 1), "refusing more than"),
    (b"RFB 003.008\n\x01\x01\0\0\0\0" + struct.pack(">HH", 0, 0) + PIXEL_FORMAT + b"\0\0\0\0", "impossible screen"),
    (b"RFB 003.008\n\x01\x01\0\0\0\0" + struct.pack(">HH", 65535, 65535) + PIXEL_FORMAT + b"\0\0\0\0",
     "impossible screen"),
    (b"RFB 003.008\n\x01\x01\0\0\0\x01" + struct.pack(">I", 4) + b"nope", "authentication failed: nope"),
    (HANDSHAKE + b"\x09", "unknown message type 9"),
    (HANDSHAKE + update(rect(10, 0, 16, 8, 0)), "outside its 16x8 screen"),
    (HANDSHAKE + update(rect(0, 0, 1, 1, 5)), "encoding 5, which was not asked for"),
    (HANDSHAKE + update(rect(0, 0, 4, 4, 1, struct.pack(">HH", 60000, 0))), "outside"),
    (HANDSHAKE + update(rect(0, 0, 16, 8, 6, struct.pack(">I", 2**31))), "oversized zlib"),
    (HANDSHAKE + update(rect(0, 0, 2, 2, 6, struct.pack(">I", 4) + b"junk")), "corrupt zlib"),
    (HANDSHAKE + update(rect(0, 0, 4000, 4000, -239)), "oversized cursor"),
    (HANDSHAKE + update(rect(0, 0, 20000, 20000, -223)), "impossible screen"),
    (HANDSHAKE + b"\x03\0\0\0" + struct.pack(">I", 2**32 - 1), "refusing more than"),
])
async def test_lies_are_named(stream, message):
    tracemalloc.start()
    try:
        with pytest.raises(ConsoleError, match=message):
            await talk(stream)
        assert tracemalloc.get_traced_memory()[1] < 32 * 1024 * 1024  # nothing huge was allocated
    finally:
        tracemalloc.stop()


async def test_wrong_password_fails_cleanly():
    stream = b"RFB 003.008\n\x01\x02" + bytes(16) + b"\0\0\0\x01" + struct.pack(">I", 3) + b"bad"
    with pytest.raises(ConsoleError, match="authentication failed: bad"):
        await talk(stream, password="x")


async def test_silent_server_times_out_in_the_handshake(monkeypatch):
    monkeypatch.setattr("hvdesk.console.rfb.HANDSHAKE_TIMEOUT", 0.3)
    folder = Path(tempfile.mkdtemp(prefix="rfb-", dir="/tmp"))
    path = folder / "s.sock"
    server = await asyncio.start_unix_server(lambda r, w: asyncio.sleep(5), path)
    try:
        with pytest.raises(ConsoleError, match="did not complete the handshake"):
            await RfbClient().connect_unix(path)
    finally:
        server.close()
        path.unlink()
        folder.rmdir()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_as_a_server(garbage):
    with pytest.raises(ConsoleError):
        asyncio.run(talk(garbage))


@FUZZ
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.builds(update, st.builds(rect, st.integers(0, 20), st.integers(0, 20), st.integers(0, 20),
                                st.integers(0, 20), st.sampled_from([0, 1, 6, -223, -239, -257, -258, -261, -308]),
                                st.binary(max_size=256))),
    st.sampled_from([b"\x02", b"\x01\0\0\0\0\x01" + bytes(6), b"\x03\0\0\0\0\0\0\x02hi"]),
), max_size=8))
def test_any_messages_after_a_good_handshake(messages):
    tracemalloc.start()
    try:
        with pytest.raises(ConsoleError):
            asyncio.run(talk(HANDSHAKE + b"".join(messages)))
        assert tracemalloc.get_traced_memory()[1] < 64 * 1024 * 1024
    finally:
        tracemalloc.stop()
