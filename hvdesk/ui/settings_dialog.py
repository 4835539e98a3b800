"""A VM's settings: pages over a copy of its config, validated as the user types, saved through
the engine on OK."""

from __future__ import annotations

import copy

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTabWidget, QVBoxLayout, QWidget

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import HvdeskError
from hvdesk.engine import editing
from hvdesk.engine.host import host_limits
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.ui import prefs
from hvdesk.ui.icons import action_icon
from hvdesk.ui.settings_pages import DisplayPage, GeneralPage, NetworkPage, Page, ResourcesPage, SystemPage
from hvdesk.ui.settings_storage import StoragePage
from hvdesk.ui.tasks import TaskRunner


class SettingsDialog(QDialog):
    def __init__(self, manager: Manager, machine: Machine, runner: TaskRunner, app_prefs: prefs.Prefs,
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.manager, self.machine, self.runner = manager, machine, runner
        self.setWindowTitle(f"{machine.name} — Settings")
        self.setWindowIcon(action_icon("settings"))
        host_mib, host_cpus = host_limits()
        self.pages: dict[str, Page] = {
            "General": GeneralPage(),
            "System": SystemPage(host_mib, host_cpus),
            "Storage": StoragePage(manager, machine, runner, app_prefs),
            "Network": NetworkPage(),
            "Display": DisplayPage(),
            "Resources": ResourcesPage(),  # after System: its memory bounds the minimum
        }
        self.tabs = QTabWidget()
        for title, page in self.pages.items():
            self.tabs.addTab(page, title)
            page.load(machine.config)
            page.changed.connect(self.validate)
        self.running_note = QLabel("This VM is running: changes to System, Network and Display are saved now "
                                   "and take effect at its next start; Resources at the controller's next cycle.")
        self.running_note.setWordWrap(True)
        self.running_note.setVisible(machine.state.active)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.running_note)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.resize(640, 520)
        self.validate()

    def edited_config(self) -> VmConfig:
        """The machine's current config with every page's values written in, validated."""
        config = copy.deepcopy(self.machine.config)
        for page in self.pages.values():
            page.store(config)
        return config.validate()

    def validate(self) -> bool:
        try:
            config = self.edited_config()
            problem = ""
            if config.name != self.machine.name and self.machine.state.active:
                problem = "The name can only change while the VM is stopped."
        except HvdeskError as exc:
            problem = str(exc)
        self.error.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)
        return not problem

    def save(self) -> None:
        if not self.validate():
            return
        config = self.edited_config()
        self.setEnabled(False)
        task = self.runner.run(editing.save_settings(self.manager, self.machine.name, config),
                               title="Cannot save the settings", on_done=lambda *_: self.accept())
        task.add_done_callback(lambda *_: self.setEnabled(True))
