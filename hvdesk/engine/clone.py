"""Cloning a stopped VM: a full copy, or a linked clone sharing the source's disks as they are now.

A clone gets its own name, uuid and MAC addresses; its settings and notes are the source's. It is
built in a hidden staging folder and published in one rename (as a create is): a clone that
fails leaves nothing behind.

Full clone: every disk is copied by `qemu-img convert` into a new thin qcow2 file in the clone's
folder (disks attached from elsewhere too: the clone owns all its disks), its backing chain read
as pinned in vm.toml; the UEFI variables and the TPM state are copied; the CD's ISO and a direct
boot's kernel are shared (they are only read).

Linked clone: the source's writable disks become read-only base images that neither VM writes any
more (`base-<id>-disk0.qcow2` in the source's folder); the source and the clone each get a new
qcow2 overlay over them, so each keeps its own writes. The source cannot be deleted while a clone
reads from its folder (library_ops.delete), and a rename leaves its folder in place. Only the
current state can be the base (not a snapshot). The steps are ordered so that the source's
vm.toml names a valid chain at every moment: the base is first a second name (hard link) of the
disk, vm.toml then names the base, the overlay replaces the disk's name, and vm.toml names the
overlay over the base; the clone is published only after that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import uuid as uuids
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvdesk.core import snapshot_meta
from hvdesk.core.config import BackingImage, Disk, KernelBoot, Nic, VmConfig, random_mac
from hvdesk.core.errors import ConfigError, DiskError, DiskInUseError, StateError
from hvdesk.core.names import validate_name
from hvdesk.core.storage import Library
from hvdesk.engine.actions import Action
from hvdesk.engine.context import Engine
from hvdesk.engine.launch_plan import check_images
from hvdesk.engine.machine import Machine
from hvdesk.qemu import discovery, images

Progress = Callable[[float], None]  # percent done, 0-100


@dataclass
class CloneResult:
    machine: Machine
    linked: bool
    seconds: float
    copied: int = 0  # bytes of disk data a full clone wrote
    bases: list[Path] = field(default_factory=list)  # a linked clone's base images (in the source's folder)
    notes: list[str] = field(default_factory=list)  # what the person should know


async def clone(manager: Engine, name: str, new_name: str, *, linked: bool = False,
                progress: Progress | None = None, keep_macs: bool = False) -> CloneResult:
    """`keep_macs`: the clone's network cards keep the source's MAC addresses (for a clone that
    replaces its source; two VMs with one MAC on a network disturb each other)."""
    validate_name(new_name)
    library = manager.library
    if library.exists(new_name):
        raise ConfigError(f"a VM named {new_name!r} already exists (names ignore case)")
    began = time.monotonic()
    try:
        if linked:
            result = await _linked(manager, name, new_name, keep_macs)
        else:
            result = await _full(manager, name, new_name, progress, keep_macs)
    except DiskError as exc:
        if not exc.detail:  # ours, already saying what and why
            raise
        # qemu-img's, about a file in a hidden staging folder: name the clone instead
        raise type(exc)(f"cannot clone {name!r} to {new_name!r}: {exc.detail}", exc.detail) from None
    result.seconds = time.monotonic() - began
    if any(nic.forwards for nic in result.machine.config.nics):
        result.notes.append("its port forwards are the source's: the two cannot run at the same time until "
                            "one's are changed")
    return result


async def _full(manager: Engine, name: str, new_name: str, progress: Progress | None,
                keep_macs: bool) -> CloneResult:
    library = manager.library
    staging = library.staging_folder()
    try:
        # The source is held while its disks are read, not the library: a long copy blocks no
        # create or delete of other VMs (and the lock order stays library -> VM, as delete's).
        async with manager.operate(name, Action.CLONE) as source:
            _check_not_running(source)
            await check_images(source, "clone")
            disks, copied = await _copy_disks(source, staging, progress)
            _copy_firmware_state(source, staging)
            config = _clone_config(source, new_name, disks, keep_macs)
            library.save(staging, config)
        async with library.lock().held(f"creating VM {new_name!r}, a clone of {name!r}"):
            folder = library.publish(staging, new_name)
    except BaseException:
        library.discard(staging)
        raise
    return CloneResult(manager.adopt(library.load(folder)), linked=False, seconds=0.0, copied=copied)


async def _copy_disks(source: Machine, staging: Path, progress: Progress | None) -> tuple[list[Disk], int]:
    paths = source.paths
    chains = [(paths.resolve(d.path), d.format, [(paths.resolve(b.path), b.format) for b in d.backing])
              for d in source.config.disks]
    sizes = [images.info_now(top, fmt).virtual_size for top, fmt, _ in chains]  # qcow2, raw: from the header
    total, done = max(1, sum(sizes)), 0
    disks = []
    for n, (disk, (top, fmt, backing), size) in enumerate(zip(source.config.disks, chains, sizes)):
        target = staging / f"disk{n}.qcow2"

        def report(percent: float, before: int = done, size: int = size) -> None:
            if progress is not None:
                progress(min(100.0, 100.0 * (before + size * percent / 100.0) / total))

        await images.convert(images.pinned_spec(top, fmt, backing), top, target, report)
        done += size
        disks.append(dataclasses.replace(disk, path=target.name, format="qcow2", created=True, backing=[]))
    if progress is not None:
        progress(100.0)
    copied = sum((staging / disk.path).stat().st_blocks * 512 for disk in disks)  # as qemu-img's actual size
    return disks, copied


def _copy_firmware_state(source: Machine, staging: Path) -> None:
    """The UEFI variables (its NVRAM: boot entries) and the TPM's state, private as the originals."""
    paths = source.paths
    if paths.uefi_vars.is_file() and not paths.uefi_vars.is_symlink():
        shutil.copyfile(paths.uefi_vars, staging / paths.uefi_vars.name)
        os.chmod(staging / paths.uefi_vars.name, 0o600)
    if paths.tpm_state.is_dir() and not paths.tpm_state.is_symlink():
        target = staging / paths.tpm_state.name
        shutil.copytree(paths.tpm_state, target, symlinks=True)
        for folder, _subfolders, files in os.walk(target):
            os.chmod(folder, 0o700)
            for item in files:
                if not os.path.islink(os.path.join(folder, item)):
                    os.chmod(os.path.join(folder, item), 0o600)


