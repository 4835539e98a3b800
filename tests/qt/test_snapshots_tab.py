"""Snapshots, Save State and Clone… in the app, on the real engine with the tiny guest: the tab's
tree (current marked, "Now" under it, thumbnails of live ones), take / restore (answering the
snapshot-first question both ways) / edit description / delete, an offline snapshot; Save State from
the menu and Start resuming it; full and linked clones from the dialog."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from hvdesk.core.storage import STAGING_PREFIX
from hvdesk.engine.states import VmState
from hvdesk.ui.clone_dialog import CloneDialog
from hvdesk.ui.snapshots_tab import NAME_ROLE, SnapshotsPane
from tests.integration.conftest import wait_for_serial
from tests.qt.conftest import click_button, message_box, row_texts

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024
OK = QDialogButtonBox.StandardButton.Ok


def take(pane: SnapshotsPane, run, name: str, description: str = "") -> None:
    pane.take_button.click()
    dialog = pane.dialog
    assert dialog is not None and dialog.name.text().startswith("Snapshot ")
    dialog.name.setText(name)
    dialog.description.setPlainText(description)
    dialog.buttons.button(OK).click()
    run(pane.runner.wait_idle())


def choose(pane: SnapshotsPane, name: str) -> None:
    item = pane.item_named(name)
    assert item is not None, f"{name!r} not in the tree"
    pane.tree.setCurrentItem(item)


def settled(window, until) -> None:
    """The Details pane's disk sizes loaded: a load cut short by the teardown would fail later
    ("no running event loop"), and its traceback, formatted during the next module's compile,
    trips CPython 3.11's AST recursion check (SystemError at the end of the session)."""
    until(lambda: window.details._sizes_task is None or window.details._sizes_task.done(),
          what="the details' disk sizes")


def shown(pane: SnapshotsPane) -> dict[str, tuple[str | None, str, bool]]:
    """{name: (parent's name or None, state column, bold)}; "Now" as the pseudo-item's name."""
    out = {}
    for item in pane._items():
        name = item.data(0, NAME_ROLE) or item.text(0)
        parent = item.parent()
        out[name] = (parent.data(0, NAME_ROLE) if parent else None, item.text(2), item.font(0).bold())
    return out


def test_snapshots_tab_take_restore_describe_delete(window, run, until, guest_request, tiny_guest):
    machine = run(window.manager.create(guest_request("snap", disk_size=64 * MIB)))
    window.select("snap")
    window.tabs.setCurrentWidget(window.snapshots)
    pane = window.snapshots
    assert pane.take_button.isEnabled() and not pane.restore_button.isEnabled()
    assert shown(pane) == {"Now": (None, "stopped", False)}

    take(pane, run, "off", "stopped, as created")  # offline: the disks
    assert shown(pane) == {"off": (None, "stopped", True), "Now": ("off", "stopped", False)}
    assert pane.item_named("off").text(0) == "off (current)"

    window.actions_by_key["start"].trigger()
    until(lambda: row_texts(window)["snap"] == "Running", what="Running")
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    take(pane, run, "one", "first live")
    take(pane, run, "two")
    assert shown(pane) == {"off": (None, "stopped", False), "one": ("off", "running", False),
                           "two": ("one", "running", True), "Now": ("two", "running", False)}
    assert not pane.item_named("one").icon(0).isNull()
    assert pane.manager.snapshots.thumbnail(machine, pane.tree_data.find("one")) is not None, "a live one's screen"

    choose(pane, "one")
    assert pane.restore_button.isEnabled() and pane.delete_button.isEnabled()
    pane.restore_button.click()
    box = message_box(window)
    assert "Take a snapshot of the current state first?" in box.informativeText()
    box.button(QMessageBox.StandardButton.No).click()
    run(pane.runner.wait_idle())
    assert set(shown(pane)) == {"off", "one", "two", "Now"}  # nothing taken first
    assert shown(pane)["one"][2] and shown(pane)["Now"][0] == "one"
    assert machine.state == VmState.RUNNING

    choose(pane, "two")
    pane.restore_button.click()
    message_box(window).button(QMessageBox.StandardButton.Yes).click()
    run(pane.runner.wait_idle())
    (before,) = [n for n in shown(pane) if n.startswith("Before restore ")]
    assert shown(pane)[before][0] == "one" and shown(pane)["Now"][0] == "two"

    choose(pane, "two")
    pane.describe_button.click()
    assert not pane.dialog.name.isEnabled() or pane.dialog.name.isReadOnly()
    pane.dialog.description.setPlainText("the second\nof two")
    pane.dialog.buttons.button(OK).click()
    run(pane.runner.wait_idle())
    assert pane.item_named("two").text(3) == "the second of two"

    choose(pane, "one")
    pane.delete_button.click()
    click_button(message_box(window), "Delete")
    run(pane.runner.wait_idle())
    assert {n: p for n, (p, _, _) in shown(pane).items()} == {"off": None, "two": "off", before: "off",
                                                              "Now": "two"}
    # A running VM's snapshot of the stopped state is refused by the engine, in one line.
    choose(pane, "off")
    pane.restore_button.click()
    message_box(window).button(QMessageBox.StandardButton.No).click()
    run(pane.runner.wait_idle())
    assert "needs 'snap' stopped; stop it first" in message_box(window).text()
    message_box(window).close()
    settled(window, until)


