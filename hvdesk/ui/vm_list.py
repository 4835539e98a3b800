"""The VM list: a table model over the Manager's machines, kept current by its events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QWidget,
)

from hvdesk.core.config import VmConfig
from hvdesk.core.osinfo import presets
from hvdesk.core.units import format_approx, format_size
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.monitoring import Monitor
from hvdesk.engine.states import VmState
from hvdesk.ui.icons import os_icon, state_icon
from hvdesk.ui.polyline import finite_runs, polygon

MACHINE_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
SPARK_ROLE = Qt.ItemDataRole.UserRole + 3  # the last minute of CPU %, for the sparkline
SPARK_POINTS = 60
SPARK_COLOUR = QColor("#2b6cb0")
_SELECTED = QStyle.StateFlag.State_Selected.value
MIB = 1024 * 1024
_ROLES = frozenset((Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole,
                    MACHINE_ROLE, SORT_ROLE, SPARK_ROLE))  # the roles data() answers
_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()
_Value = TypeVar("_Value")


def os_label(os_id: str) -> str:
    found = presets().get(os_id)
    return found.label if found else os_id


def state_text(machine: Machine) -> str:
    return str(machine.state).capitalize()


@dataclass(frozen=True)
class Column:
    title: str
    text: Callable[[Machine], str]
    sort_key: Callable[[Machine], object]


def _config_value(getter: Callable[[VmConfig], _Value], default: _Value) -> Callable[[Machine], _Value]:
    """`getter` of the VM's config; `default` for an inaccessible VM (no config)."""
    return lambda m: getter(m.entry.config) if m.entry.config is not None else default


COLUMNS = (  # title, text, sort key; default widths in COLUMN_WIDTHS
    Column("Name", lambda m: m.name, lambda m: m.name.casefold()),
    Column("State", state_text, lambda m: str(m.state)),
    Column("OS", _config_value(lambda c: os_label(c.os), ""), _config_value(lambda c: os_label(c.os), "")),
    Column("Memory", _config_value(lambda c: format_size(c.memory_mib * MIB), ""),
           _config_value(lambda c: c.memory_mib, 0)),
    Column("vCPUs", _config_value(lambda c: str(c.cpus), ""), _config_value(lambda c: c.cpus, 0)),
)
NAME, STATE = 0, 1
CPU, USED = len(COLUMNS), len(COLUMNS) + 1  # live columns, from the monitor
COLUMN_WIDTHS = (150, 105, 105, 72, 50, 110, 80)


class VmListModel(QAbstractTableModel):
    def __init__(self, manager: Manager, monitor: Monitor, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._manager, self._monitor = manager, monitor
        self._rows: list[Machine] = manager.machines()
        self._shown_live: set[Path] = set()  # rows (VM folders) whose live columns show values
        self._unsubscribers = [manager.subscribe(self._on_change), monitor.subscribe(self._on_tick)]

    def detach(self) -> None:
        """Stop following the engine (the window is closing; the Manager lives on)."""
        for unsubscribe in self._unsubscribers:
            unsubscribe()

    def _on_tick(self) -> None:
        # Only rows with fresh samples change, and a VM that stopped gets one last update to clear;
        # one signal for the span of them (each signal costs a pass through the sort proxy).
        changed = []
        for row, machine in enumerate(self._rows):
            live = allows(Action.SAMPLE, machine.state)
            if live or machine.entry.folder in self._shown_live:
                changed.append(row)
            if live:
                self._shown_live.add(machine.entry.folder)
            else:
                self._shown_live.discard(machine.entry.folder)
        if changed:
            self.dataChanged.emit(self.index(changed[0], CPU), self.index(changed[-1], USED))

    def _live(self, machine: Machine, column: int, role: int) -> object:
        series = self._monitor.series.get(machine.entry.folder)
        sample = series.latest if series is not None and allows(Action.SAMPLE, machine.state) \
            else None
        if role == SPARK_ROLE and column == CPU:
            return series.rings["cpu"].values(SPARK_POINTS) if series is not None and sample is not None else None
        if role == SORT_ROLE:
            value = None if sample is None else (sample.cpu if column == CPU else sample.rss)
            return -1 if value is None else value
        if role == Qt.ItemDataRole.DisplayRole and sample is not None:
            if column == CPU:
                return f"{sample.cpu:.0f}%" if sample.cpu is not None else ""
            return format_approx(sample.rss) if sample.rss is not None else ""
        if role == Qt.ItemDataRole.ToolTipRole and sample is not None:
            return ("CPU of the VM's QEMU process, % of one host core (last minute)" if column == CPU
                    else "Host memory the VM's QEMU process uses (RSS)")
        return None

    def machine_at(self, row: int) -> Machine:
        return self._rows[row]

    def row_of(self, machine: Machine) -> int:
        return self._rows.index(machine)

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS) + 2

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title if section < len(COLUMNS) else ("CPU", "Host RAM")[section - CPU]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role not in _ROLES or not index.isValid():  # a view asks ~8 roles per cell per paint
            return None
        machine, column = self._rows[index.row()], index.column()
        if column >= CPU:
            return self._live(machine, column, role)
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[column].text(machine)
        if role == Qt.ItemDataRole.DecorationRole:
            if column == NAME:
                return os_icon(machine.entry.config.os if machine.entry.config else None)
            if column == STATE:
                return state_icon(machine.state)
        if role == Qt.ItemDataRole.ToolTipRole and machine.reason:
            return f"{state_text(machine)}\n{machine.reason}" if machine.state != VmState.INACCESSIBLE \
                else machine.reason
        if role == MACHINE_ROLE:
            return machine
        if role == SORT_ROLE:
            return COLUMNS[column].sort_key(machine)
        return None

    def _on_change(self, machine: Machine) -> None:
        current = self._manager.machines()
        if current != self._rows or machine not in current:  # a VM came or went: rebuild
            self.beginResetModel()
            self._rows = current
            self.endResetModel()
            return
        row = self._rows.index(machine)
        self.dataChanged.emit(self.index(row, 0), self.index(row, USED))


