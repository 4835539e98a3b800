"""The Resources tab: what the allocation controller does with the selected VM. Its memory over
time (the balloon's actual size, the controller's targets, the floor it keeps, the guest's own use,
the configured memory as the ceiling), who acts and this VM's settings, where its vCPUs may run on
the host's CPUs and how busy they are, and the controller's decisions with their reasons.

Redrawn at monitor ticks while on screen; the decision log is read again when a controller cycle
reports, or (another process acting) when the log file changed, checked every few seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core.units import format_approx
from hvdesk.engine import control_status, decision_log, host
from hvdesk.engine import controller as control
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.controller import Controller, Target
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.monitor.series import guest_own_use
from hvdesk.ui.performance import WINDOWS, ages
from hvdesk.ui.plots import PALETTE, LivePlot
from hvdesk.ui.redraw import RedrawWhenSeen, on_screen

MIB = 1024 * 1024
LOG_ROWS = 200
LOG_CHECK_SECONDS = 5.0  # another process acts: look at its log this often (a stat; read when changed)
COLUMNS = ("Time", "Kind", "Target", "Reason", "Result")
CURVES = ("balloon", "target", "floor", "guest use", "configured")  # drawn in PALETTE's colours, in this order


def steps(targets: Sequence[Target], value: str, now: float, window: float) -> tuple[np.ndarray, np.ndarray]:
    """A step line of the targets' `value` ("size" or "floor"), in MiB against seconds before now:
    each holds until the next, the last until now. Empty when there is none."""
    points = [(t.time - now, getattr(t, value)) for t in targets if getattr(t, value) is not None]
    start = next((i for i in range(len(points) - 1, -1, -1) if points[i][0] <= -window), 0)
    points = points[start:]  # from the last one set before the window began
    if not points:
        return np.array([]), np.array([])
    xs, ys = [], []
    for i, (x, y) in enumerate(points):
        xs.append(max(x, -window))
        ys.append(y / MIB)
        end = points[i + 1][0] if i + 1 < len(points) else 0.0
        xs.append(end)
        ys.append(y / MIB)
    return np.array(xs), np.array(ys)


class CoresGrid(QWidget):
    """One cell per host CPU: the selected VM's vCPUs that may run there, with their load, and the
    CPU's own load. A vCPU confined to one CPU is shown bold (pinned)."""

    COLUMNS = 4

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cpus = host.host_topology()
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.cells: dict[int, QLabel] = {}
        for index, cpu in enumerate(self.cpus):
            cell = QLabel()
            cell.setObjectName("coreCell")
            cell.setTextFormat(Qt.TextFormat.RichText)
            cell.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            cell.setMinimumWidth(100)
            cell.setFrameShape(QFrame.Shape.StyledPanel)
            cell.setToolTip(f"Host CPU {cpu.id}: core {cpu.core}, cache domain {cpu.cache}, NUMA node {cpu.node}")
            layout.addWidget(cell, index // self.COLUMNS, index % self.COLUMNS)
            self.cells[cpu.id] = cell
        layout.setRowStretch(len(self.cpus) // self.COLUMNS + 1, 1)
        self._shown: dict[int, tuple[str, str]] = {}

    def show_placement(self, placement: dict[int, list[int]], loads: list[float | None],
                       host_loads: list[float]) -> None:
        """`placement`: vCPU -> the host CPUs it may run on; `loads`: per vCPU, % of a core."""
        for cpu in self.cpus:
            here = [v for v, cpus in sorted(placement.items()) if cpu.id in cpus]
            lines = [f"<b>CPU {cpu.id}</b>", f"host: {host_loads[cpu.id]:.0f} % busy" if cpu.id < len(host_loads)
                     else "host: —"]
            for vcpu in here:
                load = loads[vcpu] if vcpu < len(loads) else None
                text = f"vCPU {vcpu}: " + (f"{load:.0f} %" if load is not None else "—")
                pinned = len(placement[vcpu]) == 1
                lines.append(f"<b>{text} (pinned)</b>" if pinned else text)
            if not here:
                lines.append("<span style='color:#718096'>no vCPU</span>")
            busiest = max((loads[v] or 0.0 for v in here if v < len(loads)), default=0.0)
            if not here:
                style = "background: #f7f7f7; color: #4a5568;"
            else:  # blue, deeper the busier its vCPUs
                shade = int(235 - min(100.0, busiest) * 0.9)
                style = f"background: rgb({shade}, {min(255, shade + 10)}, 255);"
            shown = ("<br>".join(lines), style)
            if self._shown.get(cpu.id) != shown:  # set only when changed: a relayout costs more
                self._shown[cpu.id] = shown
                self.cells[cpu.id].setText(shown[0])
                self.cells[cpu.id].setStyleSheet(f"QLabel {{ {style} padding: 3px; }}")

    def text(self) -> str:
        return "\n".join(cell.text() for cell in self.cells.values())


class ResourcesPane(QWidget):
    def __init__(self, monitor: Monitor, controller: Controller, status: control_status.StatusWatch | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor, self.controller = monitor, controller
        self.status = status or control_status.StatusWatch(controller)
        self.manager = controller.manager
        self.machine: Machine | None = None
        self.records: list[dict[str, Any]] = []
        self._log_key: tuple[str, int, int] | None = None  # (log path, mtime, size) last read
        self._log_checked = 0.0

        self.window_choice = QComboBox()
        for label, seconds in WINDOWS:
            self.window_choice.addItem(label, seconds)
        self.window_choice.currentIndexChanged.connect(lambda *_: self.redraw())
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.memory = LivePlot("Memory (MiB)", "MiB", lambda v: f"{v:.0f} MiB")
        self.memory.legend.setVisible(False)  # a key above the plot instead: on a short plot the legend hid the lines
        self.key = QLabel("  ".join(f"<span style='color:{PALETTE[i]}'>■</span> {name}"
                                    for i, name in enumerate(CURVES)))
        self.key.setWordWrap(True)
        self.cores = CoresGrid()
        cores_box = QWidget()
        cores_layout = QVBoxLayout(cores_box)
        cores_layout.setContentsMargins(0, 0, 0, 0)
        cores_layout.addWidget(QLabel("<b>Host CPUs</b> (where each vCPU may run)"))
        cores_layout.addWidget(self.cores, 1)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.currentCellChanged.connect(lambda *_: self._show_detail())
        self.log_title = QLabel()
        # The whole reason of the selected (else the newest) decision: four lines, scrolled when longer
        # (a wrapped label's height follows its width, which a squeezed splitter pane does not honour).
        self.detail = QPlainTextEdit(readOnly=True)
        self.detail.setFrameShape(QFrame.Shape.NoFrame)
        self.detail.setStyleSheet("QPlainTextEdit { background: transparent; }")
        self.detail.setFixedHeight(self.detail.fontMetrics().lineSpacing() * 4 + 10)

        top = QHBoxLayout()
        top.addWidget(QLabel("Show the last"))
        top.addWidget(self.window_choice)
        top.addStretch()
        upper = QWidget()
        row = QHBoxLayout(upper)
        row.setContentsMargins(0, 0, 0, 0)
        plot_column = QVBoxLayout()
        plot_column.setSpacing(2)
        plot_column.addWidget(self.key)
        plot_column.addWidget(self.memory, 1)
        row.addLayout(plot_column, 3)
        row.addWidget(cores_box, 2)
        lower = QWidget()
        log_column = QVBoxLayout(lower)
        log_column.setContentsMargins(0, 0, 0, 0)
        log_column.addWidget(self.log_title)
        log_column.addWidget(self.table, 1)
        log_column.addWidget(self.detail)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(lower)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 1)  # the space in this ratio, whatever the plot's and table's size hints
        self.splitter.setStretchFactor(1, 1)
        self.memory.setMinimumHeight(150)
        self.table.setMinimumHeight(90)
        for part in (self.memory, self.table):
            part.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.splitter, 1)

        self.redraws = RedrawWhenSeen(self, self.redraw)  # hidden tab, minimised window: no redraw
        self._unsubscribers = [monitor.subscribe(self.redraws.tick), controller.subscribe(self._on_cycle)]
        self.destroyed.connect(lambda *_: self.detach())

    def detach(self) -> None:
        for unsubscribe in self._unsubscribers:
            unsubscribe()

    def show_machine(self, machine: Machine | None) -> None:
        self.machine = machine
        self._log_key = None
        self.records = []
        self.reload_log()
        self.redraw()

    @property
    def window_seconds(self) -> int:
        return self.window_choice.currentData()

    # -- the decision log ----------------------------------------------------------------------------

    def _on_cycle(self, report: control.CycleReport) -> None:
        if report.decisions or self._log_key is None:
            if on_screen(self):
                self.reload_log()
            else:
                self._log_key = None  # read when shown again

    def reload_log(self) -> None:
        """Read the VM's decision log again if the file changed since it was last read."""
        self._log_checked = time.monotonic()
        machine = self.machine
        if machine is None:
            self._show_records([])
            return
        path = control.log_path(machine.entry.folder)
        try:
            stat = os.stat(path)
            key = (str(path), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key == self._log_key:
            return
        self._log_key = key
        self._show_records(decision_log.read(path, limit=LOG_ROWS) if key[2] else [])

    def _show_records(self, records: list[dict[str, Any]]) -> None:
        """Newest first."""
        self.records = records
        self.table.setUpdatesEnabled(False)
        self.table.setRowCount(len(records))
        for row, record in enumerate(reversed(records)):
            stamp = time.strftime("%H:%M:%S", time.localtime(record["time"]))
            day = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
            result = "applied" if record["applied"] else f"not applied: {record.get('error', 'unknown')}"
            cells = (stamp, record["kind"], decision_log.target_text(record), record["reason"], result)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{day} by {record['by']}\n{record['reason']}" if column == 3 else text)
                if column == 4 and not record["applied"]:
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.table.setItem(row, column, item)
        self.table.setUpdatesEnabled(True)
        self._show_detail()
        name = self.machine.name if self.machine else ""
        self.log_title.setText(f"<b>Decisions</b> about {name}, newest first ({len(records)} shown)" if records
                               else f"<b>Decisions</b>: none about {name} yet" if name else "")

    def _show_detail(self) -> None:
        row = self.table.currentRow() if self.table.currentRow() >= 0 else 0
        if not self.records or row >= len(self.records):
            self.detail.setPlainText("")
            return
        record = self.records[len(self.records) - 1 - row]  # newest first
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
        outcome = "" if record["applied"] else f" — not applied: {record.get('error', 'unknown')}"
        self.detail.setPlainText(f"{stamp}, {record['kind']} {decision_log.target_text(record)} by {record['by']}: "
                            f"{record['reason']}{outcome}")

    # -- the live part ---------------------------------------------------------------------------

    def redraw(self) -> None:
        machine = self.machine
        state = self.status()
        if self._log_key is None or (state.state != "acting"
                                     and time.monotonic() - self._log_checked >= LOG_CHECK_SECONDS):
            self.reload_log()  # a cycle decided while the tab was hidden; or another process may be writing it
        if machine is None or machine.entry.config is None:
            self.summary.setText("")
            self.memory.show_curves({}, self.window_seconds)
            self.cores.show_placement({}, [], [])
            return
        series = self.monitor.series.get(machine.entry.folder)
        running = allows(Action.BALLOON, machine.state) and machine.pid is not None
        sample = series.latest if series is not None and running else None
        self.summary.setText(self._summary_text(machine, state, sample.balloon if sample else None, running))
        self._draw_memory(machine, series if running else None)
        if running and sample is not None:
            placement = host.thread_placement(self.monitor.vcpu_threads(machine))
            host_sample = self.monitor.host.latest
            self.cores.show_placement(placement, sample.vcpus, host_sample.cpu_per_core if host_sample else [])
        else:
            self.cores.show_placement({}, [], [])

    def _summary_text(self, machine: Machine, state: control_status.Status, balloon: int | None, running: bool) -> str:
        config = machine.config
        resources = config.resources
        pin = self.controller.pin_mode(resources.pin)
        pin_text = pin + (" (the default)" if resources.pin == "default" else "")
        who = "this app" if state.state == "acting" else state.who if state.state == "other" else \
            "none (switched off in Preferences)" if state.state == "off" else "none yet"
        settings = (f"auto-balloon {'on' if resources.auto_balloon and config.balloon.enabled else 'off'}"
                    + ("" if config.balloon.enabled else " (no balloon device)")
                    + f", minimum {resources.min_memory_mib} MiB, {resources.shares} CPU shares, "
                      f"pinning {pin_text}")
        if not running:
            now = f"The controller acts on running VMs; {machine.name} is {machine.state.value}."
        elif balloon is None:
            now = "Balloon: not reported yet."
        else:
            back = max(0, config.memory_mib * MIB - balloon)
            now = (f"Given back: <b>{format_approx(back)}</b> (balloon {format_approx(balloon)} "
                   f"of {config.memory_mib} MiB).")
        return f"<b>Controller:</b> {who}. <b>This VM:</b> {settings}.<br>{now}"

    def targets(self, machine: Machine) -> list[Target]:
        """The balloon targets set for this VM: this app's own, or those in its log (another controller's)."""
        own = self.controller.targets.get(machine.name)
        if own:
            return list(own)
        return control_status.targets_from_log(self.records, time.time(), time.monotonic())

    def _draw_memory(self, machine: Machine, series: Any) -> None:
        window = self.window_seconds
        now = time.monotonic()
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if series is not None and len(series.times):
            count = min(len(series.times), int(window / self.monitor.interval) + 1)
            x = ages(series, count)
            curves["balloon"] = (x, series.rings["balloon"].values(count) / MIB)
        else:
            curves["balloon"] = (np.array([]), np.array([]))
        targets = self.targets(machine) if series is not None else []
        curves["target"] = steps(targets, "size", now, window)
        curves["floor"] = steps(targets, "floor", now, window)
        if series is not None and len(series.times):  # without the balloon's pages, as the controller sees it
            own = guest_own_use(series.rings["guest_used"].values(count), series.rings["balloon"].values(count),
                                machine.config.memory_mib * MIB, machine.config.balloon.deflate_on_oom)
            curves["guest use"] = (x, own / MIB)
        else:
            curves["guest use"] = (np.array([]), np.array([]))
        memory = float(machine.config.memory_mib)
        curves["configured"] = (np.array([-float(window), 0.0]), np.array([memory, memory]))
        assert tuple(curves) == CURVES, "in the key's order (and colours)"
        self.memory.show_curves(curves, window, top=memory * 1.1)
