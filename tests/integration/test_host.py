"""The host side for real: the accelerator `auto` picks must boot a guest, UEFI firmware, and
the device variants of the golden argv files accepted by this QEMU."""

from __future__ import annotations

import socket
import stat

import pytest

from hvdesk.core.config import CdDrive, Nic, PortForward
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.states import VmState
from hvdesk.qemu import accel, binaries
from hvdesk.qemu.process import is_alive, read_pid
from tests.integration.conftest import qmp_call, wait_for_serial, wait_until

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


async def test_auto_accelerator_boots_a_guest(manager, guest_request, tiny_guest, monkeypatch):
    monkeypatch.delenv("HVDESK_ACCEL")
    machine = await manager.create(guest_request("auto"))
    assert machine.config.accel == "auto"
    await manager.start("auto")
    # whatever auto chose (KVM where it really works, else TCG with the reason), the guest boots
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    assert machine.run.accel in ("kvm", "tcg") and machine.run.accel_reason
    if machine.run.accel == "tcg":
        assert "not usable" in machine.run.accel_reason or "no hardware" in machine.run.accel_reason


def test_probe_runs_a_real_guest():
    result = accel.run_test_guest(binaries.find_emulator(), "tcg")
    assert result.ok, result.detail


async def test_uefi_boot(manager, guest_request, tiny_guest):
    machine = await manager.create(guest_request("uefi", firmware="uefi"))
    vars_file = machine.paths.uefi_vars
    assert vars_file.stat().st_size > 0  # its own NVRAM, copied from the OVMF template
    await manager.start("uefi")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    await manager.stop("uefi", timeout=60)
    assert machine.state == VmState.STOPPED


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("machine_type, bus, nic_model", [("pc", "ide", "e1000"), ("q35", "sata", "rtl8139")])
async def test_device_variants_boot(manager, guest_request, tiny_guest, tmp_path, machine_type, bus, nic_model):
    iso = tmp_path / "media.iso"
    iso.write_bytes(b"\0" * MIB)
    machine = await manager.create(guest_request("v", disk_size=64 * MIB, iso=iso, os="linux"))
    config = machine.config
    port = free_port()
    config.machine, config.disks[0].bus, config.cdrom = machine_type, bus, CdDrive(iso=str(iso), bus=bus)
    config.nics = [Nic(model=nic_model, forwards=[PortForward("tcp", port, 22)])]
    manager.library.save(machine.entry.folder, config)
    await manager.start("v")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    blocks = {b["qdev"]: b for b in await qmp_call(machine, "query-block") if b.get("qdev")}
    assert blocks["cd0"]["inserted"]["file"] == str(iso)
    assert "disk0-dev" in blocks
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the port forward listens on the host


async def test_tpm_vm_runs_with_its_own_swtpm(manager, guest_request, tiny_guest):
    machine = await manager.create(guest_request("tpm"))
    config = machine.config
    config.tpm = True
    manager.library.save(machine.entry.folder, config)
    await manager.start("tpm")
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    (device,) = await qmp_call(machine, "query-tpm")
    assert device["id"] == "tpm0" and device["options"]["type"] == "emulator"
    swtpm = read_pid(machine.paths.tpm_pidfile)
    assert is_alive(swtpm)
    assert any(machine.paths.tpm_state.iterdir())  # the TPM's state is kept in the VM's folder
    assert stat.S_IMODE(machine.paths.tpm_state.stat().st_mode) == 0o700
    await manager.stop("tpm", force=True, timeout=0)
    await wait_until(lambda: not is_alive(swtpm), 10, "swtpm to end with QEMU")


async def test_windows_11_preset_gets_uefi_and_tpm(manager, tmp_path):
    from tests.unit.test_iso_detect import make_iso
    iso = make_iso(tmp_path / "Win11_24H2_English_x64.iso", "CCCOMA_X64FRE_EN-US_DV9",
                   {"/sources/install.wim": b"MSWIM"}, rock_ridge=False)
    machine = await manager.create(CreateRequest("w11", iso=iso, memory_mib=1024, disk_size=1024**3))
    config = machine.config
    assert (config.os, config.firmware, config.tpm) == ("win11", "uefi", True)
    assert machine.paths.uefi_vars.exists()  # its own NVRAM


async def test_missing_swtpm_or_ovmf_is_named_before_anything_is_written(manager, tmp_path, monkeypatch):
    # Both are installed here; their absence is simulated by hiding them from the search.
    from hvdesk.core.errors import NotFoundError
    from hvdesk.qemu import firmware
    from tests.unit.test_iso_detect import make_iso

    iso = make_iso(tmp_path / "Win11_24H2_English_x64.iso", "CCCOMA_X64FRE_EN-US_DV9",
                   {"/sources/install.wim": b"MSWIM"}, rock_ridge=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no swtpm on it
    with pytest.raises(NotFoundError, match="needs a TPM 2.0, but swtpm is not installed .*apt install swtpm"):
        await manager.create(CreateRequest("w11", iso=iso, memory_mib=1024))
    monkeypatch.setattr(firmware, "DESCRIPTOR_DIRS", [])
    monkeypatch.setattr(firmware, "KNOWN_PAIRS", [])
    with pytest.raises(NotFoundError, match=r"UEFI firmware \(OVMF\) not found .*apt install ovmf"):
        await manager.create(CreateRequest("w11", iso=iso, memory_mib=1024))
    assert manager.library.scan() == [] and not any(manager.library.root.glob("*/*.qcow2"))
