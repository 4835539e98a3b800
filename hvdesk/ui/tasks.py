"""Running engine coroutines from the UI: never blocking it, errors shown to the user, and a
progress dialog for anything that takes longer than a moment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from hvdesk.core.errors import QemuError, user_message

log = logging.getLogger(__name__)
PROGRESS_DELAY_MS = 400  # quick operations never flash a dialog


class TaskRunner(QObject):
    """Schedules coroutines on the (qasync) event loop the UI runs on."""

    idle_changed = Signal(bool)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def idle(self) -> bool:
        return not self._tasks

    def run(self, work: Awaitable[Any], *, title: str, progress: str | None = None,
            on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[BaseException], bool] | None = None) -> asyncio.Task[Any]:
        """Start `work`; show `progress` if it runs long; on failure tell the user under `title`,
        unless `on_error(error)` handles it (returns True)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        if len(self._tasks) == 1:
            self.idle_changed.emit(False)
        dialog = self._progress_dialog(progress) if progress else None
        timer = None
        if dialog is not None:
            timer = QTimer(self, singleShot=True, interval=PROGRESS_DELAY_MS)
            timer.timeout.connect(dialog.show)
            timer.start()
        task.add_done_callback(lambda t: self._finished(t, title, dialog, timer, on_done, on_error))
        return task

    async def wait_idle(self) -> None:
        """Until every task started so far has finished (for tests and for quitting)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _progress_dialog(self, text: str) -> QProgressDialog:
        dialog = QProgressDialog(text, "", 0, 0, self._parent)
        dialog.setCancelButton(None)  # engine operations finish or fail; they are not cancelled
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.setWindowTitle("hvdesk")
        dialog.reset()  # constructed dialogs show themselves after minimumDuration; ours waits
        return dialog

    def _finished(self, task: asyncio.Task[Any], title: str, dialog: QProgressDialog | None,
                  timer: QTimer | None, on_done: Callable[[Any], None] | None,
                  on_error: Callable[[BaseException], bool] | None) -> None:
        self._tasks.discard(task)
        if timer is not None:
            timer.stop()
        if dialog is not None:
            dialog.close()
            dialog.deleteLater()
        if not self._tasks:
            self.idle_changed.emit(True)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            if on_done is not None:
                on_done(task.result())
            return
        if on_error is not None and on_error(error):
            return
        if user_message(error) is None:
            log.error("%s failed", title, exc_info=error)
        show_error(self._parent, title, error)


def show_error(parent: QWidget, title: str, error: BaseException) -> QMessageBox:
    """A non-blocking error box: the event loop (and the VMs' state) keep moving behind it."""
    message = user_message(error)
    text = message.split("\n--- QEMU log")[0] if message is not None else f"Unexpected error: {error!r}"
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    if isinstance(error, QemuError) and error.log_tail:
        box.setDetailedText(error.log_tail)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
