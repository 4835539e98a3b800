"""First run on a host without QEMU: the window still opens, a bar says what to install on this
system, and Check Again finds QEMU once it is there. (QEMU is hidden from hvdesk by pointing
HVDESK_QEMU_DIR at an empty folder; "installing" it links the real binaries there.)"""

from __future__ import annotations

import shutil

from hvdesk.qemu.binaries import find_emulator, find_qemu_img


def test_the_window_opens_and_says_what_to_install(open_window, run, until, tmp_path, monkeypatch):
    real = [find_emulator(), find_qemu_img()]
    qemu_dir = tmp_path / "qemu"
    qemu_dir.mkdir()
    monkeypatch.setenv("HVDESK_QEMU_DIR", str(qemu_dir))
    window = open_window()
    run(window.host_notice.refresh())
    assert window.host_notice.isVisible()
    text = window.host_notice.text.text()
    assert "not found in HVDESK_QEMU_DIR=" in text and "needs QEMU to run virtual machines" in text
    window.resize(900, 600)
    window.grab().save(str(tmp_path / "qemu-missing.png"))  # to look at: the bar above the welcome page
    for program in real:
        (qemu_dir / program.name).symlink_to(shutil.which(program.name) or program)
    window.host_notice.check_button.click()
    until(lambda: not window.host_notice.isVisible(), 20, "the bar to go once QEMU is there")


def test_the_bar_gives_this_systems_install_command(qapp):
    from hvdesk.ui.host_notice import HostNotice

    notice = HostNotice()
    notice.show_problem("QEMU is not installed: qemu-img not found (on Debian GNU/Linux: sudo apt install "
                        "qemu-system-x86 qemu-utils)")
    assert not notice.isHidden()
    assert "To install it on Debian GNU/Linux: sudo apt install qemu-system-x86 qemu-utils" in notice.text.text()
    notice.show_problem(None)
    assert notice.isHidden()
    notice.deleteLater()
