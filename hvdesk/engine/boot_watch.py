"""The second line behind the accelerator probe: a VM started under a hardware accelerator that
shows no sign of progress in its first minute gets a notice, and one click restarts it under TCG.

On some hosts KVM runs a test guest yet a real kernel then spins in its decompressor for minutes,
printing nothing (see FACTS.md). Its signature: a vCPU busy while the screen, the serial console
and the disks all stay still. A guest idling at a static screen (an installer waiting for input)
keeps its vCPUs idle, so it is not mistaken for one that is stuck.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hvdesk.core.errors import HvdeskError
from hvdesk.engine import editing
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState
from hvdesk.monitor import readers
from hvdesk.qemu.accel import ACCEL_NAMES

log = logging.getLogger(__name__)
HARDWARE = ("kvm", "hvf", "whpx")


@dataclasses.dataclass(frozen=True)
class WatchTimes:
    settle: float = 3.0  # firmware prints and clears the screen first: look from then on
    every: float = 2.0  # seconds between looks
    quiet: float = 15.0  # nothing moved for this long, with a busy vCPU: stuck
    give_up: float = 60.0  # after this long, whatever it does is up to the guest
    busy: float = 0.5  # CPU seconds per second of the QEMU process that count as spinning


@dataclasses.dataclass(frozen=True)
class Signs:
    """What a guest that makes progress changes: its screen, its serial output, its disks."""

    screen: str
    serial: int
    disk_ops: int


class BootWatch:
    """Follows the Manager; watches each VM that starts under one of `accelerators`."""

    def __init__(self, manager: Manager, *, accelerators: tuple[str, ...] = HARDWARE,
                 times: WatchTimes = WatchTimes()) -> None:
        self.manager = manager
        self.accelerators = accelerators
        self.times = times
        self.stalled: set[Path] = set()  # VM folders showing the notice now
        self._watching: dict[Path, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[Machine], None]] = []
        manager.subscribe(self._on_change)

    async def close(self) -> None:
        """Stop watching (the app is quitting)."""
        tasks = list(self._watching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watching.clear()

    def subscribe(self, listener: Callable[[Machine], None]) -> None:
        """Call `listener(machine)` when a VM is found stuck (its notice is then set)."""
        self._listeners.append(listener)

    def is_stalled(self, machine: Machine) -> bool:
        return machine.entry.folder in self.stalled and machine.state.active

    def _on_change(self, machine: Machine) -> None:
        folder = machine.entry.folder
        if not machine.state.active:
            self.stalled.discard(folder)
            task = self._watching.pop(folder, None)
            if task is not None:
                task.cancel()
            return
        run = machine.run
        if (machine.state == VmState.RUNNING and run is not None and run.accel in self.accelerators
                and folder not in self._watching and time.time() - run.started_at < self.times.give_up):
            self._watching[folder] = asyncio.ensure_future(self._watch(machine, run.started_at))

    async def _watch(self, machine: Machine, started_at: float) -> None:
        times = self.times
        await asyncio.sleep(max(0.0, started_at + times.settle - time.time()))
        last = await self._signs(machine)
        # A blinking cursor alternates between two screens: only a screen not seen lately is news.
        screens = collections.deque([last.screen] if last else [], maxlen=8)
        still_since, cpu_at_still = time.monotonic(), _cpu(machine)
        while time.time() - started_at < times.give_up and machine.state == VmState.RUNNING:
            await asyncio.sleep(times.every)
            now = await self._signs(machine)
            if now is None or last is None or (now.serial, now.disk_ops) != (last.serial, last.disk_ops) \
                    or now.screen not in screens:
                last, still_since, cpu_at_still = now, time.monotonic(), _cpu(machine)
                if now is not None and now.screen not in screens:
                    screens.append(now.screen)
                continue
            still = time.monotonic() - still_since
            cpu_now = _cpu(machine)
            if still >= times.quiet and cpu_now is not None and cpu_at_still is not None \
                    and (cpu_now - cpu_at_still) / still >= times.busy:
                self._stuck(machine, still)
                return

    def _stuck(self, machine: Machine, still: float) -> None:
        accel = machine.run.accel if machine.run else "?"
        self.stalled.add(machine.entry.folder)
        machine.notice = (f"No sign of progress under {ACCEL_NAMES.get(accel, accel)}: for {still:.0f} s a vCPU "
                          "has been busy while the screen, the serial console and the disks stayed still. "
                          "Some hosts accept a hardware accelerator that cannot really boot an OS; "
                          "restarting under TCG (software emulation, slower) works everywhere.")
        log.warning("%s: %s", machine.name, machine.notice)
        for listener in list(self._listeners):
            listener(machine)
        self.manager.reload(machine)  # tells the Manager's listeners, so faces show the notice

    async def _signs(self, machine: Machine) -> Signs | None:
        paths = machine.paths
        shot = paths.run_dir / "boot-watch.ppm"
        try:
            await self.manager.command(machine, "screendump", {"filename": str(shot)})
            screen = hashlib.sha256(shot.read_bytes()).hexdigest()
            stats = await self.manager.command(machine, "query-blockstats")
            ops = sum(d.get("stats", {}).get("rd_operations", 0) + d.get("stats", {}).get("wr_operations", 0)
                      for d in stats if isinstance(d, dict))
            serial = paths.serial_log.stat().st_size
        except (HvdeskError, OSError):
            return None  # it is going away, or busy: no verdict from this look
        finally:
            with contextlib.suppress(OSError):
                shot.unlink()
        return Signs(screen, serial, ops)


def _cpu(machine: Machine) -> float | None:
    return readers.read_process(machine.pid, [])[0] if machine.pid else None


async def restart_under_tcg(manager: Manager, name: str) -> Machine:
    """Turn the VM off, set its accelerator to TCG (kept for later starts), and start it again."""
    machine = manager.get(name)
    if machine.state.active:
        await manager.stop(name, force=True, timeout=0)
    config = dataclasses.replace(manager.get(name).config, accel="tcg")
    await editing.save_settings(manager, name, config)
    manager.get(name).notice = ""
    return await manager.start(name)
