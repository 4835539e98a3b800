"""The settings dialog's port-forward table checks each cell as it is typed (issue 9, finding 1:
a forward's address that smuggles a guestfwd with cmd: into QEMU's -netdev)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialogButtonBox, QLineEdit, QPushButton

from tests.qt.test_main_window import settings_dialog

pytestmark = pytest.mark.qemu
INJECTION = "127.0.0.1:2298-:22,guestfwd=tcp:10.0.2.100:1234-cmd:touch /tmp/PWNED,hostfwd=tcp:127.0.0.1"


def type_into_cell(table, row: int, column: int, text: str) -> QLineEdit:
    """Open the cell's editor as a double-click would, replace its text key by key; leave it open."""
    table.setCurrentCell(row, column)
    table.editItem(table.item(row, column))
    (editor,) = [w for w in table.viewport().findChildren(QLineEdit) if w.isVisible()]
    editor.selectAll()
    QTest.keyClick(editor, Qt.Key.Key_Delete)
    QTest.keyClicks(editor, text)
    return editor


def test_port_forward_cells_are_checked_as_typed(window, run, guest_request):
    machine = run(window.manager.create(guest_request("net")))
    window.select("net")
    window.actions_by_key["settings"].trigger()
    dialog = settings_dialog(window)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    network = dialog.pages["Network"]
    dialog.tabs.setCurrentWidget(network)
    (add,) = [b for b in network.findChildren(QPushButton) if b.text() == "Add Rule"]
    add.click()
    table = network.forwards
    assert ok.isEnabled(), dialog.error.text()

    editor = type_into_cell(table, 0, 1, INJECTION)
    # Still in the editor, nothing committed by leaving the cell: the reason is already shown.
    assert not ok.isEnabled()
    assert dialog.error.text() == (f"nics[0].forwards[0].host_address: {INJECTION!r} is not an IPv4 address "
                                   "(e.g. 127.0.0.1, or 0.0.0.0 for every interface of the host)")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert table.item(0, 1).text() == INJECTION and not ok.isEnabled()

    type_into_cell(table, 0, 1, "::1")
    assert "QEMU's port forwarding takes IPv4 addresses only" in dialog.error.text() and not ok.isEnabled()
    type_into_cell(table, 0, 1, "127.0.0.1")
    assert ok.isEnabled(), dialog.error.text()

    type_into_cell(table, 0, 2, "22,hostfwd=")
    assert not ok.isEnabled()
    assert dialog.error.text() == "nics[0].forwards[0].host_port: '22,hostfwd=' is not a port number (1–65535)"
    editor = type_into_cell(table, 0, 2, "²")  # a digit to str.isdigit(), not to int()
    assert "is not a port number" in dialog.error.text() and not ok.isEnabled()
    QTest.keyClick(editor, Qt.Key.Key_Return)

    dialog.reject()  # nothing was saved
    assert machine.config.nics[0].forwards == []
    dialog.deleteLater()
