"""The allocation controller's loop: every `interval` seconds the monitor's latest samples go
through the policy (hvdesk.control), and its decisions to the actuators (engine.resources). Each
decision is logged with its reason, whether it was done, and by whom (engine.decision_log).

It runs in the app and headless as `hvdesk agent`. Only one controller acts on a library at a
time: the one holding the control lock (`VMs/.controller.lock`); another one waits, tries again
each cycle, and says who acts meanwhile. A VM that stops, is killed, or loses QMP drops out of the
cycle (its samples stop); a VM whose QEMU restarted starts afresh in the policy. When a controller
that acted stops (the agent ends, the app closes, it is switched off), it gives every VM it
ballooned its full memory back: no one is left to give it back when the guest needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hvdesk.control import policy
from hvdesk.control.decisions import Decision, Kind
from hvdesk.control.inputs import MIB, Cpu, GuestMemory, HostState, PinMode, Vm, VmObservation, VmPolicySettings
from hvdesk.control.memory import MemoryPolicyConfig
from hvdesk.core.background import LoopTask
from hvdesk.core.control_settings import ControlSettings
from hvdesk.core.errors import HvdeskError
from hvdesk.core.filelock import FileLock
from hvdesk.core.paths import data_dir, make_private_dir
from hvdesk.engine import decision_log
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.qemu import affinity
from hvdesk.qemu.cpu_weight import Weights

if TYPE_CHECKING:  # `hvdesk decisions` reads the log without the monitor's numpy
    from hvdesk.engine.monitoring import Monitor
    from hvdesk.monitor.series import VmSample

log = logging.getLogger(__name__)
LOCK_FILE = ".controller.lock"
FRESH = 3.0  # a VM's latest sample counts when younger than this many monitor intervals
HISTORY = 500  # balloon targets kept per VM for the app's graph (30 min at a 4 s cycle)


@dataclass(frozen=True)
class Target:
    """A balloon target this controller set: when (monotonic seconds), the size (bytes), and the
    VM's floor then (bytes; None when the decision had none, as when the controller stops)."""

    time: float
    size: int
    floor: int | None


@dataclass
class CycleReport:
    """What one cycle did (for the app and `hvdesk agent`)."""

    acting: bool  # False: another controller holds the lock (see `holder`), or it is switched off
    holder: str = ""
    decisions: list[dict[str, object]] = field(default_factory=list)  # as logged
    vms: int = 0  # VMs the policy saw
    cpu_seconds: float = 0.0  # this process's CPU time for the cycle (policy + actuators)


