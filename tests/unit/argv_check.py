"""Checks a built QEMU command line against what hvdesk meant to say, reading every option string
the way QEMU does (tests/unit/qemu_syntax.py): each option has exactly the keys hvdesk puts there,
each value that comes from the config arrives intact, and -blockdev names only image drivers."""

from __future__ import annotations

import json
import re

from hvdesk.core.config import VmConfig
from hvdesk.qemu import transport as transports
from hvdesk.qemu.transport import Transport
from hvdesk.qemu.vm_paths import VmPaths
from tests.unit.qemu_syntax import parse_options

# flag: (the key a first element without '=' stands for, every key hvdesk may write)
KEY_VALUE_OPTIONS: dict[str, tuple[str | None, set[str]]] = {
    "-name": ("guest", {"guest", "debug-threads"}),
    "-msg": (None, {"timestamp"}),
    "-machine": ("type", {"type", "pflash0", "pflash1"}),
    "-accel": ("accel", {"accel"}),
    "-m": ("size", {"size"}),
    "-smp": ("cpus", {"cpus"}),
    "-chardev": ("backend", {"backend", "id", "path", "host", "port", "server", "wait"}),
    "-mon": (None, {"chardev", "mode"}),
    "-display": ("type", {"type"}),
    "-vnc": ("vnc", {"vnc", "password-secret"}),
    "-object": ("qom-type", {"qom-type", "id", "file", "format"}),
    "-netdev": ("type", {"type", "id", "hostfwd"}),
    "-device": ("driver", {"driver", "id", "bus", "unit", "drive", "bootindex", "netdev", "mac", "romfile",
                           "deflate-on-oom", "free-page-reporting", "tpmdev"}),
    "-tpmdev": ("type", {"type", "id", "chardev"}),
}
PLAIN_VALUES = {"-uuid", "-pidfile", "-D", "-cpu", "-serial", "-kernel", "-initrd", "-append", "-blockdev"}
SWITCHES = {"-nodefaults", "-no-user-config", "-S", "-daemonize"}  # -daemonize: the unix transport only
# Image formats and the file protocol; never vvfat, nbd, ssh, http(s), host_device, blkdebug...
BLOCK_DRIVERS = {"file", "raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "parallels", "dmg"}
BLOCKDEV_KEYS = {"driver", "filename", "file", "node-name", "discard", "read-only", "backing"}
HOSTFWD = re.compile(r"(tcp|udp):(\d{1,3}\.){3}\d{1,3}:\d{1,5}-:\d{1,5}")
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def split_argv(argv: list[str]) -> list[tuple[str, str]]:
    """[(flag, value)] for every flag that takes a value; unknown flags fail the check."""
    pairs, i = [], 1  # argv[0] is the emulator
    while i < len(argv):
        flag = argv[i]
        if flag in SWITCHES:
            i += 1
            continue
        assert flag in KEY_VALUE_OPTIONS or flag in PLAIN_VALUES, f"unexpected argument {flag!r}"
        pairs.append((flag, argv[i + 1]))
        i += 2
    return pairs


def check_argv(config: VmConfig, paths: VmPaths, argv: list[str], uefi_code: str | None = None,
               link: Transport | None = None) -> None:
    assert not any("\0" in arg for arg in argv), "a NUL cannot pass through exec()"
    link = link or transports.unix(paths)
    options = split_argv(argv)
    assert ("-daemonize" in argv) == (link.kind == "unix")
    chardev_paths = {"serial0": str(paths.serial_log), "tpm0-sock": str(paths.tpm_socket)}
    monitors = {"qmp": link.qmp, "ctl": link.ctl}
    files = {str(paths.resolve(d.path)) for d in config.disks} | {str(paths.uefi_vars)}
    files |= {str(paths.resolve(b.path)) for d in config.disks for b in d.backing}
    if config.cdrom is not None and config.cdrom.iso:
        files.add(str(paths.resolve(config.cdrom.iso)))
    if uefi_code:
        files.add(uefi_code)
    netdevs, macs, nodes = [], [], {}
    for flag, value in options:
        if flag == "-blockdev":
            node = json.loads(value)
            assert set(node) <= BLOCKDEV_KEYS, node
            assert node["driver"] in BLOCK_DRIVERS, node
            if node["driver"] == "file":
                assert node["filename"] in files, node
            nodes[node["node-name"]] = node
            continue
        if flag in PLAIN_VALUES:
            continue
        implied, allowed = KEY_VALUE_OPTIONS[flag]
        pairs = parse_options(value, implied)
        keys = [k for k, _ in pairs]
        assert set(keys) <= allowed, f"{flag} {value!r}: unexpected keys {set(keys) - allowed}"
        assert len(set(keys)) == len(keys) or flag == "-netdev", f"{flag} {value!r}: a key given twice"
        got = dict(pairs)
        if flag == "-name":
            assert got["guest"] == config.name
        elif flag == "-chardev" and got["id"] in monitors:
            end = monitors[got["id"]]
            where = {"path": str(end.path)} if end.path else {"host": "127.0.0.1", "port": str(end.port)}
            assert got == {"backend": "socket", "id": got["id"], **where, "server": "on", "wait": "off"}, value
        elif flag == "-chardev":
            assert got["path"] == chardev_paths[got["id"]], (value, got)
        elif flag == "-vnc" and link.kind == "unix":
            assert got == {"vnc": f"unix:{link.vnc.path}"}
        elif flag == "-vnc":  # loopback only, the password from the secret below
            assert got == {"vnc": f"127.0.0.1:{link.vnc.port - 5900}", "password-secret": "vnc-password"}, value
        elif flag == "-object":  # the VNC password, read by QEMU from its private file
            assert got == {"qom-type": "secret", "id": "vnc-password", "file": str(link.vnc_password_file),
                           "format": "raw"}, value
        elif flag == "-netdev":
            assert keys.count("type") == keys.count("id") == 1
            netdevs.append([v for k, v in pairs if k == "hostfwd"])
        elif flag == "-device" and "mac" in got:
            macs.append(got["mac"])
    plain = dict((f, v) for f, v in options if f in PLAIN_VALUES and f != "-blockdev")
    assert plain["-uuid"] == config.uuid and CANONICAL_UUID.fullmatch(config.uuid)
    assert macs == [nic.mac for nic in config.nics]
    for n, disk in enumerate(config.disks):
        assert nodes[f"disk{n}"]["driver"] == disk.format
        assert nodes[f"disk{n}-file"]["filename"] == str(paths.resolve(disk.path))
        for i, layer in enumerate(disk.backing):
            assert nodes[f"disk{n}-b{i}"]["driver"] == layer.format
            assert nodes[f"disk{n}-b{i}-file"]["filename"] == str(paths.resolve(layer.path))
    assert all(node.get("backing") in (None, *nodes) for node in nodes.values()), "backing names a node of ours"
    expected = [[f"{f.protocol}:{f.host_address}:{f.host_port}-:{f.guest_port}" for f in nic.forwards]
                for nic in config.nics]
    assert netdevs == expected
    assert all(HOSTFWD.fullmatch(rule) for rules in netdevs for rule in rules), netdevs
    if config.kernel is not None:
        assert plain["-kernel"] == str(paths.resolve(config.kernel.kernel))
        assert plain.get("-append", "") == config.kernel.append
