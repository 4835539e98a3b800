"""Keys as QEMU names them (`ret`, `a`, `ctrl`, as in its `sendkey`), with their XT scancodes
and X keysyms; and the host keycodes that map onto them.

Scancodes are QEMU's "qnum" form: the XT set-1 code, with 0x80 added for keys sent with the 0xE0
prefix. Sent as scancodes, keys mean what the guest's own layout says they mean.
"""

from __future__ import annotations

from hvdesk.core.errors import ConfigError

# name: (scancode, keysym)
KEYS: dict[str, tuple[int, int]] = {
    "esc": (0x01, 0xFF1B), "1": (0x02, 0x31), "2": (0x03, 0x32), "3": (0x04, 0x33), "4": (0x05, 0x34),
    "5": (0x06, 0x35), "6": (0x07, 0x36), "7": (0x08, 0x37), "8": (0x09, 0x38), "9": (0x0A, 0x39),
    "0": (0x0B, 0x30), "minus": (0x0C, 0x2D), "equal": (0x0D, 0x3D), "backspace": (0x0E, 0xFF08),
    "tab": (0x0F, 0xFF09), "q": (0x10, 0x71), "w": (0x11, 0x77), "e": (0x12, 0x65), "r": (0x13, 0x72),
    "t": (0x14, 0x74), "y": (0x15, 0x79), "u": (0x16, 0x75), "i": (0x17, 0x69), "o": (0x18, 0x6F),
    "p": (0x19, 0x70), "bracket_left": (0x1A, 0x5B), "bracket_right": (0x1B, 0x5D), "ret": (0x1C, 0xFF0D),
    "ctrl": (0x1D, 0xFFE3), "a": (0x1E, 0x61), "s": (0x1F, 0x73), "d": (0x20, 0x64), "f": (0x21, 0x66),
    "g": (0x22, 0x67), "h": (0x23, 0x68), "j": (0x24, 0x6A), "k": (0x25, 0x6B), "l": (0x26, 0x6C),
    "semicolon": (0x27, 0x3B), "apostrophe": (0x28, 0x27), "grave_accent": (0x29, 0x60),
    "shift": (0x2A, 0xFFE1), "backslash": (0x2B, 0x5C), "z": (0x2C, 0x7A), "x": (0x2D, 0x78),
    "c": (0x2E, 0x63), "v": (0x2F, 0x76), "b": (0x30, 0x62), "n": (0x31, 0x6E), "m": (0x32, 0x6D),
    "comma": (0x33, 0x2C), "dot": (0x34, 0x2E), "slash": (0x35, 0x2F), "shift_r": (0x36, 0xFFE2),
    "kp_multiply": (0x37, 0xFFAA), "alt": (0x38, 0xFFE9), "spc": (0x39, 0x20), "caps_lock": (0x3A, 0xFFE5),
    "f1": (0x3B, 0xFFBE), "f2": (0x3C, 0xFFBF), "f3": (0x3D, 0xFFC0), "f4": (0x3E, 0xFFC1),
    "f5": (0x3F, 0xFFC2), "f6": (0x40, 0xFFC3), "f7": (0x41, 0xFFC4), "f8": (0x42, 0xFFC5),
    "f9": (0x43, 0xFFC6), "f10": (0x44, 0xFFC7), "num_lock": (0x45, 0xFF7F), "scroll_lock": (0x46, 0xFF14),
    "kp_7": (0x47, 0xFFB7), "kp_8": (0x48, 0xFFB8), "kp_9": (0x49, 0xFFB9), "kp_subtract": (0x4A, 0xFFAD),
    "kp_4": (0x4B, 0xFFB4), "kp_5": (0x4C, 0xFFB5), "kp_6": (0x4D, 0xFFB6), "kp_add": (0x4E, 0xFFAB),
    "kp_1": (0x4F, 0xFFB1), "kp_2": (0x50, 0xFFB2), "kp_3": (0x51, 0xFFB3), "kp_0": (0x52, 0xFFB0),
    "kp_decimal": (0x53, 0xFFAE), "sysrq": (0x54, 0xFF15), "less": (0x56, 0x3C), "f11": (0x57, 0xFFC8),
    "f12": (0x58, 0xFFC9), "kp_enter": (0x9C, 0xFF8D), "ctrl_r": (0x9D, 0xFFE4), "kp_divide": (0xB5, 0xFFAF),
    "print": (0xB7, 0xFF61), "alt_r": (0xB8, 0xFFEA), "pause": (0xC6, 0xFF13), "home": (0xC7, 0xFF50),
    "up": (0xC8, 0xFF52), "pgup": (0xC9, 0xFF55), "left": (0xCB, 0xFF51), "right": (0xCD, 0xFF53),
    "end": (0xCF, 0xFF57), "down": (0xD0, 0xFF54), "pgdn": (0xD1, 0xFF56), "insert": (0xD2, 0xFF63),
    "delete": (0xD3, 0xFFFF), "meta_l": (0xDB, 0xFFEB), "meta_r": (0xDC, 0xFFEC), "menu": (0xDD, 0xFF67),
}
ALIASES = {"enter": "ret", "return": "ret", "space": "spc", "escape": "esc", "del": "delete",
           "control": "ctrl", "super": "meta_l", "win": "meta_l", "pgup": "pgup", "page_up": "pgup",
           "page_down": "pgdn", "backspace": "backspace", "altgr": "alt_r", "prtsc": "print"}

