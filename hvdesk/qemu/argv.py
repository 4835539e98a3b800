"""VmConfig -> QEMU command line: a pure function, one small builder per kind of device.

Paths go into -blockdev as JSON (no escaping to get wrong). Every other option string is built by
`opts`: a fixed head word, then key=value pairs whose values have their commas doubled, QEMU's own
escape, so no value can end its option early and add another. A value is never the first, unnamed
element (`-name guest=`, `-vnc vnc=`): there QEMU reads an '=' as the end of a key, with no escape.
Device ids are stable, because QMP commands name them: `cd0` (the CD drive), `balloon0`,
`disk<N>`, `nic<N>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from hvdesk.core.config import Disk, VmConfig
from hvdesk.qemu import transport as transports
from hvdesk.qemu.images import COW_FORMATS
from hvdesk.qemu.transport import Transport
from hvdesk.qemu.vm_paths import VmPaths

BALLOON_ID = "balloon0"
CD_ID = "cd0"
NVRAM_NODE = "fw-vars"  # the UEFI NVRAM's format node (pflash1), which snapshots name
NVRAM_FORMATS = ("raw", "qcow2")  # QEMU runs pflash from either; only qcow2 holds snapshots


@dataclass(frozen=True)
class HostSetup:
    emulator: Path
    accel: str
    uefi_code: Path | None = None  # required when the VM's firmware is uefi
    uefi_vars_format: str = "raw"  # the NVRAM's format as its header says: raw, or qcow2 (snapshots hold it)
    transport: Transport | None = None  # how QMP and VNC are reached; None: unix sockets in the runtime dir

    def link(self, paths: VmPaths) -> Transport:
        return self.transport or transports.unix(paths)


Builder = Callable[[VmConfig, HostSetup, VmPaths], Iterator[str]]


_HEAD = re.compile(r"[A-Za-z0-9._-]+")


def esc(value: object) -> str:
    """Escape a value for QEMU's key=value option syntax."""
    return str(value).replace(",", ",,")


def opts(head: str | None, **props: object) -> str:
    """`head,key=value,...` in QEMU's option syntax. `head` is a word hvdesk chooses (a backend,
    driver or machine type); values are escaped; None leaves a key out; booleans are on/off;
    `_` in a key is `-`."""
    if head is not None and not _HEAD.fullmatch(head):
        raise ValueError(f"option head {head!r} is not a plain word")
    parts = [head] if head is not None else []
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{key.replace('_', '-')}={esc(value)}")
    return ",".join(parts)


def blockdev(**options: object) -> list[str]:
    return ["-blockdev", json.dumps(options, separators=(",", ":"))]


def device(driver: str, **props: object) -> list[str]:
    return ["-device", opts(driver, **props)]


def boot_indexes(config: VmConfig) -> dict[str, int]:
    """bootindex for the first device of each kind, in the order the user chose."""
    return {kind: index for index, kind in enumerate(config.boot_order, start=1)}


def storage_slot(config: VmConfig, slot: int) -> dict[str, object]:
    """Where the n-th SATA/IDE device plugs in: AHCI ports on q35, IDE master/slave on pc."""
    if config.machine == "q35":
        return {"bus": f"ide.{slot}"}
    return {"bus": f"ide.{slot // 2}", "unit": slot % 2}


