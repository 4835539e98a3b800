"""A VM's logs: QEMU's own (this run and the one before) and the guest's serial console."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QTabWidget, QVBoxLayout, QWidget

from hvdesk.engine.machine import Machine
from hvdesk.ui.icons import action_icon

MAX_SHOWN = 2 * 1024 * 1024  # a runaway serial log must not freeze the window: show its end


def read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - MAX_SHOWN))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return ("… (earlier lines not shown)\n" if size > MAX_SHOWN else "") + text


class LogViewer(QDialog):
    def __init__(self, machine: Machine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.machine = machine
        self.setWindowTitle(f"Logs — {machine.name}")
        self.resize(820, 520)
        paths = machine.paths
        self._files = [("QEMU log", paths.qemu_log), ("Serial console", paths.serial_log),
                       ("Previous QEMU log", paths.qemu_log.with_name(paths.qemu_log.name + ".1")),
                       ("Previous serial console", paths.serial_log.with_name(paths.serial_log.name + ".1"))]
        self.tabs = QTabWidget()
        self._views: list[QPlainTextEdit] = []
        for title, _ in self._files:
            view = QPlainTextEdit(readOnly=True)
            view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            self._views.append(view)
            self.tabs.addTab(view, title)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        refresh = buttons.addButton("Refresh", QDialogButtonBox.ButtonRole.ActionRole)
        folder = buttons.addButton("Open Folder", QDialogButtonBox.ButtonRole.ActionRole)
        folder.setIcon(action_icon("folder"))
        refresh.clicked.connect(self.refresh)
        folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.qemu_log.parent))))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        for view, (_, path) in zip(self._views, self._files):
            view.setPlainText(read_tail(path))
            view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
