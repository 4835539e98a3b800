"""A VM whose runtime folder vanished while it ran (a /tmp cleaner, a logout) is still found by the
app when it starts again (issue 9, item 4): shown running with why it cannot be controlled, never
offered Start or Delete over the live QEMU, and Power Off still turns it off."""

from __future__ import annotations

import shutil

import pytest

from hvdesk.qemu.process import is_alive
from tests.qt.conftest import row_texts

pytestmark = pytest.mark.qemu


def test_the_app_finds_a_vm_whose_runtime_folder_vanished(open_window, run, until, guest_request, tiny_guest):
    first = open_window()
    machine = run(first.manager.create(guest_request("orphan", disk_size=64 * 1024 * 1024)))
    run(first.manager.start("orphan"))
    pid = machine.pid  # running (booting or booted: the app cares about the QEMU, not the guest)
    first.close()  # the app quits; the VM runs on
    shutil.rmtree(machine.paths.run_dir)

    window = open_window()  # the app starts again
    until(lambda: row_texts(window).get("orphan") == "Running", what="found running")
    window.select("orphan")
    found = window.manager.get("orphan")
    assert found.pid == pid and "control socket" in found.reason and "is gone" in found.reason
    actions = window.actions_by_key
    assert not actions["start"].isEnabled() and not actions["delete"].isEnabled()
    assert actions["poweroff"].isEnabled()
    actions["poweroff"].trigger()
    until(lambda: row_texts(window)["orphan"] == "Stopped", 30, "stopped")
    assert not is_alive(pid) and machine.paths.resolve(machine.config.disks[0].path).exists()
