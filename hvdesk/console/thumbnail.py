"""A small PNG of a screen from QEMU's `screendump` (a binary PPM), without an imaging library:
each thumbnail pixel is the average of the screen pixels it covers (text stays legible as grey,
where picking one pixel would drop whole strokes)."""

from __future__ import annotations

from hvdesk.console.framebuffer import encode_png
from hvdesk.core.errors import ConsoleError

THUMB_WIDTH = 240
MAX_SIDE = 16384  # more is not a screen QEMU draws


def read_ppm(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of a binary PPM with 8-bit samples."""
    parts = data.split(maxsplit=4)
    if len(parts) < 5 or parts[0] != b"P6" or parts[3] != b"255":
        raise ConsoleError("the screen dump is not an 8-bit binary PPM")
    try:
        width, height = int(parts[1]), int(parts[2])
    except ValueError:
        raise ConsoleError("the screen dump's size is not a number") from None
    pixels = parts[4]
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or len(pixels) < width * height * 3:
        raise ConsoleError("the screen dump is cut short or of an impossible size")
    return width, height, pixels[:width * height * 3]


def shrink(width: int, height: int, rgb: bytes, target_width: int = THUMB_WIDTH) -> tuple[int, int, bytes]:
    """The picture scaled to `target_width` (never up), keeping its proportions."""
    if width <= target_width:
        return width, height, rgb
    new_w = target_width
    new_h = max(1, round(height * new_w / width))
    out = bytearray(new_w * new_h * 3)
    columns = [(x * width // new_w, max(x * width // new_w + 1, (x + 1) * width // new_w)) for x in range(new_w)]
    for y in range(new_h):
        top, bottom = y * height // new_h, max(y * height // new_h + 1, (y + 1) * height // new_h)
        rows = [rgb[r * width * 3:(r + 1) * width * 3] for r in range(top, bottom)]
        for x, (left, right) in enumerate(columns):
            count = (right - left) * len(rows)
            for channel in range(3):
                total = sum(sum(row[left * 3 + channel:right * 3:3]) for row in rows)
                out[(y * new_w + x) * 3 + channel] = total // count
    return new_w, new_h, bytes(out)


def png(width: int, height: int, rgb: bytes) -> bytes:
    return encode_png(width, height, rgb, level=9)  # small: kept with each snapshot


def thumbnail(ppm: bytes, target_width: int = THUMB_WIDTH) -> bytes:
    """A PNG at most `target_width` wide of the screen dump `ppm`."""
    return png(*shrink(*read_ppm(ppm), target_width))
