"""The monitor: one sampling tick for all running VMs and the host, feeding the series that the
graphs, `hvdesk stats`/`top` and (later) the allocation controller read.

Per VM and tick: psutil for the QEMU process and its vCPU threads, and two QMP commands on one
connection, in one write (the balloon's guest stats, block stats); the balloon size comes from
BALLOON_CHANGE events when the Manager watches, else from query-balloon (in the same write). A
tick that overruns the interval makes the next one skip, with a log line; ticks never queue up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.background import LoopTask
from hvdesk.core.errors import HvdeskError
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.monitor import readers
from hvdesk.monitor.series import DEFAULT_CAPACITY, HostSeries, VmReading, VmSample, VmSeries
from hvdesk.qemu.argv import BALLOON_ID

if TYPE_CHECKING:
    from hvdesk.qemu.qmp import QmpSession

log = logging.getLogger(__name__)
MIN_INTERVAL, MAX_INTERVAL = 0.5, 10.0
MIB = 1024 * 1024


class Monitor:
    def __init__(self, manager: Manager, interval: float = 1.0, capacity: int = DEFAULT_CAPACITY) -> None:
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise HvdeskError(f"sampling interval {interval:g} s is outside {MIN_INTERVAL:g}–{MAX_INTERVAL:g} s")
        self.manager = manager
        self.interval = interval
        self.capacity = capacity
        self.series: dict[Path, VmSeries] = {}
        self.host = HostSeries(capacity)
        self.dropped_ticks = 0
        self.last_tick_cpu = 0.0  # CPU seconds the last tick cost this process
        self.last_tick_vms = 0
        self._vcpus: dict[Path, tuple[int, list[int]]] = {}  # folder -> (pid, vCPU thread ids)
        self._listeners: list[Callable[[], None]] = []
        self._loop_task = LoopTask()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every tick."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def series_of(self, machine: Machine) -> VmSeries:
        found = self.series.get(machine.entry.folder)
        if found is None:
            found = self.series[machine.entry.folder] = VmSeries(self.capacity)
        return found

    def vcpu_threads(self, machine: Machine) -> list[int]:
        """The host thread ids of a running VM's vCPUs, in vCPU order, as the last tick knew them
        (empty before its first tick, or when its QEMU has changed since)."""
        known = self._vcpus.get(machine.entry.folder)
        return list(known[1]) if known is not None and known[0] == machine.pid else []

    def start(self) -> None:
        self._loop_task.start(self._loop)

    async def stop(self) -> None:
        await self._loop_task.stop()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            await self.tick()
            deadline += self.interval
            late = loop.time() - deadline
            if late > 0:  # the tick overran: skip the ticks it ate instead of running them back to back
                skipped = int(late // self.interval) + 1
                self.dropped_ticks += skipped
                deadline += skipped * self.interval
                log.info("sampling tick took %.0f ms; dropped %d tick(s)", (late + self.interval) * 1000, skipped)
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def tick(self) -> dict[str, VmSample]:
        """Sample every running VM and the host once; returns {VM name: sample}."""
        cpu_before = time.process_time()
        live = [m for m in self.manager.machines()
                if allows(Action.SAMPLE, m.state) and m.pid is not None]
        samples = {}
        # All VMs at once: their QMP round trips overlap, so the loop wakes a few times a tick
        # for all the replies instead of a few times per command.
        readings = await asyncio.gather(*(self._read(machine) for machine in live))
        for machine, reading in zip(live, readings, strict=True):
            if reading is not None:
                samples[machine.name] = self.series_of(machine).record(reading)
        committed = sum(m.config.memory_mib * MIB for m in live if m.entry.config is not None)
        self.host.record(readers.read_host(committed))
        self.last_tick_cpu, self.last_tick_vms = time.process_time() - cpu_before, len(live)
        for listener in list(self._listeners):
            listener()
        return samples

    async def _read(self, machine: Machine) -> VmReading | None:
        pid = machine.pid
        if pid is None:  # it stopped while an earlier VM of this tick was sampled
            return None
        reading = VmReading(time=time.monotonic(), pid=pid)
        try:
            async with self.manager.qmp(machine) as qmp:
                tids = await self._vcpu_threads(machine, pid, qmp)
                commands: list[tuple[str, dict[str, Any] | None]] = [("query-blockstats", None)]
                balloon = machine.config.balloon.enabled
                if balloon:
                    commands.append(("qom-get", {"path": f"/machine/peripheral/{BALLOON_ID}",
                                                 "property": "guest-stats"}))
                    if machine.balloon is None or machine.session is None:
                        commands.append(("query-balloon", None))
                # in one write: each write wakes QEMU, and its send() is the dearest part of a command
                replies = await qmp.execute_many(commands)
                reading.disk = readers.sum_blockstats(replies[0])
                if balloon:
                    reading.guest = readers.parse_guest_stats(replies[1])
                    reading.guest_updated = readers.guest_stats_time(replies[1], time.time(), time.monotonic())
                    if len(replies) > 2:
                        machine.balloon = replies[2]["actual"]
                    reading.balloon = machine.balloon
        except HvdeskError as exc:  # it stopped between listing and asking, or QEMU is hung
            log.debug("sampling %s: %s", machine.name, exc)
            tids = self._vcpus.get(machine.entry.folder, (pid, []))[1]
        reading.cpu_seconds, reading.vcpu_seconds, reading.rss = readers.read_process(pid, tids)
        if reading.cpu_seconds is None:
            return None
        return reading

    async def _vcpu_threads(self, machine: Machine, pid: int, qmp: QmpSession) -> list[int]:
        """vCPU thread ids (asked once per QEMU process), and turn on the guest's memory stats."""
        known = self._vcpus.get(machine.entry.folder)
        if known is not None and known[0] == pid:
            return known[1]
        cpus = await qmp.execute("query-cpus-fast")
        tids = [cpu["thread-id"] for cpu in sorted(cpus, key=lambda c: c["cpu-index"])]
        if machine.config.balloon.enabled:
            await qmp.execute("qom-set", {"path": f"/machine/peripheral/{BALLOON_ID}",
                                          "property": "guest-stats-polling-interval",
                                          "value": max(1, round(self.interval))})
        self._vcpus[machine.entry.folder] = (pid, tids)
        return tids
