"""Creating and deleting VMs: everything checked before anything is written, and a failure
half-way removes what was made."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from hvdesk.core.config import CdDrive, Disk, KernelBoot, VmConfig
from hvdesk.core.errors import ConfigError, DiskInUseError, NotFoundError, StateError
from hvdesk.core.iso import Detection, NotRecognised, detect
from hvdesk.core.names import validate_name
from hvdesk.core.osinfo import preset
from hvdesk.core.units import format_size
from hvdesk.engine import runtime
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState
from hvdesk.qemu import firmware, images, tpm

if TYPE_CHECKING:
    from hvdesk.engine.manager import Manager

NEW_DISK_NAME = "disk0.qcow2"
GIB = 1024**3  # not named after the VM, so a rename never orphans it


@dataclass
class CreateRequest:
    name: str
    os: str | None = None  # None: detected from the ISO, else "other"
    memory_mib: int | None = None  # None: the OS preset's recommendation
    cpus: int | None = None
    disk_size: int | None = None  # bytes of a new thin qcow2 disk
    attach_disk: Path | None = None  # an existing image instead
    iso: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    firmware: str | None = None
    machine: str | None = None
    notes: str = ""


@dataclass
class DeleteResult:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def host_limits() -> tuple[int, int]:
    """(memory in MiB, logical CPUs) of this host."""
    return psutil.virtual_memory().total // (1024 * 1024), os.cpu_count() or 1


async def create(manager: Manager, request: CreateRequest) -> Machine:
    config, detection = await _plan(manager, request)
    if request.disk_size is None and request.attach_disk is None and request.kernel is None and request.iso:
        request = dataclasses.replace(request, disk_size=preset(config.os).disk_gib * GIB)  # an install needs one
    # A new disk and an installer: the empty disk does not boot, so the CD does, until it is ejected.
    config.install = bool(request.iso and request.disk_size and request.kernel is None)
    folder = manager.library.create_folder(config, write_config=False)  # listed once complete
    try:
        if request.disk_size:
            await images.create(folder / NEW_DISK_NAME, request.disk_size)
            config.disks.append(Disk(path=NEW_DISK_NAME, format="qcow2", created=True,
                                     bus=_disk_bus(config, preset(config.os))))
        if config.firmware == "uefi":
            vars_file = folder / "uefi-vars.fd"
            shutil.copyfile(firmware.find_uefi(config.machine).vars_template, vars_file)
            os.chmod(vars_file, 0o600)
        manager.library.save(folder, config)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    machine = manager.adopt(manager.library.load(folder))
    if isinstance(detection, Detection):
        machine.notice = f"OS detected from the ISO: {detection.reason}"
    elif isinstance(detection, NotRecognised):  # a damaged image too: still a VM, the person picks the OS
        machine.notice = f"OS not recognised from the ISO: {detection.reason}; set up as {preset(config.os).label}"
    return machine


async def _plan(manager: Manager, request: CreateRequest) -> tuple[VmConfig, Detection | NotRecognised | None]:
    """The new VM's config, with every input checked; nothing written yet."""
    validate_name(request.name)
    if manager.library.exists(request.name):
        raise ConfigError(f"a VM named {request.name!r} already exists (names ignore case)")
    detection = None
    if request.os is None and request.iso is not None:
        detection = await asyncio.to_thread(detect, existing_file(request.iso, "ISO image"))
    os_preset = preset(request.os or (detection.preset.id if isinstance(detection, Detection) else "other"))
    host_mib, host_cpus = host_limits()
    memory = request.memory_mib if request.memory_mib is not None else os_preset.memory_mib
    cpus = request.cpus if request.cpus is not None else min(os_preset.cpus, host_cpus)
    if memory > host_mib:
        raise ConfigError(f"memory {memory} MiB is more than this host has ({host_mib} MiB)")
    if cpus > host_cpus:
        raise ConfigError(f"{cpus} vCPUs is more than this host has ({host_cpus} logical CPUs)")
    if request.disk_size is not None and request.attach_disk is not None:
        raise ConfigError("choose either a new disk or an existing one, not both")
    config = VmConfig(name=request.name, os=os_preset.id, memory_mib=memory, cpus=cpus,
                      firmware=request.firmware or os_preset.firmware,
                      machine=request.machine or os_preset.machine, notes=request.notes)
    if not os_preset.virtio:  # no virtio drivers in the installer: devices it knows
        config.nics = [dataclasses.replace(nic, model="e1000") for nic in config.nics]
    if request.attach_disk is not None:
        config.disks.append(dataclasses.replace(await existing_disk(manager, request.attach_disk),
                                                bus=_disk_bus(config, os_preset)))
    if request.iso is not None:
        config.cdrom = CdDrive(iso=str(existing_file(request.iso, "ISO image")))
    if request.kernel is not None:
        config.kernel = KernelBoot(kernel=str(existing_file(request.kernel, "kernel")),
                                   initrd=str(existing_file(request.initrd, "initrd")) if request.initrd else "",
                                   append=request.append)
    elif request.initrd is not None or request.append:
        raise ConfigError("--initrd and --append need --kernel")
    if request.disk_size is not None and request.disk_size < 1024 * 1024:
        raise ConfigError(f"disk size {format_size(request.disk_size)} is too small (at least 1 MiB)")
    if config.firmware == "uefi":
        firmware.find_uefi(config.machine)  # missing OVMF fails now, before anything is written
    if os_preset.tpm:
        config.tpm = True
        tpm.find_swtpm()  # so does a missing swtpm
    return config.validate(), detection