def _clone_config(source: Machine, new_name: str, disks: list[Disk], keep_macs: bool) -> VmConfig:
    """The source's settings with a new name, uuid and (unless kept) MACs, the given disks, and
    every other file it names made absolute (a relative path would be read from the clone's folder)."""
    config, paths = source.config, source.paths
    taken = {nic.mac for nic in config.nics}
    nics: list[Nic] = list(config.nics) if keep_macs else []
    for nic in [] if keep_macs else config.nics:
        mac = random_mac()
        while mac in taken:
            mac = random_mac()
        taken.add(mac)
        nics.append(dataclasses.replace(nic, mac=mac))
    cdrom = config.cdrom
    if cdrom is not None and cdrom.iso:
        cdrom = dataclasses.replace(cdrom, iso=str(paths.resolve(cdrom.iso)))
    kernel = config.kernel
    if kernel is not None:
        kernel = KernelBoot(kernel=str(paths.resolve(kernel.kernel)),
                            initrd=str(paths.resolve(kernel.initrd)) if kernel.initrd else "", append=kernel.append)
    return dataclasses.replace(config, name=new_name, uuid=str(uuids.uuid4()), nics=nics, disks=disks,
                               cdrom=cdrom, kernel=kernel).validate()


def _check_not_running(source: Machine) -> None:
    """No QEMU of the source runs, nor holds one of its files (its pidfile may be gone)."""
    live = discovery.find_vm_qemu(source.uuid, source.entry.folder, fresh=True)
    if live is not None:
        raise StateError(f"cannot clone {source.name!r}: its QEMU (pid {live.pid}) is still running; stop it first")
    busy = discovery.holders_of([source.paths.resolve(d.path) for d in source.config.disks])
    if busy:
        path, pid = next(iter(busy.items()))
        raise DiskInUseError(f"cannot clone {source.name!r}: {path} is open in QEMU (pid {pid})")


# -- linked clones ---------------------------------------------------------------------------------


@dataclass
class _Link:
    """One writable disk of the source turned into a base with two overlays."""

    index: int
    top: Path  # the source's disk file, which becomes the source's overlay
    base: Path  # its data from now on, read-only
    overlay_tmp: Path  # the source's new overlay, until it takes the disk's name


