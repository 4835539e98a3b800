"""pyqtgraph set up for live plots: no antialiasing, fixed ranges (autorange is the expensive
part of a redraw) set only when they change, one-pixel pens (a wider pen goes through Qt's
stroker, ~100x slower a segment), curves as PlotCurveItems (a PlotDataItem draws through one
and adds symbols, downsampling and data bookkeeping the live plots do not use: ~0.3 ms a
setData of Python), seconds-ago on the x axis, and a hover read-out that pauses the plot."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Signal

pg.setConfigOptions(antialias=False, background="w", foreground="#303a46")

PALETTE = ("#2b6cb0", "#d97706", "#2f855a", "#c53030", "#6b46c1", "#0f766e", "#b83280", "#4a5568")


class LivePlot(pg.PlotWidget):
    """A plot of series against "seconds ago". While the pointer is over it, it stops moving and
    shows the values under the pointer."""

    hover_changed = Signal(bool)

    def __init__(self, title: str, unit: str, formatter: Callable[[float], str]) -> None:
        super().__init__()
        self.unit, self.formatter = unit, formatter
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setTitle(title, size="9pt")
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setLabel("bottom", "seconds ago")
        self.getPlotItem().getAxis("left").setWidth(54)
        self.setMinimumHeight(80)
        self.legend = self.addLegend(offset=(6, 4), labelTextSize="8pt")
        self.curves: dict[str, pg.PlotCurveItem] = {}
        self.paused = False
        self._ranges: tuple[float, float] | None = None  # (window, y maximum) last set
        self._cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#718096", style=pg.QtCore.Qt.PenStyle.DashLine))
        self._readout = pg.TextItem(color="#1a202c", fill=pg.mkBrush(255, 255, 255, 220), anchor=(0, 0))
        self._cursor.hide()
        self._readout.hide()
        self.addItem(self._cursor, ignoreBounds=True)
        self.addItem(self._readout, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._hover)

    def curve(self, name: str, index: int) -> pg.PlotCurveItem:
        found = self.curves.get(name)
        if found is None:
            # connect="finite": a missing sample (NaN) is a gap in the line
            found = pg.PlotCurveItem(name=name, pen=pg.mkPen(PALETTE[index % len(PALETTE)], width=1), connect="finite")
            self.addItem(found)  # (and to the legend, by its name)
            self.curves[name] = found
        return found

    def show_series(self, ages: np.ndarray, series: dict[str, np.ndarray], window: float, floor: float = 1.0) -> None:
        """Draw `series` (name -> values, aligned with `ages`, seconds before now) over `window` s."""
        self.show_curves({name: (ages, values) for name, values in series.items()}, window, floor)

    def show_curves(self, curves: dict[str, tuple[np.ndarray, np.ndarray]], window: float,
                    floor: float = 1.0, top: float | None = None) -> None:
        """Draw each curve (name -> (seconds before now, values)) over the last `window` s, up to
        `top` when given (else a round number above the highest value, at least `floor`)."""
        if self.paused:
            return
        for index, (name, (xs, values)) in enumerate(curves.items()):
            self.curve(name, index).setData(xs, values)
        for name in [n for n in self.curves if n not in curves]:
            self.removeItem(self.curves.pop(name))
            self.legend.removeItem(name)
        peak = max((float(np.nanmax(v)) for _, v in curves.values() if v.size and not np.all(np.isnan(v))),
                   default=0.0)
        ranges = (float(window), top if top is not None else max(floor, _nice_ceiling(peak)))
        if ranges != self._ranges:  # a new range re-lays out the axes and their tick labels
            self._ranges = ranges
            self.setXRange(-ranges[0], 0, padding=0)
            self.setYRange(0, ranges[1], padding=0.02)

    def _hover(self, pos: QPointF) -> None:
        inside = self.getPlotItem().sceneBoundingRect().contains(pos)
        if inside != self.paused:
            self.paused = inside
            self._cursor.setVisible(inside)
            self._readout.setVisible(inside)
            self.hover_changed.emit(inside)
        if not inside:
            return
        point = self.getPlotItem().vb.mapSceneToView(pos)
        self._cursor.setPos(point.x())
        lines = [f"{-point.x():.0f} s ago"]
        for name, curve in self.curves.items():
            xs, ys = curve.getData()
            if xs is None or not len(xs):
                continue
            i = int(np.argmin(np.abs(xs - point.x())))
            value = ys[i]
            lines.append(f"{name}: {'—' if math.isnan(value) else self.formatter(value)}")
        self._readout.setText("\n".join(lines))
        view = self.getPlotItem().vb.viewRange()
        self._readout.setPos(view[0][0], view[1][1])


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value`: axes that read well."""
    if value <= 0 or math.isnan(value):
        return 0.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power
