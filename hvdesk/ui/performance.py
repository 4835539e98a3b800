"""The Performance tab: the selected VM's CPU (total and per vCPU), memory (guest used, balloon,
host RSS), disk throughput and network, live at the monitor's tick. Redrawn only while shown."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from hvdesk.core.units import format_approx
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.monitor.series import VmSample, VmSeries
from hvdesk.ui.plots import LivePlot

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
        self.summary = QLabel()
        self.summary.setWordWrap(True)
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
        self._unsubscribe = monitor.subscribe(self._on_tick)
        self.destroyed.connect(lambda *_: self._unsubscribe())

    def detach(self) -> None:
        self._unsubscribe()

    def show_machine(self, machine: Machine | None) -> None:
        self.machine = machine
        self.redraw()

    def _on_tick(self) -> None:
        if self.isVisible():
            self.redraw()

    @property
    def window_seconds(self) -> int:
        return self.window_choice.currentData()

    def redraw(self) -> None:
        machine = self.machine
        series = self.monitor.series.get(machine.entry.folder) if machine is not None else None
        if series is None or not len(series.times):
            self.summary.setText("No samples yet: the graphs start when the VM runs." if machine else "")
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
        self.summary.setText(_summary(latest))
        self.network.setText(f"<b>Network:</b> {latest.network}")


def _summary(sample: VmSample) -> str:
    def size(value: float | None) -> str:
        return format_approx(int(value)) if value is not None else "not reported"
    cpu = f"{sample.cpu:.0f} %" if sample.cpu is not None else "—"
    guest = (f"{size(sample.guest_used)} of {size(sample.guest_total)}" if sample.guest_total is not None
             else "not reported (needs the guest's balloon driver)")
    return (f"<b>CPU</b> {cpu} &nbsp; <b>Guest memory</b> {guest} &nbsp; <b>Balloon</b> {size(sample.balloon)}"
            f" &nbsp; <b>Host RSS</b> {size(sample.rss)}")
