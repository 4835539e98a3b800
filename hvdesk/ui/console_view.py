"""The widget that shows a VM's screen and forwards keyboard and mouse: it paints the RFB
client's framebuffer (wrapped, not copied) and turns Qt input into RFB events.

Painting: the rectangles of one FramebufferUpdate are gathered (mapped through the scale) and
repainted once, when the update is complete; only they are painted. Scaled repaints are smooth
except during full-screen motion (see console_quality)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QCursor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPixmap,
    QRegion,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from hvdesk.console.rfb import ConsoleEvents, Cursor, RfbClient
from hvdesk.ui.console_keys import key_codes
from hvdesk.ui.console_quality import ScaleQuality

BUTTONS = {Qt.MouseButton.LeftButton: 1, Qt.MouseButton.MiddleButton: 2, Qt.MouseButton.RightButton: 4}
RIGHT_CTRL = 0x9D  # the host key, as in VirtualBox: releases the keyboard grab


class ConsoleView(QWidget):
    """`scaled`: fit the window keeping the aspect ratio; else 1:1 (put it in a scroll area)."""

    grab_changed = Signal(bool)
    near_top = Signal()  # the pointer touched the top edge (fullscreen shows its toolbar)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client: RfbClient | None = None
        self._image: QImage | None = None
        self._damage = QRegion()  # of the FramebufferUpdate being received, in widget pixels
        self.quality = ScaleQuality()
        self._settle = QTimer(self, singleShot=True, interval=round(self.quality.settle_after * 1000))
        self._settle.timeout.connect(self._settle_smooth)
        self._buttons = 0
        self.scaled = True
        self.grabbing = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # -- the picture -------------------------------------------------------------------------

    def events(self, resize: Callable[[int, int], None] | None = None) -> ConsoleEvents:
        """The client callbacks this view needs (painted once per update, the guest's pointer
        shape), and the window's `resize`."""
        return ConsoleEvents(update=self.area_changed, frame=self.frame_done, cursor=self.set_cursor_shape,
                             resize=resize)

    def attach(self, client: RfbClient | None) -> None:
        self.client = client
        self.framebuffer_resized()

    def framebuffer_resized(self) -> None:
        """Wrap the (new) framebuffer bytes in a QImage; no pixel is copied."""
        fb = self.client.framebuffer if self.client else None
        self._image = (QImage(fb.data, fb.width, fb.height, fb.stride, QImage.Format.Format_RGB32)
                       if fb is not None else None)
        if not self.scaled and fb is not None:
            self.setFixedSize(fb.width, fb.height)
        self.updateGeometry()
        self.update()

    def set_scaled(self, scaled: bool) -> None:
        self.scaled = scaled
        if scaled:
            self.setMinimumSize(0, 0)
            self.setMaximumSize(16777215, 16777215)
        self.framebuffer_resized()

    def framebuffer_size(self) -> QSize:
        fb = self.client.framebuffer if self.client else None
        return QSize(fb.width, fb.height) if fb else QSize(640, 480)

    def sizeHint(self) -> QSize:
        return self.framebuffer_size()

    def target_rect(self) -> QRectF:
        """Where the screen is drawn in this widget: whole pixels, so that no pixel of the
        picture's edge is half picture, half background."""
        size = self.framebuffer_size()
        if not self.scaled:
            return QRectF(0, 0, size.width(), size.height())
        scale = min(self.width() / size.width(), self.height() / size.height())
        w, h = max(1, round(size.width() * scale)), max(1, round(size.height() * scale))
        return QRectF((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def area_changed(self, x: int, y: int, w: int, h: int) -> None:
        """A rectangle of the framebuffer changed: repainted with the rest of its update."""
        if not self.scaled:
            self._damage += QRect(x, y, w, h)
            return
        target, size = self.target_rect(), self.framebuffer_size()
        sx, sy = target.width() / size.width(), target.height() / size.height()
        # A pixel's filtered footprint reaches one screen pixel further on each side.
        self._damage += QRect(int(target.x() + x * sx) - 1, int(target.y() + y * sy) - 1,
                              int(w * sx) + 3, int(h * sy) + 3)

    def frame_done(self) -> None:
        """A FramebufferUpdate was applied: one repaint for all its rectangles."""
        if not self._damage.isEmpty():
            self.update(self._damage)
            self._damage = QRegion()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        region = event.region()
        if self._image is None:
            painter.fillRect(event.rect(), QColor(0, 0, 0))
            return
        target = self.target_rect().toRect()
        for bar in rects(region.subtracted(QRegion(target))):  # black around the picture, not under it
            painter.fillRect(bar, QColor(0, 0, 0))
        if self.scaled:
            area = sum(r.width() * r.height() for r in rects(region.intersected(target)))
            smooth = self.quality.smooth(area, target.width() * target.height(), time.monotonic())
            if self.quality.rough:
                self._settle.start()  # (again): smooth once the motion stops
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(QRectF(target), self._image)

    def _settle_smooth(self) -> None:
        if self.quality.settle():
            self.update(self.target_rect().toRect())

    def snapshot(self) -> QImage:
        """A copy of the screen as it is now (for saving)."""
        return self._image.copy() if self._image is not None else QImage()

    def set_cursor_shape(self, cursor: Cursor) -> None:
        """Show the guest's pointer shape as our own cursor (no lag, no second pointer)."""
        if cursor.width == 0 or cursor.height == 0:
            self.setCursor(Qt.CursorShape.BlankCursor)
            return
        image = QImage(cursor.pixels, cursor.width, cursor.height, cursor.width * 4,
                       QImage.Format.Format_RGB32).convertToFormat(QImage.Format.Format_ARGB32)
        row = (cursor.width + 7) // 8
        for y in range(cursor.height):
            for x in range(cursor.width):
                if not cursor.mask[y * row + x // 8] & (0x80 >> (x % 8)):
                    image.setPixelColor(x, y, QColor(0, 0, 0, 0))
        self.setCursor(QCursor(QPixmap.fromImage(image), cursor.hotspot_x, cursor.hotspot_y))

    # -- input -----------------------------------------------------------------------------------

    def set_grab(self, grab: bool) -> None:
        if grab == self.grabbing:
            return
        self.grabbing = grab
        if grab:
            self.grabKeyboard()
        else:
            self.releaseKeyboard()
        self.grab_changed.emit(grab)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        self._key(event, True)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        codes = key_codes(event)
        if self.grabbing and codes is not None and codes[0] == RIGHT_CTRL:
            self.set_grab(False)  # the host key: released to us, never sent to the guest
            return
        self._key(event, False)

    def _key(self, event: QKeyEvent, down: bool) -> None:
        codes = key_codes(event)
        if self.client is None or codes is None or self.client.closed:
            return
        if codes[0] == RIGHT_CTRL and self.grabbing:
            return
        self.client.key(down, codes[1], codes[0])
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus()
        self.set_grab(True)
        self._buttons |= BUTTONS.get(event.button(), 0)
        self._pointer(event.position().toPoint())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._buttons &= ~BUTTONS.get(event.button(), 0)
        self._pointer(event.position().toPoint())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.position().y() <= 2:
            self.near_top.emit()
        self._pointer(event.position().toPoint())

    def wheelEvent(self, event: QWheelEvent) -> None:
        # RFB has no wheel: a click of button 4 (up) or 5 (down) per notch.
        bit = 8 if event.angleDelta().y() > 0 else 16 if event.angleDelta().y() < 0 else 0
        if bit:
            position = event.position().toPoint()
            self._pointer(position, extra=bit)
            self._pointer(position)

    def _pointer(self, pos: QPoint, extra: int = 0) -> None:
        if self.client is None or self.client.closed or self.client.framebuffer is None:
            return
        target, size = self.target_rect(), self.framebuffer_size()
        x = (pos.x() - target.x()) * size.width() / max(target.width(), 1)
        y = (pos.y() - target.y()) * size.height() / max(target.height(), 1)
        self.client.pointer(int(x), int(y), self._buttons | extra)



def rects(region: QRegion) -> Iterator[QRect]:
    """The rectangles a region is made of (PySide6 iterates a QRegion; its stubs do not know)."""
    return iter(region)  # type: ignore[call-overload]
