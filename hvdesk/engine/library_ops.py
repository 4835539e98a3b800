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

from hvdesk.core.config import DEFAULT_MIN_MEMORY_MIB, BackingImage, CdDrive, Disk, KernelBoot, ResourcePolicy, VmConfig
from hvdesk.core.errors import BackingFileError, ConfigError, DiskError, DiskInUseError, NotFoundError, StateError
from hvdesk.core.names import validate_name
from hvdesk.core.osinfo import OsPreset, preset
from hvdesk.core.storage import CONFIG_FILE, LOCK_FILE, LOG_DIR, Library, raw_disk_paths
from hvdesk.core.units import format_size
from hvdesk.engine import runtime
from hvdesk.engine.actions import Action
from hvdesk.engine.context import Engine
from hvdesk.engine.host import host_limits
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState
from hvdesk.qemu import discovery, firmware, images, tpm

if TYPE_CHECKING:
    from hvdesk.core.iso import Detection, NotRecognised

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
    allow_backing: bool = False  # the person trusts the attached image's backing images


@dataclass
class DeleteResult:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    reasons: dict[Path, str] = field(default_factory=dict)  # why each kept file was kept


async def create(manager: Engine, request: CreateRequest) -> Machine:
    """Make a new VM. It is built in a hidden staging folder and moved into the library in one
    rename, under the library lock: no other process sees it half-made or takes its name, and
    a create killed half-way leaves only a staging folder that the next Manager removes."""
    config, detection = await _plan(manager, request)
    if request.disk_size is None and request.attach_disk is None and request.kernel is None and request.iso:
        request = dataclasses.replace(request, disk_size=preset(config.os).disk_gib * GIB)  # an install needs one
    # A new disk and an installer: the empty disk does not boot, so the CD does, until it is ejected.
    config.install = bool(request.iso and request.disk_size and request.kernel is None)
    library = manager.library
    staging = library.staging_folder()
    try:
        if request.disk_size:
            try:
                await images.create(staging / NEW_DISK_NAME, request.disk_size)
            except DiskError as exc:  # it is made in the hidden staging folder: name the library instead
                raise DiskError(f"cannot create the disk of {config.name!r} in {library.root}: {exc.detail}") from None
            config.disks.append(Disk(path=NEW_DISK_NAME, format="qcow2", created=True,
                                     bus=_disk_bus(config, preset(config.os))))
        if config.firmware == "uefi":  # its own NVRAM, as qcow2 so that snapshots can hold it
            await firmware.new_nvram(firmware.find_uefi(config.machine).vars_template, staging / "uefi-vars.fd")
        library.save(staging, config)
        async with library.lock().held(f"creating VM {config.name!r}"):
            folder = library.publish(staging, config.name)
    except BaseException:
        library.discard(staging)
        raise
    machine = manager.adopt(library.load(folder))
    if detection is not None:
        from hvdesk.core.iso import Detection  # loaded already: the ISO was read

        if isinstance(detection, Detection):
            machine.notice = f"OS detected from the ISO: {detection.reason}"
        else:  # not recognised, a damaged image too: still a VM, the person picks the OS
            machine.notice = f"OS not recognised from the ISO: {detection.reason}; set up as {preset(config.os).label}"
    return machine


async def _plan(manager: Engine, request: CreateRequest) -> tuple[VmConfig, Detection | NotRecognised | None]:
    """The new VM's config, with every input checked; nothing written yet."""
    validate_name(request.name)
    if manager.library.exists(request.name):
        raise ConfigError(f"a VM named {request.name!r} already exists (names ignore case)")
    detection = None
    os_id = request.os or "other"
    if request.os is None and request.iso is not None:
        from hvdesk.core.iso import Detection, detect  # the ISO reader (pycdlib) loads only for an ISO to read

        detection = await asyncio.to_thread(detect, existing_file(request.iso, "ISO image"))
        if isinstance(detection, Detection):
            os_id = detection.preset.id
    os_preset = preset(os_id)
    memory, cpus = _resources(request, os_preset)
    config = VmConfig(name=request.name, os=os_preset.id, memory_mib=memory, cpus=cpus,
                      firmware=request.firmware or os_preset.firmware,
                      machine=request.machine or os_preset.machine, notes=request.notes,
                      resources=ResourcePolicy(min_memory_mib=min(DEFAULT_MIN_MEMORY_MIB, memory)))
    if config.machine == "pc" and config.cdrom is not None:  # the pc machine has IDE, no SATA
        config.cdrom = dataclasses.replace(config.cdrom, bus="ide")
    if not os_preset.virtio:  # no virtio drivers in the installer: devices it knows
        config.nics = [dataclasses.replace(nic, model="e1000") for nic in config.nics]
    await _add_media(manager, config, request, os_preset)
    if config.firmware == "uefi":
        firmware.find_uefi(config.machine)  # missing OVMF fails now, before anything is written
    if os_preset.tpm:
        config.tpm = True
        tpm.find_swtpm()  # so does a missing swtpm
    return config.validate(), detection


