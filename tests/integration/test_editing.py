"""Editing settings and disks, stopped and live."""

from __future__ import annotations

import dataclasses

import pytest

from hvdesk.core.errors import ConfigError, HvdeskError, StateError
from hvdesk.engine import editing
from hvdesk.qemu import images
from tests.integration.conftest import qmp_call

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


async def test_settings_round_trip_and_rename(manager, guest_request):
    machine = await manager.create(guest_request("before"))
    old_folder = machine.entry.folder
    edited = dataclasses.replace(machine.config, name="after", memory_mib=384, cpus=2, notes="renamed")
    await editing.save_settings(manager, "before", edited)
    assert manager.get("after") is machine and machine.config == edited
    assert machine.entry.folder.name == "after" and not old_folder.exists()
    assert manager.library.find("after").config == edited  # what is on disk
    await manager.create(guest_request("other"))
    with pytest.raises(ConfigError, match="a VM named 'OTHER' already exists"):
        await editing.save_settings(manager, "after", dataclasses.replace(edited, name="OTHER"))


async def test_running_vm_marks_pending_changes_and_takes_cd_live(manager, guest_request, tiny_guest, tmp_path):
    iso = tmp_path / "tools.iso"
    iso.write_bytes(b"\0" * MIB)
    machine = await manager.create(guest_request("live"))
    await manager.start("live")  # running: what the guest does meanwhile does not matter here
    assert editing.pending_changes(machine) == []

    await editing.save_settings(manager, "live", dataclasses.replace(machine.config, notes="just notes"))
    assert editing.pending_changes(machine) == []
    await editing.save_settings(manager, "live", dataclasses.replace(machine.config, memory_mib=512))
    assert editing.pending_changes(machine) == ["memory_mib"]
    with pytest.raises(StateError, match="cannot rename 'live' while it is running"):
        await editing.save_settings(manager, "live", dataclasses.replace(machine.config, name="x"))

    await editing.set_cd(manager, "live", iso)
    cd = {b["qdev"]: b for b in await qmp_call(machine, "query-block")}["cd0"]
    assert cd["inserted"]["file"] == str(iso) and machine.config.cdrom.iso == str(iso)
    await editing.set_cd(manager, "live", None)
    cd = {b["qdev"]: b for b in await qmp_call(machine, "query-block")}["cd0"]
    assert "inserted" not in cd and machine.config.cdrom.iso == ""


async def test_a_typed_cd_path_is_a_file_in_the_vm_folder_never_a_protocol(manager, guest_request, tiny_guest):
    """The settings dialog takes a typed path; QEMU, after -daemonize, runs in / and would read a
    relative name from there, and one like nbd://host/x as a network block device."""
    machine = await manager.create(guest_request("typed"))
    (machine.entry.folder / "cd.iso").write_bytes(b"\0" * MIB)
    await manager.start("typed")
    cdrom = dataclasses.replace(machine.config.cdrom, iso="cd.iso")
    await editing.save_settings(manager, "typed", dataclasses.replace(machine.config, cdrom=cdrom))
    cd = {b["qdev"]: b for b in await qmp_call(machine, "query-block")}["cd0"]
    assert cd["inserted"]["file"] == str(machine.entry.folder / "cd.iso")

    url = dataclasses.replace(cdrom, iso="nbd://127.0.0.1:10809/x")
    with pytest.raises(HvdeskError) as info:
        await editing.save_settings(manager, "typed", dataclasses.replace(machine.config, cdrom=url))
    assert str(machine.entry.folder / "nbd:") in str(info.value) and "connect" not in str(info.value).lower()


async def test_disks_add_resize_remove(manager, guest_request, tiny_guest):
    machine = await manager.create(guest_request("disks", disk_size=64 * MIB))
    await editing.add_new_disk(manager, "disks", 32 * MIB, bus="sata")
    assert [(d.path, d.bus) for d in machine.config.disks] == [("disk0.qcow2", "virtio"), ("disk1.qcow2", "sata")]
    assert (await editing.resize_disk(manager, "disks", 1, 48 * MIB)).virtual_size == 48 * MIB

    await manager.start("disks")  # a live resize goes through QMP, booted guest or not
    with pytest.raises(StateError, match="cannot change the disks of 'disks': it is running; stop it first"):
        await editing.add_new_disk(manager, "disks", MIB)
    grown = await editing.resize_disk(manager, "disks", 0, 96 * MIB)  # live, through QMP
    assert grown.virtual_size == 96 * MIB
    await manager.stop("disks", force=True, timeout=0)

    second = machine.paths.resolve("disk1.qcow2")
    await editing.remove_disk(manager, "disks", 1, delete_file=True)
    assert len(machine.config.disks) == 1 and not second.exists()
    first = machine.paths.resolve("disk0.qcow2")
    await editing.remove_disk(manager, "disks", 0)
    assert machine.config.disks == [] and first.exists()  # detached, file kept
    await editing.attach_disk(manager, "disks", first)
    assert (await images.info(first)).virtual_size == 96 * MIB
    with pytest.raises(ConfigError, match="already attached"):
        await editing.attach_disk(manager, "disks", first)