def _base(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    yield from [str(host.emulator), "-name", opts(None, guest=config.name, debug_threads=True), "-uuid", config.uuid]
    yield from ["-nodefaults", "-no-user-config", "-S", *(["-daemonize"] if host.link(paths).daemonize else [])]
    yield from ["-msg", opts(None, timestamp=True)]
    yield from ["-pidfile", str(paths.pidfile), "-D", str(paths.qemu_log)]


def _machine(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    from hvdesk.qemu.accel import cpu_model  # here: every command loads this module, only a start builds argv

    flash = {"pflash0": "fw-code", "pflash1": NVRAM_NODE} if config.firmware == "uefi" else {}
    yield from ["-machine", opts(config.machine, **flash), "-accel", opts(host.accel), "-cpu", cpu_model(host.accel)]
    yield from ["-m", str(config.memory_mib), "-smp", str(config.cpus)]


def _firmware(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    if config.firmware != "uefi":
        return
    if host.uefi_code is None:
        raise ValueError("uefi firmware requested but HostSetup.uefi_code is not set")
    yield from blockdev(**{"driver": "file", "filename": str(host.uefi_code), "node-name": "fw-code-file",
                           "read-only": True})
    yield from blockdev(**{"driver": "raw", "file": "fw-code-file", "node-name": "fw-code", "read-only": True})
    yield from blockdev(**{"driver": "file", "filename": str(paths.uefi_vars), "node-name": "fw-vars-file"})
    if host.uefi_vars_format not in NVRAM_FORMATS:
        raise ValueError(f"NVRAM format {host.uefi_vars_format!r} is not one of {', '.join(NVRAM_FORMATS)}")
    yield from blockdev(**{"driver": host.uefi_vars_format, "file": "fw-vars-file", "node-name": NVRAM_NODE,
                           **_backing_option(host.uefi_vars_format, None)})


def _monitors(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    link = host.link(paths)
    for mon_id, end in (("qmp", link.qmp), ("ctl", link.ctl)):
        where: dict[str, object] = {"path": end.path} if end.path is not None else {"host": end.host, "port": end.port}
        yield from ["-chardev", opts("socket", id=mon_id, **where, server=True, wait=False)]
        yield from ["-mon", opts(None, chardev=mon_id, mode="control")]


def _serial(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    yield from ["-chardev", opts("file", id="serial0", path=paths.serial_log), "-serial", "chardev:serial0"]


def _display(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    vga = {"std": "VGA", "virtio": "virtio-vga", "none": None}[config.display.vga]
    if vga:
        yield from device(vga, id="video0")
    yield from ["-display", "none"]
    if config.display.vnc and vga:
        yield from _vnc(host.link(paths))
    if config.display.tablet:
        yield from device("qemu-xhci", id="usb")
        yield from device("usb-tablet", id="tablet0", bus="usb.0")


def _vnc(link: Transport) -> Iterator[str]:
    if link.vnc.path is not None:
        yield from ["-vnc", opts(None, vnc=f"unix:{link.vnc.path}")]
        return
    # tcp: the password from its 0600 file (never on the command line, which any local user can read)
    yield from ["-object", opts("secret", id=transports.VNC_SECRET_ID, file=link.vnc_password_file, format="raw")]
    display = link.vnc.port - transports.VNC_BASE_PORT
    yield from ["-vnc", opts(None, vnc=f"{link.vnc.host}:{display}", password_secret=transports.VNC_SECRET_ID)]


def _balloon(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    if config.balloon.enabled:
        yield from device("virtio-balloon-pci", id=BALLOON_ID, deflate_on_oom=config.balloon.deflate_on_oom,
                          free_page_reporting=config.balloon.free_page_reporting)


def _disks(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    first_boot = boot_indexes(config).get("disk")
    slot = 0
    for n, disk in enumerate(config.disks):
        node = disk_node(n)
        yield from _backing_chain(disk, node, paths)
        yield from blockdev(**{"driver": "file", "filename": str(paths.resolve(disk.path)),
                               "node-name": f"{node}-file", "discard": "unmap", "read-only": disk.readonly})
        yield from blockdev(**{"driver": disk.format, "file": f"{node}-file", "node-name": node,
                               "discard": "unmap", "read-only": disk.readonly,
                               **_backing_option(disk.format, f"{node}-b0" if disk.backing else None)})
        bootindex = first_boot + n * 10 if first_boot is not None else None  # later disks boot after
        if disk.bus == "virtio":
            yield from device("virtio-blk-pci", drive=node, id=f"{node}-dev", bootindex=bootindex)
        else:
            yield from device("ide-hd", drive=node, id=f"{node}-dev", bootindex=bootindex,
                              **storage_slot(config, slot))
            slot += 1


def _backing_chain(disk: Disk, node: str, paths: VmPaths) -> Iterator[str]:
    """The images below a disk, bottom first, each naming the one below it: the chain is pinned,
    so QEMU opens exactly what was approved, whatever an image's header says later."""
    for i in reversed(range(len(disk.backing))):
        layer = disk.backing[i]
        below = f"{node}-b{i + 1}" if i + 1 < len(disk.backing) else None
        yield from blockdev(**{"driver": "file", "filename": str(paths.resolve(layer.path)),
                               "node-name": f"{node}-b{i}-file", "read-only": True})
        yield from blockdev(**{"driver": layer.format, "file": f"{node}-b{i}-file", "node-name": f"{node}-b{i}",
                               "read-only": True, **_backing_option(layer.format, below)})


def _backing_option(fmt: str, below: str | None) -> dict[str, object]:
    """`backing` for formats that have one: the node below, or null for none at all (QEMU would
    otherwise open whatever backing file the image's header names)."""
    return {"backing": below} if fmt in COW_FORMATS else {}


def disk_node(index: int) -> str:
    """The format node of the VM's disk number `index` (block_resize and snapshots name it)."""
    return f"disk{index}"


def _cdrom(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    if config.cdrom is None:
        return
    ide_disks = sum(1 for d in config.disks if d.bus != "virtio")
    drive = None
    if config.cdrom.iso:
        yield from blockdev(**{"driver": "file", "filename": str(paths.resolve(config.cdrom.iso)),
                               "node-name": f"{CD_ID}-file", "read-only": True})
        yield from blockdev(**{"driver": "raw", "file": f"{CD_ID}-file", "node-name": f"{CD_ID}-media",
                               "read-only": True})
        drive = f"{CD_ID}-media"
    yield from device("ide-cd", id=CD_ID, drive=drive, bootindex=boot_indexes(config).get("cdrom"),
                      **storage_slot(config, ide_disks))


def _nics(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    first_boot = boot_indexes(config).get("network")
    models = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}
    for n, nic in enumerate(config.nics):
        # Each rule is one escaped value; the model has already checked its parts (IPv4, port numbers).
        rules = [opts(None, hostfwd=f"{fwd.protocol}:{fwd.host_address}:{fwd.host_port}-:{fwd.guest_port}")
                 for fwd in nic.forwards]
        yield from ["-netdev", ",".join([opts("user", id=f"net{n}"), *rules])]
        bootindex = first_boot + n * 10 if first_boot is not None else None
        # Without network boot, skip the iPXE option ROM: faster firmware, and no ROM file needed.
        yield from device(models[nic.model], netdev=f"net{n}", id=f"nic{n}", mac=nic.mac, bootindex=bootindex,
                          romfile=None if bootindex else "")


def _tpm(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    if not config.tpm:
        return
    yield from ["-chardev", opts("socket", id="tpm0-sock", path=paths.tpm_socket)]
    yield from ["-tpmdev", opts("emulator", id="tpm0", chardev="tpm0-sock")]
    # CRB is the interface Windows 11 expects on q35; the pc machine has the older TIS.
    yield from device("tpm-crb" if config.machine == "q35" else "tpm-tis", tpmdev="tpm0", id="tpm0-dev")


def _kernel(config: VmConfig, host: HostSetup, paths: VmPaths) -> Iterator[str]:
    if config.kernel is None:
        return
    yield from ["-kernel", str(paths.resolve(config.kernel.kernel))]
    if config.kernel.initrd:
        yield from ["-initrd", str(paths.resolve(config.kernel.initrd))]
    if config.kernel.append:
        yield from ["-append", config.kernel.append]


BUILDERS: tuple[Builder, ...] = (_base, _machine, _firmware, _monitors, _serial, _display, _balloon, _disks,
                                 _cdrom, _nics, _tpm, _kernel)


def build_argv(config: VmConfig, host: HostSetup, paths: VmPaths) -> list[str]:
    """The full QEMU command line for `config`. Pure: same inputs, same list.

    The config is validated again first: one changed in memory since it was loaded meets the same
    rules before any of it reaches QEMU."""
    config.validate()
    return [arg for builder in BUILDERS for arg in builder(config, host, paths)]
