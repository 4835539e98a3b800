"""The New VM wizard: install media (with the OS detected from an ISO), name and OS, memory and
processors, disk, summary. Every page checks its fields before Next; nothing is written until
Finish, and a failure while creating removes what was made (the engine's create does that)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
from pathlib import Path

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from hvdesk.core.background import spawn
from hvdesk.core.errors import HvdeskError
from hvdesk.core.iso import Detection, NotRecognised, detect
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.osinfo import preset, presets
from hvdesk.core.units import format_approx, format_size
from hvdesk.engine.host import host_limits
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.ui import prefs
from hvdesk.ui.backing_prompt import ask_to_allow_backing
from hvdesk.ui.files import DISK_FILTER, ISO_FILTER, choose_file, file_row
from hvdesk.ui.icons import app_icon, os_icon
from hvdesk.ui.settings_pages import hint
from hvdesk.ui.tasks import TaskRunner

GIB = 1024**3


def _browse(page: QWidget, target: QLineEdit, title: str, filters: str, app_prefs: prefs.Prefs) -> QWidget:
    button = QPushButton("Browse…")
    button.clicked.connect(lambda: choose_file(page, title, filters, app_prefs, lambda p: target.setText(str(p))))
    return file_row(target, button)


def _text(plain: str) -> str:
    """Plain text inside the labels' rich text: an ISO's volume id or a file name may hold "<" or "&"."""
    return html.escape(plain, quote=False)


class MediaPage(QWizardPage):
    def __init__(self, app_prefs: prefs.Prefs) -> None:
        super().__init__()
        self.setTitle("Installation media")
        self.setSubTitle("Install an operating system from an ISO image, or use a disk image you already have.")
        self.iso_choice = QRadioButton("Install from an ISO image:")
        self.none_choice = QRadioButton("No media: I will attach it later")
        self.disk_choice = QRadioButton("Use an existing disk image (import):")
        self.group = QButtonGroup(self)
        for button in (self.iso_choice, self.none_choice, self.disk_choice):
            self.group.addButton(button)
        self.iso = QLineEdit(placeholderText="e.g. debian-12.8.0-amd64-netinst.iso")
        self.disk = QLineEdit(placeholderText="a qcow2, raw, vmdk, vdi or vhdx image")
        self.found = QLabel()
        self.found.setWordWrap(True)
        self.detection: Detection | None = None
        self._checked_path = ""
        self._problem = ""
        layout = QVBoxLayout(self)
        layout.addWidget(self.iso_choice)
        layout.addWidget(_browse(self, self.iso, "Choose an installer ISO", ISO_FILTER, app_prefs))
        layout.addWidget(self.found)
        layout.addWidget(self.none_choice)
        layout.addWidget(self.disk_choice)
        layout.addWidget(_browse(self, self.disk, "Choose a disk image", DISK_FILTER, app_prefs))
        layout.addStretch()
        self.iso_choice.setChecked(True)
        self.iso.textChanged.connect(self._iso_changed)
        for signal in (self.disk.textChanged, self.group.buttonToggled):
            signal.connect(lambda *_: self.completeChanged.emit())

    def _iso_changed(self, text: str) -> None:
        self.detection, self._problem = None, ""
        self.found.setText("Reading the ISO…" if text.strip() else "")
        self.completeChanged.emit()
        if text.strip():
            spawn(self._detect(text.strip()))

    async def _detect(self, text: str) -> None:
        """Whatever happens, the page leaves "Reading the ISO…": a damaged image or a bug in detection
        is "not recognised" (the person picks the OS); only the user's own mistakes block Next."""
        outcome: Detection | NotRecognised | HvdeskError
        try:
            outcome = await asyncio.to_thread(detect, Path(text).expanduser())
        except HvdeskError as exc:  # no such file, a folder, no permission
            outcome = exc
        except Exception as exc:  # never expected (detect says why instead), but never stuck either
            outcome = NotRecognised(f"detection failed ({type(exc).__name__}: {exc})")
        except BaseException:  # cancelled: the app is closing
            self._show(text, NotRecognised("detection was stopped"))
            raise
        self._show(text, outcome)

    def _show(self, text: str, outcome: Detection | NotRecognised | HvdeskError) -> None:
        if not shiboken6.isValid(self) or text != self.iso.text().strip():
            return  # the wizard has closed, or the field changed meanwhile
        self.detection = outcome if isinstance(outcome, Detection) else None
        self._problem = str(outcome) if isinstance(outcome, HvdeskError) else ""
        self._checked_path = text
        if isinstance(outcome, Detection):
            self.found.setText(f"Detected <b>{_text(outcome.preset.label)}</b> — "
                               f"{_text(outcome.reason.split(': ', 1)[1])}")
        elif isinstance(outcome, NotRecognised):
            self.found.setText(f"Not recognised: {_text(outcome.reason)}<br>"
                               "Choose the operating system on the next page.")
        else:
            self.found.setText(f"<span style='color:#b00020'>{_text(self._problem)}</span>")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        if self.iso_choice.isChecked():
            text = self.iso.text().strip()
            return bool(text) and text == self._checked_path and not self._problem
        if self.disk_choice.isChecked():
            return Path(self.disk.text().strip()).expanduser().is_file()
        return True


