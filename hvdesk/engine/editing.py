"""Changing a VM's settings and disks.

Settings are saved at once. A running VM takes the CD live (over QMP), and disk growth live
(`block_resize`); everything else it takes at its next start, and `pending_changes` says which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from hvdesk.core.config import CdDrive, Disk, VmConfig
from hvdesk.core.errors import ConfigError, DiskError, DiskInUseError, StateError
from hvdesk.core.names import name_key, validate_name
from hvdesk.engine.actions import Action
from hvdesk.engine.context import Engine
from hvdesk.engine.library_ops import existing_disk, existing_file, linked_clones_of
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState
from hvdesk.qemu import discovery, images
from hvdesk.qemu.argv import CD_ID

# Settings a running VM takes without a restart; `resources` is read by the allocation
# controller while the VM runs, never by QEMU.
LIVE_FIELDS = {"name", "notes", "cdrom", "disks", "resources"}


def pending_changes(machine: Machine) -> list[str]:
    """Settings saved since the running QEMU started that it has not taken (empty when stopped)."""
    if not machine.state.active or machine.run is None or not machine.run.config:
        return []
    started = machine.run.config
    now = machine.config.to_dict()
    return sorted(k for k in now.keys() | started.keys()
                  if k not in LIVE_FIELDS and k != "schema" and now.get(k) != started.get(k))


async def save_settings(manager: Engine, name: str, config: VmConfig) -> Machine:
    """Save edited settings; a changed CD is also applied live to a running VM. A rename also
    holds the library lock (taken first, as create and delete do), so names stay unique."""
    return await edit_settings(manager, name, lambda _current: config,
                               renaming=config.name != manager.get(name).name)


async def edit_settings(manager: Engine, name: str, edit: Callable[[VmConfig], VmConfig], *,
                        renaming: bool) -> Machine:
    """As save_settings, with the new config made by `edit` from the current one inside the
    guard (so no other hvdesk's change in between is lost); `edit` must not change its argument."""
    async with contextlib.AsyncExitStack() as stack:
        if renaming:
            await stack.enter_async_context(manager.library.lock().held(f"renaming VM {name!r}"))
        machine = await stack.enter_async_context(manager.operate(name, Action.EDIT))
        return await _save(manager, machine, edit(machine.config))


async def _save(manager: Engine, machine: Machine, config: VmConfig) -> Machine:
    """Save `config` for `machine`, whose guard the caller holds."""
    config = dataclasses.replace(config).validate()
    old = machine.config
    if config.uuid != old.uuid:
        raise ConfigError("uuid: a VM's uuid cannot change")
    if [d.path for d in config.disks] != [d.path for d in old.disks] and (machine.state.active
                                                                         or machine.state == VmState.SAVED):
        raise StateError(f"cannot change the disks of {machine.name!r} while it is {machine.state}")
    if machine.state == VmState.SAVED and _iso(config) != _iso(old):  # its guest resumes with the CD it had
        raise StateError(f"cannot change the CD of {machine.name!r} while it is saved; start it (which resumes "
                         "the saved state) and change it then, or start it with --discard-saved-state")
    if config.name != old.name:
        _rename(manager, machine, config.name)
    if machine.state.active and _iso(config) != _iso(old):
        await _change_medium(manager, machine, _iso(config))
    manager.library.save(machine.entry.folder, config)
    manager.reload(machine)
    return machine


def _iso(config: VmConfig) -> str | None:
    return config.cdrom.iso if config.cdrom else None


def _rename(manager: Engine, machine: Machine, new_name: str) -> None:
    validate_name(new_name)
    if machine.state.active:
        raise StateError(f"cannot rename {machine.name!r} while it is {machine.state}")
    if any(name_key(m.name) == name_key(new_name) for m in manager.machines() if m is not machine):
        raise ConfigError(f"a VM named {new_name!r} already exists (names ignore case)")
    folder = machine.entry.folder
    target = folder.parent / new_name
    # Linked clones name their backing image by its path in this folder: then the folder stays.
    if (name_key(target.name) != name_key(folder.name) and not target.exists()
            and not linked_clones_of(manager.library, folder)):
        os.rename(folder, target)  # the folder follows the name when it can
        manager.moved(machine, target)


async def set_cd(manager: Engine, name: str, iso: Path | None) -> Machine:
    """Insert an ISO into the VM's CD drive (None ejects), live when it runs."""
    path = str(existing_file(iso, "ISO image")) if iso is not None else ""
    async with manager.operate(name, Action.CHANGE_CD) as machine:
        config = dataclasses.replace(machine.config)
        if config.cdrom is None:
            if machine.state.active:
                raise StateError(f"{machine.name!r} has no CD drive; add one while it is stopped")
            config.cdrom = CdDrive()
        config.cdrom = dataclasses.replace(config.cdrom, iso=path)
        return await _save(manager, machine, config)


async def _change_medium(manager: Engine, machine: Machine, iso: str | None) -> None:
    if iso is None:
        raise StateError(f"cannot remove the CD drive of {machine.name!r} while it runs")
    if iso:
        # QEMU takes `filename` as a protocol when it looks like one (nbd://..., json:{...}) and reads
        # a relative one from its own working dir (/): give it the absolute path, as at start.
        await manager.command(machine, "blockdev-change-medium", {
            "id": CD_ID, "filename": str(machine.paths.resolve(iso)), "format": "raw",
            "read-only-mode": "read-only"})
    else:
        await manager.command(machine, "eject", {"id": CD_ID, "force": True})


async def add_new_disk(manager: Engine, name: str, size: int, bus: str = "virtio") -> Machine:
    async with manager.operate(name, Action.EDIT_DISKS) as machine:
        taken = {Path(d.path).name for d in machine.config.disks}
        number = next(n for n in range(len(taken) + 1) if f"disk{n}.qcow2" not in taken)
        filename = f"disk{number}.qcow2"
        await images.create(machine.entry.folder / filename, size)
        config = dataclasses.replace(machine.config, disks=[*machine.config.disks,
                                                            Disk(filename, "qcow2", bus=bus, created=True)])
        try:
            return await _save(manager, machine, config)
        except BaseException:
            (machine.entry.folder / filename).unlink(missing_ok=True)
            raise


async def attach_disk(manager: Engine, name: str, path: Path, bus: str = "virtio", *,
                      allow_backing: bool = False) -> Machine:
    async with manager.operate(name, Action.EDIT_DISKS) as machine:
        disk = await existing_disk(manager, path, folder=machine.entry.folder, allow_backing=allow_backing)
        disk = dataclasses.replace(disk, bus=bus)
        if any(machine.paths.resolve(d.path) == Path(disk.path) for d in machine.config.disks):
            raise ConfigError(f"{disk.path} is already attached to {machine.name!r}")
        config = dataclasses.replace(machine.config, disks=[*machine.config.disks, disk])
        return await _save(manager, machine, config)


async def remove_disk(manager: Engine, name: str, index: int, *, delete_file: bool = False) -> Machine:
    """Detach a disk; `delete_file` also deletes it, if hvdesk created it for this VM and no
    other VM or process uses it."""
    async with manager.operate(name, Action.EDIT_DISKS) as machine:
        disk = _disk(machine, index)
        path = machine.paths.resolve(disk.path)
        config = dataclasses.replace(machine.config, disks=[d for i, d in enumerate(machine.config.disks)
                                                            if i != index])
        await _save(manager, machine, config)
        if delete_file and disk.created:
            user = manager.holder_of(path, exclude=machine)
            if user is not None:
                raise DiskError(f"detached {path}, but kept the file: VM {user!r} uses it too")
            if discovery.holders_of([path]):
                raise DiskInUseError(f"detached {path}, but kept the file: a QEMU process has it open")
            path.unlink(missing_ok=True)
        return machine


async def resize_disk(manager: Engine, name: str, index: int, size: int) -> images.ImageInfo:
    """Grow a disk; live through QMP when the VM runs (the guest sees the new size at once)."""
    async with manager.operate(name, Action.RESIZE_DISK) as machine:
        disk = _disk(machine, index)
        path = machine.paths.resolve(disk.path)
        if not machine.state.active:
            return await images.resize(path, size)
        current = await images.info(path, force_share=True)
        if size < current.virtual_size:
            raise DiskError(f"cannot shrink {path}; shrinking would destroy data")
        await manager.command(machine, "block_resize", {"node-name": f"disk{index}", "size": size})
        return await images.info(path, force_share=True)


def _disk(machine: Machine, index: int) -> Disk:
    if not 0 <= index < len(machine.config.disks):
        raise ConfigError(f"{machine.name!r} has no disk number {index}")
    return machine.config.disks[index]
