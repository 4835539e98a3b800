"""The app asks before attaching an image with backing images outside the VM (issue 9, item 2):
the whole chain is shown; Cancel creates nothing, Attach Anyway pins the chain as shown."""

from __future__ import annotations

import subprocess

import pytest
from PySide6.QtWidgets import QMessageBox, QWizard

from tests.qt.conftest import click_button, row_texts
from tests.qt.test_wizard import open_wizard

pytestmark = pytest.mark.qemu


def backing_prompt(wizard) -> QMessageBox:
    boxes = [b for b in wizard.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1, boxes
    return boxes[0]


def test_the_wizard_shows_the_chain_and_asks(window, until, tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 1048576)
    appliance = tmp_path / "appliance.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(appliance)],
                   check=True)
    wizard = open_wizard(window)
    wizard.media.disk_choice.setChecked(True)
    wizard.media.disk.setText(str(appliance))
    for name in (None, "appliance", None, None):
        wizard.next()
        if name:
            wizard.names.name.setText(name)
    wizard.summary.start.setChecked(False)
    for answer in ("Cancel", "Attach Anyway"):
        wizard.button(QWizard.WizardButton.FinishButton).click()
        until(lambda: any(b.isVisible() for b in wizard.findChildren(QMessageBox)), what="the question")
        box = backing_prompt(wizard)
        assert box.informativeText() == f"{appliance} (qcow2)\n  ↳ backed by {base} (raw)"
        click_button(box, answer)
        until(lambda: window.runner.idle, what="the create")
        if answer == "Cancel":
            assert wizard.isVisible() and window.manager.library.scan() == []
    until(lambda: "appliance" in row_texts(window), what="the VM listed")
    disk = window.manager.get("appliance").config.disks[0]
    assert [(b.path, b.format) for b in disk.backing] == [(str(base), "raw")]
