import re
import tomllib

import pytest
import tomli_w

from hvdesk.core.config import SCHEMA_VERSION, Disk, KernelBoot, Nic, PortForward, VmConfig
from hvdesk.core.errors import ConfigError
from hvdesk.core.storage import read_config


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
    ({"nics": [{"mac": "zz:zz"}]}, r"nics\[0\].mac: 'zz:zz' is not a MAC address"),
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


# The vm.toml of issue 9, finding 1: QEMU would run `touch /tmp/PWNED` when the guest connects.
PWNED_ADDRESS = "127.0.0.1:2298-:22,guestfwd=tcp:10.0.2.100:1234-cmd:touch /tmp/PWNED,hostfwd=tcp:127.0.0.1"
PWNED_TOML = f"""schema = 1
name = "shared"

[[nics]]
mac = "52:54:00:12:34:56"

[[nics.forwards]]
host_port = 2222
guest_port = 22
host_address = "{PWNED_ADDRESS}"
"""


def test_port_forward_injection_is_refused_on_load(tmp_path):
    (tmp_path / "vm.toml").write_text(PWNED_TOML)
    with pytest.raises(ConfigError) as info:
        read_config(tmp_path)
    assert str(info.value).startswith(
        f"{tmp_path / 'vm.toml'}: nics[0].forwards[0].host_address: {PWNED_ADDRESS!r} is not an IPv4 address")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("address, message", [
    ("", "'' is not an IPv4 address"),
    ("localhost", "is not an IPv4 address"),
    ("127.0.0.1 ", "is not an IPv4 address"),
    ("127.0.0.1\n", "is not an IPv4 address"),
    ("127.0.0.01", "is not an IPv4 address"),
    ("256.0.0.1", "is not an IPv4 address"),
    ("::1", "QEMU's port forwarding takes IPv4 addresses only"),
    ("[::1]", "is not an IPv4 address"),
])
def test_forward_address_must_be_ipv4(address, message):
    data = VmConfig(name="x").to_dict()
    data["nics"][0]["forwards"] = [{"host_address": address}]
    with pytest.raises(ConfigError, match=rf"^nics\[0\]\.forwards\[0\]\.host_address: .*{re.escape(message)}"):
        VmConfig.from_dict(data)


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "192.168.1.20"])
def test_forward_address_accepts_ipv4(address):
    data = VmConfig(name="x").to_dict()
    data["nics"][0]["forwards"] = [{"host_address": address}]
    assert VmConfig.from_dict(data).nics[0].forwards[0].host_address == address


@pytest.mark.parametrize("change, message", [
    ({"nics": [{"mac": "52:54:00:12:34:56\n"}]}, r"nics\[0\].mac: '52:54:00:12:34:56\\n' is not a MAC address"),
    ({"nics": [{"mac": "52:54:00:12:34:56,id=x"}]}, r"nics\[0\].mac: .* is not a MAC address"),
    ({"nics": [{"mac": "53:54:00:12:34:56"}]}, r"nics\[0\].mac: .* multicast"),
    ({"uuid": "6F1C2A50-0000-4000-8000-00000000C0DE"}, "uuid: .* not in canonical form"),
    ({"uuid": "{6f1c2a50-0000-4000-8000-00000000c0de}"}, "uuid: .* not in canonical form"),
    ({"uuid": "6f1c2a50000040008000 00000000c0de"}, "uuid: .* not a UUID"),
    ({"uuid": "6f1c2a50-0000-4000-8000-00000000c0de\n"}, "uuid: .* not a UUID"),
    ({"os": "debian12,evil"}, "os: 'debian12,evil' is not an OS id"),
    ({"os": "debian12\n"}, "os: .* is not an OS id"),
    ({"disks": [{"path": "a.qcow2", "format": "vvfat"}]}, r"disks\[0\].format: 'vvfat' is not one of qcow2, raw"),
    ({"disks": [{"path": "a.qcow2", "format": "nbd"}]}, r"disks\[0\].format: 'nbd' is not one of"),
    ({"disks": [{"path": "a", "format": "qcow2", "backing": [{"path": "b", "format": "nbd"}]}]},
     r"disks\[0\].backing\[0\].format: 'nbd' is not one of"),
    ({"disks": [{"path": "a", "format": "qcow2", "backing": [{"path": "b\n", "format": "raw"}]}]},
     r"disks\[0\].backing\[0\].path: 'b\\n' contains a line break"),
    ({"disks": [{"path": "", "format": "raw"}]}, r"disks\[0\].path: the path is empty"),
    ({"disks": [{"path": "a\0b", "format": "raw"}]}, r"disks\[0\].path: 'a\\x00b' contains a NUL"),
    ({"disks": [{"path": "a\nb", "format": "raw"}]}, r"disks\[0\].path: 'a\\nb' contains a line break"),
    ({"cdrom": {"iso": "x.iso\r"}}, r"cdrom.iso: 'x.iso\\r' contains a line break"),
    ({"kernel": {"kernel": "/k", "append": "quiet\0init=/bin/sh"}}, r"kernel.append: .* contains a NUL"),
    ({"kernel": {"kernel": "/k", "initrd": "/i\n"}}, r"kernel.initrd: .* contains a line break"),
    ({"kernel": {"kernel": ""}}, r"kernel.kernel: the path is empty"),
])
def test_values_that_reach_qemu_are_checked(change, message):
    data = VmConfig(name="x").to_dict()
    data.update(change)
    with pytest.raises(ConfigError, match=message):
        VmConfig.from_dict(data)


