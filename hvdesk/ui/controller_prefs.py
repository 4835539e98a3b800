"""Preferences: the allocation controller's global settings (controller.toml), applied to the app's
running controller at once. Switching it off stops it: the VMs it ballooned get their memory back
and another controller (`hvdesk agent`) may act."""

from __future__ import annotations

import dataclasses
import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core import control_settings
from hvdesk.core.control_settings import MAX_INTERVAL, MIN_INTERVAL, ControlSettings
from hvdesk.core.errors import HvdeskError
from hvdesk.engine.controller import Controller
from hvdesk.engine.host import host_limits
from hvdesk.ui.settings_pages import combo, hint, set_combo
from hvdesk.ui.tasks import TaskRunner

PIN_LABELS = {"off": "Off: vCPUs run anywhere", "balanced": "Balanced: spread VMs over cores and caches",
              "dedicated": "Dedicated: each vCPU on a host CPU of its own"}


class ControllerPrefsDialog(QDialog):
    applied = Signal()  # the settings were saved and given to the controller

    def __init__(self, controller: Controller, runner: TaskRunner, problem: str, parent: QWidget) -> None:
        """`problem`: why controller.toml could not be read ("" if it could): saving replaces it."""
        super().__init__(parent)
        self.controller, self.runner = controller, runner
        self.setWindowTitle("Preferences — Allocation Controller")
        host_mib, _ = host_limits()
        self.enabled = QCheckBox("&Balance memory and CPU between the running VMs (the allocation controller)")
        self.interval = QSpinBox(minimum=MIN_INTERVAL, maximum=MAX_INTERVAL, suffix=" s")
        self.by_host = QRadioButton("Keep the host's memory use &under")
        self.by_pool = QRadioButton("Give all VMs together a memory &pool of")
        self.budget = QButtonGroup(self)
        self.budget.addButton(self.by_host)
        self.budget.addButton(self.by_pool)
        self.host_target = QSpinBox(minimum=10, maximum=95, suffix=" % of its memory")
        self.pool = QSpinBox(minimum=64, maximum=max(64, host_mib * 4), singleStep=256, suffix=" MiB")
        self.default_pin = combo(tuple(PIN_LABELS), PIN_LABELS)
        for spin in (self.host_target, self.pool):
            spin.setMinimumWidth(180)
        budget_box = QGroupBox("Memory budget")
        budget_column = QVBoxLayout(budget_box)
        grid = QGridLayout()
        grid.addWidget(self.by_host, 0, 0)
        grid.addWidget(self.host_target, 0, 1)
        grid.addWidget(self.by_pool, 1, 0)
        grid.addWidget(self.pool, 1, 1)
        grid.setColumnStretch(2, 1)
        budget_column.addLayout(grid)
        budget_column.addWidget(hint("Under a host target, VMs are only shrunk when the host runs short of memory. "
                                     "A pool is a hard limit: the VMs' balloons sum to at most it. No VM goes "
                                     "below its floor (its minimum memory, or what its guest uses plus a "
                                     "reserve)."))
        form = QFormLayout()
        form.addRow("Act &every:", self.interval)
        form.addRow("Default &pinning:", self.default_pin)
        form.addRow("", hint("For VMs whose pin mode is “default” in their settings (Resources)."))
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020")
        if problem:
            self.problem.setText(f"{html.escape(problem)}.<br>The controller uses the default settings; "
                                 "saving here replaces the file.")
        self.problem.setVisible(bool(problem))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.problem)
        layout.addWidget(self.enabled)
        layout.addWidget(hint("It runs in this app, and in `hvdesk agent`: only one of them acts at a time. "
                              "Switched off, the VMs it shrank get all their memory back."))
        layout.addWidget(budget_box)
        layout.addLayout(form)
        layout.addStretch()
        layout.addWidget(self.buttons)
        self.by_host.toggled.connect(self._budget_changed)
        self.enabled.toggled.connect(self._budget_changed)
        self.load(controller.settings)
        self.resize(600, 420)

    def load(self, settings: ControlSettings) -> None:
        self.enabled.setChecked(settings.enabled)
        self.interval.setValue(settings.interval)
        self.host_target.setValue(settings.host_target_percent)
        self.pool.setValue(settings.pool_mib or max(1024, self.pool.minimum()))
        (self.by_pool if settings.pool_mib else self.by_host).setChecked(True)
        set_combo(self.default_pin, settings.default_pin)
        self._budget_changed()

    def _budget_changed(self) -> None:
        on = self.enabled.isChecked()
        for widget in (self.by_host, self.by_pool, self.interval, self.default_pin):
            widget.setEnabled(on)
        self.host_target.setEnabled(on and self.by_host.isChecked())
        self.pool.setEnabled(on and self.by_pool.isChecked())

    def settings(self) -> ControlSettings:
        return dataclasses.replace(
            self.controller.settings, enabled=self.enabled.isChecked(), interval=self.interval.value(),
            host_target_percent=self.host_target.value(),
            pool_mib=self.pool.value() if self.by_pool.isChecked() else 0,
            default_pin=self.default_pin.currentData()).validate()

    def save(self) -> None:
        try:
            settings = self.settings()
            control_settings.save(settings)
        except (HvdeskError, OSError) as exc:
            self.problem.setText(f"Cannot save the settings: {html.escape(str(exc))}")
            self.problem.show()
            return
        apply(self.controller, settings, self.runner)
        self.applied.emit()
        self.accept()


def apply(controller: Controller, settings: ControlSettings, runner: TaskRunner) -> None:
    """Give the running controller new settings: on, it starts (or goes on with them from its next
    cycle); off, it stops and gives back what it took."""
    controller.settings = settings
    if settings.enabled:
        controller.start()
    else:
        runner.run(controller.stop(), title="Cannot stop the allocation controller")
