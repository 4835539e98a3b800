"""The console window on a real guest: it shows the screen, forwards keys, and reconnects."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from hvdesk.ui.console_window import ConsoleWindow
from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import wait_for_serial
from tests.qt.conftest import row_texts

pytestmark = pytest.mark.qemu


def open_console(window, run, until, guest_request, tiny_guest, name="screen") -> ConsoleWindow:
    machine = run(window.manager.create(guest_request(name)))
    run(window.manager.start(name))
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    window.select(name)
    window.actions_by_key["show"].trigger()
    console = window.consoles[name]
    until(lambda: console.client is not None and console.client.frames > 0, what="console connected")
    run(console.client.whole_screen())
    return console


def lit_pixels(image: QImage) -> int:
    """Pixels that are not black (the text console draws grey on black)."""
    data = bytes(image.constBits())[: image.sizeInBytes()]
    return sum(1 for i in range(0, len(data), 4) if data[i] or data[i + 1] or data[i + 2])


def test_console_shows_the_guest_and_forwards_keys(window, run, until, guest_request, tiny_guest, tmp_path):
    console = open_console(window, run, until, guest_request, tiny_guest)
    assert console.pages.currentWidget() is console.scroll_area
    fb = console.client.framebuffer
    assert (fb.width, fb.height) == (720, 400)  # the VGA text console
    assert lit_pixels(console.view.snapshot()) > 1000  # SeaBIOS and shell text
    assert console.view.grab().size().width() > 0

    view = console.view
    view.setFocus()
    run(wait_for_serial(window.manager.get("screen").paths.serial_log, SHELL_MARKER))
    # Typed as on a real keyboard: Shift is its own key, held around ">" and "S" (sent as the
    # unshifted keys "." and "s", which the guest's layout turns into ">" and "S").
    for chunk in ("echo qttyped ", "+>", " /dev/tty", "+S", "0"):
        if chunk.startswith("+"):
            QTest.keyPress(view, Qt.Key.Key_Shift)
            QTest.keyClicks(view, chunk[1:])
            QTest.keyRelease(view, Qt.Key.Key_Shift)
        else:
            QTest.keyClicks(view, chunk)
    QTest.keyClick(view, Qt.Key.Key_Return)
    run(console.client.flush())
    machine = window.manager.get("screen")
    run(wait_for_serial(machine.paths.serial_log, "qttyped", timeout=20))

    target = tmp_path / "shot.png"
    assert console.save_screenshot(target)
    saved = QImage(str(target))
    assert (saved.width(), saved.height()) == (720, 400)
    console.set_scaled(False)
    assert view.size().width() == 720  # 1:1 with scroll bars
    console.set_scaled(True)
    console.close()


def test_console_offers_start_and_reconnects(window, run, until, guest_request, tiny_guest):
    console = open_console(window, run, until, guest_request, tiny_guest, "again")
    run(window.manager.stop("again", force=True, timeout=0))
    until(lambda: console.pages.currentWidget() is console.stopped_page, what="stopped page")
    assert console.start_button.isVisible() and "stopped" in console.stopped_label.text()
    console.start_button.click()
    until(lambda: row_texts(window)["again"] == "Running", what="started from the console window")
    until(lambda: console.client is not None and console.client.frames > 0, 30, "reconnected")
    assert console.pages.currentWidget() is console.scroll_area
    console.close()


def test_key_combo_menu_sends_ctrl_alt_del(window, run, until, guest_request, tiny_guest):
    console = open_console(window, run, until, guest_request, tiny_guest, "combo")
    labels = [a.text() for a in console.keys_menu.actions()]
    assert labels[:2] == ["Ctrl+Alt+Del", "Ctrl+Alt+Backspace"] and "Ctrl+Alt+F12" in labels
    machine = window.manager.get("combo")
    console.keys_menu.actions()[0].trigger()  # busybox init is not running: the kernel reboots
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker, count=2, timeout=60))
    console.close()


def test_details_preview_follows_the_selected_vm(window, run, until, guest_request, tiny_guest):
    machine = run(window.manager.create(guest_request("thumb")))
    run(window.manager.start("thumb"))
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    window.select("thumb")
    preview = window.details.preview
    until(lambda: preview.client is not None and preview.client.frames > 0, what="preview frames")
    run(window.manager.stop("thumb", force=True, timeout=0))
    until(lambda: preview.client is None and preview.message == "Not running", what="preview stops")
