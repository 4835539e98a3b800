import tomllib

import pytest
import tomli_w

from hvdesk.core.config import SCHEMA_VERSION, Disk, KernelBoot, Nic, PortForward, VmConfig
from hvdesk.core.errors import ConfigError


def full_config() -> VmConfig:
    return VmConfig(
        name="full", os="debian12", memory_mib=2048, cpus=2, firmware="uefi",
        disks=[Disk("disk0.qcow2", "qcow2"), Disk("/data/old.vmdk", "vmdk", bus="sata", created=False)],
        nics=[Nic(mac="52:54:00:12:34:56", forwards=[PortForward("tcp", 2222, 22)])],
        kernel=KernelBoot("/boot/vmlinuz", "/boot/initrd", "console=ttyS0"), notes="hello\nworld",
    ).validate()


def test_round_trip_through_toml():
    config = full_config()
    text = tomli_w.dumps(config.to_dict())
    assert VmConfig.from_dict(tomllib.loads(text)) == config


def test_defaults_are_sensible():
    config = VmConfig(name="x").validate()
    assert (config.machine, config.firmware, config.accel) == ("q35", "bios", "auto")
    assert config.balloon.enabled and config.balloon.free_page_reporting
    assert config.nics[0].mode == "nat" and config.nics[0].mac.startswith("52:54:00:")
    assert config.display.vnc and config.display.tablet


def test_optional_sections_are_left_out_of_toml():
    data = VmConfig(name="x", cdrom=None).to_dict()
    assert "kernel" not in data and "cdrom" not in data
    assert data["schema"] == SCHEMA_VERSION


@pytest.mark.parametrize("change, message", [
    ({"memory_mib": 0}, "memory_mib: 0 is out of range"),
    ({"memory_mib": "512"}, "memory_mib: expected int, found str"),
    ({"cpus": True}, "cpus: expected int, found bool"),
    ({"cpus": 999}, "cpus: 999 is out of range"),
    ({"firmware": "coreboot"}, "firmware: 'coreboot' is not one of bios, uefi"),
    ({"machine": "virt"}, "machine: 'virt' is not one of"),
    ({"uuid": "nope"}, "uuid: 'nope' is not a UUID"),
    ({"boot_order": ["disk", "floppy"]}, "boot_order: unknown device 'floppy'"),
    ({"boot_order": ["disk", "disk"]}, "listed twice"),
    ({"name": "../evil"}, "invalid VM name"),
    ({"colour": "red"}, "colour: unknown setting"),
    ({"disks": [{"path": "a.qcow2"}]}, r"disks\[0\].format: missing"),
    ({"disks": [{"path": "a", "format": "raw", "bus": "scsi"}]}, r"disks\[0\].bus: 'scsi' is not one of"),
    ({"nics": [{"mac": "zz:zz"}]}, r"nics\[0\].mac: 'zz:zz' is not valid"),
    ({"nics": [{"forwards": [{"host_port": 70000}]}]}, r"nics\[0\].forwards\[0\].host_port: 70000 is out of range"),
    ({"display": "vnc"}, "display: expected a table"),
    ({"machine": "pc", "disks": [{"path": "a", "format": "raw", "bus": "sata"}]}, "pc machine has no SATA"),
    ({"schema": 99}, "written by a newer hvdesk"),
    ({"schema": None}, "schema: expected 1"),
])
def test_invalid_config_names_the_field(change, message):
    data = VmConfig(name="x").to_dict()
    data.update(change)
    if change.get("schema", 0) is None:
        del data["schema"]
    with pytest.raises(ConfigError, match=message):
        VmConfig.from_dict(data)
