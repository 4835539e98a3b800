"""The monitor's tick without QEMU: a stand-in Manager whose VMs change under the tick."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import QemuError
from hvdesk.core.storage import VmEntry
from hvdesk.engine.machine import Machine
from hvdesk.engine.monitoring import Monitor
from hvdesk.engine.states import VmState
from hvdesk.monitor import readers


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
