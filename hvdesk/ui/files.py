"""Choosing files without a nested event loop: the dialog is opened, and the choice arrives
later by callback, so the engine's asyncio tasks keep running meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from hvdesk.ui import prefs

DISK_FILTER = "Disk images (*.qcow2 *.img *.raw *.vmdk *.vdi *.vhdx *.vhd);;All files (*)"
ISO_FILTER = "CD/DVD images (*.iso);;All files (*)"


def choose_file(parent: QWidget, title: str, filters: str, app_prefs: prefs.Prefs,
                on_chosen: Callable[[Path], None]) -> QFileDialog:
    start = app_prefs.get(prefs.LAST_FOLDER) or str(Path.home())
    dialog = QFileDialog(parent, title, start, filters)
    dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def chosen(path: str) -> None:
        app_prefs.set(prefs.LAST_FOLDER, str(Path(path).parent))
        on_chosen(Path(path))
    dialog.fileSelected.connect(chosen)
    dialog.open()
    return dialog


def file_row(edit: QLineEdit, browse: QPushButton) -> QWidget:
    """A path field with its Browse button."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(browse)
    return row
