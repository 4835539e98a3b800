"""The Performance tab: the selected VM's CPU (total and per vCPU), memory (guest used, balloon,
host RSS), disk throughput and network, live at the monitor's tick. Redrawn only while on screen,
and at once when it comes back."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from hvdesk.core.units import format_approx
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.monitor.series import VmSample, VmSeries
from hvdesk.ui.plots import LivePlot
from hvdesk.ui.redraw import RedrawWhenSeen

MIB = 1024 * 1024
WINDOWS = (("1 minute", 60), ("5 minutes", 300), ("30 minutes", 1800))


def ages(series: VmSeries, count: int) -> np.ndarray:
    """Seconds before now of the newest `count` samples (the series keep monotonic times)."""
    return series.times.values(count) - time.monotonic()


class PerformancePane(QWidget):
    def __init__(self, monitor: Monitor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self.machine: Machine | None = None
        self.window_choice = QComboBox()
        for label, seconds in WINDOWS:
            self.window_choice.addItem(label, seconds)
        self.window_choice.currentIndexChanged.connect(lambda *_: self.redraw())
        self.summary = FigureRow(("CPU", "Guest memory", "Balloon", "Host RSS"))
        self.cpu = LivePlot("CPU (% of one host core)", "%", lambda v: f"{v:.0f} %")
        self.memory = LivePlot("Memory (MiB)", "MiB", lambda v: f"{v:.0f} MiB")
        self.disk = LivePlot("Disk (MiB/s)", "MiB/s", lambda v: f"{v:.2f} MiB/s")
        self.network = QLabel()
        self.network.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show the last"))
        top.addWidget(self.window_choice)
        top.addStretch()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        for plot in (self.cpu, self.memory, self.disk):
            layout.addWidget(plot, 1)
        layout.addWidget(self.network)
        self.redraws = RedrawWhenSeen(self, self.redraw)  # hidden tab, minimised window: no redraw
        self._unsubscribe = monitor.subscribe(self.redraws.tick)
        self.destroyed.connect(lambda *_: self._unsubscribe())

    def detach(self) -> None:
        self._unsubscribe()

    def show_machine(self, machine: Machine | None) -> None:
        self.machine = machine
        self.redraw()

    @property
    def window_seconds(self) -> int:
        return self.window_choice.currentData()

    def redraw(self) -> None:
        machine = self.machine
        series = self.monitor.series.get(machine.entry.folder) if machine is not None else None
        if series is None or not len(series.times):
            self.summary.show_message("No samples yet: the graphs start when the VM runs." if machine else "")
            for plot in (self.cpu, self.memory, self.disk):
                plot.show_series(np.array([]), {}, self.window_seconds)
            self.network.setText("")
            return
        count = min(len(series.times), int(self.window_seconds / self.monitor.interval) + 1)
        x = ages(series, count)
        rings = series.rings
        cpu = {"total": rings["cpu"].values(count)}
        for i, ring in enumerate(series.vcpu_rings):
            cpu[f"vCPU {i}"] = ring.values(count)
        self.cpu.show_series(x, cpu, self.window_seconds, floor=100)
        self.memory.show_series(x, {"guest used": rings["guest_used"].values(count) / MIB,
                                    "balloon": rings["balloon"].values(count) / MIB,
                                    "host RSS": rings["rss"].values(count) / MIB}, self.window_seconds, floor=64)
        self.disk.show_series(x, {"read": rings["disk_read"].values(count) / MIB,
                                  "write": rings["disk_write"].values(count) / MIB}, self.window_seconds, floor=1)
        latest = series.latest
        assert latest is not None, "the series has samples, so a latest one"
        self.summary.show_values(_summary(latest))
        network = f"<b>Network:</b> {latest.network}"
        if self.network.text() != network:
            self.network.setText(network)


class FigureRow(QWidget):
    """Named figures in a row ("CPU 3 %  Guest memory ..."), or a message instead. The values are
    plain-text labels of a fixed size, set only when they change: a rich-text label that may
    change size re-lays out its document, and its pane, at every tick."""

    def __init__(self, names: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # clipped, never wider
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._message = QLabel()
        layout.addWidget(self._message)
        self._pairs: dict[str, tuple[QLabel, QLabel]] = {}
        for name in names:
            title, value = QLabel(f"<b>{name}</b>"), QLabel()
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setFixedSize(0, value.sizeHint().height())  # widened as needed: see _set
            layout.addWidget(title)
            layout.addWidget(value)
            layout.addSpacing(8)
            self._pairs[name] = title, value
        layout.addStretch()
        self.show_message("")

    def show_message(self, text: str) -> None:
        self._message.setText(text)
        self._message.show()
        for title, value in self._pairs.values():
            title.hide()
            value.hide()

    def show_values(self, values: dict[str, str]) -> None:
        self._message.hide()
        for name, (title, value) in self._pairs.items():
            _set(value, values[name])
            title.show()
            value.show()

    def text(self) -> str:
        """What it says, as plain text."""
        if not self._message.isHidden():
            return self._message.text()
        return "  ".join(f"{name} {value.text()}" for name, (_, value) in self._pairs.items())


def _set(label: QLabel, text: str) -> None:
    """Set a value label's text. Its size is fixed, and only ever grows: a label whose size may
    change makes its pane lay out again at each new text, repainting the graphs (half again as
    many paints)."""
    if label.text() == text:
        return
    width = label.fontMetrics().horizontalAdvance(text) + 2
    if width > label.width():
        label.setFixedWidth(width)
    label.setText(text)


def _summary(sample: VmSample) -> dict[str, str]:
    def size(value: float | None) -> str:
        return format_approx(int(value)) if value is not None else "not reported"
    guest = (f"{size(sample.guest_used)} of {size(sample.guest_total)}" if sample.guest_total is not None
             else "not reported (needs the guest's balloon driver)")
    return {"CPU": f"{sample.cpu:.0f} %" if sample.cpu is not None else "—", "Guest memory": guest,
            "Balloon": size(sample.balloon), "Host RSS": size(sample.rss)}
