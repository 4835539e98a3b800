"""Disk images through qemu-img and QEMU's image locking."""

from __future__ import annotations

import stat

import pytest

from hvdesk.core.errors import ConfigError, DiskError, DiskInUseError, NotFoundError, StateError
from hvdesk.engine.states import VmState
from hvdesk.qemu import images

pytestmark = pytest.mark.qemu
GIB = 1024**3


async def test_create_info_resize(tmp_path):
    path = tmp_path / "a.qcow2"
    info = await images.create(path, 2 * GIB)
    assert (info.format, info.virtual_size) == ("qcow2", 2 * GIB)
    assert info.actual_size < 1024 * 1024  # thin
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    grown = await images.resize(path, 3 * GIB)
    assert grown.virtual_size == 3 * GIB
    with pytest.raises(DiskError, match="cannot shrink"):
        await images.resize(path, GIB)
    with pytest.raises(DiskError, match="already exists"):
        await images.create(path, GIB)


async def test_format_is_detected_not_guessed(tmp_path):
    disguised = tmp_path / "really-raw.qcow2"  # the name lies; qemu-img does not
    disguised.write_bytes(b"\0" * (1024 * 1024))
    assert (await images.info(disguised)).format == "raw"
    vmdk = tmp_path / "disk.img"
    (await images.create(vmdk, GIB, fmt="vmdk"))
    assert (await images.info(vmdk)).format == "vmdk"


async def test_bad_images(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        await images.info(tmp_path / "missing.qcow2")
    with pytest.raises(DiskError, match="not a file"):
        await images.info(tmp_path)
    with pytest.raises(DiskError, match="too small"):
        await images.create(tmp_path / "tiny.qcow2", 1000)
    with pytest.raises(NotFoundError, match="does not exist"):
        await images.create(tmp_path / "no" / "such" / "dir.qcow2", GIB)


async def test_new_vm_disk_is_thin_private_qcow2(manager, guest_request):
    machine = await manager.create(guest_request("d", disk_size=4 * GIB))
    disk = machine.config.disks[0]
    path = machine.paths.resolve(disk.path)
    assert (disk.format, disk.created) == ("qcow2", True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (await images.info(path)).virtual_size == 4 * GIB


async def test_attached_disk_keeps_detected_format_and_is_never_deleted(manager, guest_request, tmp_path):
    external = tmp_path / "external.vdi"
    await images.create(external, GIB, fmt="vdi")
    machine = await manager.create(guest_request("att", attach_disk=external))
    assert machine.config.disks[0].format == "vdi" and machine.config.disks[0].created is False
    result = await manager.delete("att")
    assert external.exists() and external in result.kept


async def test_image_locked_by_running_vm_is_refused(manager, guest_request):
    owner = await manager.create(guest_request("owner", disk_size=GIB))
    disk_path = owner.paths.resolve(owner.config.disks[0].path)
    await manager.start("owner")
    # attaching the running VM's disk to a new VM is refused, naming the VM that holds it
    with pytest.raises(DiskInUseError, match="in use by VM 'owner'"):
        await manager.create(guest_request("thief", attach_disk=disk_path))
    assert not manager.library.exists("thief")  # nothing left behind
    # a VM configured with it while stopped cannot start while the owner runs
    await manager.stop("owner", force=True, timeout=0)
    await manager.create(guest_request("sharer", attach_disk=disk_path))
    await manager.start("owner")
    with pytest.raises(DiskInUseError, match=r"cannot start 'sharer': disk image .* is in use by VM 'owner'"):
        await manager.start("sharer")
    assert manager.get("sharer").state == VmState.STOPPED


async def test_create_refuses_bad_input_and_leaves_nothing(manager, guest_request, tmp_path):
    with pytest.raises(NotFoundError, match="ISO image .*nope.iso does not exist"):
        await manager.create(guest_request("x", iso=tmp_path / "nope.iso"))
    with pytest.raises(ConfigError, match="ISO image .* is not a file"):
        await manager.create(guest_request("x", iso=tmp_path))
    with pytest.raises(NotFoundError, match="disk image .* does not exist"):
        await manager.create(guest_request("x", attach_disk=tmp_path / "none.qcow2"))
    with pytest.raises(ConfigError, match="more than this host has"):
        await manager.create(guest_request("x", memory_mib=10**7))
    with pytest.raises(ConfigError, match="vCPUs is more than this host has"):
        await manager.create(guest_request("x", cpus=4096))
    with pytest.raises(ConfigError, match="unknown OS 'plan9'"):
        await manager.create(guest_request("x", os="plan9"))
    with pytest.raises(ConfigError, match="invalid VM name"):
        await manager.create(guest_request("../x"))
    assert manager.library.scan() == []
    assert not (manager.library.root / "x").exists()


async def test_delete_with_and_without_disks(manager, guest_request):
    kept = await manager.create(guest_request("keep", disk_size=GIB))
    disk = kept.paths.resolve(kept.config.disks[0].path)
    result = await manager.delete("keep", keep_disks=True)
    assert disk.exists() and result.kept == [disk]
    assert not manager.library.exists("keep") and not (disk.parent / "vm.toml").exists()

    gone = await manager.create(guest_request("gone", disk_size=GIB))
    folder = gone.entry.folder
    await manager.delete("gone")
    assert not folder.exists()
    with pytest.raises(NotFoundError):
        manager.get("gone")


async def test_running_vm_cannot_be_deleted(manager, guest_request):
    await manager.create(guest_request("busy"))
    await manager.start("busy")
    with pytest.raises(StateError, match="cannot delete .busy.: it is running; stop it first"):
        await manager.delete("busy")
    assert manager.library.exists("busy")


async def test_a_pc_machine_gets_an_ide_cd_drive(manager, guest_request):
    """The pc machine has no SATA controller: its CD drive is IDE, with or without an ISO."""
    machine = await manager.create(guest_request("pc", machine="pc"))
    assert machine.config.cdrom.bus == "ide"
    await manager.start("pc")
    await manager.stop("pc", force=True, timeout=0)
