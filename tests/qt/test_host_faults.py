"""The host's faults in the app (issue 9, item 8): a read-only home and a full disk show the same
clear text as the command line, in a dialog; nothing is lost. Real tmpfs mounts, real engine."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QWizard

from tests.integration.conftest import small_disk  # noqa: F401 (fixture; first in each test, so unmounted last)
from tests.integration.test_cli import guest_args, hv
from tests.qt.conftest import message_box, row_texts
from tests.qt.test_wizard import open_wizard

pytestmark = pytest.mark.qemu


def cli_error(*args: str) -> str:
    done = hv(*args)
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().removeprefix("hvdesk: ")


def test_a_read_only_home_in_the_app(small_disk, open_window, tiny_guest, until, monkeypatch):  # noqa: F811
    disk = small_disk(8192)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    assert hv("create", "vm", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    disk.read_only()
    expected = cli_error("start", "vm")
    assert "Read-only file system" in expected

    window = open_window()
    until(lambda: row_texts(window).get("vm") == "Stopped", what="the VM listed")
    window.select("vm")
    window.actions_by_key["start"].trigger()
    until(lambda: window.runner.idle, what="the start to fail")
    box = message_box(window)
    assert box.text() == expected
    box.close()
    assert row_texts(window)["vm"] == "Stopped"


def test_a_full_disk_in_the_new_vm_wizard(small_disk, open_window, until, monkeypatch):  # noqa: F811
    disk = small_disk(4096)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    window = open_window()
    disk.fill(leave=4096)
    wizard = open_wizard(window)
    wizard.media.none_choice.setChecked(True)
    wizard.next()
    wizard.names.name.setText("full")
    wizard.next()
    wizard.next()
    wizard.disk.size_gib.setValue(1)
    wizard.next()
    wizard.summary.start.setChecked(False)
    wizard.button(QWizard.WizardButton.FinishButton).click()
    until(lambda: window.runner.idle, what="the create to fail")
    box = message_box(window)
    assert box.text().startswith(f"cannot create the disk of 'full' in {disk.path / 'VMs'}: ")
    assert "No space left on device" in box.text()
    box.close()
    assert wizard.isVisible()  # the wizard stays, with what was typed, to try again
    assert window.manager.library.scan() == []
    assert not [p for p in (disk.path / "VMs").iterdir() if p.name.startswith(".new-")]
    wizard.reject()
