"""Save state: a running VM's RAM and devices written to a file next to it, QEMU ended, and the
next start resumes the guest where it was (as virsh save/restore).

The file is written by QEMU's own migration to a file descriptor hvdesk opens and hands over the
QMP socket (`getfd`, then `migrate fd:NAME`): no shell, no `exec:` migration, no path QEMU opens
itself. The VM is paused first, so the file is one consistent pass, and:
- the data goes to `.saved-state.part` (0600) and becomes `saved-state.bin` once QEMU says the
  migration completed and the file is on disk; QEMU then quits, and only then is
  `saved-state.json` written (the settings QEMU ran with, whether it was paused, the file's size).
  That file's presence is what makes the VM *saved* (engine/observe.py). A QEMU that ran on after
  a save can therefore never leave a stale state that a later start would resume over newer disks.
- a save that fails (a full disk, QEMU's error) or is interrupted removes the part file and lets
  the guest run again as it was.
- a start of a saved VM launches QEMU with the saved settings and `-incoming defer`, hands it the
  file (`migrate-incoming fd:NAME`), waits for the load, resumes the guest (unless it was saved
  paused) and removes the files. A file QEMU cannot load is kept and the VM stays saved;
  `--discard-saved-state` boots it afresh instead.

QEMU receives descriptors only over unix sockets, and QEMU 7.2 has no `file:` migration (8.2
added it): with the tcp transport (Windows) a VM cannot be saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, HvdeskError, QemuError, StateError
from hvdesk.core.storage import VmEntry, atomic_write, read_regular
from hvdesk.engine.actions import Action
from hvdesk.engine.guard import Guard
from hvdesk.engine.machine import Machine
from hvdesk.engine.registry import Registry
from hvdesk.engine.states import VmState
from hvdesk.engine.watcher import Watcher
from hvdesk.qemu.qmp import QmpSession
from hvdesk.qemu.vm_paths import VmPaths

FORMAT = 1
FD_NAME = "hvdesk-state"
MAX_BANDWIDTH = 1 << 40  # bytes/s: a file has no network to spare (QEMU's default caps at 128 MiB/s)
POLL = 0.05  # seconds between looks at the migration's progress
LOAD_TIMEOUT = 600.0  # seconds a resume may take to load the file
QEMU_MAGIC = b"QEVM"  # the first bytes of QEMU's migration stream
ACTIVE = ("setup", "active", "device", "pre-switchover", "cancelling", "wait-unplug")  # query-migrate's "status"


class Progress(NamedTuple):
    status: str  # QEMU's migration status: setup, active, completed, ...
    transferred: int  # bytes of RAM written so far
    total: int  # bytes of RAM
    elapsed: float  # seconds since the save began


class SaveResult(NamedTuple):
    machine: Machine
    path: str
    size: int  # bytes of the state file
    seconds: float


class SavedInfo(NamedTuple):
    config: VmConfig  # the settings the saved QEMU ran with: the resume must build the same devices
    paused: bool  # saved while paused: resumed paused
    saved_at: float
    size: int


ProgressCallback = Callable[[Progress], None]


def _discard_hint(name: str) -> str:
    return f"`hvdesk start {name} --discard-saved-state` boots it afresh instead (the saved state is lost)"


def read_info(machine: Machine) -> SavedInfo:
    """The saved state's description, checked: everything in the VM's folder is untrusted."""
    paths = machine.paths

    def bad(why: str) -> StateError:
        return StateError(f"the saved state of {machine.name!r} cannot be resumed: {why}; "
                          f"{_discard_hint(machine.name)}")

    try:
        data = json.loads(read_regular(paths.saved_state_info))
    except (OSError, ValueError) as exc:
        raise bad(f"{paths.saved_state_info} is unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"{paths.saved_state_info} is not a saved-state description hvdesk knows")
    paused, saved_at, size = data.get("paused"), data.get("saved_at"), data.get("size")
    if not (isinstance(paused, bool) and isinstance(saved_at, (int, float)) and type(size) is int and size > 0):
        raise bad(f"{paths.saved_state_info} is malformed")
    if not isinstance(data.get("config"), dict):
        raise bad(f"{paths.saved_state_info} has no settings")
    try:
        config = VmConfig.from_dict(data["config"]).validate()
    except (ConfigError, TypeError, ValueError) as exc:
        raise bad(f"its saved settings are invalid ({exc})") from None
    if config.uuid != machine.uuid:
        raise bad("it was saved by another VM (its uuid differs)")
    problem = _file_problem(paths, size)
    if problem:
        raise bad(problem)
    return SavedInfo(config, paused, float(saved_at), size)


def _file_problem(paths: VmPaths, size: int) -> str:
    """What is wrong with the state file itself (empty: nothing seen)."""
    try:
        found = os.lstat(paths.saved_state)
    except OSError as exc:
        return f"its state file is missing ({exc.strerror})"
    if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid():
        return f"{paths.saved_state} is not a plain file of this user"
    if found.st_size != size:
        return f"{paths.saved_state} has {found.st_size} bytes, {size} were saved (truncated or changed?)"
    return ""


def saved_view(machine: Machine, info: SavedInfo) -> Machine:
    """The VM as it was saved: its settings then, its folder and uuid now (what the resume launches)."""
    entry = machine.entry
    return Machine(VmEntry(entry.folder, info.config, stamp=entry.stamp, digest=entry.digest))


def discard(paths: VmPaths) -> None:
    """Remove a saved state (the description first: without it, the VM is no longer saved), or
    what a save cut short left."""
    for path in (paths.saved_state_info, paths.saved_state, paths.saved_state_part, _info_part(paths)):
        path.unlink(missing_ok=True)


def _info_part(paths: VmPaths) -> Path:
    return paths.saved_state_part.with_name(".saved-state.json.part")


class Saver:
    def __init__(self, registry: Registry, watcher: Watcher, guard: Guard,
                 quit_qemu: Callable[[Machine], Any]) -> None:
        self.registry = registry
        self.watcher = watcher
        self.guard = guard
        self._quit_qemu = quit_qemu  # Lifecycle.turn_off

    async def save(self, name: str, progress: ProgressCallback | None = None) -> SaveResult:
        """Write the VM's state to its folder and end its QEMU; the VM is then saved."""
        async with self.guard.operate(name, Action.SAVE) as machine:
            if machine.transport.kind != "unix":
                raise StateError(f"cannot save the state of {name!r}: it runs with the tcp transport, over which "
                                 "QEMU cannot receive the state file (saving needs the unix transport)")
            paths = machine.paths
            was_paused = machine.state == VmState.PAUSED
            run = machine.run
            config = run.config if run is not None and run.config else machine.config.to_dict()
            began = time.monotonic()
            paths.saved_state_part.unlink(missing_ok=True)  # a save killed half-way left it
            fd = os.open(paths.saved_state_part,
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                async with self.watcher.qmp(machine) as qmp:
                    try:
                        await _migrate_out(qmp, fd, was_paused, progress, began)
                    except BaseException:
                        await _undo(qmp, was_paused)
                        raise
                os.fsync(fd)
            except BaseException as exc:
                os.close(fd)
                paths.saved_state_part.unlink(missing_ok=True)
                if isinstance(exc, HvdeskError):
                    still = "paused" if was_paused else "running"
                    raise QemuError(f"could not save the state of {name!r}: {exc}; nothing was kept of it, "
                                    f"and the VM is still {still}") from None
                raise
            os.close(fd)
            # From here on the save completes even when interrupted: half a save would cost the guest.
            finishing = asyncio.ensure_future(self._keep(machine, was_paused, config))
            try:
                size = await asyncio.shield(finishing)
            except asyncio.CancelledError:
                await finishing
                raise
            return SaveResult(machine, str(paths.saved_state), size, time.monotonic() - began)

    async def _keep(self, machine: Machine, was_paused: bool, config: dict[str, Any]) -> int:
        """Make the written state the VM's saved state and end its QEMU; the file's size."""
        paths, name = machine.paths, machine.name
        size = paths.saved_state_part.stat().st_size
        described = _info_part(paths)
        try:  # (written now, while a full disk can still leave the VM running: a rename needs no room)
            atomic_write(described, json.dumps({"format": FORMAT, "paused": was_paused, "saved_at": time.time(),
                                                "size": size, "config": config}).encode())
        except OSError as exc:
            paths.saved_state_part.unlink(missing_ok=True)
            await _resume(self.watcher, machine, was_paused)
            raise QemuError(f"could not save the state of {name!r}: {exc.strerror} writing {described}; "
                            f"nothing was kept of it, and the VM is still {'paused' if was_paused else 'running'}"
                            ) from None
        os.replace(paths.saved_state_part, paths.saved_state)
        await self._quit_qemu(machine)  # QEMU first: it never runs on past the state a start resumes
        os.replace(described, paths.saved_state_info)  # now the VM is saved
        self.registry.set_state(machine, VmState.SAVED)
        return size


async def _migrate_out(qmp: QmpSession, fd: int, was_paused: bool, progress: ProgressCallback | None,
                       began: float) -> None:
    if not was_paused:
        await qmp.execute("stop")  # one consistent pass, as virsh save
    await qmp.pass_fd(fd, FD_NAME)
    await qmp.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    await qmp.execute("migrate", {"uri": f"fd:{FD_NAME}"})
    while True:
        info = await qmp.execute("query-migrate")
        status = str(info.get("status", "none")) if isinstance(info, dict) else "none"
        ram = info.get("ram") if isinstance(info, dict) else None
        if progress is not None:
            ram = ram if isinstance(ram, dict) else {}
            progress(Progress(status, int(ram.get("transferred", 0)), int(ram.get("total", 0)),
                              time.monotonic() - began))
        if status == "completed":
            return
        if status not in ACTIVE:
            why = info.get("error-desc", "") if isinstance(info, dict) else ""
            raise QemuError(f"QEMU's migration to the file {status}" + (f" ({why})" if why else ""))
        await asyncio.sleep(POLL)


async def _resume(watcher: Watcher, machine: Machine, was_paused: bool) -> None:
    """The guest runs again as before a save that completed but could not be kept."""
    if not was_paused:
        with contextlib.suppress(HvdeskError):
            async with watcher.qmp(machine) as qmp:
                await qmp.execute("cont")


async def _undo(qmp: QmpSession, was_paused: bool) -> None:
    """After a failed or interrupted save: no migration left running, the guest as it was."""
    with contextlib.suppress(HvdeskError):
        await qmp.execute("migrate_cancel")
        for _ in range(100):
            info = await qmp.execute("query-migrate")
            if not isinstance(info, dict) or info.get("status") not in ACTIVE:
                break
            await asyncio.sleep(POLL)
    with contextlib.suppress(HvdeskError):
        await qmp.execute("closefd", {"fdname": FD_NAME})  # if the migration never took it
    if not was_paused:
        with contextlib.suppress(HvdeskError):
            if (await qmp.execute("query-status")).get("status") != "running":
                await qmp.execute("cont")


async def restore(qmp: QmpSession, paths: VmPaths) -> None:
    """Load the saved state into a QEMU started with `-incoming defer` (and -S)."""
    try:
        fd = os.open(paths.saved_state, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise StateError(f"cannot open the saved state {paths.saved_state}: {exc.strerror}") from None
    try:
        if os.pread(fd, len(QEMU_MAGIC), 0) != QEMU_MAGIC:
            raise StateError(f"{paths.saved_state} is not a QEMU state file")
        await qmp.pass_fd(fd, FD_NAME)
    finally:
        os.close(fd)  # QEMU has its own copy
    await qmp.execute("migrate-incoming", {"uri": f"fd:{FD_NAME}"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOAD_TIMEOUT
    while True:
        info = await qmp.execute("query-migrate")
        status = str(info.get("status", "none")) if isinstance(info, dict) else "none"
        if status == "completed":
            return
        if status not in ACTIVE and status != "none":  # (none: QEMU has yet to begin reading)
            why = info.get("error-desc", "") if isinstance(info, dict) else ""
            raise QemuError(f"QEMU could not load it: migration {status}" + (f" ({why})" if why else ""))
        if loop.time() > deadline:
            raise QemuError(f"QEMU did not load it within {LOAD_TIMEOUT:g} s")
        await asyncio.sleep(POLL)
