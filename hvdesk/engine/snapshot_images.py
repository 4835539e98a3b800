"""Which images hold a VM's snapshots, and getting them ready to: every writable disk the VM keeps
in its snapshots must be qcow2 (a raw one makes QEMU refuse; hvdesk offers the conversion), and
so must a UEFI VM's NVRAM (an older hvdesk wrote it raw: converted at the first offline snapshot).
Disks marked "not in snapshots" and read-only ones are left out."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, DiskError, StateError
from hvdesk.core.snapshot_meta import NVRAM, Snapshot
from hvdesk.engine import launch_plan
from hvdesk.engine.machine import Machine
from hvdesk.qemu import images
from hvdesk.qemu.argv import NVRAM_NODE, disk_node


@dataclass(frozen=True)
class Holder:
    """One image that holds a snapshot."""

    key: str  # the disk's path as vm.toml names it, or NVRAM
    path: Path  # the file
    node: str  # its format node in QEMU (disk0, fw-vars)
    label: str  # for messages: "disk 0 (/path/disk0.qcow2)", "the UEFI NVRAM (...)"


def disk_label(machine: Machine, index: int) -> str:
    return f"disk {index} ({machine.paths.resolve(machine.config.disks[index].path)})"


def disk_holders(machine: Machine, config: VmConfig | None = None) -> list[Holder]:
    """The VM's disks that hold its snapshots; DiskError naming a disk that cannot, and what to do."""
    config = config or machine.config
    found = []
    for index, disk in enumerate(config.disks):
        if disk.readonly or not disk.in_snapshots:
            continue
        label = f"disk {index} ({machine.paths.resolve(disk.path)})"
        if disk.format != "qcow2":
            raise DiskError(
                f"cannot take a snapshot of {machine.name!r}: its {label} is {disk.format}, which cannot hold "
                f"snapshots (only qcow2 can); convert it to qcow2 (hvdesk snapshot {_arg(machine.name)} convert-disk "
                f"{index}) or leave it out of snapshots (hvdesk snapshot {_arg(machine.name)} exclude-disk {index})")
        found.append(Holder(disk.path, machine.paths.resolve(disk.path), disk_node(index), label))
    if not found:
        raise DiskError(f"cannot take a snapshot of {machine.name!r}: it has no qcow2 disk in its snapshots to "
                        "hold it (snapshots, and a running VM's memory, are kept inside qcow2 disk images); "
                        "add a disk first")
    for holder in found:
        if (data_file := images.qcow2_data_file(holder.path)) is not None:
            raise DiskError(f"cannot take a snapshot of {machine.name!r}: its {holder.label} keeps its data in an "
                            f"external file ({data_file}); hvdesk does not use such images")
    return found


def nvram_holder(machine: Machine) -> Holder:
    path = machine.paths.uefi_vars
    return Holder(NVRAM, path, NVRAM_NODE, f"UEFI NVRAM ({path})")


def nvram_is_raw(machine: Machine) -> bool:
    path = machine.paths.uefi_vars
    return machine.config.firmware == "uefi" and os.path.lexists(path) and not images.is_qcow2(path)


async def holders_for_new(machine: Machine, *, live: bool) -> tuple[list[Holder], str]:
    """The images a new snapshot goes into, and a notice for the user (the NVRAM was converted).
    Offline, a missing NVRAM is made and a raw one converted to qcow2; live, a raw one is refused."""
    found = disk_holders(machine)
    notice = ""
    if machine.config.firmware == "uefi":
        if nvram_is_raw(machine):
            if live:
                raise DiskError(f"cannot take a snapshot of {machine.name!r} while it runs: its UEFI NVRAM "
                                f"({machine.paths.uefi_vars}) is raw, which cannot hold snapshots; stop the VM and "
                                "take the snapshot then: hvdesk converts the NVRAM to qcow2 once, keeping its contents")
            await convert_nvram(machine)
            notice = (f"converted the UEFI NVRAM of {machine.name!r} from raw to qcow2 (its contents kept), "
                      "so that snapshots can hold it")
        elif not live:
            await launch_plan.prepare_nvram(machine)  # made now if missing, so the snapshot holds it
        found.append(nvram_holder(machine))
    return found, notice


async def convert_nvram(machine: Machine) -> None:
    """The raw NVRAM of a stopped VM as qcow2, in place (the new file replaces it in one rename)."""
    path = machine.paths.uefi_vars
    temporary = path.with_name(f".{path.name}.qcow2-new")
    temporary.unlink(missing_ok=True)
    await images.convert_format(path, temporary, "raw", "qcow2")
    os.replace(temporary, path)