def _resources(request: CreateRequest, os_preset: OsPreset) -> tuple[int, int]:
    """Memory (MiB) and vCPUs: as asked, else the OS preset's; never more than the host has."""
    host_mib, host_cpus = host_limits()
    memory = request.memory_mib if request.memory_mib is not None else os_preset.memory_mib
    cpus = request.cpus if request.cpus is not None else min(os_preset.cpus, host_cpus)
    if memory > host_mib:
        raise ConfigError(f"memory {memory} MiB is more than this host has ({host_mib} MiB)")
    if cpus > host_cpus:
        raise ConfigError(f"{cpus} vCPUs is more than this host has ({host_cpus} logical CPUs)")
    return memory, cpus


async def _add_media(manager: Engine, config: VmConfig, request: CreateRequest, os_preset: OsPreset) -> None:
    """The attached disk, the CD's ISO and a direct kernel boot, each file checked."""
    if request.disk_size is not None and request.attach_disk is not None:
        raise ConfigError("choose either a new disk or an existing one, not both")
    if request.disk_size is not None and request.disk_size < 1024 * 1024:
        raise ConfigError(f"disk size {format_size(request.disk_size)} is too small (at least 1 MiB)")
    if request.attach_disk is not None:
        disk = await existing_disk(manager, request.attach_disk, allow_backing=request.allow_backing)
        config.disks.append(dataclasses.replace(disk, bus=_disk_bus(config, os_preset)))
    if request.iso is not None:
        config.cdrom = CdDrive(iso=str(existing_file(request.iso, "ISO image")),
                               bus=config.cdrom.bus if config.cdrom else "sata")
    if request.kernel is not None:
        config.kernel = KernelBoot(kernel=str(existing_file(request.kernel, "kernel")),
                                   initrd=str(existing_file(request.initrd, "initrd")) if request.initrd else "",
                                   append=request.append)
    elif request.initrd is not None or request.append:
        raise ConfigError("--initrd and --append need --kernel")


def _disk_bus(config: VmConfig, os_preset: OsPreset) -> str:
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


async def existing_disk(manager: Engine, path: Path, *, folder: Path | None = None,
                        allow_backing: bool = False) -> Disk:
    """An image to attach, as a Disk with its backing chain pinned. Backing images outside the VM's
    `folder` (all of them, for a VM not created yet) are refused unless `allow_backing`: a crafted
    image could otherwise show the guest any file of the host through its header."""
    path = existing_file(path, "disk image")
    try:
        chain = await images.backing_chain(path)
    except DiskInUseError:
        holder = manager.holder_of(path)
        raise DiskInUseError(f"disk image {path} is in use by "
                             f"{f'VM {holder!r}' if holder else 'another process'}; stop it first") from None
    for layer in chain:
        if (problem := images.unsupported_references(layer)) is not None:
            raise DiskError(problem)
    below = chain[1:]
    outside = [layer for layer in below if folder is None or folder not in layer.path.parents]
    if outside and not allow_backing:
        raise BackingFileError(
            f"disk image {path} reads from {len(below)} backing image(s) outside the VM's folder, which the "
            f"guest could read: {describe_chain(chain)}. Attach it only if you trust them "
            "(command line: --allow-backing)", [(str(layer.path), layer.format) for layer in chain])
    return Disk(path=str(path), format=chain[0].format, created=False,
                backing=[BackingImage(str(layer.path), layer.format) for layer in below])


def describe_chain(chain: list[images.ImageInfo]) -> str:
    return " <- ".join(f"{layer.path} ({layer.format})" for layer in reversed(chain))


