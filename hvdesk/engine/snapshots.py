"""A VM's snapshots: take, list, restore, delete; each change through the guard.

The images hold them (qcow2 internal snapshots, tag `hvdesk-<id>`): offline through `qemu-img
snapshot`, live through QMP's snapshot-save / snapshot-load / snapshot-delete jobs, whose saved
state holds the RAM and the devices (a TPM's too). hvdesk's own record of them, with the settings
of the moment, is `snapshots.json` (core/snapshot_meta.py); restoring one restores its settings.

- take: a running VM's live (RAM, devices, disks; it runs on after a short stop), a stopped one's
  offline (disks, NVRAM, and a copy of the TPM's state). Never while paused, starting or stopping.
- restore: a stopped-state snapshot needs the VM stopped. A running-state one loads into the
  running QEMU when that has the snapshot's hardware, else into a fresh QEMU started paused for it
  (the running one, if any, is turned off first: its state is what the restore discards).
- delete: from every image; the snapshot's children hang from its parent then.
- describe: a new description (the record only; any state).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvdesk.core import snapshot_meta as meta
from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, DiskError, DiskInUseError, HvdeskError, NotFoundError, StateError
from hvdesk.core.paths import make_private_dir
from hvdesk.core.snapshot_meta import Snapshot, SnapshotTree
from hvdesk.core.storage import remove_tree
from hvdesk.engine import runtime
from hvdesk.engine import snapshot_images as held
from hvdesk.engine.actions import Action
from hvdesk.engine.guard import Guard
from hvdesk.engine.lifecycle import Lifecycle
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.states import VmState
from hvdesk.engine.watcher import Watcher
from hvdesk.qemu import images, jobs
from hvdesk.qemu.qmp import QmpSession

JOB_TIMEOUT = 900.0  # seconds a snapshot job may take (writing or reading many GiB of RAM)
# Settings that make no difference to the hardware a saved RAM state fits.
_NOT_HARDWARE = ("schema", "name", "notes", "resources", "install")


@dataclass
class Done:
    """What a snapshot operation did, for the faces to say."""

    machine: Machine
    snapshot: Snapshot
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Snapshots:
    def __init__(self, registry: Registry, watcher: Watcher, guard: Guard, lifecycle: Lifecycle) -> None:
        self.registry = registry
        self.watcher = watcher
        self.guard = guard
        self.lifecycle = lifecycle

    def tree(self, name: str) -> tuple[Machine, SnapshotTree]:
        """The VM's snapshots (reading only: no lock)."""
        machine = self.registry.get(name)
        return machine, meta.read(machine.entry.folder)

    def thumbnail(self, machine: Machine, snap: Snapshot) -> Path | None:
        path = _extras(machine) / f"{snap.id}.png"
        return path if snap.thumbnail and path.is_file() else None

    # -- take ------------------------------------------------------------------------------------

    async def take(self, name: str, snap_name: str, description: str = "") -> Done:
        meta.validate_snapshot_name(snap_name)
        meta.check_description(description)
        started = time.monotonic()
        async with self.guard.operate(name, Action.SNAPSHOT_TAKE) as machine:
            folder = machine.entry.folder
            tree = meta.read(folder)
            if tree.has_name(snap_name):
                raise ConfigError(f"{machine.name!r} already has a snapshot named {tree.find(snap_name).name!r} "
                                  "(names ignore case)")
            if len(tree.snapshots) >= meta.MAX_SNAPSHOTS:
                raise ConfigError(f"{machine.name!r} has {meta.MAX_SNAPSHOTS} snapshots, the most hvdesk keeps; "
                                  "delete some first")
            live = machine.state == VmState.RUNNING
            holders, notice = await held.holders_for_new(machine, live=live)
            snap = Snapshot(id=meta.new_id(), name=snap_name, time=time.time(), state="running" if live else "stopped",
                            config=_settings_now(machine, live), images=[h.key for h in holders], parent=tree.current,
                            description=description)
            if live:
                await self._take_live(machine, snap, holders)
            else:
                await self._take_offline(machine, snap, holders)
            try:
                meta.write(folder, SnapshotTree([*tree.snapshots, snap], snap.id))
            except BaseException:
                with contextlib.suppress(HvdeskError, OSError):
                    await self._drop(machine, snap, holders, live=live)
                raise
            return Done(machine, snap, [notice] if notice else [], time.monotonic() - started)

    async def _take_live(self, machine: Machine, snap: Snapshot, holders: list[held.Holder]) -> None:
        snap.thumbnail = await self._screen(machine, snap)
        try:
            async with self.watcher.qmp(machine) as qmp:
                await jobs.run_job(qmp, "snapshot-save", {"tag": snap.tag, "vmstate": holders[0].node,
                                                          "devices": [h.node for h in holders]}, timeout=JOB_TIMEOUT)
        except BaseException:
            _remove_extras(machine, snap)
            raise
        finally:
            await self._settle(machine)

    async def _screen(self, machine: Machine, snap: Snapshot) -> bool:
        """A thumbnail of the running VM's screen; False where it has none (no display) or it failed."""
        from hvdesk.console.thumbnail import thumbnail

        config = machine.config
        if config.display.vga == "none":
            return False
        folder = _extras(machine)
        dump = folder / f".{snap.id}.ppm"
        try:
            make_private_dir(folder)
            await self.watcher.command(machine, "screendump", {"filename": str(dump)})
            png = await asyncio.to_thread(lambda: thumbnail(dump.read_bytes()))
            _write_private(folder / f"{snap.id}.png", png)
            return True
        except (HvdeskError, OSError):
            return False
        finally:
            dump.unlink(missing_ok=True)

    async def _take_offline(self, machine: Machine, snap: Snapshot, holders: list[held.Holder]) -> None:
        done: list[held.Holder] = []
        try:
            for holder in holders:
                await images.snapshot(holder.path, "create", snap.tag)
                done.append(holder)
            tpm = machine.paths.tpm_state
            if machine.config.tpm and tpm.is_dir():
                make_private_dir(_extras(machine))
                await asyncio.to_thread(shutil.copytree, tpm, _extras(machine) / f"{snap.id}-tpm", symlinks=True)
                snap.tpm = True
        except BaseException as exc:
            for holder in done:
                with contextlib.suppress(HvdeskError):
                    await images.snapshot(holder.path, "delete", snap.tag)
            _remove_extras(machine, snap)
            if isinstance(exc, DiskInUseError):
                holder_vm = self.registry.holder_of(done[-1].path if done else holders[0].path, exclude=machine)
                raise DiskInUseError(f"cannot take a snapshot of {machine.name!r}: {exc}"
                                     + (f" (VM {holder_vm!r} uses it)" if holder_vm else "")) from None
            raise

    # -- restore -----------------------------------------------------------------------------------

    async def restore(self, name: str, snap_name: str) -> Done:
        started = time.monotonic()
        async with self.guard.operate(name, Action.SNAPSHOT_RESTORE) as machine:
            tree = meta.read(machine.entry.folder)
            snap = _find(machine, tree, snap_name)
            target = held.restore_config(machine, snap)
            holders, _ = held.holders_of(machine, snap)
            notices: list[str] = []
            if not snap.ram:
                await self._restore_offline(machine, snap, holders, target)
            elif machine.state == VmState.RUNNING and _same_hardware(machine, target):
                await self._load_in_place(machine, snap, holders)
                self._save_config(machine, target)
            else:
                if machine.state == VmState.RUNNING:
                    notices.append(f"turned {machine.name!r} off and started it again with the snapshot's settings "
                                   "(its hardware differed from the running VM's)")
                await self._load_in_new_qemu(machine, snap, holders, target)
            meta.write(machine.entry.folder, SnapshotTree(tree.snapshots, snap.id))
            return Done(machine, snap, notices, time.monotonic() - started)

    async def _restore_offline(self, machine: Machine, snap: Snapshot, holders: list[held.Holder],
                               target: VmConfig) -> None:
        if machine.state.active:
            raise StateError(f"snapshot {snap.name!r} was taken while {machine.name!r} was stopped: restoring it "
                             f"needs {machine.name!r} stopped; stop it first")
        await held.check_tags_offline(machine, snap, holders)
        for holder in holders:
            await images.snapshot(holder.path, "apply", snap.tag)
        if snap.tpm:
            copy = _extras(machine) / f"{snap.id}-tpm"
            if copy.is_dir():
                await asyncio.to_thread(_replace_tree, copy, machine.paths.tpm_state)
        self._save_config(machine, target)
        runtime.clear_aborted(machine.paths)  # the disks are as they were when it was stopped cleanly
        self.registry.set_state(machine, VmState.STOPPED)

    async def _load_in_place(self, machine: Machine, snap: Snapshot, holders: list[held.Holder]) -> None:
        """Load into the running QEMU (the job stops the vCPUs and starts them again)."""
        try:
            async with self.watcher.qmp(machine) as qmp:
                await _check_tags_live(qmp, machine, snap, holders)
                await jobs.run_job(qmp, "snapshot-load", _load_arguments(snap, holders), timeout=JOB_TIMEOUT)
        finally:
            await self._settle(machine)
        if machine.state != VmState.RUNNING:
            raise StateError(f"loaded snapshot {snap.name!r}, but {machine.name!r} is {machine.state} "
                             f"({machine.reason or 'QEMU did not resume it'})")

    async def _load_in_new_qemu(self, machine: Machine, snap: Snapshot, holders: list[held.Holder],
                                target: VmConfig) -> None:
        """Start QEMU paused with the snapshot's settings, load the snapshot, let it run. A failure
        leaves the VM stopped with its settings as they were."""
        if machine.state == VmState.RUNNING:
            await self.lifecycle.force_off_held(machine)
        await held.check_tags_offline(machine, snap, holders)
        before = machine.config
        self._save_config(machine, target)
        try:
            await self.lifecycle.start_held(machine, paused=True)
            async with self.watcher.qmp(machine) as qmp:
                await jobs.run_job(qmp, "snapshot-load", _load_arguments(snap, holders), timeout=JOB_TIMEOUT)
                await qmp.execute("cont")
            self.registry.set_state(machine, VmState.RUNNING)
        except BaseException:
            if machine.state.active:
                with contextlib.suppress(HvdeskError):
                    await self.lifecycle.force_off_held(machine)
            self._save_config(machine, before)
            raise

    # -- delete --------------------------------------------------------------------------------------

    async def delete(self, name: str, snap_name: str) -> Done:
        started = time.monotonic()
        async with self.guard.operate(name, Action.SNAPSHOT_DELETE) as machine:
            tree = meta.read(machine.entry.folder)
            snap = _find(machine, tree, snap_name)
            holders, missing = held.holders_of(machine, snap)
            live = machine.state == VmState.RUNNING
            await self._drop(machine, snap, holders, live=live)
            meta.write(machine.entry.folder, tree.without(snap))
            notices = [f"left its data in {key} (no longer part of the VM)" for key in missing]
            return Done(machine, snap, notices, time.monotonic() - started)

    async def _drop(self, machine: Machine, snap: Snapshot, holders: list[held.Holder], *, live: bool) -> None:
        """Delete `snap` from its images (those that have it) and its thumbnail and TPM copy."""
        if live:
            async with self.watcher.qmp(machine) as qmp:
                tags = held.tags_by_node(await qmp.execute("query-named-block-nodes", {"flat": True}))
                nodes = [h.node for h in holders if snap.tag in tags.get(h.node, set())]
                if nodes:
                    await jobs.run_job(qmp, "snapshot-delete", {"tag": snap.tag, "devices": nodes},
                                       timeout=JOB_TIMEOUT)
        else:
            for holder in holders:
                if holder.path.is_file() and snap.tag in await images.snapshot_tags(holder.path):
                    await images.snapshot(holder.path, "delete", snap.tag)
        _remove_extras(machine, snap)

    # -- describe ------------------------------------------------------------------------------------

    async def describe(self, name: str, snap_name: str, description: str) -> Done:
        """Change a snapshot's description (hvdesk's record only: the images are not touched, so
        any state of the VM allows it)."""
        meta.check_description(description)
        started = time.monotonic()
        async with self.guard.operate(name, Action.EDIT) as machine:
            tree = meta.read(machine.entry.folder)
            snap = _find(machine, tree, snap_name)
            changed = dataclasses.replace(snap, description=description)
            meta.write(machine.entry.folder,
                       SnapshotTree([changed if s is snap else s for s in tree.snapshots], tree.current))
            return Done(machine, changed, [], time.monotonic() - started)

    # -- getting disks ready ---------------------------------------------------------------------------

    async def convert_disk(self, name: str, index: int) -> tuple[Machine, Path, Path, bool]:
        """Copy a stopped VM's disk `index` into a new qcow2 image that takes its place: (machine,
        old file, new file, whether the old file was removed: only one hvdesk created for this VM,
        in its folder, that no other VM uses)."""
        async with self.guard.operate(name, Action.EDIT_DISKS) as machine:
            source, target = held.converted_disk(machine, index)
            disk = machine.config.disks[index]
            await images.convert_format(source, target, disk.format)
            disks = list(machine.config.disks)
            disks[index] = dataclasses.replace(disk, path=target.name, format="qcow2", created=True)
            try:
                self._save_config(machine, dataclasses.replace(machine.config, disks=disks))
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            removable = (disk.created and source.parent == machine.entry.folder
                         and self.registry.holder_of(source, exclude=machine) is None)
            if removable:
                source.unlink(missing_ok=True)
            return machine, source, target, removable

    async def keep_in_snapshots(self, name: str, index: int, keep: bool) -> Machine:
        """Mark disk `index` as held by the VM's snapshots, or left out of them."""
        async with self.guard.operate(name, Action.EDIT_DISKS) as machine:
            if not 0 <= index < len(machine.config.disks):
                raise ConfigError(f"{machine.name!r} has no disk number {index}")
            disk = machine.config.disks[index]
            if keep and disk.format != "qcow2":
                raise DiskError(f"{machine.name!r}'s {held.disk_label(machine, index)} is {disk.format}, which cannot "
                                "hold snapshots; convert it to qcow2 first")
            disks = list(machine.config.disks)
            disks[index] = dataclasses.replace(disk, in_snapshots=keep)
            self._save_config(machine, dataclasses.replace(machine.config, disks=disks))
            return machine

    # -- helpers --------------------------------------------------------------------------------------

    def _save_config(self, machine: Machine, config: VmConfig) -> None:
        """vm.toml as the engine writes it (validated, atomic), under the guard the caller holds."""
        self.registry.library.save(machine.entry.folder, config.validate())
        self.registry.reload(machine)

    async def _settle(self, machine: Machine) -> None:
        """The VM's state as QEMU says it after a job (the app's watched session also hears its
        STOP and RESUME events, which may pass through paused)."""
        with contextlib.suppress(HvdeskError):
            status = await self.watcher.command(machine, "query-status")
            from hvdesk.engine.observe import state_of

            self.registry.set_state(machine, *state_of(machine, status["status"]))