# Linux evdev codes equal XT scancodes up to 88 (F12); above that, the keys that differ.
_EVDEV_EXTENDED = {86: 0x56, 96: 0x9C, 97: 0x9D, 98: 0xB5, 99: 0xB7, 100: 0xB8, 102: 0xC7, 103: 0xC8,
                   104: 0xC9, 105: 0xCB, 106: 0xCD, 107: 0xCF, 108: 0xD0, 109: 0xD1, 110: 0xD2, 111: 0xD3,
                   119: 0xC6, 125: 0xDB, 126: 0xDC, 127: 0xDD}

# Characters a US keyboard types, as key names (with shift where needed), for typing text.
_SHIFTED = dict(zip('!@#$%^&*()_+{}|:"~<>?', ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "minus",
                                            "equal", "bracket_left", "bracket_right", "backslash",
                                            "semicolon", "apostrophe", "grave_accent", "comma", "dot", "slash"]))
_PLAIN = {" ": "spc", "\n": "ret", "\t": "tab", "-": "minus", "=": "equal", "[": "bracket_left",
          "]": "bracket_right", "\\": "backslash", ";": "semicolon", "'": "apostrophe", "`": "grave_accent",
          ",": "comma", ".": "dot", "/": "slash"}


def key(name: str) -> tuple[int, int]:
    """(scancode, keysym) of a QEMU key name; ConfigError naming the unknown one."""
    name = name.strip().lower()
    found = KEYS.get(ALIASES.get(name, name))
    if found is None:
        raise ConfigError(f"unknown key {name!r} (use QEMU key names such as ret, a, f1, ctrl, alt, delete)")
    return found


def combo(text: str) -> list[str]:
    """"ctrl-alt-delete" -> ["ctrl", "alt", "delete"] (a lone "-" is the minus key)."""
    if text in ("-", "minus"):
        return ["minus"]
    parts = text.split("-")
    for part in parts:
        key(part)  # validate each
    return parts


def keys_for_text(text: str) -> list[str]:
    """Key combos (QEMU names) that type `text` on a US layout."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum()):
            out.append(f"shift-{char.lower()}" if char.isupper() else char)
        elif char in _PLAIN:
            out.append(_PLAIN[char])
        elif char in _SHIFTED:
            out.append(f"shift-{_SHIFTED[char]}")
        else:
            raise ConfigError(f"cannot type {char!r}: only US keyboard characters are supported")
    return out


def scancode_from_evdev(code: int) -> int:
    """XT scancode (qnum) for a Linux input event code; 0 if unknown."""
    if 0 < code <= 88 and code not in (84, 85, 86):
        return code
    return _EVDEV_EXTENDED.get(code, 0)


def scancode_from_windows(code: int) -> int:
    """XT scancode (qnum) from a Windows scan code (0x100 or 0xE000 marks the E0 prefix)."""
    extended = bool(code & 0x100) or (code & 0xFF00) == 0xE000
    return (code & 0x7F) | (0x80 if extended else 0) if code else 0