class VmFilterModel(QSortFilterProxyModel):
    """Filter by name (any case), sort by each column's own key."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(NAME)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)


class VmListView(QTreeView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setSortingEnabled(True)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.header().setStretchLastSection(False)
        self.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.painting = QRect()

    def dataChanged(self, top_left: _Index, bottom_right: _Index, roles: Sequence[int] = ()) -> None:
        if top_left.column() >= CPU:
            # The monitor's figures (every tick): rows keep their (uniform) height, so skip
            # QTreeView's re-measuring of the first row, ~60 calls into the model per tick.
            QAbstractItemView.dataChanged(self, top_left, bottom_right, roles)
        else:
            super().dataChanged(top_left, bottom_right, roles)

    def paintEvent(self, event: QPaintEvent) -> None:
        self.painting = event.rect()  # what this paint covers, for the delegates to skip what it does not
        super().paintEvent(event)

    def setModel(self, model: QAbstractItemModel | None) -> None:
        super().setModel(model)
        for column, width in enumerate(COLUMN_WIDTHS):
            self.setColumnWidth(column, width)
        self.setItemDelegateForColumn(CPU, SparklineDelegate(self))


class SparklineDelegate(QStyledItemDelegate):
    """The last minute of CPU as a small line, with the current value beside it."""

    def __init__(self, view: VmListView) -> None:
        super().__init__(view)
        self._view = view
        self._text_width = view.fontMetrics().horizontalAdvance("100%") + 6  # room for the value

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        super().paint(painter, option, index)
        rect = option.rect
        area = rect.adjusted(min(self._text_width, rect.width()), 3, -3, -3)  # beside the value
        if area.width() < 10 or not area.intersects(self._view.painting):  # (scrolled out of sight)
            return
        values = index.data(SPARK_ROLE)
        if values is None or not len(values):
            return
        finite = np.isfinite(values)
        if not finite.any():
            return
        top = max(100.0, float(values[finite].max()))
        step = area.width() / (SPARK_POINTS - 1)
        xs = area.left() + (SPARK_POINTS - len(values) + np.arange(len(values))) * step
        ys = area.bottom() - (area.height() / top) * values
        selected = option.state.value & _SELECTED  # (int: Python's flag enums are slow here)
        painter.save()
        # one pixel wide: a wider pen goes through Qt's stroker, several times the cost of the cell
        painter.setPen(QPen(option.palette.highlightedText().color() if selected else SPARK_COLOUR, 1))
        for start, end in [(0, len(values))] if finite.all() else finite_runs(values):  # a missing sample: a gap
            painter.drawPolyline(polygon(xs[start:end], ys[start:end]))
        painter.restore()