def test_save_state_then_start_resumes_and_clones(window, run, until, guest_request, tiny_guest):
    machine = run(window.manager.create(guest_request("src", disk_size=64 * MIB)))
    window.select("src")
    actions = window.actions_by_key
    assert not actions["save"].isEnabled() and actions["clone"].isEnabled()
    actions["start"].trigger()
    until(lambda: row_texts(window)["src"] == "Running", what="Running")
    run(wait_for_serial(machine.paths.serial_log, tiny_guest.marker))
    assert actions["save"].isEnabled() and not actions["clone"].isEnabled()
    actions["save"].trigger()  # cancelled at once: the guest runs on, nothing kept
    window.saving.cancel()
    run(window.runner.wait_idle())
    assert window.saving.cancelled and machine.state == VmState.RUNNING
    assert not machine.paths.saved_state.exists() and not machine.paths.saved_state_part.exists()
    actions["save"].trigger()
    run(window.runner.wait_idle())
    until(lambda: row_texts(window)["src"] == "Saved", what="Saved in the list")
    assert machine.paths.saved_state.is_file() and actions["start"].isEnabled() and not actions["save"].isEnabled()
    actions["start"].trigger()
    until(lambda: row_texts(window)["src"] == "Running", what="Running again (resumed)")
    assert not machine.paths.saved_state.exists()
    actions["poweroff"].trigger()
    until(lambda: row_texts(window)["src"] == "Stopped", what="Stopped")

    # Cancel while the full clone runs: nothing is left of it, and the dialog closes
    actions["clone"].trigger()
    (dialog,) = [d for d in window.findChildren(CloneDialog) if d.isVisible()]
    dialog.buttons.button(OK).click()
    assert dialog.progress.isVisible() and not dialog.name.isEnabled()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
    run(window.runner.wait_idle())
    until(lambda: not [d for d in window.findChildren(CloneDialog) if d.isVisible()], what="the dialog closed")
    assert set(row_texts(window)) == {"src"}
    assert not [p for p in window.manager.library.root.iterdir() if p.name.startswith(STAGING_PREFIX)]

    for new, linked in (("src Clone", False), ("src Linked", True)):
        window.select("src")
        actions["clone"].trigger()
        (dialog,) = [d for d in window.findChildren(CloneDialog) if d.isVisible()]
        assert dialog.name.text() == ("src Clone" if not linked else "src Clone 2")
        dialog.name.setText("SRC")
        assert "already exists" in dialog.problem.text() and not dialog.buttons.button(OK).isEnabled()
        dialog.name.setText("a/b")
        assert dialog.problem.text().startswith("Invalid VM name")
        dialog.name.setText(new)
        assert dialog.linked.isEnabled()
        dialog.linked.setChecked(linked)
        assert dialog.new_macs.isChecked()  # new MAC addresses unless asked
        dialog.keep_macs.setChecked(linked)  # (the linked one keeps them)
        cloned: list[str] = []
        dialog.cloned.connect(cloned.append)
        dialog.buttons.button(OK).click()
        run(window.runner.wait_idle())
        until(lambda new=new: new in row_texts(window), what=f"{new} in the list")
        assert cloned == [new] and not [d for d in window.findChildren(CloneDialog) if d.isVisible()]
        assert window.selected().name == new
        clone = window.manager.get(new)
        assert bool(clone.config.disks[0].backing) == linked  # a linked clone's overlay reads the shared base
        assert (clone.config.nics[0].mac == machine.config.nics[0].mac) == linked

    # a VM with snapshots: linked is off, and says why
    run(window.manager.snapshots.take("src Clone", "s1"))
    window.select("src Clone")
    actions["clone"].trigger()
    (dialog,) = [d for d in window.findChildren(CloneDialog) if d.isVisible()]
    assert not dialog.linked.isEnabled() and "has snapshots" in dialog.linked_hint.text()
    dialog.reject()
    settled(window, until)
