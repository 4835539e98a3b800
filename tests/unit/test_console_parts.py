import struct
import zlib

import pytest

from hvdesk.console import keys, vncauth
from hvdesk.console.framebuffer import Framebuffer
from hvdesk.core.errors import ConfigError, ConsoleError


def test_key_names_and_combos():
    assert keys.key("ret") == (0x1C, 0xFF0D) and keys.key("Enter") == keys.key("ret")
    assert keys.combo("ctrl-alt-delete") == ["ctrl", "alt", "delete"]
    assert keys.combo("-") == ["minus"]
    with pytest.raises(ConfigError, match="unknown key 'hyper'"):
        keys.combo("ctrl-hyper")


def test_text_to_keys_on_a_us_layout():
    assert keys.keys_for_text("Hi >/x\n") == ["shift-h", "i", "spc", "shift-dot", "slash", "x", "ret"]
    with pytest.raises(ConfigError, match="cannot type 'é'"):
        keys.keys_for_text("é")


def test_host_keycodes_to_scancodes():
    assert keys.scancode_from_evdev(30) == 0x1E  # KEY_A
    assert keys.scancode_from_evdev(103) == 0xC8  # KEY_UP: an E0 key
    assert keys.scancode_from_evdev(97) == 0x9D  # right Ctrl
    assert keys.scancode_from_evdev(999) == 0
    assert keys.scancode_from_windows(0x1E) == 0x1E
    assert keys.scancode_from_windows(0x148) == 0xC8 and keys.scancode_from_windows(0xE048) == 0xC8


def test_vnc_auth_response_shape():
    # Its correctness is proven against TigerVNC's server in tests/integration/test_console.py.
    challenge = bytes(range(16))
    first = vncauth.response("secret", challenge)
    assert len(first) == 16 and first != challenge
    assert vncauth.response("secret", challenge) == first  # deterministic
    assert vncauth.response("secret12IGNORED", challenge) == vncauth.response("secret12", challenge)


def test_framebuffer_put_copy_and_bounds():
    fb = Framebuffer(4, 3)
    fb.put(1, 1, 2, 1, bytes([1, 2, 3, 0, 4, 5, 6, 0]))
    fb.copy(0, 0, 2, 1, 1, 1)  # copy the two pixels to the top-left
    assert fb.data[0:8] == bytes([1, 2, 3, 0, 4, 5, 6, 0])
    fb.copy(1, 0, 3, 1, 0, 0)  # overlapping copy to the right keeps the source intact
    assert fb.data[4:16] == bytes([1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0])
    with pytest.raises(ConsoleError, match="outside"):
        fb.put(3, 2, 2, 1, bytes(8))
    assert fb.rgb()[:3] == bytes([3, 2, 1])  # BGRX in memory -> RGB


def test_png_is_valid():
    fb = Framebuffer(3, 2)
    fb.put(0, 0, 3, 2, bytes([0, 0, 255, 0] * 6))  # red
    png = fb.png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (3, 2)
    idat = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[idat - 4:idat])
    raw = zlib.decompress(png[idat + 4:idat + 4 + length])
    assert raw == (b"\0" + bytes([255, 0, 0] * 3)) * 2