async def delete(manager: Engine, name: str, *, keep_disks: bool = False) -> DeleteResult:
    """Remove a stopped VM: its folder, and the disks hvdesk created for it unless `keep_disks`.

    Only files inside the VM's folder are ever removed; of those, disks another VM uses are kept,
    and nothing is removed while a QEMU of this VM runs or any QEMU holds one of the files open
    (its pidfile may be gone: the processes themselves are checked)."""
    library = manager.library
    async with library.lock().held(f"deleting VM {name!r}"):
        async with manager.operate(name, Action.DELETE) as machine:
            folder = machine.entry.folder
            uuid = machine.entry.digest.uuid if machine.entry.digest is not None else None
            live = discovery.find_vm_qemu(uuid, folder, fresh=True)
            if live is not None:
                raise StateError(f"cannot delete {machine.name!r}: its QEMU (pid {live.pid}) is still running; "
                                 "stop it first (hvdesk stop --force turns it off)")
            clones = linked_clones_of(manager.library, folder)
            if clones:
                raise StateError(f"cannot delete {machine.name!r}: linked clone{'s' if len(clones) > 1 else ''} "
                                 f"{', '.join(map(repr, clones))} use{'' if len(clones) > 1 else 's'} its disk; "
                                 f"delete {'them' if len(clones) > 1 else 'it'} first")
            keep = _files_to_keep(manager, machine, keep_disks)
            doomed = [item for item in folder.iterdir() if item not in keep]
            busy = discovery.holders_of([f for item in doomed for f in _files_under(item)])
            if busy:
                path, pid = next(iter(busy.items()))
                raise DiskInUseError(f"cannot delete {machine.name!r}: {path} is open in QEMU (pid {pid})")
            if machine.entry.config is not None:
                runtime.remove_run_dir(machine.paths)
            result = DeleteResult(kept=sorted(keep), reasons=keep)
            # vm.toml goes first: if anything below fails, the VM is already gone from the list.
            (folder / CONFIG_FILE).unlink(missing_ok=True)
            if any(path.parent == folder for path in keep):
                for item in doomed:
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink(missing_ok=True)
                    result.removed.append(item)
            else:
                result.removed.append(folder)
                library.remove_folder(folder)
            manager.forget(machine)
            machine.state = VmState.STOPPED
            return result


def _files_to_keep(manager: Engine, machine: Machine, keep_disks: bool) -> dict[Path, str]:
    """Disk files the delete must leave, each with why: attached from elsewhere, asked to keep,
    or used by another VM of the library (attached there too)."""
    folder = machine.entry.folder
    keep: dict[Path, str] = {}
    if machine.entry.config is not None:
        for disk in machine.config.disks:
            path = machine.paths.resolve(disk.path)
            if not disk.created:
                keep[path] = "attached from elsewhere"
            elif keep_disks:
                keep[path] = "kept as asked"
    elif keep_disks:  # config unreadable: which files are disks is unknown, so keep all but the config
        keep = {p: "kept as asked" for p in folder.iterdir()
                if p.name not in (CONFIG_FILE, LOCK_FILE, LOG_DIR)}
    real_folder = Path(os.path.realpath(folder))
    for other, path in _disks_of_other_vms(manager, machine):
        if real_folder in path.parents:  # the item directly in the folder that a delete would remove
            keep.setdefault(folder / path.relative_to(real_folder).parts[0], f"used by VM {other!r}")
    return keep


def _disks_of_other_vms(manager: Engine, machine: Machine) -> list[tuple[str, Path]]:
    """(VM name, disk path) for every disk every other VM of the library names, read fresh from
    disk; an inaccessible vm.toml is still read for its disk paths, as far as it can be."""
    found = []
    for entry in manager.library.scan():
        if entry.folder == machine.entry.folder:
            continue
        for raw in raw_disk_paths(entry.folder):
            path = Path(raw).expanduser()
            path = path if path.is_absolute() else entry.folder / path
            found.append((entry.name, Path(os.path.realpath(path))))
    return found


def linked_clones_of(library: Library, folder: Path) -> list[str]:
    """Names of the other VMs whose disks read from a backing image in `folder` (linked clones of
    its VM), read fresh from disk, from broken vm.toml files too."""
    real_folder = Path(os.path.realpath(folder))
    users = []
    for entry in library.scan():
        if entry.folder == folder:
            continue
        for raw in raw_disk_paths(entry.folder, backing_only=True):
            path = Path(raw).expanduser()
            path = path if path.is_absolute() else entry.folder / path
            if real_folder in Path(os.path.realpath(path)).parents:
                users.append(entry.name)
                break
    return users


def _files_under(item: Path) -> list[Path]:
    if item.is_dir() and not item.is_symlink():
        return [p for p in item.rglob("*") if p.is_file() and not p.is_symlink()]
    return [item] if item.is_file() else []
