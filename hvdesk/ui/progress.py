"""A long engine operation with a progress dialog fed by the engine's progress callback, and a
Cancel button where the engine undoes what a cancelled operation began (a full clone discards its
staging folder; a save lets the guest run on as it was)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QProgressDialog, QWidget

from hvdesk.ui.tasks import PROGRESS_DELAY_MS, TaskRunner

Report = Callable[[float | None, str], None]  # (percent done, or None when unknown; a line to show)


class ProgressTask:
    """Runs `make(report)` on `runner`; the dialog shows after a moment and closes when it ends."""

    def __init__(self, parent: QWidget, runner: TaskRunner, label: str, make: Callable[[Report], Awaitable[Any]], *,
                 title: str, cancellable: bool, on_done: Callable[[Any], None] | None = None) -> None:
        self.label = label
        self.dialog = QProgressDialog(label, "Cancel", 0, 0, parent)
        if not cancellable:
            self.dialog.setCancelButton(None)
        self.dialog.setWindowTitle("hvdesk")
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.setMinimumDuration(PROGRESS_DELAY_MS)  # quick operations never flash it
        self.dialog.setMinimumWidth(380)
        self.cancelled = False
        self.task: asyncio.Task[Any] = runner.run(make(self.report), title=title, on_done=on_done)
        self.dialog.canceled.connect(self.cancel)
        self.task.add_done_callback(lambda _task: self._close())

    def report(self, percent: float | None, line: str = "") -> None:
        if self.task.done():
            return
        if percent is None:
            self.dialog.setRange(0, 0)  # busy: the engine cannot say how far it is
        else:
            self.dialog.setRange(0, 100)
            self.dialog.setValue(max(0, min(100, int(percent))))
        self.dialog.setLabelText(f"{self.label}\n{line}" if line else self.label)

    def cancel(self) -> None:
        if not self.task.done():
            self.cancelled = True
            self.dialog.setLabelText("Cancelling…")
            self.task.cancel()

    def _close(self) -> None:
        self.dialog.canceled.disconnect(self.cancel)
        self.dialog.close()
        self.dialog.deleteLater()
