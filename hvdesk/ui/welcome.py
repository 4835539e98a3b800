"""The page shown while the library is empty."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from hvdesk.ui.icons import action_icon, app_icon


class WelcomePage(QWidget):
    create_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(96, 96))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("<h2>Welcome to hvdesk</h2>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text = QLabel("You have no virtual machines yet. Create one to install an operating system "
                      "from an ISO image, or to boot a disk image you already have.")
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setFixedWidth(440)  # a wrapped label needs a fixed width to get its height right
        self.create_button = QPushButton(action_icon("new"), "Create a Virtual Machine…")
        self.create_button.setDefault(True)
        self.create_button.clicked.connect(self.create_requested)
        for widget in (logo, title, text, self.create_button):
            layout.addWidget(widget, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)