def test_checks_run_on_configs_built_in_code_too():
    config = VmConfig(name="x", nics=[Nic(forwards=[PortForward(host_address=PWNED_ADDRESS)])])
    with pytest.raises(ConfigError, match=r"nics\[0\]\.forwards\[0\]\.host_address"):
        config.validate()
    with pytest.raises(ConfigError, match=r"nics\[0\]\.forwards\[0\]\.host_port: expected int, found str"):
        VmConfig(name="x", nics=[Nic(forwards=[PortForward(host_port="22")])]).validate()


def test_resource_policy_defaults_round_trip_and_rules() -> None:
    from hvdesk.control.inputs import PinMode
    from hvdesk.core.config import PIN_MODES, ResourcePolicy

    assert PIN_MODES == ("default", *(mode.value for mode in PinMode))
    config = VmConfig(name="r", resources=ResourcePolicy(auto_balloon=False, min_memory_mib=300, shares=400,
                                                          pin="balanced"))
    again = VmConfig.from_dict(config.to_dict())
    assert again.resources == config.resources
    for bad, field in (({"shares": 0}, "resources.shares"), ({"shares": 10001}, "resources.shares"),
                       ({"pin": "all"}, "resources.pin"), ({"min_memory_mib": -1}, "resources.min_memory_mib"),
                       ({"auto_balloon": "yes"}, "resources.auto_balloon")):
        data = VmConfig(name="r").to_dict()
        data["resources"].update(bad)
        with pytest.raises(ConfigError, match=field):
            VmConfig.from_dict(data)


def test_the_minimum_memory_is_at_most_the_memory() -> None:
    from hvdesk.core.config import ResourcePolicy

    VmConfig(name="r", memory_mib=512, resources=ResourcePolicy(min_memory_mib=512)).validate()
    with pytest.raises(ConfigError, match=r"^resources\.min_memory_mib: 513 MiB is more than the VM's memory"):
        VmConfig(name="r", memory_mib=512, resources=ResourcePolicy(min_memory_mib=513)).validate()
    # A vm.toml from before the [resources] section: the default floor, or the VM's memory if less.
    data = VmConfig(name="small", memory_mib=128).to_dict()
    del data["resources"]
    assert VmConfig.from_dict(data).resources.min_memory_mib == 128
    data["memory_mib"] = 4096
    assert VmConfig.from_dict(data).resources.min_memory_mib == 256


def test_a_host_port_is_forwarded_once() -> None:
    def config(*rules: PortForward) -> VmConfig:
        return VmConfig(name="f", nics=[Nic(forwards=list(rules[:1])), Nic(forwards=list(rules[1:]))])

    config(PortForward("tcp", 2222, 22), PortForward("udp", 2222, 22), PortForward("tcp", 2223, 22)).validate()
    config(PortForward("tcp", 80, 80, "127.0.0.1"), PortForward("tcp", 80, 80, "127.0.0.2")).validate()
    for second in (PortForward("tcp", 2222, 23), PortForward("tcp", 2222, 22, "0.0.0.0")):
        with pytest.raises(ConfigError, match=r"^nics\[1\]\.forwards\[0\]: host port tcp 2222 is already forwarded"):
            config(PortForward("tcp", 2222, 22), second).validate()
