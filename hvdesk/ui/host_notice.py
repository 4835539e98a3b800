"""A bar above the main window's pages when this host cannot run VMs (QEMU is not installed),
saying what to install on this system, with a button to look again once it is."""

from __future__ import annotations

import asyncio
import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from hvdesk.core.background import spawn
from hvdesk.engine import host


class HostNotice(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hostNotice")
        self.setStyleSheet("#hostNotice { background: #fff4ce; border: 1px solid #e0c060; border-radius: 4px; }")
        layout = QHBoxLayout(self)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # to copy the command
        self.check_button = QPushButton("Check Again")
        self.check_button.clicked.connect(lambda: spawn(self.refresh()))
        layout.addWidget(self.text, 1)
        layout.addWidget(self.check_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    async def refresh(self) -> None:
        """Look for QEMU (off the GUI thread: it may run `--version`) and show or hide the bar."""
        self.show_problem(await asyncio.to_thread(host.qemu_problem))

    def show_problem(self, problem: str | None) -> None:
        if problem is None:
            self.hide()
            return
        what, has_hint, hint = problem.partition(" (")  # "QEMU is not installed: X not found (on Debian: ...)"
        text = f"<b>{html.escape(what)}.</b> hvdesk needs QEMU to run virtual machines; your VMs are safe meanwhile."
        if has_hint:
            text += f"<br>To install it {html.escape(hint.removesuffix(')'))}, then choose Check Again."
        self.text.setText(text)
        self.show()
