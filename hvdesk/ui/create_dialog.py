"""A simple New VM dialog on the engine's create (the step-by-step wizard replaces it later)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox, QVBoxLayout,
                               QWidget)

from hvdesk.core.errors import HvdeskError
from hvdesk.core.names import validate_name
from hvdesk.core.osinfo import preset, presets
from hvdesk.engine.library_ops import CreateRequest, host_limits
from hvdesk.engine.manager import Manager
from hvdesk.ui import prefs
from hvdesk.ui.files import DISK_FILTER, ISO_FILTER, choose_file
from hvdesk.ui.icons import os_icon
from hvdesk.ui.tasks import TaskRunner

GIB = 1024**3


def file_row(edit: QLineEdit, browse: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(browse)
    return row


class CreateDialog(QDialog):
    created = Signal(str)

    def __init__(self, manager: Manager, runner: TaskRunner, app_prefs: prefs.Prefs, parent: QWidget) -> None:
        super().__init__(parent)
        self.manager, self.runner, self.prefs = manager, runner, app_prefs
        self.setWindowTitle("New Virtual Machine")
        host_mib, host_cpus = host_limits()
        self.name = QLineEdit(placeholderText="e.g. Debian 12")
        self.os = QComboBox()
        for item in presets().values():
            self.os.addItem(os_icon(item.id), item.label, item.id)
        self.memory = QSpinBox(minimum=16, maximum=host_mib, singleStep=256, suffix=" MiB")
        self.cpus = QSpinBox(minimum=1, maximum=host_cpus)
        self.disk_none = QRadioButton("No disk")
        self.disk_new = QRadioButton("Create a new disk of")
        self.disk_existing = QRadioButton("Use an existing disk image")
        self.disk_group = QButtonGroup(self)
        for button in (self.disk_none, self.disk_new, self.disk_existing):
            self.disk_group.addButton(button)
        self.disk_size = QSpinBox(minimum=1, maximum=64 * 1024, suffix=" GiB")
        self.disk_path = QLineEdit(placeholderText="path to a disk image (qcow2, raw, vmdk, vdi, vhdx…)")
        self.iso = QLineEdit(placeholderText="optional: an installer ISO")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create")
        self.buttons.accepted.connect(self._create)
        self.buttons.rejected.connect(self.reject)

        new_disk = QHBoxLayout()
        new_disk.addWidget(self.disk_new)
        new_disk.addWidget(self.disk_size)
        new_disk.addStretch()
        form = QFormLayout()
        form.addRow("&Name:", self.name)
        form.addRow("&Operating system:", self.os)
        form.addRow("&Memory:", self._with_hint(self.memory, f"up to {host_mib} MiB on this host"))
        form.addRow("&Processors:", self._with_hint(self.cpus, f"up to {host_cpus} on this host"))
        form.addRow("Hard disk:", self.disk_none)
        form.addRow("", new_disk)
        form.addRow("", self.disk_existing)
        form.addRow("", file_row(self.disk_path, self._browse_button(self.disk_path, DISK_FILTER)))
        form.addRow("&Install media:", file_row(self.iso, self._browse_button(self.iso, ISO_FILTER)))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

        self.os.currentIndexChanged.connect(self._apply_preset)
        for signal in (self.name.textChanged, self.disk_path.textChanged, self.iso.textChanged,
                       self.disk_group.buttonToggled):
            signal.connect(self._validate)
        self.os.setCurrentIndex(self.os.findData("linux"))
        self.disk_new.setChecked(True)
        self._apply_preset()
        self.resize(520, self.sizeHint().height())

    @staticmethod
    def _with_hint(widget: QWidget, hint: str) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(widget)
        layout.addWidget(QLabel(f"<span style='color:palette(mid)'>{hint}</span>"), 1)
        return row

    def _browse_button(self, target: QLineEdit, filters: str) -> QPushButton:
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: choose_file(self, "Choose a file", filters, self.prefs,
                                                   lambda path: target.setText(str(path))))
        return button

    def _apply_preset(self) -> None:
        chosen = preset(self.os.currentData())
        host_mib, host_cpus = host_limits()
        self.memory.setValue(min(chosen.memory_mib, host_mib))
        self.cpus.setValue(min(chosen.cpus, host_cpus))
        self.disk_size.setValue(chosen.disk_gib)
        self._validate()

    def request(self) -> CreateRequest:
        return CreateRequest(
            name=self.name.text(), os=self.os.currentData(), memory_mib=self.memory.value(), cpus=self.cpus.value(),
            disk_size=self.disk_size.value() * GIB if self.disk_new.isChecked() else None,
            attach_disk=Path(self.disk_path.text()) if self.disk_existing.isChecked() else None,
            iso=Path(self.iso.text()) if self.iso.text().strip() else None)

    def _validate(self) -> bool:
        problem = ""
        try:
            validate_name(self.name.text())
            if self.manager.library.exists(self.name.text()):
                problem = f"A VM named “{self.name.text()}” already exists."
        except HvdeskError as exc:
            problem = "Enter a name." if not self.name.text() else str(exc)
        if not problem and self.disk_existing.isChecked() and not Path(self.disk_path.text()).is_file():
            problem = "Choose an existing disk image file."
        if not problem and self.iso.text().strip() and not Path(self.iso.text()).is_file():
            problem = f"No such ISO image: {self.iso.text()}"
        self.disk_size.setEnabled(self.disk_new.isChecked())
        self.disk_path.setEnabled(self.disk_existing.isChecked())
        self.error.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)
        return not problem

    def _create(self) -> None:
        if not self._validate():
            return
        request = self.request()
        self.setEnabled(False)

        def done(machine) -> None:
            self.created.emit(machine.name)
            self.accept()
        task = self.runner.run(self.manager.create(request), title="Cannot create the VM",
                               progress="Creating the virtual machine…", on_done=done)
        task.add_done_callback(lambda t: self.setEnabled(True))
