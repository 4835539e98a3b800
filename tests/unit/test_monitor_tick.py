"""The monitor's tick without QEMU: a stand-in Manager whose VMs change under the tick."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import QemuError
from hvdesk.core.storage import VmEntry
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.engine.states import VmState
from hvdesk.monitor import readers

MIB = 1024 * 1024


class StandInManager:
    def __init__(self, machines: list[Machine]) -> None:
        self._machines = machines
        self.on_qmp = lambda machine: None

    def machines(self) -> list[Machine]:
        return list(self._machines)

    @contextlib.asynccontextmanager
    async def qmp(self, machine):
        self.on_qmp(machine)
        raise QemuError("no QEMU here")
        yield  # an async generator, as the real one is


def running(folder: Path, name: str, pid: int) -> Machine:
    return Machine(VmEntry(folder / name, VmConfig(name=name)), state=VmState.RUNNING, pid=pid)


async def test_a_vm_that_stops_during_the_tick_is_skipped_not_read_as_pid_none(tmp_path, monkeypatch):
    first, second = running(tmp_path, "first", 1001), running(tmp_path, "second", 1002)
    manager = StandInManager([first, second])

    def second_stops(machine: Machine) -> None:  # while the first is sampled, the second's QEMU exits
        if machine is first:
            second.state, second.pid = VmState.STOPPED, None
    manager.on_qmp = second_stops
    asked = []

    def read_process(pid, tids):
        asked.append(pid)
        return 1.0, [], 4096
    monkeypatch.setattr(readers, "read_process", read_process)
    samples = await Monitor(manager).tick()
    assert asked == [1001] and list(samples) == ["first"]


class CountingSession:
    """A QMP session that answers the monitor's commands and writes down what it was asked. Each
    command waits until every VM of the tick has asked its first one: a monitor that sampled the
    VMs one after another would never get there (and time out)."""

    def __init__(self, log: list[tuple[str, str]], vm: str, everyone_asked: asyncio.Event, vms: int) -> None:
        self.log, self.vm, self.everyone_asked, self.vms = log, vm, everyone_asked, vms
        self.connected = True
        self.together: list[list[str]] = []  # the commands of each execute_many (one write each)

    async def execute_many(self, commands, timeout: float = 10.0):
        self.together.append([command for command, _ in commands])
        return [await self.execute(command, arguments) for command, arguments in commands]

    async def execute(self, command: str, arguments=None, timeout: float = 10.0):
        self.log.append((self.vm, command))
        if len({vm for vm, _ in self.log}) == self.vms:
            self.everyone_asked.set()
        await asyncio.wait_for(self.everyone_asked.wait(), 5)
        return {"query-cpus-fast": [{"cpu-index": 0, "thread-id": 1}], "qom-set": {}, "query-balloon": {"actual": 1},
                "qom-get": {"last-update": 1, "stats": {"stat-total-memory": 100 * MIB,
                                                        "stat-available-memory": 60 * MIB}},
                "query-blockstats": [{"node-name": "disk0", "stats": {"rd_bytes": 512, "wr_bytes": 0,
                                                                       "rd_operations": 1, "wr_operations": 0}}],
                }[command]


class SessionManager(StandInManager):
    @contextlib.asynccontextmanager
    async def qmp(self, machine):
        yield machine.session


async def test_two_qmp_commands_per_vm_per_tick_in_one_write_all_vms_at_once(tmp_path, monkeypatch):
    vms = 8
    machines = [running(tmp_path, f"vm{n}", 2000 + n) for n in range(vms)]
    log: list[tuple[str, str]] = []
    for machine in machines:
        machine.balloon = 256 * MIB  # watched: the balloon size comes from BALLOON_CHANGE events
    monkeypatch.setattr(readers, "read_process", lambda pid, tids: (1.0, [0.5] * len(tids), 4096))
    monitor = Monitor(SessionManager(machines))
    for tick in range(3):
        everyone_asked = asyncio.Event()
        for machine in machines:
            machine.session = CountingSession(log, machine.name, everyone_asked, vms)
        log.clear()
        samples = await monitor.tick()
        per_vm = {machine.name: [command for vm, command in log if vm == machine.name] for machine in machines}
        if tick == 0:  # the first tick also asks for the vCPU threads and turns the guest's stats on
            assert all(commands == ["query-cpus-fast", "qom-set", "query-blockstats", "qom-get"]
                       for commands in per_vm.values()), per_vm
        else:
            assert all(commands == ["query-blockstats", "qom-get"] for commands in per_vm.values()), per_vm
        # the two sent together, in one write
        assert all(m.session.together == [["query-blockstats", "qom-get"]] for m in machines)
        assert sorted(samples) == sorted(m.name for m in machines)
    sample = samples["vm3"]
    assert sample.guest_used == 40 * MIB and sample.balloon == 256 * MIB and sample.vcpus == [0.0]
