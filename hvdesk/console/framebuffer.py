"""The guest's screen as bytes: 32 bits per pixel, B G R X in memory (what Qt calls
Format_RGB32 on little-endian hosts), so the UI can wrap it in a QImage without copying."""

from __future__ import annotations

import struct
import zlib

from hvdesk.core.errors import ConsoleError

BYTES_PER_PIXEL = 4
MAX_SIDE = 16384  # larger than any real display; a bigger one is a hostile or broken server
MAX_PIXELS = 7680 * 4320  # 8K UHD (133 MB of framebuffer): the most a server may make us allocate


class Framebuffer:
    def __init__(self, width: int, height: int) -> None:
        self.width = self.height = 0
        self.data = bytearray()
        self.resize(width, height)

    @property
    def stride(self) -> int:
        return self.width * BYTES_PER_PIXEL

    def resize(self, width: int, height: int) -> None:
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
            raise ConsoleError(f"the VNC server announced an impossible screen size {width}x{height}")
        self.width, self.height = width, height
        self.data = bytearray(width * height * BYTES_PER_PIXEL)

    def check_rect(self, x: int, y: int, w: int, h: int) -> None:
        if x + w > self.width or y + h > self.height:
            raise ConsoleError(f"the VNC server sent a rectangle {w}x{h}+{x}+{y} outside its "
                               f"{self.width}x{self.height} screen")

    def rows(self, y: int, h: int) -> memoryview:
        """Rows y .. y+h-1 of the buffer itself, for a whole-width rectangle to be read into."""
        self.check_rect(0, y, self.width, h)
        return memoryview(self.data)[y * self.stride:(y + h) * self.stride]

    def put(self, x: int, y: int, w: int, h: int, pixels: bytes | memoryview) -> None:
        """Copy a rectangle of packed pixels (w*4 bytes a row) into place."""
        self.check_rect(x, y, w, h)
        row = w * BYTES_PER_PIXEL
        stride = self.stride
        start = y * stride + x * BYTES_PER_PIXEL
        if x == 0 and w == self.width:  # whole rows: one copy
            self.data[start:start + row * h] = pixels
            return
        view = memoryview(pixels)
        for line in range(h):
            offset = start + line * stride
            self.data[offset:offset + row] = view[line * row:(line + 1) * row]

    def copy(self, x: int, y: int, w: int, h: int, src_x: int, src_y: int) -> None:
        """CopyRect: move a rectangle already on screen (overlap-safe: rows in the right order)."""
        self.check_rect(x, y, w, h)
        self.check_rect(src_x, src_y, w, h)
        row, stride = w * BYTES_PER_PIXEL, self.stride
        lines = range(h - 1, -1, -1) if src_y < y else range(h)
        for line in lines:
            src = (src_y + line) * stride + src_x * BYTES_PER_PIXEL
            dst = (y + line) * stride + x * BYTES_PER_PIXEL
            self.data[dst:dst + row] = self.data[src:src + row]

    def rgb(self) -> bytes:
        """The screen as packed R G B bytes (for PNG files, and to compare with QMP screendump)."""
        out = bytearray(self.width * self.height * 3)
        out[0::3] = self.data[2::4]
        out[1::3] = self.data[1::4]
        out[2::3] = self.data[0::4]
        return bytes(out)

    def png(self) -> bytes:
        """An RGB PNG of the screen, without any imaging library."""
        return encode_png(self.width, self.height, self.rgb())


def encode_png(width: int, height: int, rgb: bytes, level: int = 6) -> bytes:
    """An 8-bit RGB PNG of `rgb` (rows of width * 3 bytes), zlib `level`."""
    row = width * 3
    raw = b"".join(b"\0" + rgb[y * row:(y + 1) * row] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, level))
            + chunk(b"IEND", b""))
