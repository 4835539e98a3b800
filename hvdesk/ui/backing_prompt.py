"""Asking before attaching an image that reads from backing images outside the VM's folder: the
guest could read those files, so the person sees the whole chain and decides."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from hvdesk.core.errors import BackingFileError


def ask_to_allow_backing(parent: QWidget, error: BaseException, retry: Callable[[], None]) -> bool:
    """If `error` is a refused backing chain, ask; `retry()` (with approval) if the person agrees.
    True when the error was handled here (no other message needed)."""
    if not isinstance(error, BackingFileError):
        return False
    box = QMessageBox(QMessageBox.Icon.Warning, "Backing images outside the VM",
                      "This disk image reads from other image files. The VM's guest will be able to read "
                      "everything in them. Attach it only if you trust where these files came from.", parent=parent)
    lines = [f"{'' if i == 0 else '  ↳ backed by '}{path} ({fmt})" for i, (path, fmt) in enumerate(error.chain)]
    box.setInformativeText("\n".join(lines))
    attach = box.addButton("Attach Anyway", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda button: retry() if button is attach else None)
    box.open()
    return True