def holders_of(machine: Machine, snap: Snapshot) -> tuple[list[Holder], list[str]]:
    """The images that hold `snap`, as the VM has them now; and the keys of those it no longer has
    (a disk detached since)."""
    found, missing = [], []
    paths = [d.path for d in machine.config.disks]
    for key in snap.images:
        if key == NVRAM:  # (a VM switched to BIOS since keeps the file: a restore makes it UEFI again)
            if machine.paths.uefi_vars.is_file():
                found.append(nvram_holder(machine))
            else:
                missing.append(key)
        elif key in paths:
            index = paths.index(key)
            found.append(Holder(key, machine.paths.resolve(key), disk_node(index), disk_label(machine, index)))
        else:
            missing.append(key)
    return found, missing


def restore_config(machine: Machine, snap: Snapshot) -> VmConfig:
    """The settings a restore of `snap` saves: those it was taken with, but the VM's present name,
    uuid and disk list (a restore never detaches a disk: that could lose it). Refused when the
    disks that hold snapshots are not the ones `snap` is in."""
    saved = VmConfig.from_dict(snap.config)
    current = machine.config
    holders, missing = holders_of(machine, snap)
    if missing:
        what = (f"its UEFI NVRAM {machine.paths.uefi_vars}, which holds it, is gone" if missing[0] == NVRAM else
                f"the disk {missing[0]}, which holds it, is no longer part of the VM; attach it again first")
        raise StateError(f"cannot restore snapshot {snap.name!r} of {machine.name!r}: {what}")
    held = {h.key for h in holders}
    for index, disk in enumerate(current.disks):
        if disk.readonly or not disk.in_snapshots or disk.path in held:
            continue
        raise StateError(f"cannot restore snapshot {snap.name!r} of {machine.name!r}: its "
                         f"{disk_label(machine, index)} is not in that snapshot (it was added, or put in snapshots, "
                         f"since); leave it out of snapshots first (hvdesk snapshot {_arg(machine.name)} exclude-disk "
                         f"{index}), and it keeps its contents")
    return dataclasses.replace(saved, name=current.name, uuid=current.uuid, disks=current.disks).validate()


async def check_tags_offline(machine: Machine, snap: Snapshot, holders: list[Holder]) -> None:
    """Every image that should hold `snap` does (an image replaced or edited outside hvdesk may not)."""
    for holder in holders:
        if snap.tag not in await images.snapshot_tags(holder.path):
            raise DiskError(f"snapshot {snap.name!r} of {machine.name!r} is missing from its {holder.label} "
                            "(changed outside hvdesk?); it cannot be restored")


def tags_by_node(reply: object) -> dict[str, set[str]]:
    """query-named-block-nodes (flat) -> the snapshot tags of each node."""
    found: dict[str, set[str]] = {}
    for node in reply if isinstance(reply, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("node-name"), str):
            continue
        image = node.get("image") if isinstance(node.get("image"), dict) else {}
        snapshots = image.get("snapshots") if isinstance(image, dict) else None
        found[node["node-name"]] = {str(s.get("name")) for s in snapshots or [] if isinstance(s, dict)}
    return found


def converted_disk(machine: Machine, index: int) -> tuple[Path, Path]:
    """Where disk `index` is now, and where its qcow2 copy goes: beside it in the VM's folder when
    it lives there, else in the VM's folder (an image attached from elsewhere is left as it is)."""
    if not 0 <= index < len(machine.config.disks):
        raise ConfigError(f"{machine.name!r} has no disk number {index}")
    disk = machine.config.disks[index]
    if disk.format == "qcow2":
        raise ConfigError(f"{machine.name!r}'s {disk_label(machine, index)} is qcow2 already")
    if disk.backing:
        raise DiskError(f"{machine.name!r}'s {disk_label(machine, index)} reads from backing images; hvdesk does not "
                        "convert such a chain (qemu-img convert it to one qcow2 image, and attach that)")
    source = machine.paths.resolve(disk.path)
    folder = machine.entry.folder
    stem = source.stem if source.parent == folder else f"{source.stem}-converted"
    target, n = folder / f"{stem}.qcow2", 1
    while os.path.lexists(target):
        n += 1
        target = folder / f"{stem}-{n}.qcow2"
    return source, target


def _arg(name: str) -> str:
    return f"'{name}'" if " " in name else name