class NamePage(QWizardPage):
    def __init__(self, manager: Manager, media: MediaPage) -> None:
        super().__init__()
        self.manager, self.media = manager, media
        self.setTitle("Name and operating system")
        self.setSubTitle("The OS decides the recommended memory, disk and devices; change it if the guess is wrong.")
        self.name = QLineEdit()
        self.os = QComboBox()
        for item in presets().values():
            self.os.addItem(os_icon(item.id), item.label, item.id)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        form = QFormLayout(self)
        form.addRow("&Name:", self.name)
        form.addRow("&Operating system:", self.os)
        form.addRow(self.error)
        self.name.textChanged.connect(lambda *_: self.completeChanged.emit())

    def initializePage(self) -> None:
        found = self.media.detection
        os_id = found.preset.id if found else ("linux" if self.media.iso_choice.isChecked() else "other")
        self.os.setCurrentIndex(max(0, self.os.findData(os_id)))
        if not self.name.text():
            self.name.setText(found.preset.label.split(" (")[0] if found else "")

    def isComplete(self) -> bool:
        problem = ""
        try:
            validate_name(self.name.text())
            # The names in memory (the watcher keeps them current), not a rescan of the library on
            # every keystroke; the engine checks again, under the library lock, when it creates.
            if any(name_key(m.name) == name_key(self.name.text()) for m in self.manager.machines()):
                problem = f"A VM named “{self.name.text()}” already exists."
        except HvdeskError as exc:
            problem = "" if not self.name.text() else str(exc)
        self.error.setText(problem)
        return bool(self.name.text()) and not problem


class ResourcesPage(QWizardPage):
    def __init__(self, names: NamePage) -> None:
        super().__init__()
        self.names = names
        self.setTitle("Memory and processors")
        self.setSubTitle("What the VM may use of this host's memory and processors while it runs.")
        host_mib, host_cpus = host_limits()
        self.memory = QSpinBox(minimum=16, maximum=host_mib, singleStep=256, suffix=" MiB")
        self.cpus = QSpinBox(minimum=1, maximum=host_cpus)
        self.memory_hint, self.cpu_hint = hint(""), hint("")
        self.host = (host_mib, host_cpus)
        form = QFormLayout(self)
        form.addRow("&Memory:", self.memory)
        form.addRow("", self.memory_hint)
        form.addRow("&Processors:", self.cpus)
        form.addRow("", self.cpu_hint)

    def initializePage(self) -> None:
        chosen = preset(self.names.os.currentData())
        host_mib, host_cpus = self.host
        self.memory.setValue(min(chosen.memory_mib, host_mib))
        self.cpus.setValue(min(chosen.cpus, host_cpus))
        self.memory_hint.setText(f"Recommended for {chosen.label}: {chosen.memory_mib} MiB (at least "
                                 f"{chosen.min_memory_mib} MiB). Up to {format_approx(host_mib * 2**20)} available.")
        self.cpu_hint.setText(f"Recommended: {chosen.cpus}. Up to {host_cpus} available on this host.")


