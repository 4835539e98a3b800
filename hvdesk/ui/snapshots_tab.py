"""The Snapshots tab: the selected VM's snapshots as a tree (each with its screen's thumbnail where
one was taken), the one the present state descends from marked current with a "Now" item under it,
and take / restore / delete / edit description. Which buttons are on is the engine's table of
states; the work is the engine's (manager.snapshots), its refusals shown in one line.

The tree is read from the VM's folder when the tab is on screen: a VM change while it is hidden
only marks it stale (and the snapshot engine is not even loaded until the tab is first seen)."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QIcon, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core import snapshot_meta as meta
from hvdesk.core.errors import ConfigError
from hvdesk.core.snapshot_meta import Snapshot, SnapshotTree
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState
from hvdesk.ui.icons import state_icon
from hvdesk.ui.redraw import on_screen
from hvdesk.ui.tasks import TaskRunner

NAME_ROLE = Qt.ItemDataRole.UserRole  # the snapshot's name; None on the "Now" item
COLUMNS = ("Name", "Taken", "State", "Description")
ICON_SIZE = QSize(48, 30)


class SnapshotDialog(QDialog):
    """A name and a description: Take… (both) and Edit Description (the description alone)."""

    def __init__(self, title: str, tree: SnapshotTree, parent: QWidget, *, name: str = "", description: str = "",
                 name_editable: bool = True, note: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.tree = tree
        self.name = QLineEdit(name)
        self.name.setReadOnly(not name_editable)
        self.description = QPlainTextEdit(description)
        self.description.setPlaceholderText("What this state is, what changed since the last one…")
        self.description.setTabChangesFocus(True)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b00020")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        if note:
            about = QLabel(note)
            about.setWordWrap(True)
            about.setStyleSheet("color: #4a5568")
            form.addRow(about)
        form.addRow("Name:", self.name)
        form.addRow("Description:", self.description)
        form.addRow(self.problem)
        form.addRow(self.buttons)
        self._name_editable = name_editable
        self.name.textChanged.connect(self._check)
        self.description.textChanged.connect(self._check)
        self.resize(440, 260)
        self._check()

    def _check(self) -> None:
        problem = ""
        try:
            if self._name_editable:
                meta.validate_snapshot_name(self.name.text())
                if self.tree.has_name(self.name.text()):
                    problem = f"There is already a snapshot named “{self.name.text()}” (names ignore case)."
            meta.check_description(self.description.toPlainText())
        except ConfigError as exc:
            problem = str(exc)[:1].upper() + str(exc)[1:] + "."
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)


def before_restore_name(tree: SnapshotTree, now: float | None = None) -> str:
    """The name of the snapshot taken, when asked, before a restore: "Before restore 2026-12-03 20.15.02"."""
    base = "Before restore " + time.strftime("%Y-%m-%d %H.%M.%S", time.localtime(now))
    name, n = base, 2
    while tree.has_name(name):
        name, n = f"{base} {n}", n + 1
    return name


class SnapshotsPane(QWidget):
    changed = Signal()  # after an operation of this tab ended (done or failed)

    def __init__(self, manager: Manager, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager, self.runner = manager, runner
        self.machine: Machine | None = None
        self.tree_data = SnapshotTree()
        self.busy = False
        self.stale = True
        self.dialog: SnapshotDialog | None = None  # the open Take… or Edit Description dialog (for tests)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setIconSize(ICON_SIZE)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 240)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self.restore() if item.data(0, NAME_ROLE) else None)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.about.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side = QWidget()  # under the tree: the selected snapshot's screen and what it holds
        side_layout = QHBoxLayout(side)
        side_layout.setContentsMargins(0, 6, 0, 0)
        side_layout.addWidget(self.preview)
        side_layout.addWidget(self.about, 1)

        self.take_button = QPushButton("Take…")
        self.take_button.setToolTip("Take a snapshot: a running VM's holds its memory too (it runs on after a short "
                                    "stop); a stopped VM's holds its disks")
        self.restore_button = QPushButton("Restore…")
        self.restore_button.setToolTip("Go back to the selected snapshot: its disks, its memory if it was taken "
                                       "running, and its settings")
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete the selected snapshot (its children stay restorable)")
        self.describe_button = QPushButton("Edit Description…")
        self.take_button.clicked.connect(self.take)
        self.restore_button.clicked.connect(self.restore)
        self.delete_button.clicked.connect(self.delete)
        self.describe_button.clicked.connect(self.describe)
        self.status = QLabel()
        self.status.setStyleSheet("color: #4a5568")
        buttons = QHBoxLayout()
        for button in (self.take_button, self.restore_button, self.delete_button, self.describe_button):
            buttons.addWidget(button)
        buttons.addStretch()
        buttons.addWidget(self.status)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tree)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 180])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        self._update_buttons()

    # -- showing -----------------------------------------------------------------------------------

    def show_machine(self, machine: Machine | None) -> None:
        """The selected VM, or its state changed: read its tree again if on screen, else later."""
        self.machine = machine
        if on_screen(self):
            self.refresh()
        else:
            self.stale = True
            self._update_buttons()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.stale:
            self.refresh()

    def refresh(self) -> None:
        self.stale = False
        machine = self.machine
        selected = self.selected_name()
        self.tree_data, problem = SnapshotTree(), ""
        if machine is not None and machine.entry.config is not None:
            try:
                _, self.tree_data = self.manager.snapshots.tree(machine.name)
            except ConfigError as exc:
                problem = str(exc)
        self.tree.setUpdatesEnabled(False)
        self.tree.clear()
        items: dict[str, QTreeWidgetItem] = {}
        for snap in self.tree_data.snapshots:  # oldest first: a parent comes before its children
            parent = items.get(snap.parent or "")
            item = QTreeWidgetItem(parent) if parent is not None else QTreeWidgetItem(self.tree)
            self._fill(item, machine, snap)
            items[snap.id] = item
        if machine is not None and machine.entry.config is not None and not problem:
            current = items.get(self.tree_data.current or "")
            now = QTreeWidgetItem(current) if current is not None else QTreeWidgetItem(self.tree)
            now.setText(0, "Now")
            now.setText(2, str(machine.state))
            now.setIcon(0, state_icon(machine.state))
            since = current.data(0, NAME_ROLE) if current is not None else None
            now.setToolTip(0, "The VM's present state" + (f", changed since “{since}”" if since else ""))
            italic = QFont(now.font(0))
            italic.setItalic(True)
            now.setFont(0, italic)
            now.setData(0, NAME_ROLE, None)
        self.tree.expandAll()
        self.tree.setUpdatesEnabled(True)
        if selected:
            for item in items.values():
                if item.data(0, NAME_ROLE) == selected:
                    self.tree.setCurrentItem(item)
        count = len(self.tree_data.snapshots)
        self.status.setText(problem or (f"{count} snapshot{'s' if count != 1 else ''}" if machine else ""))
        self._on_selection()

    def _fill(self, item: QTreeWidgetItem, machine: Machine | None, snap: Snapshot) -> None:
        current = snap.id == self.tree_data.current
        item.setText(0, f"{snap.name} (current)" if current else snap.name)
        item.setData(0, NAME_ROLE, snap.name)
        item.setText(1, time.strftime("%Y-%m-%d %H:%M", time.localtime(snap.time)))
        item.setText(2, snap.state)
        item.setToolTip(2, "Taken running: holds the memory too" if snap.ram else "Taken stopped: holds the disks")
        item.setText(3, " ".join(snap.description.split()))
        item.setToolTip(3, snap.description)
        thumb = self.manager.snapshots.thumbnail(machine, snap) if machine is not None else None
        item.setIcon(0, QIcon(str(thumb)) if thumb is not None
                     else state_icon(VmState.RUNNING if snap.ram else VmState.STOPPED))
        if current:
            bold = QFont(item.font(0))
            bold.setBold(True)
            item.setFont(0, bold)

    def selected_snapshot(self) -> Snapshot | None:
        name = self.selected_name()
        return next((s for s in self.tree_data.snapshots if s.name == name), None) if name else None

    def selected_name(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, NAME_ROLE) if items else None

    def item_named(self, name: str) -> QTreeWidgetItem | None:
        for item in self._items():
            if item.data(0, NAME_ROLE) == name:
                return item
        return None

    def _items(self) -> list[QTreeWidgetItem]:
        """Every item, parents before their children."""
        found: list[QTreeWidgetItem] = []
        stack = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        while stack:
            item = stack.pop(0)
            if item is not None:
                found.append(item)
                stack.extend(item.child(i) for i in range(item.childCount()))
        return found

    def _on_selection(self) -> None:
        snap = self.selected_snapshot()
        machine = self.machine
        thumb = self.manager.snapshots.thumbnail(machine, snap) if snap is not None and machine is not None else None
        self.preview.setPixmap(QPixmap(str(thumb)) if thumb is not None else QPixmap())
        self.preview.setVisible(thumb is not None)
        if snap is None:
            self.about.setText("Select a snapshot to restore, delete or describe it." if self.tree_data.snapshots
                               else "No snapshots yet. “Take…” keeps the VM's present state to come back to.")
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.time))
            what = "its disks and memory (taken running)" if snap.ram else "its disks (taken stopped)"
            self.about.setText(f"<b>{_html(snap.name)}</b><br>{when}<br>Holds {what}."
                               + (f"<p>{_html(snap.description)}</p>" if snap.description else ""))
        self._update_buttons()

    def _update_buttons(self) -> None:
        machine = self.machine
        state = machine.state if machine is not None and machine.entry.config is not None else None
        chosen = self.selected_snapshot() is not None

        def can(action: Action, needs_selection: bool = True) -> bool:
            return (not self.busy and state is not None and allows(action, state)
                    and (chosen or not needs_selection))
        self.take_button.setEnabled(can(Action.SNAPSHOT_TAKE, needs_selection=False))
        self.restore_button.setEnabled(can(Action.SNAPSHOT_RESTORE))
        self.delete_button.setEnabled(can(Action.SNAPSHOT_DELETE))
        self.describe_button.setEnabled(can(Action.EDIT))

    # -- operations --------------------------------------------------------------------------------

    def _run(self, work: Awaitable[Any], title: str, progress: str) -> None:
        self.busy = True
        self._update_buttons()

        def ended(_result: object = None) -> None:
            self.busy = False
            self.refresh()
            self.changed.emit()

        def failed(_error: BaseException) -> bool:
            ended()
            return False  # the runner shows it
        self.runner.run(work, title=title, progress=progress, on_done=ended, on_error=failed)

    def take(self) -> None:
        machine = self.machine
        if machine is None:
            return
        default = next(f"Snapshot {n}" for n in range(1, meta.MAX_SNAPSHOTS + 2)
                       if not self.tree_data.has_name(f"Snapshot {n}"))
        note = (f"{machine.name} is running: the snapshot holds its memory too (it runs on after a short stop)."
                if machine.state == VmState.RUNNING else f"{machine.name} is stopped: the snapshot holds its disks.")
        self._ask("Take Snapshot", default, "", True, note, lambda name, text: self._run(
            self.manager.snapshots.take(machine.name, name, text), f"Cannot take a snapshot of {machine.name}",
            f"Taking snapshot “{name}” of {machine.name}…"))

    def describe(self) -> None:
        machine, snap = self.machine, self.selected_snapshot()
        if machine is None or snap is None:
            return
        self._ask("Edit Description", snap.name, snap.description, False, "", lambda name, text: self._run(
            self.manager.snapshots.describe(machine.name, name, text), "Cannot change the description",
            "Saving the description…"))

    def _ask(self, title: str, name: str, description: str, name_editable: bool, note: str,
             then: Callable[[str, str], None]) -> None:
        dialog = SnapshotDialog(title, self.tree_data, self, name=name, description=description,
                                name_editable=name_editable, note=note)
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: then(dialog.name.text(), dialog.description.toPlainText()))
        dialog.finished.connect(lambda *_: setattr(self, "dialog", None))
        dialog.open()

    def restore(self) -> None:
        machine, snap = self.machine, self.selected_snapshot()
        if machine is None or snap is None or not self.restore_button.isEnabled():
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Restore snapshot",
                          f"Restore “{snap.name}” of {machine.name}?", parent=self)
        box.setInformativeText("The VM's present state is lost unless you take a snapshot of it first. "
                               "Take a snapshot of the current state first?")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
                               | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen(button: QAbstractButton) -> None:
            answer = box.standardButton(button)
            if answer == QMessageBox.StandardButton.Cancel:
                return
            first = before_restore_name(self.tree_data) if answer == QMessageBox.StandardButton.Yes else None
            self._run(self._restore(machine.name, snap.name, first), f"Cannot restore {snap.name}",
                      f"Restoring “{snap.name}” of {machine.name}…")
        box.buttonClicked.connect(chosen)
        box.open()

    async def _restore(self, name: str, snap_name: str, first: str | None) -> None:
        if first is not None:
            await self.manager.snapshots.take(name, first, f"Taken before restoring “{snap_name}”.")
        await self.manager.snapshots.restore(name, snap_name)

    def delete(self) -> None:
        machine, snap = self.machine, self.selected_snapshot()
        if machine is None or snap is None:
            return
        children = len(self.tree_data.children(snap.id))
        box = QMessageBox(QMessageBox.Icon.Question, "Delete snapshot",
                          f"Delete snapshot “{snap.name}” of {machine.name}?", parent=self)
        box.setInformativeText("Its data is removed from the disk images. "
                               + (f"Its {children} child snapshot{'s' if children > 1 else ''} stay restorable."
                                  if children else "This cannot be undone."))
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._run(
            self.manager.snapshots.delete(machine.name, snap.name), f"Cannot delete {snap.name}",
            f"Deleting snapshot “{snap.name}”…") if button is delete else None)
        box.open()


def _html(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", "<br>")
