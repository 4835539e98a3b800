"""Machine ▸ Clone…: the new VM's name (checked as you type, by the engine's name rule), a full
copy or a linked clone, and what happens to the MAC addresses. A full clone's copy shows its
progress and can be cancelled (the engine then discards its half-made folder)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core import snapshot_meta
from hvdesk.core.errors import ConfigError
from hvdesk.core.names import name_key, validate_name
from hvdesk.engine.clone import CloneResult
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.ui.tasks import TaskRunner

NAME_LIMIT = 64


def default_name(machine: Machine, taken: set[str]) -> str:
    """"<name> Clone", then "<name> Clone 2", … (kept within the name rule's length)."""
    base = f"{machine.name[:NAME_LIMIT - 8]} Clone"
    name, n = base, 2
    while name_key(name) in taken:
        name, n = f"{base} {n}", n + 1
    return name


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #4a5568")
    return label


class CloneDialog(QDialog):
    cloned = Signal(str)  # the new VM's name

    def __init__(self, manager: Manager, machine: Machine, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.manager, self.machine, self.runner = manager, machine, runner
        self.task: Any = None
        self.result_: CloneResult | None = None
        self.setWindowTitle(f"Clone {machine.name}")
        self._taken = {name_key(m.name) for m in manager.machines()}
        self.name = QLineEdit(default_name(machine, self._taken))
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b00020")
        self.problem.setWordWrap(True)
        self.full = QRadioButton("Full clone: a copy of every disk (independent of this VM)")
        self.linked = QRadioButton("Linked clone: shares this VM's disks as they are now (quick, little space)")
        self.kind = QButtonGroup(self)
        self.kind.addButton(self.full)
        self.kind.addButton(self.linked)
        self.full.setChecked(True)
        has_snapshots = self._has_snapshots()
        self.linked.setEnabled(not has_snapshots)
        self.linked_hint = _hint(
            f"Not possible: {machine.name} has snapshots, which would stay behind in the shared disks. Make a full "
            "clone, or delete its snapshots first." if has_snapshots else
            f"{machine.name}'s disks become read-only base images that both VMs read; each writes its own overlay. "
            f"{machine.name} cannot be deleted while a linked clone uses them.")
        self.new_macs = QRadioButton("Generate new MAC addresses for all network cards (recommended)")
        self.keep_macs = QRadioButton("Keep the MAC addresses")
        self.macs = QButtonGroup(self)
        self.macs.addButton(self.new_macs)
        self.macs.addButton(self.keep_macs)
        self.new_macs.setChecked(True)
        self.mac_hint = _hint("Two VMs with one MAC address on the same network disturb each other: keep them only "
                              "for a clone that replaces this VM.")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Clone")
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.cancel)

        form = QFormLayout()
        form.addRow("New name:", self.name)
        form.addRow("", self.problem)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Make a new VM with the settings and disks of <b>{machine.name}</b>."))
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>Disks</b>"))
        layout.addWidget(self.full)
        layout.addWidget(self.linked)
        layout.addWidget(self.linked_hint)
        layout.addWidget(QLabel("<b>MAC addresses</b>"))
        layout.addWidget(self.new_macs)
        layout.addWidget(self.keep_macs)
        layout.addWidget(self.mac_hint)
        layout.addStretch()
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)
        self.name.textChanged.connect(self._check)
        self.resize(520, 400)
        self._check()

    def _has_snapshots(self) -> bool:
        try:
            return bool(snapshot_meta.read(self.machine.entry.folder).snapshots)
        except ConfigError:
            return False  # the engine says what is wrong with the file, if it matters

    def _check(self) -> None:
        text = self.name.text()
        problem = ""
        try:
            validate_name(text)
            if name_key(text) in self._taken:
                problem = f"A VM named “{text}” already exists (names ignore case)."
        except ConfigError as exc:
            problem = str(exc)[:1].upper() + str(exc)[1:] + "."
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem and self.task is None)

    # -- cloning -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.task is not None:
            return
        linked = self.linked.isChecked()
        for part in (self.name, self.full, self.linked, self.new_macs, self.keep_macs):
            part.setEnabled(False)
        self.progress.setVisible(True)
        if linked:
            self.progress.setRange(0, 0)  # quick, and the engine reports no steps
        self.progress.setValue(0)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        if linked:  # its steps are small and undone as a whole on failure; not cut short half-way
            self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setEnabled(False)
        self.task = self.runner.run(
            self.manager.clone(self.machine.name, self.name.text(), linked=linked, progress=self._progress,
                               keep_macs=self.keep_macs.isChecked()),
            title=f"Cannot clone {self.machine.name}", on_done=self._done, on_error=self._failed)
        self.task.add_done_callback(lambda task: self.reject() if task.cancelled() else None)

    def _progress(self, percent: float) -> None:
        self.progress.setValue(int(percent))

    def _done(self, result: CloneResult) -> None:
        self.result_ = result
        self.cloned.emit(result.machine.name)
        self.accept()

    def _failed(self, _error: BaseException) -> bool:
        self.task = None
        for part in (self.name, self.full):
            part.setEnabled(True)
        self.linked.setEnabled(not self._has_snapshots())
        self.progress.setVisible(False)
        self.progress.setRange(0, 100)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setEnabled(True)
        self._taken = {name_key(m.name) for m in self.manager.machines()}
        self._check()
        return False  # the runner shows the engine's message

    def cancel(self) -> None:
        """Cancel: closes the dialog, or stops a full clone's copy (then closes)."""
        if self.task is None:
            self.reject()
        elif not self.task.done():
            self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setEnabled(False)
            self.progress.setFormat("Cancelling…")
            self.task.cancel()

    def reject(self) -> None:
        if self.task is not None and not self.task.done():
            self.cancel()  # Esc or the close button while copying: the same as Cancel
            return
        super().reject()