def _find(machine: Machine, tree: SnapshotTree, name: str) -> Snapshot:
    try:
        return tree.find(name)
    except NotFoundError:
        known = ", ".join(repr(s.name) for s in tree.snapshots[-5:])
        raise NotFoundError(f"{machine.name!r} has no snapshot named {name!r}"
                            + (f" (it has {known}{' and more' if len(tree.snapshots) > 5 else ''})" if known
                               else " (it has none)")) from None


def _settings_now(machine: Machine, live: bool) -> dict[str, Any]:
    """The settings a snapshot records: a running VM's are those its QEMU was started with (its
    saved RAM state fits them), with what a running VM takes at once (name, notes, the CD's
    medium, the controller's settings) as saved since; a stopped VM's are its saved ones."""
    saved = machine.config.to_dict()
    started = machine.run.config if live and machine.run is not None else None
    if not started:
        return saved
    settings = {**started, **{k: saved[k] for k in _NOT_HARDWARE if k in saved}}
    if isinstance(settings.get("cdrom"), dict) and isinstance(saved.get("cdrom"), dict):
        settings["cdrom"] = {**settings["cdrom"], "iso": saved["cdrom"].get("iso", "")}
    try:
        VmConfig.from_dict(settings)
    except ConfigError:  # (an older hvdesk's start): the saved ones, as for a stopped VM
        return saved
    return settings


