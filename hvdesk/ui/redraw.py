"""Redraw live views only while someone can see them, and catch up the moment they can.

A view in a hidden tab, or in a minimised window, skips the tick's redraw and is marked stale; it
redraws when it is shown again or its window is restored, from the series, which kept sampling:
no gap, no stale picture.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget


def on_screen(widget: QWidget) -> bool:
    """Shown (its tab current, its window open) and its window not minimised."""
    return widget.isVisible() and not widget.window().isMinimized()


class RedrawWhenSeen(QObject):
    """Calls `redraw()` at each `tick()` while `widget` is on screen; otherwise once, as soon as it is."""

    def __init__(self, widget: QWidget, redraw: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget, self._redraw = widget, redraw
        self.stale = False
        self.skipped = 0  # ticks not drawn (for tests and benchmarks)
        self._watched: QWidget | None = None
        widget.installEventFilter(self)

    def tick(self) -> None:
        if on_screen(self._widget):
            self.stale = False
            self._redraw()
        else:
            self.stale = True
            self.skipped += 1
            self._watch_window()

    def _watch_window(self) -> None:
        """Hear when the window is restored (the widget itself gets no event then)."""
        window = self._widget.window()
        if window is not self._watched and window is not self._widget:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            window.installEventFilter(self)
            self._watched = window

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.stale and event.type() in (QEvent.Type.Show, QEvent.Type.WindowStateChange) \
                and on_screen(self._widget):
            self.stale = False
            self._redraw()
        return False
