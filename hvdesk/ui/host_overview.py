"""The host overview: every running VM's CPU and memory stacked against what the host has."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from hvdesk.core.units import format_approx
from hvdesk.engine.monitoring import Monitor
from hvdesk.ui.plots import PALETTE, LivePlot
from hvdesk.ui.redraw import RedrawWhenSeen

GIB = 1024**3
WINDOW = 300  # seconds shown


class HostOverview(QDialog):
    def __init__(self, monitor: Monitor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self.setWindowTitle("Host Overview — hvdesk")
        self.resize(760, 560)
        self.summary = QLabel()
        self.cpu = LivePlot("CPU by VM (% of the whole host)", "%", lambda v: f"{v:.0f} %")
        self.memory = LivePlot("Host memory by VM (GiB)", "GiB", lambda v: f"{v:.2f} GiB")
        self._capacity = pg.InfiniteLine(angle=0, pen=pg.mkPen("#c53030", width=1.5,
                                                              style=pg.QtCore.Qt.PenStyle.DashLine),
                                         label="host memory", labelOpts={"position": 0.85, "color": "#c53030"})
        self.memory.addItem(self._capacity, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.cpu, 1)
        layout.addWidget(self.memory, 1)
        self.redraws = RedrawWhenSeen(self, self.redraw)  # minimised: no redraw until restored
        self._unsubscribe = monitor.subscribe(self.redraws.tick)
        self.finished.connect(lambda *_: self._unsubscribe())
        self.redraw()

    def redraw(self) -> None:
        host = self.monitor.host
        count = min(len(host.times), int(WINDOW / self.monitor.interval) + 1)
        if not count:
            return
        latest = host.latest
        assert latest is not None, "the host series has samples (count > 0), so a latest one"
        now = time.monotonic()
        x = host.times.values(count) - now
        cores = len(latest.cpu_per_core)
        cpu, memory = {}, {}
        for machine in self.monitor.manager.machines():
            series = self.monitor.series.get(machine.entry.folder)
            if series is None or machine.pid is None:
                continue
            cpu[machine.name] = _aligned(series.times.values(), series.rings["cpu"].values(), x + now) / cores
            memory[machine.name] = _aligned(series.times.values(), series.rings["rss"].values(), x + now) / GIB
        self.cpu.show_series(x, _stacked(cpu), WINDOW, floor=100)
        self.memory.show_series(x, _stacked(memory), WINDOW, floor=latest.memory_total / GIB)
        self._capacity.setPos(latest.memory_total / GIB)
        for plot in (self.cpu, self.memory):
            for index, curve in enumerate(plot.curves.values()):
                curve.setFillLevel(0)
                curve.setBrush(pg.mkBrush(PALETTE[index % len(PALETTE)] + "55"))
        self.summary.setText(
            f"<b>Host</b>: CPU {sum(latest.cpu_per_core) / cores:.0f} % of {cores} cores; memory "
            f"{format_approx(latest.memory_used)} used of {format_approx(latest.memory_total)}; "
            f"{format_approx(latest.committed)} given to {len(memory)} running VM(s)")


def _aligned(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A VM's values at the host's sample times (VMs started later have gaps before)."""
    if not len(times):
        return np.full(len(at), np.nan)
    return np.interp(at, times, values, left=np.nan, right=np.nan)


def _stacked(layers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cumulative sums, so each VM's band sits on those before it; drawn from the top down."""
    total, out = None, {}
    for name, values in layers.items():
        values = np.nan_to_num(values)
        total = values if total is None else total + values
        out[name] = total.copy()
    return dict(reversed(out.items()))
