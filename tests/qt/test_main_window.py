"""The main window on the real engine: it shows what QEMU does, and its actions drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox

from hvdesk.core.config import PortForward
from hvdesk.engine.states import VmState
from hvdesk.ui.log_viewer import LogViewer
from hvdesk.ui.settings_dialog import SettingsDialog
from tests.integration.conftest import qmp_call, wait_for_serial
from tests.qt.conftest import click_button, message_box, row_texts

pytestmark = pytest.mark.qemu
GIB = 1024**3


def test_empty_library_shows_welcome_then_details(window, run, until, guest_request):
    assert window.pages.currentWidget() is window.welcome
    assert "Accelerator" in window.accel_label.text() or window.accel_label.text() == ""
    run(window.manager.create(guest_request("first")))
    until(lambda: window.pages.currentWidget() is window.tabs, what="details page")
    assert window.selected().name == "first"
    assert window.details._title.text() == "first"


def test_start_pause_resume_shutdown_from_toolbar(window, run, until, guest_request, tiny_guest):
    machine = run(window.manager.create(guest_request("toolbar")))
    window.select("toolbar")
    actions = window.actions_by_key
    assert actions["start"].isEnabled() and not actions["pause"].isEnabled()

    actions["start"].trigger()
    until(lambda: row_texts(window)["toolbar"] == "Running", what="Running in the list")
    assert not actions["start"].isEnabled() and actions["pause"].isEnabled()
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))

    actions["pause"].trigger()
    until(lambda: row_texts(window)["toolbar"] == "Paused", what="Paused")
    assert actions["pause"].text() == "&Resume"
    actions["pause"].trigger()
    until(lambda: row_texts(window)["toolbar"] == "Running", what="Running again")

    actions["shutdown"].trigger()  # ACPI: the guest powers itself off; the events bring the list along
    until(lambda: row_texts(window)["toolbar"] == "Stopped", 60, "Stopped after ACPI shutdown")

    actions["start"].trigger()
    until(lambda: row_texts(window)["toolbar"] == "Running", what="Running")
    actions["poweroff"].trigger()
    until(lambda: row_texts(window)["toolbar"] == "Stopped", what="Stopped after power off")
    assert machine.state == VmState.STOPPED


def test_delete_keeping_disks_and_deleting_everything(window, run, until, guest_request):
    keep = run(window.manager.create(guest_request("keep", disk_size=GIB)))
    gone = run(window.manager.create(guest_request("gone", disk_size=GIB)))
    keep_disk = keep.paths.resolve(keep.config.disks[0].path)
    gone_folder = gone.entry.folder

    window.select("keep")
    window.actions_by_key["delete"].trigger()
    click_button(message_box(window), "Keep Disks")
    until(lambda: "keep" not in row_texts(window), what="keep removed from the list")
    assert keep_disk.exists()

    window.select("gone")
    window.actions_by_key["delete"].trigger()
    click_button(message_box(window), "Delete All Files")
    until(lambda: "gone" not in row_texts(window), what="gone removed from the list")
    assert not gone_folder.exists()
    assert window.pages.currentWidget() is window.welcome


def test_delete_cancel_keeps_the_vm(window, run, until, guest_request):
    run(window.manager.create(guest_request("stay")))
    window.select("stay")
    window.actions_by_key["delete"].trigger()
    message_box(window).button(QMessageBox.StandardButton.Cancel).click()
    run(window.runner.wait_idle())
    assert "stay" in row_texts(window) and window.manager.library.exists("stay")


def settings_dialog(window) -> SettingsDialog:
    (dialog,) = [d for d in window.findChildren(SettingsDialog) if d.isVisible()]
    return dialog


def test_settings_round_trip_with_inline_validation(window, run, until, guest_request):
    run(window.manager.create(guest_request("tune")))
    window.select("tune")
    window.actions_by_key["settings"].trigger()
    dialog = settings_dialog(window)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)

    general, system, network = dialog.pages["General"], dialog.pages["System"], dialog.pages["Network"]
    general.name.setText("bad/name")
    assert not ok.isEnabled() and "not allowed" in dialog.error.text()
    general.name.setText("tuned")
    general.notes.setPlainText("more memory")
    system.memory.setValue(384)
    system.cpus.setValue(2)
    network._add_rule(PortForward("tcp", 8080, 80))
    network.forwards.item(0, 2).setText("eighty")
    assert not ok.isEnabled() and "host_port" in dialog.error.text()
    network.forwards.item(0, 2).setText("8080")
    assert ok.isEnabled(), dialog.error.text()
    ok.click()
    until(lambda: dialog.result() == QDialog.DialogCode.Accepted, what="dialog accepted")

    saved = window.manager.library.find("tuned").config
    assert (saved.memory_mib, saved.cpus, saved.notes) == (384, 2, "more memory")
    assert [(f.host_port, f.guest_port) for f in saved.nics[0].forwards] == [(8080, 80)]
    until(lambda: "tuned" in row_texts(window), what="renamed in the list")
    dialog.deleteLater()


def test_running_vm_settings_are_marked_for_next_start(window, run, until, guest_request):
    machine = run(window.manager.create(guest_request("busy")))
    run(window.manager.start("busy"))
    window.select("busy")
    window.actions_by_key["settings"].trigger()
    dialog = settings_dialog(window)
    assert dialog.running_note.isVisible()
    dialog.pages["System"].memory.setValue(320)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    until(lambda: dialog.result() == QDialog.DialogCode.Accepted, what="saved")
    assert machine.config.memory_mib == 320
    until(lambda: "take effect at the next start" in window.details._banner_text.text(), what="pending banner")
    assert "memory mib" in window.details._banner_text.text()
    dialog.deleteLater()


def test_cli_started_vm_appears_running_and_killed_qemu_shows_aborted(open_window, run, until, guest_request):
    window = open_window(poll_interval=1.0)  # the app's default: a change shows within a second
    run(window.manager.create(guest_request("outside")))
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "hvdesk", "start", "outside"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    until(lambda: row_texts(window)["outside"] == "Running", 5, "the CLI-started VM shown running")

    info = json.loads(subprocess.run([sys.executable, "-m", "hvdesk", "info", "outside", "--json"],
                                     capture_output=True, text=True, env=env).stdout)
    os.kill(info["pid"], signal.SIGKILL)
    until(lambda: row_texts(window)["outside"] == "Aborted", 10, "Aborted after kill -9")
    window.select("outside")
    details = window.details
    assert details._banner.isVisible() and "ended without a clean exit" in details._banner_text.text()
    assert details._log_button.isVisible()
    details._log_button.click()
    (viewer,) = [v for v in window.findChildren(LogViewer) if v.isVisible()]
    assert viewer.tabs.tabText(0) == "QEMU log"
    viewer.close()


def test_inaccessible_vm_shows_its_reason(window, run, until, guest_request):
    run(window.manager.create(guest_request("fine")))
    broken = run(window.manager.create(guest_request("broken")))
    (broken.entry.folder / "vm.toml").write_text("schema = 1\nname = 'broken'\ncpus = 0\n")
    until(lambda: row_texts(window).get("broken") == "Inaccessible", 15, "inaccessible state")
    model = window.filter_model
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data() == "broken")
    assert "cpus: 0 is out of range" in model.index(row, 1).data(Qt.ItemDataRole.ToolTipRole)
    window.select("broken")
    assert "cpus: 0 is out of range" in window.details._banner_text.text()
    assert not window.actions_by_key["start"].isEnabled() and window.actions_by_key["delete"].isEnabled()
    assert row_texts(window)["fine"] == "Stopped"


def test_selection_and_layout_persist(open_window, run, until, guest_request):
    first = open_window()
    for name in ("a", "b", "c"):
        run(first.manager.create(guest_request(name)))
    until(lambda: len(row_texts(first)) == 3, what="three VMs")
    first.select("b")
    first.resize(760, 560)  # within the offscreen screen (800x600), which geometry is clamped to
    first.close()
    second = open_window()
    assert second.selected().name == "b"
    assert (second.width(), second.height()) == (760, 560)


def test_app_starts_and_paints_from_the_command_line(hv_home):
    done = subprocess.run([sys.executable, "-m", "hvdesk", "gui", "--smoke-test"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert "window painted" in done.stdout


def test_filter_sort_and_double_click_start(window, run, until, guest_request):
    for name, memory in (("web", 384), ("db", 256), ("Web-2", 320)):
        run(window.manager.create(guest_request(name, memory_mib=memory)))
    until(lambda: len(row_texts(window)) == 3, what="three VMs")
    window.filter_edit.setText("WEB")
    assert sorted(row_texts(window)) == ["Web-2", "web"]
    window.filter_edit.clear()
    window.list_view.sortByColumn(3, Qt.SortOrder.DescendingOrder)  # by memory, largest first
    model = window.filter_model
    assert [model.index(r, 0).data() for r in range(3)] == ["web", "Web-2", "db"]
    index = next(model.index(r, 0) for r in range(3) if model.index(r, 0).data() == "db")
    window.list_view.setCurrentIndex(index)
    window.list_view.doubleClicked.emit(index)
    until(lambda: row_texts(window)["db"] == "Running", what="double-click started the VM")


def test_cd_inserted_live_from_settings(window, run, until, guest_request, tmp_path):
    iso = tmp_path / "drivers.iso"
    iso.write_bytes(b"\0" * 1024 * 1024)
    machine = run(window.manager.create(guest_request("cd")))
    run(window.manager.start("cd"))
    window.select("cd")
    window.actions_by_key["settings"].trigger()
    dialog = settings_dialog(window)
    dialog.pages["Storage"].iso.setText(str(iso))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    until(lambda: dialog.result() == QDialog.DialogCode.Accepted, what="saved")
    blocks = {b["qdev"]: b for b in run(qmp_call(machine, "query-block"))}
    assert blocks["cd0"]["inserted"]["file"] == str(iso)
    assert "take effect" not in window.details._banner_text.text()  # the CD needed no restart
    dialog.deleteLater()
