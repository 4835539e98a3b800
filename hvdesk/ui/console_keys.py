"""From Qt key events to what the guest needs: an XT scancode (the physical key, so the guest's
own layout applies) and an X keysym (for servers without QEMU's scancode extension).

The scancode comes from the host's own keycode where Qt exposes it (X11 and Wayland: evdev + 8;
Windows: scan codes); elsewhere (macOS, offscreen) from the Qt key, as on a US keyboard.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeyEvent

from hvdesk.console import keys
from hvdesk.core.errors import ConfigError

K = Qt.Key
_QT_NAMES = {
    K.Key_Escape: "esc", K.Key_Tab: "tab", K.Key_Backtab: "tab", K.Key_Backspace: "backspace",
    K.Key_Return: "ret", K.Key_Enter: "kp_enter", K.Key_Insert: "insert", K.Key_Delete: "delete",
    K.Key_Pause: "pause", K.Key_Print: "print", K.Key_SysReq: "sysrq", K.Key_Home: "home", K.Key_End: "end",
    K.Key_Left: "left", K.Key_Up: "up", K.Key_Right: "right", K.Key_Down: "down", K.Key_PageUp: "pgup",
    K.Key_PageDown: "pgdn", K.Key_Shift: "shift", K.Key_Control: "ctrl", K.Key_Meta: "meta_l",
    K.Key_Alt: "alt", K.Key_AltGr: "alt_r", K.Key_CapsLock: "caps_lock", K.Key_NumLock: "num_lock",
    K.Key_ScrollLock: "scroll_lock", K.Key_Menu: "menu", K.Key_Space: "spc", K.Key_Super_L: "meta_l",
    K.Key_Super_R: "meta_r",
    **{getattr(K, f"Key_F{n}"): f"f{n}" for n in range(1, 13)},
}


def _name_from_qt(event: QKeyEvent) -> str | None:
    name = _QT_NAMES.get(K(event.key()))
    if name is not None:
        return name
    text = event.text()
    if len(text) == 1 and text.isprintable() and text.isascii():
        try:
            return keys.keys_for_text(text)[0].split("-")[-1]  # "shift-1" -> "1": shift is its own event
        except ConfigError:
            return None
    if K.Key_A <= event.key() <= K.Key_Z:  # with Ctrl held, text() is a control character
        return chr(event.key()).lower()
    return None


def _scancode_from_native(event: QKeyEvent) -> int:
    native = event.nativeScanCode()
    platform = QGuiApplication.platformName()
    if platform in ("xcb", "wayland") and native > 8:
        return keys.scancode_from_evdev(native - 8)
    if platform == "windows":
        return keys.scancode_from_windows(native)
    return 0


def key_codes(event: QKeyEvent) -> tuple[int, int] | None:
    """(scancode, keysym) for the event, or None for a key we cannot send."""
    name = _name_from_qt(event)
    scancode = _scancode_from_native(event)
    keysym = keys.key(name)[1] if name else 0
    if not keysym and event.text() and event.text().isprintable():
        keysym = ord(event.text()) if ord(event.text()) < 0x100 else 0x01000000 | ord(event.text())
    if not scancode and name:
        scancode = keys.key(name)[0]
    if not scancode and not keysym:
        return None
    return scancode, keysym
