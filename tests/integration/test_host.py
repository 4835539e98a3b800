"""The host side for real: the accelerator `auto` picks must boot a guest, UEFI firmware, and
the device variants of the golden argv files accepted by this QEMU."""

from __future__ import annotations

import socket

import pytest

from hvdesk.core.config import CdDrive, Nic, PortForward
from hvdesk.engine.states import VmState
from hvdesk.qemu import accel, binaries
from tests.integration.conftest import qmp_call, wait_for_serial

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
    result = accel.probe(binaries.find_emulator(), "tcg")
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