def _load_arguments(snap: Snapshot, holders: list[held.Holder]) -> dict[str, Any]:
    return {"tag": snap.tag, "vmstate": holders[0].node, "devices": [h.node for h in holders]}


async def _check_tags_live(qmp: QmpSession, machine: Machine, snap: Snapshot, holders: list[held.Holder]) -> None:
    """A failed load leaves the guest stopped half-loaded: make sure every image has the snapshot first."""
    tags = held.tags_by_node(await qmp.execute("query-named-block-nodes", {"flat": True}))
    for holder in holders:
        if snap.tag not in tags.get(holder.node, set()):
            raise StateError(f"snapshot {snap.name!r} of {machine.name!r} is missing from its {holder.label} "
                             "(changed outside hvdesk?); it cannot be restored")


def _same_hardware(machine: Machine, target: VmConfig) -> bool:
    """Whether the running QEMU was started with the hardware `target` describes (then a saved RAM
    state of `target` loads into it)."""
    if machine.run is None or not machine.run.config:
        return False
    return _hardware(machine.run.config) == _hardware(target.to_dict())


def _hardware(config: dict[str, Any]) -> dict[str, Any]:
    found = {k: v for k, v in config.items() if k not in _NOT_HARDWARE}
    if isinstance(found.get("cdrom"), dict):
        found["cdrom"] = {k: v for k, v in found["cdrom"].items() if k != "iso"}  # the medium is not hardware
    found["disks"] = [{k: d.get(k) for k in ("path", "format", "bus", "readonly")}
                      for d in found.get("disks", []) if isinstance(d, dict)]
    return found


def _extras(machine: Machine) -> Path:
    return machine.entry.folder / meta.SNAPSHOT_DIR


def _remove_extras(machine: Machine, snap: Snapshot) -> None:
    folder = _extras(machine)
    (folder / f"{snap.id}.png").unlink(missing_ok=True)
    copy = folder / f"{snap.id}-tpm"
    if copy.is_dir() and not copy.is_symlink():
        remove_tree(copy, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _replace_tree(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`: copied beside it first, then swapped in by renames."""
    fresh = target.with_name(f".{target.name}.restoring")
    old = target.with_name(f".{target.name}.old")
    for leftover in (fresh, old):
        if leftover.exists():
            remove_tree(leftover, ignore_errors=True)
    shutil.copytree(source, fresh, symlinks=True)
    if target.exists():
        os.rename(target, old)
    os.rename(fresh, target)
    remove_tree(old, ignore_errors=True)

