"""LivePlot draws what it is given: a missing sample (NaN) is a gap in the line, not a zero."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor

from hvdesk.ui.plots import PALETTE, LivePlot


def curve_columns(plot: LivePlot, value: float) -> set[int]:
    """x pixels (in the plot's view box) where the first curve's colour is drawn, near `value`."""
    image = plot.grab().toImage()
    box = plot.getPlotItem().vb
    view = box.sceneBoundingRect().toRect()
    row = round(box.mapViewToScene(QPointF(0, value)).y())
    colour = QColor(PALETTE[0]).rgb()
    return {x - view.left() for x in range(view.left(), view.right())
            for y in range(row - 3, row + 4) if image.pixel(x, y) == colour}


def test_a_missing_sample_is_a_gap(qapp):
    plot = LivePlot("CPU", "%", lambda v: f"{v:.0f} %")
    plot.resize(400, 240)
    plot.show()
    ages = np.arange(-10.0, 1.0)
    values = np.array([37, 37, 37, 37, np.nan, np.nan, 37, 37, 37, 37, 37], dtype=np.float32)
    plot.show_series(ages, {"total": values}, 10, floor=100)
    qapp.processEvents()
    width = plot.getPlotItem().vb.sceneBoundingRect().width()
    drawn = curve_columns(plot, 37)
    gap = {x for x in range(int(width)) if -6.8 < -10 + 10 * x / width < -4.2}  # (segments to and from the missing)
    before = {x for x in range(int(width)) if -9.5 < -10 + 10 * x / width < -7.5}
    assert len(before & drawn) > len(before) / 2  # the line is there before the gap (grid lines cross it)
    assert not gap & drawn  # and not across it
    xs, ys = plot.curves["total"].getData()
    assert np.array_equal(xs, ages) and np.array_equal(ys, values, equal_nan=True)
    plot.close()
