"""Live views redraw only while on screen and catch up the moment they are seen again (no QEMU:
the monitor's series are filled by hand, and its tick's listeners called as a tick does)."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel, QTabWidget

from hvdesk.core.config import VmConfig
from hvdesk.core.storage import VmEntry
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.engine.states import VmState
from hvdesk.monitor.series import VmReading
from hvdesk.ui.performance import PerformancePane

MIB = 1024 * 1024


class NoManager:
    def machines(self) -> list[Machine]:
        return []


def tick(monitor: Monitor, machine: Machine, n: int) -> None:
    """The n-th sample of `machine` (one a second, its CPU rising by 10 % a tick: (2n - 1) * 10 %),
    then the tick's listeners."""
    start = time.monotonic() - 60
    cpu_seconds = n * n * 0.1
    monitor.series_of(machine).record(VmReading(time=start + n, pid=42, cpu_seconds=cpu_seconds,
                                                vcpu_seconds=[cpu_seconds], rss=100 * MIB))
    for listener in list(monitor._listeners):
        listener()


def test_a_hidden_performance_tab_does_not_redraw_and_shows_the_latest_when_shown(qtbot, tmp_path):
    monitor = Monitor(NoManager())  # type: ignore[arg-type]
    machine = Machine(VmEntry(tmp_path / "vm", VmConfig(name="vm")), state=VmState.RUNNING, pid=42)
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    pane = PerformancePane(monitor)
    tabs.addTab(QLabel("details"), "Details")
    tabs.addTab(pane, "Performance")
    tabs.setCurrentWidget(pane)
    tabs.show()
    pane.show_machine(machine)
    for n in range(3):
        tick(monitor, machine, n)
    assert len(pane.cpu.curves["total"].getData()[0]) == 3 and pane.redraws.skipped == 0

    tabs.setCurrentIndex(0)  # the Details tab: the graphs stop being drawn
    for n in range(3, 6):
        tick(monitor, machine, n)
    assert len(pane.cpu.curves["total"].getData()[0]) == 3 and pane.redraws.skipped == 3 and pane.redraws.stale

    tabs.setCurrentWidget(pane)  # shown again: the latest samples at once, without waiting for a tick
    x, cpu = pane.cpu.curves["total"].getData()
    assert len(x) == 6 and not pane.redraws.stale
    assert round(cpu[-1]) == 90  # the newest sample (n = 5), not the last one drawn before (n = 2: 30 %)


def test_a_minimised_window_does_not_redraw_and_catches_up_when_restored(qtbot, tmp_path):
    monitor = Monitor(NoManager())  # type: ignore[arg-type]
    machine = Machine(VmEntry(tmp_path / "vm", VmConfig(name="vm")), state=VmState.RUNNING, pid=42)
    pane = PerformancePane(monitor)
    qtbot.addWidget(pane)
    pane.show()
    pane.show_machine(machine)
    tick(monitor, machine, 0)
    tick(monitor, machine, 1)
    pane.showMinimized()
    assert pane.isMinimized()
    tick(monitor, machine, 2)
    assert pane.redraws.skipped == 1 and len(pane.cpu.curves["total"].getData()[0]) == 2
    pane.showNormal()
    assert len(pane.cpu.curves["total"].getData()[0]) == 3 and not pane.redraws.stale