class DiskPage(QWizardPage):
    def __init__(self, names: NamePage, media: MediaPage, app_prefs: prefs.Prefs) -> None:
        super().__init__()
        self.names, self.media = names, media
        self.setTitle("Hard disk")
        self.setSubTitle("Where the operating system is installed.")
        self.new_choice = QRadioButton("Create a new disk (thin: it grows as the guest writes)")
        self.existing_choice = QRadioButton("Use an existing disk image:")
        self.none_choice = QRadioButton("No disk")
        self.group = QButtonGroup(self)
        for button in (self.new_choice, self.existing_choice, self.none_choice):
            self.group.addButton(button)
        self.size_gib = QSpinBox(minimum=1, maximum=64 * 1024, suffix=" GiB")
        self.path = QLineEdit()
        layout = QVBoxLayout(self)
        layout.addWidget(self.new_choice)
        size_row = QFormLayout()
        size_row.addRow("Size:", self.size_gib)
        layout.addLayout(size_row)
        layout.addWidget(self.existing_choice)
        layout.addWidget(_browse(self, self.path, "Choose a disk image", DISK_FILTER, app_prefs))
        layout.addWidget(self.none_choice)
        layout.addStretch()
        for signal in (self.path.textChanged, self.group.buttonToggled):
            signal.connect(lambda *_: self.completeChanged.emit())

    def initializePage(self) -> None:
        self.size_gib.setValue(preset(self.names.os.currentData()).disk_gib)
        if self.media.disk_choice.isChecked():
            self.existing_choice.setChecked(True)
            self.path.setText(self.media.disk.text())
        else:
            self.new_choice.setChecked(True)

    def isComplete(self) -> bool:
        return not self.existing_choice.isChecked() or Path(self.path.text().strip()).expanduser().is_file()


class SummaryPage(QWizardPage):
    def __init__(self, wizard: NewVmWizard) -> None:
        super().__init__()
        self.wizard_ = wizard
        self.setTitle("Summary")
        self.setSubTitle("Nothing has been written yet: Finish creates the VM.")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.customize = QCheckBox("Customize the settings before starting")
        self.start = QCheckBox("Start the VM after creating it")
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addStretch()
        layout.addWidget(self.customize)
        layout.addWidget(self.start)

    def initializePage(self) -> None:
        request = self.wizard_.request()
        assert request.os is not None, "the wizard always picks an OS (its list holds the presets)"
        disk = (f"new {format_size(request.disk_size)} disk" if request.disk_size else
                f"existing disk {request.attach_disk}" if request.attach_disk else "no disk")
        self.text.setText(f"<b>{request.name}</b> — {preset(request.os).label}<br>"
                          f"{request.memory_mib} MiB memory, {request.cpus} processor(s), {disk}<br>"
                          f"Install media: {request.iso or 'none'}")
        self.start.setChecked(request.iso is not None)


class NewVmWizard(QWizard):
    """Emits `created(name, customize, start)` once the engine has created the VM."""

    created = Signal(str, bool, bool)

    def __init__(self, manager: Manager, runner: TaskRunner, app_prefs: prefs.Prefs, parent: QWidget) -> None:
        super().__init__(parent)
        self.manager, self.runner = manager, runner
        self.setWindowTitle("New Virtual Machine")
        self.setWindowIcon(app_icon())
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.media = MediaPage(app_prefs)
        self.names = NamePage(manager, self.media)
        self.resources = ResourcesPage(self.names)
        self.disk = DiskPage(self.names, self.media, app_prefs)
        self.summary = SummaryPage(self)
        for page in (self.media, self.names, self.resources, self.disk, self.summary):
            self.addPage(page)
        self.resize(620, 460)

    def request(self) -> CreateRequest:
        iso = self.media.iso.text().strip() if self.media.iso_choice.isChecked() else ""
        return CreateRequest(
            name=self.names.name.text(), os=self.names.os.currentData(), memory_mib=self.resources.memory.value(),
            cpus=self.resources.cpus.value(),
            disk_size=self.disk.size_gib.value() * GIB if self.disk.new_choice.isChecked() else None,
            attach_disk=Path(self.disk.path.text().strip()) if self.disk.existing_choice.isChecked() else None,
            iso=Path(iso).expanduser() if iso else None)

    def accept(self, allow_backing: bool = False) -> None:
        """Finish: create through the engine; the wizard closes only when that worked."""
        request = dataclasses.replace(self.request(), allow_backing=allow_backing)
        self.setEnabled(False)

        def done(machine: Machine) -> None:
            self.created.emit(machine.name, self.summary.customize.isChecked(), self.summary.start.isChecked())
            super(NewVmWizard, self).accept()
        task = self.runner.run(self.manager.create(request), title="Cannot create the VM",
                               progress="Creating the virtual machine…", on_done=done,
                               on_error=lambda error: ask_to_allow_backing(self, error, lambda: self.accept(True)))
        task.add_done_callback(lambda *_: self.setEnabled(True))