class Controller:
    def __init__(self, manager: Manager, monitor: Monitor, settings: ControlSettings, who: str) -> None:
        self.manager = manager
        self.monitor = monitor
        self.settings = settings
        self.who = who  # "hvdesk agent", "the hvdesk app": shown to the other controllers
        self.state = policy.PolicyState()
        self.lock = FileLock(manager.library.root / LOCK_FILE, "the allocation controller")
        self.acting = False
        self.last: CycleReport | None = None
        self._pids: dict[str, int] = {}  # VM name -> the QEMU pid the policy's state is about
        self._ballooned: set[str] = set()  # VMs this controller shrank (given back when it stops)
        self._topology: tuple[Cpu, ...] | None = None
        self._listeners: list[Callable[[CycleReport], None]] = []
        self._loop_task = LoopTask()
        # VM name -> the balloon targets this controller set, oldest first (for the app's graph)
        self.targets: dict[str, deque[Target]] = {}

    def subscribe(self, listener: Callable[[CycleReport], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def policy_config(self) -> policy.PolicyConfig:
        pool = self.settings.pool_mib * MIB if self.settings.pool_mib else None
        return policy.PolicyConfig(memory=MemoryPolicyConfig(
            host_target=self.settings.host_target_percent / 100, pool=pool,
            stale_after=max(10.0, 3 * self.monitor.interval)))

    # -- the loop ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task.start(self._loop)

    async def stop(self) -> None:
        """End the loop; give back what this controller took, and let another controller act."""
        await self._loop_task.stop()
        await self.release()

    async def _loop(self) -> None:
        while True:
            try:
                await self.cycle()
            except Exception:  # a bug must not end the controller silently; the next cycle tries again
                log.exception("control cycle failed")
            await asyncio.sleep(self.settings.interval)

    async def release(self) -> None:
        """Give every VM this controller ballooned its full memory, then drop the lock."""
        if self.acting:
            records = []
            for name in sorted(self._ballooned):
                with contextlib.suppress(HvdeskError):
                    machine = self.manager.get(name)
                    if not (allows(Action.BALLOON, machine.state) and machine.config.balloon.enabled):
                        continue
                    full = machine.config.memory_mib * MIB
                    decision = Decision(time.monotonic(), name, Kind.BALLOON, full,
                                        f"the controller ({self.who}) stops: the VM gets all its memory back, "
                                        "as no one is left to give it back when the guest needs it")
                    records.append(await self._apply(decision, machine))
            self._write(records)
        self._ballooned.clear()
        self.state = policy.PolicyState()
        self._pids.clear()
        self.lock.release()
        self.acting = False

    async def cycle(self) -> CycleReport:
        """One control cycle on the monitor's latest samples."""
        cpu_before = time.process_time()
        report = await self._cycle()
        report.cpu_seconds = time.process_time() - cpu_before
        self.last = report
        for listener in list(self._listeners):
            listener(report)
        return report

    async def _cycle(self) -> CycleReport:
        if not self.settings.enabled:
            if self.acting:
                await self.release()
            return CycleReport(acting=False, holder="switched off")
        if not self.acting:
            make_private_dir(self.manager.library.root)
            self.acting = self.lock.try_acquire(f"acting as {self.who}")
            if not self.acting:
                return CycleReport(acting=False, holder=self.lock.holder() or "another hvdesk process")
        host_sample = self.monitor.host.latest
        if host_sample is None:
            return CycleReport(acting=True)
        machines = self._observed()
        vms = [vm for vm, _ in machines.values()]
        restarted = {name for name, (_, machine) in machines.items() if self._pids.get(name) != machine.pid}
        self.state = policy.forget(self.state, restarted | (set(self._pids) - set(machines)))
        self._pids = {name: machine.pid for name, (_, machine) in machines.items() if machine.pid is not None}
        self._ballooned &= set(machines)
        host = HostState(host_sample.time, host_sample.memory_total, host_sample.memory_used, self._cpus())
        decisions, self.state = policy.decide(host, vms, self.state, self.policy_config())
        records = [await self._apply(d, machines[d.vm][1] if d.vm else None) for d in decisions]
        self._write(records)
        return CycleReport(acting=True, decisions=records, vms=len(vms))

    # -- inputs --------------------------------------------------------------------------------------

    def _observed(self) -> dict[str, tuple[Vm, Machine]]:
        """The running VMs with a fresh sample, as the policy sees them."""
        now = time.monotonic()
        found: dict[str, tuple[Vm, Machine]] = {}
        for machine in self.manager.machines():
            if not allows(Action.BALLOON, machine.state) or machine.pid is None or machine.entry.config is None:
                continue
            series = self.monitor.series.get(machine.entry.folder)
            sample = series.latest if series is not None else None
            if sample is None or now - sample.time > FRESH * self.monitor.interval:
                continue
            found[machine.name] = (Vm(observe(machine, sample), self._settings_of(machine)), machine)
        return found

    def _settings_of(self, machine: Machine) -> VmPolicySettings:
        resources = machine.config.resources
        return VmPolicySettings(min_memory=resources.min_memory_mib * MIB, shares=resources.shares,
                                pin_mode=PinMode(self.pin_mode(resources.pin)), auto_balloon=resources.auto_balloon)

    def pin_mode(self, pin: str) -> str:
        """A VM's pin mode as the controller applies it ("default" resolved by the global setting)."""
        return self.settings.default_pin if pin == "default" else pin

    def _cpus(self) -> tuple[Cpu, ...]:
        if self._topology is None:
            self._topology = tuple(Cpu(c.id, c.core, c.cache, c.node) for c in affinity.host_topology())
        return self._topology

    # -- actions -------------------------------------------------------------------------------------

    async def _apply(self, decision: Decision, machine: Machine | None) -> dict[str, object]:
        error = ""
        try:
            if machine is not None:
                await self._act(decision, machine)
        except HvdeskError as exc:  # the VM stopped meanwhile, is busy, or the host refused
            error = str(exc)
            log.info("%s of %s not applied: %s", decision.kind, decision.vm, error)
        # A host-wide note (the budget cannot be met) has nothing to apply: it counts as done.
        applied = (machine is not None or decision.kind is Kind.BUDGET) and not error
        if applied and decision.kind is Kind.BALLOON and isinstance(decision.target, int):
            floor = decision.inputs.get("floor")
            history = self.targets.setdefault(decision.vm, deque(maxlen=HISTORY))
            history.append(Target(decision.time, decision.target, floor if isinstance(floor, int) else None))
        return decision_log.entry(decision, applied=applied, error=error,
                                  by=f"{self.who} (pid {os.getpid()})", wall_now=time.time(),
                                  mono_now=time.monotonic())

    async def _act(self, decision: Decision, machine: Machine) -> None:
        target = decision.target
        resources = self.manager.resources
        if decision.kind is Kind.BALLOON:
            assert isinstance(target, int)
            await resources.set_balloon(machine.name, target)
            if target < machine.config.memory_mib * MIB:
                self._ballooned.add(machine.name)
            else:
                self._ballooned.discard(machine.name)
        elif decision.kind is Kind.PIN:
            assert isinstance(target, dict)
            vcpus = [frozenset(int(c) for c in cpus) for cpus in target["vcpus"]]
            emulator = frozenset(int(c) for c in target["emulator"])
            await resources.place(machine.name, vcpus, emulator)
        elif decision.kind is Kind.SHARES:
            assert isinstance(target, dict)
            weights = Weights(int(target["cpu.weight"]), int(target["cpu.shares"]),
                              int(target["nice"]))
            await resources.weigh(machine.name, machine.config.resources.shares, weights)

    def _write(self, records: list[dict[str, object]]) -> None:
        by_vm: dict[str, list[dict[str, object]]] = {}
        for record in records:
            by_vm.setdefault(str(record["vm"]), []).append(record)
        for name, batch in by_vm.items():
            try:
                path = log_path(self.manager.get(name).entry.folder) if name else host_log_path()
                decision_log.append(path, batch)
            except (HvdeskError, OSError) as exc:  # a VM deleted meanwhile, a full disk
                log.warning("cannot log decisions of %s: %s", name or "the host", exc)


def observe(machine: Machine, sample: VmSample) -> VmObservation:
    """What the policy needs of one VM, from its config and its latest monitor sample."""
    config = machine.config
    guest = None
    if sample.guest_total is not None and sample.guest_used is not None and sample.guest_updated is not None:
        available = sample.guest_available if sample.guest_available is not None \
            else sample.guest_total - sample.guest_used
        guest = GuestMemory(sample.guest_updated, sample.guest_total, sample.guest_used, available)
    return VmObservation(
        name=machine.name, memory_max=config.memory_mib * MIB,
        balloon_actual=sample.balloon if config.balloon.enabled else None, guest=guest,
        swap_in_rate=sample.swap_in, major_fault_rate=sample.major_faults, vcpus=config.cpus,
        cpu_load=sample.cpu / 100 if sample.cpu is not None else None,
        balloon_counted_as_used=config.balloon.deflate_on_oom)


def log_path(folder: Path) -> Path:
    return folder / decision_log.VM_LOG


def host_log_path() -> Path:
    return data_dir() / decision_log.HOST_LOG


def holder(manager: Manager) -> str:
    """Who acts as the controller now ("" when none does)."""
    lock = FileLock(manager.library.root / LOCK_FILE, "the allocation controller")
    if not manager.library.root.is_dir():
        return ""
    try:
        if lock.try_acquire("checking"):
            lock.release()
            return ""
    except (HvdeskError, OSError):  # a read-only library (where no controller can take the lock either)
        return ""
    return lock.holder() or "another hvdesk process"
