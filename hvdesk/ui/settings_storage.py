"""The Storage page of the settings dialog: disks (added, attached, removed and grown at once,
through the engine) and the CD drive (saved with the other settings; live on a running VM)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core.background import spawn
from hvdesk.core.config import CD_BUSES, DISK_BUSES, CdDrive, VmConfig
from hvdesk.core.units import format_approx, format_size
from hvdesk.engine import editing, host
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.ui import prefs
from hvdesk.ui.backing_prompt import ask_to_allow_backing
from hvdesk.ui.files import DISK_FILTER, ISO_FILTER, choose_file
from hvdesk.ui.settings_pages import Page, combo, hint, set_combo
from hvdesk.ui.tasks import TaskRunner

GIB = 1024**3


class StoragePage(Page):
    COLUMNS = ("Disk image", "Format", "Bus", "Size")

    def __init__(self, manager: Manager, machine: Machine, runner: TaskRunner, app_prefs: prefs.Prefs) -> None:
        super().__init__()
        self.manager, self.machine, self.runner, self.prefs = manager, machine, runner, app_prefs
        self.disks = QTableWidget(0, len(self.COLUMNS))
        self.disks.setHorizontalHeaderLabels(self.COLUMNS)
        self.disks.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.disks.verticalHeader().hide()
        self.disks.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.disks.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.disks.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.new_size = QSpinBox(minimum=1, maximum=64 * 1024, value=20, suffix=" GiB")
        self.new_bus = combo(DISK_BUSES)
        self.add_new = QPushButton("Add New Disk")
        self.add_existing = QPushButton("Add Existing…")
        self.remove = QPushButton("Remove…")
        self.grow_to = QSpinBox(minimum=1, maximum=64 * 1024, suffix=" GiB")
        self.grow = QPushButton("Grow")
        self.add_new.clicked.connect(self._add_new)
        self.add_existing.clicked.connect(lambda: choose_file(self, "Add an existing disk image", DISK_FILTER,
                                                              self.prefs, self._attach))
        self.remove.clicked.connect(self._ask_remove)
        self.grow.clicked.connect(self._grow)
        self.disks.itemSelectionChanged.connect(self._selection_changed)

        self.iso = QLineEdit(placeholderText="Empty")
        self.cd_bus = combo(CD_BUSES)
        browse, eject = QPushButton("Choose…"), QPushButton("Eject")
        browse.clicked.connect(lambda: choose_file(self, "Insert a CD/DVD image", ISO_FILTER, self.prefs,
                                                   lambda p: self.iso.setText(str(p))))
        eject.clicked.connect(self.iso.clear)

        add_row = QHBoxLayout()
        widget: QWidget
        for widget in (QLabel("New:"), self.new_size, self.new_bus, self.add_new, self.add_existing):
            add_row.addWidget(widget)
        add_row.addStretch()
        edit_row = QHBoxLayout()
        for widget in (self.remove, QLabel("Grow to:"), self.grow_to, self.grow):
            edit_row.addWidget(widget)
        edit_row.addStretch()
        cd_row = QHBoxLayout()
        for widget in (self.iso, browse, eject):
            cd_row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Hard disks</b> — changes here apply at once"))
        layout.addWidget(self.disks)
        layout.addLayout(add_row)
        layout.addLayout(edit_row)
        self.live_note = hint("The VM is running: disks can only be added or removed while it is stopped "
                              "(growing works now; the guest sees the new size).")
        layout.addWidget(self.live_note)
        cd_form = QFormLayout()
        cd_form.addRow("<b>Optical drive</b>", QLabel(""))
        cd_form.addRow("Image:", cd_row)
        cd_form.addRow("&Bus:", self.cd_bus)
        layout.addLayout(cd_form)
        layout.addWidget(hint("A changed CD is inserted at once when the VM is running."))
        layout.addStretch()
        self._notify(self.iso.textChanged, self.cd_bus.currentIndexChanged)

    # -- CD: part of the config the dialog saves ------------------------------------------------

    def load(self, config: VmConfig) -> None:
        self.iso.setText(config.cdrom.iso if config.cdrom else "")
        set_combo(self.cd_bus, config.cdrom.bus if config.cdrom else "sata")
        self.refresh_disks()

    def store(self, config: VmConfig) -> None:
        config.disks = list(self.machine.config.disks)  # disk edits were saved already
        config.cdrom = CdDrive(iso=self.iso.text().strip(), bus=self.cd_bus.currentData())

    # -- disks: through the engine, at once -------------------------------------------------------

    def refresh_disks(self) -> None:
        disks = self.machine.config.disks
        self.disks.setRowCount(len(disks))
        for row, disk in enumerate(disks):
            path = self.machine.paths.resolve(disk.path)
            shown = disk.path if path.parent == self.machine.entry.folder else str(path)  # short when ours
            for column, text in enumerate((shown, disk.format, disk.bus, "…")):
                item = QTableWidgetItem(text)
                item.setToolTip(str(path))
                self.disks.setItem(row, column, item)
            spawn(self._fill_size(row, path))
        running = self.machine.state.active
        self.live_note.setVisible(running)
        for button in (self.add_new, self.add_existing, self.remove):
            button.setEnabled(not running)
        self._selection_changed()

    async def _fill_size(self, row: int, path: Path) -> None:
        try:
            info = await host.image_info(path)
            text = f"{format_size(info.virtual_size)} ({format_approx(info.actual_size)} used)"
            if row == self.disks.currentRow():
                self.grow_to.setMinimum(max(1, -(-info.virtual_size // GIB)))
        except Exception as exc:  # noqa: BLE001 - shown in the table, not raised
            text = f"unreadable: {exc}"
        item = self.disks.item(row, 3) if row < self.disks.rowCount() else None
        if item is not None:  # (refresh_disks gives each of its rows all four cells; the row may be gone)
            item.setText(text)

    def _selection_changed(self) -> None:
        row = self.disks.currentRow()
        has = 0 <= row < len(self.machine.config.disks)
        self.remove.setEnabled(has and not self.machine.state.active)
        self.grow.setEnabled(has)
        self.grow_to.setEnabled(has)

    def _after(self, work: Awaitable[Any], title: str, progress: str | None = None) -> None:
        self.runner.run(work, title=title, progress=progress, on_done=lambda *_: self.refresh_disks())

    def _add_new(self) -> None:
        self._after(editing.add_new_disk(self.manager, self.machine.name, self.new_size.value() * GIB,
                                         bus=self.new_bus.currentData()),
                    "Cannot add the disk", "Creating the disk image…")

    def _attach(self, path: Path, allow_backing: bool = False) -> None:
        work = editing.attach_disk(self.manager, self.machine.name, path, bus=self.new_bus.currentData(),
                                   allow_backing=allow_backing)
        self.runner.run(work, title="Cannot add the disk", on_done=lambda *_: self.refresh_disks(),
                        on_error=lambda error: ask_to_allow_backing(self, error, lambda: self._attach(path, True)))

    def _ask_remove(self) -> None:
        row = self.disks.currentRow()
        disk = self.machine.config.disks[row]
        box = QMessageBox(QMessageBox.Icon.Question, "Remove disk", f"Remove {disk.path} from this VM?", parent=self)
        delete = None
        if disk.created:
            box.setInformativeText("hvdesk created this disk image for this VM. You can also delete the file.")
            delete = box.addButton("Remove and Delete File", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Remove Only", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen(button: QAbstractButton) -> None:
            if button in (delete, keep):
                self._after(editing.remove_disk(self.manager, self.machine.name, row, delete_file=button is delete),
                            "Cannot remove the disk")
        box.buttonClicked.connect(chosen)
        box.open()

    def _grow(self) -> None:
        row = self.disks.currentRow()
        self._after(editing.resize_disk(self.manager, self.machine.name, row, self.grow_to.value() * GIB),
                    "Cannot grow the disk", "Growing the disk image…")