def _disk_bus(config: VmConfig, os_preset) -> str:
    return "virtio" if os_preset.virtio else ("sata" if config.machine == "q35" else "ide")


def existing_file(path: Path, what: str) -> Path:
    path = path.expanduser().resolve()
    if not path.exists():
        raise NotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} {path} is not readable")
    return path


async def existing_disk(manager: Manager, path: Path) -> Disk:
    path = existing_file(path, "disk image")
    try:
        info = await images.info(path)
    except DiskInUseError:
        holder = manager.holder_of(path)
        raise DiskInUseError(f"disk image {path} is in use by "
                             f"{f'VM {holder!r}' if holder else 'another process'}; stop it first") from None
    return Disk(path=str(path), format=info.format, created=False)


async def delete(manager: Manager, name: str, *, keep_disks: bool = False) -> DeleteResult:
    """Remove a stopped VM: its folder, and the disks hvdesk created for it unless `keep_disks`.
    Disk images that were attached from elsewhere are never deleted."""
    machine = manager.get(name)
    async with manager.lock(machine):
        await manager.refresh_state(machine)
        if machine.state.active:
            raise StateError(f"cannot delete {machine.name!r}: it is {machine.state}; stop it first")
        result = DeleteResult()
        folder = machine.entry.folder
        keep = set()
        if machine.entry.config is not None:
            paths = machine.paths
            runtime.remove_run_dir(paths)
            for disk in machine.config.disks:
                disk_path = paths.resolve(disk.path)
                if not disk.created or keep_disks:
                    keep.add(disk_path)
        elif keep_disks:  # config unreadable: which files are disks is unknown, so keep all but the config
            keep = {p for p in folder.iterdir() if p.name not in (runtime.ABORTED_MARKER, "vm.toml", "logs")}
        result.kept = sorted(keep)
        inside = [p for p in keep if p.parent == folder]
        # vm.toml goes first: if anything below fails, the VM is already gone from the list.
        (folder / "vm.toml").unlink(missing_ok=True)
        if inside:
            for item in folder.iterdir():
                if item not in keep:
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
                    result.removed.append(item)
        else:
            result.removed.append(folder)
            manager.library.remove_folder(folder)
        manager.forget(machine)
        machine.state = VmState.STOPPED
        return result
