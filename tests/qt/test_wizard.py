"""The New VM wizard: from an ISO to a created VM; every page checks its fields; cancelling
anywhere leaves nothing behind."""

from __future__ import annotations

import struct

import pytest
from PySide6.QtWidgets import QWizard

from hvdesk.engine.library_ops import CreateRequest
from hvdesk.ui.new_vm_wizard import NewVmWizard
from tests.qt.conftest import row_texts
from tests.unit.test_iso_detect import make_iso

pytestmark = pytest.mark.qemu
GIB = 1024**3


def open_wizard(window) -> NewVmWizard:
    window.actions_by_key["new"].trigger()
    (wizard,) = [w for w in window.findChildren(NewVmWizard) if w.isVisible()]
    return wizard


def debian_iso(tmp_path):
    return make_iso(tmp_path / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                    {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST'})


def test_iso_to_created_vm_with_the_detected_defaults(window, run, until, tmp_path):
    iso = debian_iso(tmp_path)
    wizard = open_wizard(window)
    media = wizard.media
    assert not media.isComplete()  # no ISO chosen yet
    media.iso.setText(str(iso))
    until(media.isComplete, what="the ISO read")
    assert "Detected <b>Debian 12 (bookworm)</b>" in media.found.text() and ".disk/info" in media.found.text()
    wizard.next()
    assert wizard.currentPage() is wizard.names
    assert wizard.names.os.currentData() == "debian12" and wizard.names.name.text() == "Debian 12"
    wizard.next()
    assert wizard.resources.memory.value() == 2048 and wizard.resources.cpus.value() == 2
    assert "Recommended for Debian 12" in wizard.resources.memory_hint.text()
    wizard.next()
    assert wizard.disk.new_choice.isChecked() and wizard.disk.size_gib.value() == 20
    wizard.next()
    assert "Debian 12" in wizard.summary.text.text() and wizard.summary.start.isChecked()
    wizard.summary.start.setChecked(False)
    assert window.manager.library.scan() == []  # nothing written before Finish
    wizard.button(QWizard.WizardButton.FinishButton).click()
    until(lambda: "Debian 12" in row_texts(window), what="the VM listed")
    config = window.manager.get("Debian 12").config
    assert (config.os, config.memory_mib, config.cpus, config.cdrom.iso) == ("debian12", 2048, 2, str(iso))
    assert len(config.disks) == 1 and row_texts(window)["Debian 12"] == "Stopped"
    until(lambda: window.selected() is not None and window.selected().name == "Debian 12", what="selected")


def test_every_page_checks_its_fields(window, run, until, tmp_path):
    wizard = open_wizard(window)
    wizard.media.iso.setText(str(tmp_path / "missing.iso"))
    until(lambda: "does not exist" in wizard.media.found.text(), what="the refusal")
    assert not wizard.media.isComplete()
    not_an_iso = tmp_path / "photo.iso"  # not ISO 9660, but may still boot (UDF-only): the person decides
    not_an_iso.write_bytes(b"\xff" * 70000)
    wizard.media.iso.setText(str(not_an_iso))
    until(wizard.media.isComplete, what="the ISO read")
    assert "Not recognised: it is not an ISO 9660 image" in wizard.media.found.text()
    wizard.media.disk_choice.setChecked(True)
    wizard.media.disk.setText(str(tmp_path / "missing.qcow2"))
    assert not wizard.media.isComplete()
    wizard.media.none_choice.setChecked(True)
    assert wizard.media.isComplete()
    wizard.next()
    names = wizard.names
    for bad in ("", "a/b", ".hidden", "x" * 65):
        names.name.setText(bad)
        assert not names.isComplete(), bad
    run(window.manager.create(CreateRequest("Taken")))
    names.name.setText("taken")
    assert not names.isComplete() and "already exists" in names.error.text()
    names.name.setText("Fresh")
    assert names.isComplete()
    wizard.next()
    wizard.next()
    wizard.disk.existing_choice.setChecked(True)
    assert not wizard.disk.isComplete()
    wizard.reject()


def corrupt_iso(tmp_path):
    """The audit's case: one byte changed in the path table makes pycdlib raise struct.error."""
    iso = debian_iso(tmp_path)
    data = bytearray(iso.read_bytes())
    location = struct.unpack_from("<L", data, 16 * 2048 + 140)[0]
    data[location * 2048 + 10] = 0
    bad = tmp_path / "corrupt.iso"
    bad.write_bytes(data)
    return bad


def test_a_corrupt_iso_is_not_recognised_and_the_os_is_chosen_by_hand(window, run, until, tmp_path):
    bad = corrupt_iso(tmp_path)
    wizard = open_wizard(window)
    wizard.media.iso.setText(str(bad))
    until(wizard.media.isComplete, what="the ISO read")
    assert "Not recognised: the ISO's path table is damaged (unpack_from requires" in wizard.media.found.text()
    wizard.next()
    names = wizard.names
    names.os.setCurrentIndex(names.os.findData("debian12"))  # the person knows better
    names.name.setText("By hand")
    wizard.next()
    assert wizard.resources.memory.value() == 2048  # Debian 12's recommendation
    wizard.next()
    wizard.next()
    wizard.summary.start.setChecked(False)
    wizard.button(QWizard.WizardButton.FinishButton).click()
    until(lambda: "By hand" in row_texts(window), what="the VM listed")
    config = window.manager.get("By hand").config
    assert (config.os, config.cdrom.iso) == ("debian12", str(bad))


def test_any_failure_in_detection_ends_reading(window, until, tmp_path, monkeypatch):
    from hvdesk.ui import new_vm_wizard

    def broken(path):
        raise RuntimeError("a bug in detection")
    monkeypatch.setattr(new_vm_wizard, "detect", broken)
    wizard = open_wizard(window)
    wizard.media.iso.setText(str(debian_iso(tmp_path)))
    until(wizard.media.isComplete, what="the page to leave Reading")
    assert wizard.media.found.text().startswith(
        "Not recognised: detection failed (RuntimeError: a bug in detection)")
    wizard.reject()


@pytest.mark.parametrize("pages", [0, 1, 2, 3, 4])
def test_cancel_on_any_page_leaves_nothing(window, run, tmp_path, pages):
    wizard = open_wizard(window)
    wizard.media.none_choice.setChecked(True)
    for _ in range(pages):
        if wizard.currentPage() is wizard.names:
            wizard.names.name.setText("Draft")
        wizard.next()
    wizard.reject()
    assert window.manager.library.scan() == [] and not any((window.manager.library.root).glob("*"))


def test_wizard_install_runs_and_boots_the_installed_system(window, run, until):
    from tests.guest.installer import ensure_installer_iso
    from tests.integration.conftest import wait_for_serial

    installer = ensure_installer_iso()
    wizard = open_wizard(window)
    wizard.media.iso.setText(str(installer.path))
    until(wizard.media.isComplete, what="the ISO read")
    assert "Other Linux" in wizard.media.found.text()  # an isolinux CD of no known distribution
    for _ in range(4):  # the defaults, page by page
        wizard.next()
    assert wizard.summary.start.isChecked()  # an installer is started right away
    wizard.button(QWizard.WizardButton.FinishButton).click()
    until(lambda: "Other Linux" in row_texts(window), what="the VM created")
    machine = window.manager.get("Other Linux")
    until(lambda: "Installation finished" in machine.notice, 180, "the installer to finish")
    run(wait_for_serial(machine.paths.serial_log, installer.installed_marker, timeout=120))
    assert machine.config.cdrom.iso == "" and not machine.config.install
    until(lambda: "Installation finished" in window.details._banner_text.text(), 10, "the banner")