async def _linked(manager: Engine, name: str, new_name: str, keep_macs: bool) -> CloneResult:
    library = manager.library
    # Library, then VM: the order delete takes them in. Both are held to the end, so no other
    # hvdesk takes the name between the source's rearrangement and the clone's publication.
    async with library.lock().held(f"creating VM {new_name!r}, a linked clone of {name!r}"):
        if library.exists(new_name):
            raise ConfigError(f"a VM named {new_name!r} already exists (names ignore case)")
        async with manager.operate(name, Action.CLONE) as source:
            _check_not_running(source)
            if snapshot_meta.read(source.entry.folder).snapshots:
                # Its snapshots live inside its disks, which become the shared bases: the source's
                # new overlays would hold none of them, and restoring one would fail.
                raise StateError(f"cannot make a linked clone of {source.name!r}: it has snapshots, which would "
                                 "stay behind in the shared base; make a full clone, or delete its snapshots first")
            await check_images(source, "clone")
            links = _plan_links(source)
            staging = library.staging_folder()
            try:
                clone_config = await _prepare_links(source, links, staging, new_name, keep_macs)
                _copy_firmware_state(source, staging)
                library.save(staging, clone_config)
            except BaseException:
                _undo_links(links)
                library.discard(staging)
                raise
            try:
                _commit_links(manager, source, links)
                folder = library.publish(staging, new_name)
            except BaseException:
                library.discard(staging)  # the source stays valid (and linked, with nobody else on its bases)
                manager.reload(source)
                raise
    return CloneResult(manager.adopt(library.load(folder)), linked=True, seconds=0.0,
                       bases=[link.base for link in links])


def _plan_links(source: Machine) -> list[_Link]:
    """Which disks become bases; refuses what cannot (a writable disk hvdesk did not create,
    or one outside the VM's folder)."""
    folder, token = source.entry.folder, uuids.uuid4().hex[:8]
    links = []
    for n, disk in enumerate(source.config.disks):
        top = source.paths.resolve(disk.path)
        if disk.readonly:
            continue  # nobody writes it: the clone reads it too, as it is
        why = ("was attached from elsewhere" if not disk.created else
               "is not directly in its folder" if top.parent != folder else
               "is a symbolic link" if top.is_symlink() else None)
        if why is not None:
            raise DiskError(f"cannot make a linked clone of {source.name!r}: its disk {top} {why}, and hvdesk "
                            "turns only the disks it made in a VM's folder into base images (make a full clone)")
        links.append(_Link(n, top, folder / f"base-{token}-{top.name}", folder / f".{top.name}.clone-{token}"))
    return links


async def _prepare_links(source: Machine, links: list[_Link], staging: Path, new_name: str,
                         keep_macs: bool) -> VmConfig:
    """Make the bases (second names of the disks: the source's vm.toml is not touched yet) and
    both overlays of each; returns the clone's config."""
    by_index = {link.index: link for link in links}
    disks = []
    for n, disk in enumerate(source.config.disks):
        below = [BackingImage(str(source.paths.resolve(b.path)), b.format) for b in disk.backing]
        link = by_index.get(n)
        if link is None:  # read-only: shared as it is
            disks.append(dataclasses.replace(disk, path=str(source.paths.resolve(disk.path)), created=False,
                                             backing=below))
            continue
        try:
            os.link(link.top, link.base)
        except OSError as exc:
            raise DiskError(f"cannot make a linked clone of {source.name!r}: cannot link {link.top} to "
                            f"{link.base.name} ({exc.strerror}); linked clones need a file system with hard "
                            "links (make a full clone)") from None
        size = (await images.info(link.top)).virtual_size
        await images.create_overlay(link.overlay_tmp, link.base.name, disk.format, size)
        target = staging / f"disk{n}.qcow2"
        await images.create_overlay(target, str(link.base), disk.format, size)
        disks.append(dataclasses.replace(disk, path=target.name, format="qcow2", created=True,
                                         backing=[BackingImage(str(link.base), disk.format), *below]))
    return _clone_config(source, new_name, disks, keep_macs)


def _undo_links(links: list[_Link]) -> None:
    """Before the commit: the disks still have their names; the overlays go, and so do the bases
    (each only while it is still the disk's second name)."""
    for link in links:
        with contextlib.suppress(OSError):
            link.overlay_tmp.unlink(missing_ok=True)
            if _same_file(link.base, link.top):
                link.base.unlink()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _commit_links(manager: Engine, source: Machine, links: list[_Link]) -> None:
    library: Library = manager.library
    folder, config = source.entry.folder, source.config
    by_index = {link.index: link for link in links}

    def with_disks(on_base: bool) -> VmConfig:
        disks = []
        for n, disk in enumerate(config.disks):
            link = by_index.get(n)
            if link is None:
                disks.append(disk)
            elif on_base:  # the base is the disk's data under its second name
                disks.append(dataclasses.replace(disk, path=link.base.name))
            else:
                disks.append(dataclasses.replace(disk, format="qcow2",
                                                 backing=[BackingImage(link.base.name, disk.format), *disk.backing]))
        return dataclasses.replace(config, disks=disks)

    library.save(folder, with_disks(on_base=True))
    for link in links:
        os.replace(link.overlay_tmp, link.top)
    library.save(folder, with_disks(on_base=False))
    for link in links:
        with contextlib.suppress(OSError):
            os.chmod(link.base, 0o400)  # written by nobody any more
    manager.reload(source)
