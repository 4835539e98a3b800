"""An asyncio RFB (VNC) client, focused on what a VM console needs.

Versions 3.3, 3.7 and 3.8; security None and VNC authentication. Encodings: Raw and CopyRect,
and zlib for servers that are not on this machine. ZRLE and Hextile are never offered: decoded
in Python they cost 100+ ms a frame, and QEMU picks ZRLE whenever it is offered. Pseudo-
encodings: DesktopSize, ExtendedDesktopSize, Cursor, QEMU's pointer-type change, LED state and
Extended Key Event (raw XT scancodes, so the guest's own keyboard layout applies).

Every length the server sends is checked before anything is allocated; bad data ends the
connection with ConsoleError, never a hang or an unbounded read.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvdesk.console import vncauth
from hvdesk.console.framebuffer import BYTES_PER_PIXEL, Framebuffer
from hvdesk.console.stream import RfbStream, open_tcp, open_unix
from hvdesk.core.errors import ConsoleError

# Encodings (RFC 6143 and the community registry)
RAW, COPYRECT, ZLIB = 0, 1, 6
DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE, CURSOR = -223, -308, -239
QEMU_POINTER_MOTION_CHANGE, QEMU_EXTENDED_KEY_EVENT, QEMU_LED_STATE = -257, -258, -261

# Client messages
SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, KEY_EVENT, POINTER_EVENT, QEMU_CLIENT = 0, 2, 3, 4, 5, 255

# 32 bpp, depth 24, little-endian, true colour, red at bit 16: B G R X in memory.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)

MAX_TEXT = 1024 * 1024  # a clipboard or reason string longer than this is refused
MAX_CURSOR_SIDE = 512
HANDSHAKE_TIMEOUT = 10.0
RAW_BAND = 1024 * 1024


@dataclass
class Cursor:
    hotspot_x: int
    hotspot_y: int
    width: int
    height: int
    pixels: bytes  # BGRX, like the framebuffer
    mask: bytes  # 1 bit per pixel, rows padded to bytes: 1 = opaque


@dataclass
class ConsoleEvents:
    """Callbacks from the client; all optional, all called on the event loop."""

    update: Callable[[int, int, int, int], None] | None = None  # a rectangle changed
    frame: Callable[[], None] | None = None  # a whole FramebufferUpdate was applied
    resize: Callable[[int, int], None] | None = None
    cursor: Callable[[Cursor], None] | None = None
    bell: Callable[[], None] | None = None
    clipboard: Callable[[str], None] | None = None
    leds: Callable[[int], None] | None = None  # bit 0 scroll, 1 num, 2 caps lock
    pointer_absolute: Callable[[bool], None] | None = None


@dataclass
class ServerInfo:
    name: str = ""
    version: tuple[int, int] = (3, 8)
    extended_keys: bool = False  # QEMU's scancode key events are available
    absolute_pointer: bool = True
    leds: int = 0
    pixel_format: bytes = field(default=b"", repr=False)


class RfbClient:
    def __init__(self, *, password: str | None = None, local: bool = True,
                 events: ConsoleEvents | None = None, continuous: bool = True) -> None:
        self.password = password
        self.continuous = continuous  # ask for the next update as soon as one arrives (else: request_update)
        self.local = local  # on this machine: raw pixels beat any compression
        self.events = events or ConsoleEvents()
        self.server = ServerInfo()
        self.framebuffer: Framebuffer | None = None
        self.frames = 0  # FramebufferUpdates that carried pixels, applied so far
        self._covered = 0  # pixels received since the screen was (re)sized
        self._screen_ready = asyncio.Event()  # the whole screen has arrived at least once
        # One handler per encoding asked for (pixels, or pseudo-encodings: news about the screen).
        self._handlers: dict[int, Callable[[int, int, int, int], Awaitable[bool]]] = {
            RAW: self._raw, COPYRECT: self._copyrect, ZLIB: self._zlib_rect,
            DESKTOP_SIZE: self._desktop_size, EXTENDED_DESKTOP_SIZE: self._extended_desktop_size,
            CURSOR: self._cursor_rect, QEMU_POINTER_MOTION_CHANGE: self._pointer_kind,
            QEMU_EXTENDED_KEY_EVENT: self._extended_keys, QEMU_LED_STATE: self._led_state}
        self._stream: RfbStream | None = None
        self._band = bytearray()  # reused for Raw rectangles narrower than the screen
        self._zlib = zlib.decompressobj()
        self._frame_waiters: list[asyncio.Future[int]] = []
        self._closed = False

    # -- connecting --------------------------------------------------------------------------

    async def connect_unix(self, path: Path | str) -> None:
        try:
            stream = await open_unix(path)
        except OSError as exc:
            raise ConsoleError(f"cannot connect to the VNC console at {path}: {exc.strerror or exc}") from None
        await self._handshake(stream)

    async def connect_socket(self, sock: socket.socket) -> None:
        """Use an already connected socket (e.g. one half of a socketpair handed to QEMU)."""
        await self._handshake(await open_unix(sock=sock))

    async def connect_tcp(self, host: str, port: int) -> None:
        try:
            stream = await open_tcp(host, port)
        except OSError as exc:
            raise ConsoleError(f"cannot connect to the VNC server {host}:{port}: {exc.strerror or exc}") from None
        await self._handshake(stream)

    async def _handshake(self, stream: RfbStream) -> None:
        self._stream = stream
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await self._negotiate()
        except TimeoutError:
            await self.close()
            raise ConsoleError("the VNC server did not complete the handshake in time") from None
        except (ConsoleError, asyncio.IncompleteReadError, OSError) as exc:
            await self.close()
            raise _as_console_error(exc) from None

    async def _negotiate(self) -> None:
        banner = await self._read(12)
        if not (banner.startswith(b"RFB ") and banner[7:8] == b"." and banner.endswith(b"\n")
                and banner[4:7].isdigit() and banner[8:11].isdigit()):
            raise ConsoleError(f"not a VNC server (it said {banner!r})")
        major, minor = int(banner[4:7]), int(banner[8:11])
        if (major, minor) < (3, 3):
            raise ConsoleError(f"VNC protocol {major}.{minor} is too old")
        version = (3, 8) if (major, minor) >= (3, 8) else (3, 7) if (major, minor) >= (3, 7) else (3, 3)
        self.server.version = version
        self._write(b"RFB %03d.%03d\n" % version)
        chosen = await self._choose_security(version)
        if chosen == 2:
            challenge = await self._read(16)
            self._write(vncauth.response(self.password or "", challenge))
        if chosen == 2 or version >= (3, 8):
            (result,) = struct.unpack(">I", await self._read(4))
            if result != 0:
                reason = await self._read_text() if version >= (3, 8) else ""
                raise ConsoleError(f"VNC authentication failed{': ' + reason if reason else ''}")
        self._write(b"\x01")  # shared: other viewers may stay connected
        width, height = struct.unpack(">HH", await self._read(4))
        self.server.pixel_format = await self._read(16)
        self.server.name = await self._read_text()
        self.framebuffer = Framebuffer(width, height)
        self._write(struct.pack(">B3x", SET_PIXEL_FORMAT) + PIXEL_FORMAT)
        encodings = [COPYRECT, RAW] if self.local else [ZLIB, COPYRECT, RAW]
        encodings += [DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE, CURSOR, QEMU_POINTER_MOTION_CHANGE,
                      QEMU_EXTENDED_KEY_EVENT, QEMU_LED_STATE]
        self._write(struct.pack(f">BxH{len(encodings)}i", SET_ENCODINGS, len(encodings), *encodings))
        self.request_update(incremental=False)
        await self.flush()

    async def _choose_security(self, version: tuple[int, int]) -> int:
        if version == (3, 3):
            (offered,) = struct.unpack(">I", await self._read(4))
            types = [offered]
        else:
            (count,) = await self._read(1)
            types = list(await self._read(count)) if count else [0]
        if types == [0]:
            reason = await self._read_text()
            raise ConsoleError(f"the VNC server refused the connection: {reason or 'no reason given'}")
        if 1 in types:
            chosen = 1
        elif 2 in types:
            if self.password is None:
                raise ConsoleError("the VNC server requires a password")
            chosen = 2
        else:
            raise ConsoleError(f"the VNC server offers no security type this client supports ({types})")
        if version != (3, 3):
            self._write(bytes([chosen]))
        return chosen

    # -- the message loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Read and apply server messages until the connection ends. Raises ConsoleError on bad
        data or a dropped connection (not after close())."""
        try:
            while True:
                (kind,) = await self._read(1)
                handler = self._HANDLERS.get(kind)
                if handler is None:
                    raise ConsoleError(f"the VNC server sent an unknown message type {kind}")
                await handler(self)
        except (ConsoleError, asyncio.IncompleteReadError, OSError) as exc:
            if not self._closed:
                await self.close()
                self._fail_waiters(_as_console_error(exc))
                raise _as_console_error(exc) from None
        finally:
            self._fail_waiters(ConsoleError("the VNC connection closed"))

    async def _on_update(self) -> None:
        _, count = struct.unpack(">BH", await self._read(3))
        pixels = False
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self._read(12))
            if await self._rect(x, y, w, h, encoding):
                pixels = True
                self._covered += w * h
        if self.continuous:
            self.request_update(incremental=True)
        if self._covered >= self.screen.width * self.screen.height:
            self._screen_ready.set()
        if not pixels:  # only pseudo-rectangles (server features, cursor): no new picture
            return
        self.frames += 1
        if self.events.frame:
            self.events.frame()
        waiters, self._frame_waiters = self._frame_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(self.frames)

    async def _rect(self, x: int, y: int, w: int, h: int, encoding: int) -> bool:
        """Apply one rectangle; True if it changed pixels on the screen."""
        handler = self._handlers.get(encoding)
        if handler is None:
            raise ConsoleError(f"the VNC server used encoding {encoding}, which was not asked for")
        if not await handler(x, y, w, h):
            return False  # a pseudo-encoding: news about the screen, not pixels
        if self.events.update:
            self.events.update(x, y, w, h)
        return True

    async def _raw(self, x: int, y: int, w: int, h: int) -> bool:
        fb = self.screen
        fb.check_rect(x, y, w, h)
        if x == 0 and w == fb.width:  # whole rows: the kernel writes them into the framebuffer
            await self._readinto(fb.rows(y, h))
            return True
        # Narrower: in bands of at most 1 MiB through one reused buffer, then row by row into place.
        row = w * BYTES_PER_PIXEL
        rows = max(1, RAW_BAND // max(row, 1))
        if len(self._band) < row * min(rows, h):
            self._band = bytearray(row * min(rows, h))
        for top in range(0, h, rows):
            band = min(rows, h - top)
            pixels = memoryview(self._band)[:row * band]
            await self._readinto(pixels)
            fb.put(x, y + top, w, band, pixels)
        return True

    async def _copyrect(self, x: int, y: int, w: int, h: int) -> bool:
        src_x, src_y = struct.unpack(">HH", await self._read(4))
        self.screen.copy(x, y, w, h, src_x, src_y)
        return True

    async def _zlib_rect(self, x: int, y: int, w: int, h: int) -> bool:
        self.screen.check_rect(x, y, w, h)
        (length,) = struct.unpack(">I", await self._read(4))
        expected = w * h * BYTES_PER_PIXEL
        if length > expected + 1024 + expected // 2:  # more than zlib could ever need
            raise ConsoleError(f"the VNC server sent an oversized zlib rectangle ({length} bytes)")
        try:
            pixels = self._zlib.decompress(await self._read(length), expected)
        except zlib.error as exc:
            raise ConsoleError(f"the VNC server sent corrupt zlib data ({exc})") from None
        if len(pixels) != expected or self._zlib.unconsumed_tail:
            raise ConsoleError("the VNC server's zlib rectangle does not match its size")
        self.screen.put(x, y, w, h, pixels)
        return True

    async def _extended_desktop_size(self, x: int, y: int, w: int, h: int) -> bool:
        (screens,) = struct.unpack(">B3x", await self._read(4))
        await self._read(16 * screens)
        if x == 1 and y != 0:  # our own resize request failed: nothing changed
            return False
        return await self._desktop_size(x, y, w, h)

    async def _desktop_size(self, x: int, y: int, w: int, h: int) -> bool:
        self.screen.resize(w, h)
        self._covered = 0
        self._screen_ready.clear()
        if self.events.resize:
            self.events.resize(w, h)
        return False

    async def _cursor_rect(self, x: int, y: int, w: int, h: int) -> bool:
        await self._cursor(x, y, w, h)
        return False

    async def _pointer_kind(self, x: int, y: int, w: int, h: int) -> bool:
        self.server.absolute_pointer = x != 0
        if self.events.pointer_absolute:
            self.events.pointer_absolute(self.server.absolute_pointer)
        return False

    async def _extended_keys(self, x: int, y: int, w: int, h: int) -> bool:
        self.server.extended_keys = True
        return False

    async def _led_state(self, x: int, y: int, w: int, h: int) -> bool:
        (self.server.leds,) = await self._read(1)
        if self.events.leds:
            self.events.leds(self.server.leds)
        return False

    async def _cursor(self, x: int, y: int, w: int, h: int) -> None:
        if w > MAX_CURSOR_SIDE or h > MAX_CURSOR_SIDE:
            raise ConsoleError(f"the VNC server sent an oversized cursor ({w}x{h})")
        pixels = await self._read(w * h * BYTES_PER_PIXEL)
        mask = await self._read((w + 7) // 8 * h)
        if self.events.cursor:
            self.events.cursor(Cursor(x, y, w, h, pixels, mask))

    async def _on_colour_map(self) -> None:
        _, _, count = struct.unpack(">BHH", await self._read(5))
        await self._read(count * 6)  # we asked for true colour; a palette means nothing to us

    async def _on_bell(self) -> None:
        if self.events.bell:
            self.events.bell()

    async def _on_cut_text(self) -> None:
        await self._read(3)
        text = await self._read_text()
        if self.events.clipboard:
            self.events.clipboard(text)

    _HANDLERS = {0: _on_update, 1: _on_colour_map, 2: _on_bell, 3: _on_cut_text}

    # -- what the client sends -------------------------------------------------------------------

    def request_update(self, incremental: bool = True) -> None:
        fb = self.framebuffer
        if fb is not None and self._stream is not None and not self._closed:
            self._write(struct.pack(">BBHHHH", UPDATE_REQUEST, int(incremental), 0, 0, fb.width, fb.height))

    def key(self, down: bool, keysym: int, scancode: int = 0) -> None:
        """A key press or release: by XT scancode when QEMU's extension is there (the guest's
        layout applies), else by keysym."""
        if self.server.extended_keys and scancode:
            self._write(struct.pack(">BBHII", QEMU_CLIENT, 0, int(down), keysym, scancode))
        else:
            self._write(struct.pack(">BBxxI", KEY_EVENT, int(down), keysym))

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Pointer at (x, y) in framebuffer pixels; buttons: bit 0 left, 1 middle, 2 right, 3/4 wheel."""
        fb = self.framebuffer
        if fb is not None:
            x, y = max(0, min(x, fb.width - 1)), max(0, min(y, fb.height - 1))
        self._write(struct.pack(">BBHH", POINTER_EVENT, buttons & 0xFF, x, y))

    async def flush(self) -> None:
        if self._stream is not None and not self._closed:
            try:
                await self._stream.drain()
            except OSError as exc:
                raise ConsoleError(f"the VNC connection broke: {exc}") from None

    async def whole_screen(self, timeout: float = 10.0) -> Framebuffer:
        """Wait until every pixel of the current screen has arrived (run() must be running)."""
        try:
            async with asyncio.timeout(timeout):
                await self._screen_ready.wait()
        except TimeoutError:
            raise ConsoleError(f"the VNC server did not send the whole screen within {timeout:g} s") from None
        return self.screen

    async def next_frame(self, timeout: float = 10.0) -> int:
        """Wait for the next FramebufferUpdate to be applied (run() must be running)."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._frame_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            raise ConsoleError(f"no screen update from the VNC server within {timeout:g} s") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            self._stream.close()
            try:
                await self._stream.wait_closed()
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def screen(self) -> Framebuffer:
        """The framebuffer, which the handshake makes (so every server message has one)."""
        if self.framebuffer is None:
            raise ConsoleError("the VNC console is not connected")
        return self.framebuffer

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, count: int) -> bytes:
        if self._stream is None:
            raise ConsoleError("the VNC console is not connected")
        return await self._stream.readexactly(count)

    async def _readinto(self, view: memoryview) -> None:
        if self._stream is None:
            raise ConsoleError("the VNC console is not connected")
        await self._stream.readinto(view)

    async def _read_text(self) -> str:
        (length,) = struct.unpack(">I", await self._read(4))
        if length > MAX_TEXT:
            raise ConsoleError(f"the VNC server sent a {length}-byte string; refusing more than {MAX_TEXT}")
        return (await self._read(length)).decode("latin-1")

    def _write(self, data: bytes) -> None:
        if self._stream is None or self._closed:
            raise ConsoleError("the VNC console is not connected")
        self._stream.write(data)

    def _fail_waiters(self, error: ConsoleError) -> None:
        waiters, self._frame_waiters = self._frame_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)


def _as_console_error(exc: BaseException) -> ConsoleError:
    if isinstance(exc, ConsoleError):
        return exc
    if isinstance(exc, asyncio.IncompleteReadError):
        return ConsoleError("the VNC server closed the connection")
    return ConsoleError(f"the VNC connection broke: {exc}")

