"""The live thumbnail of the selected VM's screen in the details pane. It asks QEMU for an
update once a second instead of continuously, and only while it is on screen, so a preview costs
next to nothing."""

from __future__ import annotations

import asyncio
import contextlib

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from hvdesk.console.rfb import ConsoleEvents, RfbClient
from hvdesk.core.background import spawn
from hvdesk.core.errors import HvdeskError
from hvdesk.engine import console as engine_console
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.ui.redraw import RedrawWhenSeen

REFRESH_MS = 1000


class PreviewWidget(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.machine: Machine | None = None
        self.client: RfbClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._image: QImage | None = None
        self.message = "Not running"
        # Updates are asked for only while the preview is on screen; shown again, it asks at once.
        self.redraws = RedrawWhenSeen(self, self._refresh)
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self.redraws.tick)

    def show_machine(self, machine: Machine | None) -> None:
        """Follow `machine` (None: nothing); connects while it runs, disconnects otherwise."""
        live = machine is not None and allows(Action.SHOW, machine.state) \
            and machine.entry.config is not None and machine.config.display.vnc
        if machine is self.machine and live == (self._task is not None):
            return
        self.stop()
        self.machine = machine
        self.message = "Not running" if not live else "Connecting…"
        if live and machine is not None:  # (live implies a machine)
            self._task = asyncio.ensure_future(self._follow(machine))
        self.update()

    async def _follow(self, machine: Machine) -> None:
        client = None
        try:
            client = await engine_console.connect(machine, ConsoleEvents(frame=self._new_frame,
                                                                         resize=lambda w, h: self._wrap()),
                                                  continuous=False)
            self.client = client
            self._wrap()
            self._timer.start()
            await client.run()
        except HvdeskError as exc:
            self.message = str(exc) if allows(Action.SHOW, machine.state) else "Not running"
        finally:
            self._timer.stop()
            if client is not None:
                await client.close()
            if self.client is client:
                self.client, self._image = None, None
            self.update()

    def stop(self) -> None:
        self._timer.stop()
        task, self._task = self._task, None
        client, self.client = self.client, None
        self._image = None
        if client is not None:
            spawn(client.close())
        if task is not None:
            task.cancel()

    def _wrap(self) -> None:
        fb = self.client.framebuffer if self.client else None
        self._image = QImage(fb.data, fb.width, fb.height, fb.stride, QImage.Format.Format_RGB32) if fb else None

    def _new_frame(self) -> None:
        self.update()

    def _refresh(self) -> None:
        if self.client is not None and not self.client.closed:
            with contextlib.suppress(HvdeskError):
                self.client.request_update(incremental=True)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0) if self._image is not None else self.palette().window())
        if self._image is None:
            painter.setPen(self.palette().text().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        scale = min(self.width() / self._image.width(), self.height() / self._image.height())
        w, h = self._image.width() * scale, self._image.height() * scale
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h), self._image)
