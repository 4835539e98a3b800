"""vm.toml as an attacker (or an accident) writes it: every field, hostile values included, is
either refused with a one-line ConfigError, or becomes a QEMU command line that reads back, the way
QEMU reads it, with exactly the options, keys and values hvdesk meant (tests/unit/argv_check.py):
no extra key, no guestfwd, no cmd:, only image drivers in -blockdev.

Three properties: odd but legal configs are accepted and safe; one field of a legal config made
hostile; and every field drawn from legal and hostile values at once."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hvdesk.core.config import (
    ACCELERATORS,
    BOOT_DEVICES,
    CD_BUSES,
    DISK_BUSES,
    DISK_FORMATS,
    FIRMWARES,
    MACHINES,
    MAX_SHARES,
    MIN_SHARES,
    NIC_MODELS,
    PIN_MODES,
    PROTOCOLS,
    SCHEMA_VERSION,
    VGA_MODELS,
    VmConfig,
)
from hvdesk.core.errors import ConfigError
from hvdesk.qemu.argv import HostSetup, build_argv
from hvdesk.qemu.vm_paths import VmPaths
from tests.unit.argv_check import check_argv

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Ways into an option string, a path, a JSON block driver or a line-based parser.
INJECTIONS = [
    ",guestfwd=tcp:10.0.2.100:1234-cmd:touch /tmp/PWNED", "127.0.0.1:2298-:22,guestfwd=tcp:10.0.2.100:1234-cmd:x",
    "-:22,hostfwd=tcp::1-:2", ",,", ",", "=", "=on", ",id=x", ",driver=vvfat", ",server=off", "\n", "\r", "\0",
    "\t", "'", '"', "\\", " ", "ü", "💾", "\u2028", "\ud800", "{", "}", 'json:{"driver":"vvfat","dir":"/"}',
    "nbd://h:1/x", "file:", ":", "-", "[::1]", "::1", "127.1", "0x7f.0.0.1", "127.0.0.1 ", " 127.0.0.1",
    "vvfat", "nbd", "ssh", "http", "file", "host_device", "blkdebug", "null-co", "luks", "../..", "~root",
    "~no-such-user-here/x",
    "52:54:00:12:34:56\n", "53:54:00:12:34:56", "52-54-00-12-34-56", "6F1C2A50-0000-4000-8000-00000000C0DE",
    "{6f1c2a50-0000-4000-8000-00000000c0de}", "urn:uuid:6f1c2a50-0000-4000-8000-00000000c0de", "debian12\n",
]
injection = st.sampled_from(INJECTIONS)
any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and control characters too
hostile_text = st.one_of(injection, any_text, st.builds(lambda a, b, c: a + b + c, any_text, injection, any_text))
plain_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), hostile_text)
hostile_value = st.one_of(hostile_text, plain_values, st.lists(plain_values, max_size=3),
                          st.dictionaries(hostile_text, plain_values, max_size=3))

# Legal, but each character one that option syntaxes care about.
path_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\0\n\r")
odd_path = st.one_of(
    st.text(path_chars, min_size=1, max_size=24),
    st.builds(lambda a, b, c: f"/{a}{b}{c}", st.text(path_chars, max_size=6),
              st.sampled_from([",", ",,", "=", ",=", "=,", ",id=x,", "'", '"', " ", "ü", "💾", ":", "{}"]),
              st.text(path_chars, max_size=6)),
    st.builds(lambda user, rest: f"~{user}/{rest}", st.sampled_from(["", "root", "no-such-user-here"]),
              st.text(path_chars, max_size=6)),
)
macs = st.tuples(st.integers(0, 127).map(lambda b: b * 2), st.binary(min_size=5, max_size=5)).map(
    lambda t: ":".join(f"{b:02x}" for b in bytes([t[0], *t[1]])))


@st.composite
def legal_config(draw: st.DrawFn) -> dict[str, Any]:
    machine = draw(st.sampled_from(MACHINES))
    disk_buses = [b for b in DISK_BUSES if not (machine == "pc" and b == "sata")]
    cd_buses = [b for b in CD_BUSES if not (machine == "pc" and b == "sata")]
    backing = st.lists(st.fixed_dictionaries({"path": odd_path, "format": st.sampled_from(DISK_FORMATS)}), max_size=2)
    disks = draw(st.lists(st.fixed_dictionaries({
        "path": odd_path, "format": st.sampled_from(DISK_FORMATS), "bus": st.sampled_from(disk_buses),
        "created": st.booleans(), "readonly": st.booleans(), "backing": backing}), max_size=3))
    forwards = st.lists(st.fixed_dictionaries({
        "protocol": st.sampled_from(PROTOCOLS), "host_port": st.integers(1, 65535),
        "guest_port": st.integers(1, 65535), "host_address": st.ip_addresses(v=4).map(str)}), max_size=3)
    nic_macs = draw(st.lists(macs, max_size=3, unique=True))
    nics = [{"mode": "nat", "model": draw(st.sampled_from(NIC_MODELS)), "mac": mac, "forwards": draw(forwards)}
            for mac in nic_macs]
    ports: set[tuple[str, int]] = set()  # a host port forwarded twice is refused (QEMU could not bind it)
    for nic in nics:
        kept = []
        for rule in nic["forwards"]:
            if (rule["protocol"], rule["host_port"]) not in ports:
                ports.add((rule["protocol"], rule["host_port"]))
                kept.append(rule)
        nic["forwards"] = kept
    memory = draw(st.integers(16, 4 * 1024 * 1024))
    data = {
        "schema": SCHEMA_VERSION,
        # Built from characters, not st.from_regex: its lazy import deep in a draw can trip CPython 3.11's
        # "AST constructor recursion depth mismatch" SystemError.
        "name": "vm" + draw(st.text(NAME_CHARS + " ._-", max_size=20)) + draw(st.sampled_from(NAME_CHARS)),
        "uuid": str(draw(st.uuids())),
        "os": draw(st.sampled_from(["other", "debian12", "win11", "dragonflybsd1.0A", "opensuse15.5"])),
        "memory_mib": memory,
        "cpus": draw(st.integers(1, 255)),
        "firmware": draw(st.sampled_from(FIRMWARES)),
        "machine": machine,
        "accel": draw(st.sampled_from(ACCELERATORS)),
        "boot_order": draw(st.permutations(BOOT_DEVICES).flatmap(lambda p: st.integers(0, 3).map(lambda n: p[:n]))),
        "disks": disks,
        "nics": nics,
        "display": {"vnc": draw(st.booleans()), "vga": draw(st.sampled_from(VGA_MODELS)),
                    "tablet": draw(st.booleans())},
        "balloon": {"enabled": draw(st.booleans()), "free_page_reporting": draw(st.booleans()),
                    "deflate_on_oom": draw(st.booleans())},
        "tpm": draw(st.booleans()),
        "install": draw(st.booleans()),
        "notes": draw(any_text),  # free text: it never reaches QEMU
    }
    # Left out, the CD drive defaults to SATA, which a pc machine refuses (found by this suite).
    if machine == "pc" or draw(st.booleans()):
        data["cdrom"] = {"iso": draw(st.one_of(st.just(""), odd_path)), "bus": draw(st.sampled_from(cd_buses))}
    if draw(st.booleans()):  # left out, the floor is the default or the VM's memory if less
        data["resources"] = {"auto_balloon": draw(st.booleans()), "min_memory_mib": draw(st.integers(0, memory)),
                             "shares": draw(st.integers(MIN_SHARES, MAX_SHARES)),
                             "pin": draw(st.sampled_from(PIN_MODES))}
    if draw(st.booleans()):
        data["kernel"] = {"kernel": draw(odd_path), "initrd": draw(st.one_of(st.just(""), odd_path)),
                          "append": draw(st.text(path_chars, max_size=30))}
    return data


def leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in the data a value sits, tables and lists included (so whole sections get replaced too)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += leaf_paths(item, (*prefix, i))
    return found


def put(data: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def load(data: dict[str, Any]) -> VmConfig:
    """As from a vm.toml on disk when TOML can hold the data (no None, no lone surrogate), else as
    the parsed table; raises ConfigError for a config hvdesk refuses."""
    try:
        text = tomli_w.dumps(data)
        text.encode("utf-8")
    except (TypeError, ValueError):
        return VmConfig.from_dict(copy.deepcopy(data))
    return VmConfig.from_dict(tomllib.loads(text))


def refused_or_safe(data: dict[str, Any]) -> None:
    try:
        config = load(data)
    except ConfigError as exc:
        event("refused")
        assert "\n" not in str(exc) and "\r" not in str(exc), f"a message of more than one line: {exc!r}"
        return
    event("accepted")
    paths = VmPaths(vm_dir=Path("/home/u/VMs,x=1 'q'") / config.name,
                    run_dir=Path("/run/u=1,x") / config.uuid)
    argv = build_argv(config, HostSetup(Path("/usr/bin/qemu-system-x86_64"), "tcg", uefi_code=Path("/fw,=.fd")), paths)
    check_argv(config, paths, argv, "/fw,=.fd")


@FUZZ
@given(legal_config())
def test_odd_but_legal_configs_are_accepted_and_build_a_safe_command_line(data):
    config = load(data)
    refused_or_safe(data)
    assert VmConfig.from_dict(tomllib.loads(tomli_w.dumps(config.to_dict()))) == config


@FUZZ
@given(legal_config(), st.data())
def test_one_hostile_field_is_refused_or_harmless(data, draw):
    where = draw.draw(st.sampled_from(leaf_paths(data)), label="field")
    current = copy.deepcopy(data)
    for step in where:
        current = current[step]
    if isinstance(current, str) and draw.draw(st.booleans(), label="append"):
        value = current + draw.draw(hostile_text, label="suffix")  # a legal value with something after it
    else:
        value = draw.draw(hostile_value, label="value")
    put(data, where, value)
    refused_or_safe(data)


@FUZZ
@given(legal_config(), st.data())
def test_hostile_keys_are_refused_in_one_line(data, draw):
    tables = [p for p in leaf_paths(data) if isinstance(_at(data, p), dict)] + [()]
    where = draw.draw(st.sampled_from(tables), label="table")
    _at(data, where)[draw.draw(hostile_text, label="key")] = draw.draw(plain_values, label="value")
    refused_or_safe(data)


def _at(data: Any, path: tuple) -> Any:
    for step in path:
        data = data[step]
    return data


@FUZZ
@given(legal_config(), st.data())
def test_every_field_at_once_is_refused_or_harmless(data, draw):
    for where in leaf_paths(data):
        if draw.draw(st.integers(0, 29), label="hostile?") == 0:  # each field hostile one time in 30
            try:
                put(data, where, draw.draw(hostile_value, label=str(where)))
            except (KeyError, IndexError, TypeError):
                pass  # its parent was replaced already
    refused_or_safe(data)
