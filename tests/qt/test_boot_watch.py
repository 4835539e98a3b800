"""A VM stuck in its first minute shows why in the details pane, with a button that restarts it
under TCG (issue 9, item 13). The watch is told to watch TCG here: the guest really boots and then
only burns its vCPU, which is what a kernel stuck under a broken hardware accelerator looks like."""

from __future__ import annotations

import pytest

from hvdesk.engine.boot_watch import BootWatch, WatchTimes
from hvdesk.ui.main_window import MainWindow
from tests.qt.conftest import row_texts

pytestmark = pytest.mark.qemu


def test_the_stuck_banner_restarts_under_tcg(open_window, run, until, guest_request, tiny_guest):
    window: MainWindow = open_window(boot_watch=lambda manager: BootWatch(
        manager, accelerators=("tcg",), times=WatchTimes(every=0.5, quiet=3.0)))  # the rules: tests/integration
    run(window.manager.create(guest_request("stuck", append=tiny_guest.append + " hvdesk.burn=0")))
    until(lambda: "stuck" in row_texts(window), what="listed")
    window.select("stuck")
    window.actions_by_key["start"].trigger()
    until(lambda: window.details.tcg_button.isVisible(), 60, "the Restart under TCG button")
    assert "This VM seems stuck." in window.details._banner_text.text()
    assert "No sign of progress under TCG" in window.details._banner_text.text()
    window.details.tcg_button.click()
    until(lambda: window.runner.idle and not window.details.tcg_button.isVisible(), 60, "the restart")
    machine = window.manager.get("stuck")
    assert machine.config.accel == "tcg" and machine.state == "running" and machine.run.accel == "tcg"
