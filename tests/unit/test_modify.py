"""engine/modify.py's mapping: each key changes its one setting in a copy, checked by the model's
rules; the config it was given stays as it was."""

from __future__ import annotations

import copy

import pytest

from hvdesk.core.config import Nic, PortForward, VmConfig
from hvdesk.core.errors import ConfigError
from hvdesk.engine.modify import KEYS, apply, value_of

SAMPLES = {
    "name": "renamed", "os": "debian12", "notes": "a note", "memory_mib": 2048, "cpus": 2, "firmware": "uefi",
    "machine": "pc", "accel": "tcg", "boot_order": ["network", "disk"], "tpm": True,
    "display.vnc": False, "display.vga": "virtio", "display.tablet": False,
    "balloon.enabled": False, "balloon.free_page_reporting": False, "balloon.deflate_on_oom": False,
    "resources.auto_balloon": False, "resources.min_memory_mib": 512, "resources.shares": 400,
    "resources.pin": "dedicated", "nics": False, "nics[0].model": "e1000", "nics[0].mac": "52:54:00:01:02:03",
    "cdrom.iso": "", "cdrom.bus": "ide",
}


def original() -> VmConfig:
    return VmConfig(name="vm", nics=[Nic(mac="52:54:00:aa:bb:cc")]).validate()


@pytest.mark.parametrize("key", [k for k in KEYS if k != "nics[0].forwards"])
def test_each_key_changes_its_setting_alone(key):
    config = original()
    kept = copy.deepcopy(config)
    changes = {key: SAMPLES[key]}
    if key == "machine":
        changes["cdrom.bus"] = "ide"  # the pc machine has no SATA
    new = apply(config, changes)
    assert value_of(new, key) == SAMPLES[key]
    assert config == kept  # the original and its sections are untouched
    others = [k for k in KEYS if k not in changes and not (key == "nics" and k.startswith("nics"))]
    assert [value_of(new, k) for k in others] == [value_of(config, k) for k in others]


def test_forwards_come_as_plain_tables_and_a_port_once():
    new = apply(original(), {"nics[0].forwards": [{"protocol": "tcp", "host_port": 2222, "guest_port": 22}]})
    assert new.nics[0].forwards == [PortForward("tcp", 2222, 22)]
    with pytest.raises(ConfigError, match=r"^nics\[0\]\.forwards\[1\]: host port tcp 2222 is already forwarded"):
        apply(original(), {"nics[0].forwards": [{"host_port": 2222}, {"host_port": 2222, "guest_port": 80}]})
    with pytest.raises(ConfigError, match=r"^nics\[0\]\.forwards\[0\]: expected a table"):
        apply(original(), {"nics[0].forwards": [{"port": 1}]})


def test_network_on_adds_a_card_and_a_card_setting_needs_one():
    none = apply(original(), {"nics": False})
    assert none.nics == [] and len(apply(none, {"nics": True}).nics) == 1
    assert apply(original(), {"nics": True}).nics == original().nics
    with pytest.raises(ConfigError, match=r"^nics\[0\]\.mac: the VM has no network card"):
        apply(none, {"nics[0].mac": "52:54:00:01:02:03"})


@pytest.mark.parametrize("changes, message", [
    ({"memory_mib": 8}, r"^memory_mib: 8 is out of range"),
    ({"memory_mib": 512, "resources.min_memory_mib": 1024}, r"^resources\.min_memory_mib: 1024 MiB is more than"),
    ({"resources.shares": 0}, r"^resources\.shares: 0 is out of range"),
    ({"resources.shares": 10001}, r"^resources\.shares: 10001 is out of range"),
    ({"resources.pin": "all"}, r"^resources\.pin: 'all' is not one of"),
    ({"nics[0].mac": "52:54:00:zz:00:00"}, r"^nics\[0\]\.mac: .* is not a MAC address"),
    ({"boot_order": ["disk", "disk"]}, r"^boot_order: a device is listed twice"),
    ({"boot_order": ["floppy"]}, r"^boot_order: unknown device 'floppy'"),
    ({"name": "a/b"}, r"invalid VM name 'a/b'"),
    ({"cpus": "2"}, r"^cpus: expected int"),
])
def test_bad_values_are_refused_naming_the_setting(changes, message):
    with pytest.raises(ConfigError, match=message):
        apply(original(), changes)
