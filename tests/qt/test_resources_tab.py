"""The allocation controller in the app: the Resources tab on a real guest ballooned under a pool,
Preferences that save controller.toml and switch the controller off (giving the memory back), the
VM settings' Resources page, and a controller held by another process."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QDialogButtonBox

from hvdesk.control.decisions import Decision, Kind
from hvdesk.core import control_settings
from hvdesk.core.control_settings import ControlSettings
from hvdesk.core.filelock import FileLock
from hvdesk.core.paths import vms_dir
from hvdesk.engine import controller as control
from hvdesk.engine import decision_log
from hvdesk.ui.app import load_control_settings
from hvdesk.ui.controller_prefs import ControllerPrefsDialog
from hvdesk.ui.settings_dialog import SettingsDialog
from tests.integration.conftest import wait_for_serial

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


def preferences(window) -> ControllerPrefsDialog:
    window.actions_by_key["preferences"].trigger()
    (dialog,) = [d for d in window.findChildren(ControllerPrefsDialog) if d.isVisible()]
    return dialog


def test_resources_tab_under_a_pool_and_preferences_switch_it_off(open_window, run, until, guest_request,
                                                                  tiny_guest):
    window = open_window(controller=ControlSettings(enabled=False, interval=2))
    machine = run(window.manager.create(guest_request("ball", memory_mib=512)))
    run(window.manager.start("ball"))
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    window.select("ball")
    window.tabs.setCurrentWidget(window.resources)
    pane, controller = window.resources, window.controller
    assert window.controller_label.text() == "Controller: off"

    def balloon() -> int:
        sample = window.monitor.series_of(machine).latest
        return sample.balloon if sample is not None and sample.balloon is not None else 512 * MIB
    # Switched on once the guest reports its memory (before that, the policy holds a VM off for a minute).
    until(lambda: (s := window.monitor.series_of(machine).latest) is not None and s.guest_used is not None,
          what="the guest's memory stats")
    dialog = preferences(window)
    assert not dialog.enabled.isChecked() and dialog.by_host.isChecked() and not dialog.pool.isEnabled()
    dialog.enabled.setChecked(True)
    dialog.by_pool.setChecked(True)
    dialog.pool.setValue(320)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    saved = control_settings.load()
    assert (saved.enabled, saved.pool_mib, saved.interval) == (True, 320, 2)
    until(lambda: balloon() <= 320 * MIB, 30, "the controller to shrink the balloon to the pool")
    until(lambda: pane.memory.curves.get("balloon") is not None
          and np.nanmin(pane.memory.curves["balloon"].getData()[1]) <= 320, what="the shrink in the graph")
    assert controller.acting and controller.targets["ball"][-1].size <= 320 * MIB
    _, target = pane.memory.curves["target"].getData()
    _, floor = pane.memory.curves["floor"].getData()
    _, configured = pane.memory.curves["configured"].getData()
    assert target.size and target[-1] <= 320 and floor.size and 256 <= floor[-1] <= target[-1]
    assert list(configured) == [512, 512]
    assert len(pane.memory.curves["guest use"].getData()[0]) >= 2

    until(lambda: pane.table.rowCount() > 0, what="decisions in the table")
    reason = pane.table.item(0, 3).text()  # newest first
    assert pane.table.item(0, 1).text() == "balloon" and "floor" in reason and "pool" in reason
    assert pane.table.item(0, 4).text() == "applied"
    assert "Controller:</b> this app" in pane.summary.text() and "Given back:" in pane.summary.text()
    assert "minimum 256 MiB, 100 CPU shares, pinning off (the default)" in pane.summary.text()
    detail = pane.detail.toPlainText()
    assert "by the hvdesk app (pid" in detail and detail.endswith(reason)

    cells = pane.cores.cells
    assert sorted(cells) == sorted(os.sched_getaffinity(0))  # one cell per host CPU
    until(lambda: "vCPU 0" in pane.cores.text(), what="the vCPU in the cores grid")
    assert "busy" in pane.cores.text()
    until(lambda: "acting (this app) — given back" in window.controller_label.text(), what="the status bar")
    assert "from 1 VM" in window.controller_label.text()

    # Preferences: the pool changes and the controller is switched off: it gives the memory back.
    dialog = preferences(window)
    assert dialog.enabled.isChecked() and dialog.by_pool.isChecked() and dialog.pool.value() == 320
    dialog.pool.setValue(400)
    dialog.enabled.setChecked(False)
    assert not dialog.pool.isEnabled()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    saved = control_settings.load()
    assert (saved.enabled, saved.pool_mib, saved.interval) == (False, 400, 2)
    run(window.runner.wait_idle())  # the controller stopped
    assert not controller.acting and control.holder(window.manager) == ""
    until(lambda: balloon() == 512 * MIB, 20, "the balloon given back")
    until(lambda: window.controller_label.text() == "Controller: off", what="off in the status bar")
    until(lambda: "stops" in pane.table.item(0, 3).text(), what="the release in the decision table")


def test_another_controller_acts_and_stopped_vm_shows_its_decisions(open_window, run, until, guest_request,
                                                                   hv_home):
    (hv_home / "controller.toml").write_text("interval = 'often'\n")
    settings, problem = load_control_settings()
    assert settings == ControlSettings() and "interval" in problem
    # Another process holds the control lock (as `hvdesk agent` does): the app's controller waits.
    vms_dir().mkdir(parents=True, exist_ok=True)
    other = FileLock(vms_dir() / control.LOCK_FILE, "the allocation controller")
    assert other.try_acquire("acting as hvdesk agent")
    try:
        shows_who_acts(open_window(controller=settings, controller_problem=problem), run, until, guest_request)
    finally:
        other.release()
    assert (hv_home / "controller.toml").read_text() == "interval = 'often'\n", "never overwritten unasked"


def shows_who_acts(window, run, until, guest_request) -> None:
    assert window.manager.library.root == vms_dir()
    assert window.controller_notice.isVisible() and "not valid" in window.controller_notice.text()
    machine = run(window.manager.create(guest_request("idle")))
    wall, mono = time.time(), time.monotonic()
    decision_log.append(control.log_path(machine.entry.folder), [decision_log.entry(
        Decision(mono - 60, "idle", Kind.BALLOON, 200 * MIB, "guest uses 20 MiB; floor 200 MiB", {"floor": 200 * MIB}),
        applied=True, error="", by="hvdesk agent (pid 1)", wall_now=wall, mono_now=mono)])
    run(window.controller.cycle())
    assert not window.controller.acting
    who = f"hvdesk agent (pid {os.getpid()})"
    until(lambda: window.controller_label.text() == f"Controller: {who} acts", what="who acts, in the status bar")
    window.select("idle")
    window.tabs.setCurrentWidget(window.resources)
    pane = window.resources
    # The log was written after the VM was selected: while another process acts, it is looked at every 5 s.
    until(lambda: pane.table.rowCount() == 1, 10, "the other controller's decision in the table")
    assert f"Controller:</b> {who}" in pane.summary.text()
    assert "acts on running VMs; idle is stopped" in pane.summary.text()
    assert "floor 200 MiB" in pane.table.item(0, 3).text()
    assert pane.table.item(0, 2).text() == "200 MiB"
    assert "no vCPU" in pane.cores.text()


def test_settings_resources_page_round_trips_and_refuses_minimum_above_memory(window, run, until, guest_request):
    machine = run(window.manager.create(guest_request("tuned", memory_mib=512)))
    window.select("tuned")
    dialog = SettingsDialog(window.manager, machine, window.runner, window.prefs, window)
    page = dialog.pages["Resources"]
    assert page.min_memory.value() == 256 and page.shares.value() == 100 and page.pin.currentData() == "default"
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    page.min_memory.setValue(600)
    assert not ok.isEnabled()
    assert "Minimum memory (600 MiB, Resources) is more than the VM's memory (512 MiB" in dialog.error.text()
    page.min_memory.setValue(384)
    page.shares.setValue(250)
    page.auto_balloon.setChecked(False)
    page.pin.setCurrentIndex(page.pin.findData("dedicated"))
    assert ok.isEnabled() and dialog.error.text() == ""
    ok.click()
    run(window.runner.wait_idle())
    resources = window.manager.get("tuned").config.resources
    assert (resources.min_memory_mib, resources.shares, resources.auto_balloon, resources.pin) == \
        (384, 250, False, "dedicated")
    again = SettingsDialog(window.manager, window.manager.get("tuned"), window.runner, window.prefs, window)
    page = again.pages["Resources"]
    assert (page.min_memory.value(), page.shares.value(), page.auto_balloon.isChecked(),
            page.pin.currentData()) == (384, 250, False, "dedicated")
    again.close()
    dialog.close()
