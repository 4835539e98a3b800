"""What the app shows of the allocation controller, computed in the engine: the balloon targets a
controller set (and from another's log), memory given back, who acts, pin modes resolved, and
where a thread may run."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from hvdesk.control.decisions import Decision, Kind
from hvdesk.core.config import VmConfig
from hvdesk.core.control_settings import ControlSettings
from hvdesk.core.filelock import FileLock
from hvdesk.core.storage import VmEntry
from hvdesk.engine import control_status, decision_log, host
from hvdesk.engine import controller as control
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState

MIB = 1024 * 1024


def machine(folder: Path, name: str, memory: int = 512, pid: int | None = 100,
            state: VmState = VmState.RUNNING) -> Machine:
    return Machine(VmEntry(folder / name, VmConfig(name=name, memory_mib=memory)), state=state, pid=pid)


class StandIns:
    def __init__(self, root: Path, machines: list[Machine], balloons: dict[str, int | None]) -> None:
        self.library = SimpleNamespace(root=root)
        self._machines = {m.name: m for m in machines}
        self.set: list[tuple[str, int]] = []

        async def set_balloon(name: str, target: int) -> None:
            self.set.append((name, target))
        self.resources = SimpleNamespace(set_balloon=set_balloon)
        self.series = {m.entry.folder: SimpleNamespace(latest=SimpleNamespace(balloon=balloons.get(m.name)))
                       for m in machines}
        self.interval = 1.0

    def machines(self) -> list[Machine]:
        return list(self._machines.values())

    def get(self, name: str) -> Machine:
        return self._machines[name]


def test_given_back_sums_running_ballooned_vms(tmp_path):
    vms = [machine(tmp_path, "a"), machine(tmp_path, "b", memory=1024), machine(tmp_path, "full"),
           machine(tmp_path, "stopped", pid=None, state=VmState.STOPPED), machine(tmp_path, "new")]
    stand = StandIns(tmp_path, vms, {"a": 300 * MIB, "b": 700 * MIB, "full": 512 * MIB, "stopped": 100 * MIB})
    back = control_status.given_back(stand, stand)  # type: ignore[arg-type]
    assert back.bytes == (212 + 324) * MIB and back.vms == 2
    assert back.per_vm == {"a": 212 * MIB, "b": 324 * MIB, "full": 0}  # "new" has no sample yet
    state = control_status.Status("acting", "")
    assert control_status.status_line(state, back) == "Controller: acting (this app) — given back 536 MiB from 2 VMs"
    off = control_status.Status("off", "")
    assert control_status.status_line(off, control_status.GivenBack(0, 0)) == "Controller: off"


async def test_controller_keeps_the_targets_it_set_with_their_floor(tmp_path):
    vm = machine(tmp_path, "a")
    stand = StandIns(tmp_path, [vm], {})
    controller = control.Controller(stand, stand, ControlSettings(), who="test")  # type: ignore[arg-type]
    now = time.monotonic()
    await controller._apply(Decision(now, "a", Kind.BALLOON, 400 * MIB, "shrinks", {"floor": 300 * MIB}), vm)
    await controller._apply(Decision(now + 1, "a", Kind.BALLOON, 350 * MIB, "shrinks", {"floor": 310 * MIB}), vm)
    await controller._apply(Decision(now + 2, "a", Kind.BALLOON, 512 * MIB, "stops"), vm)
    assert [(t.size // MIB, t.floor and t.floor // MIB) for t in controller.targets["a"]] == \
        [(400, 300), (350, 310), (512, None)]
    assert control_status.latest_floor(controller.targets["a"]) == 310 * MIB
    assert controller.pin_mode("default") == "off" and controller.pin_mode("dedicated") == "dedicated"


def test_targets_from_another_controllers_log(tmp_path):
    wall, mono = time.time(), time.monotonic()
    records = [decision_log.entry(Decision(mono - 20, "a", Kind.BALLOON, 400 * MIB, "r", {"floor": 300 * MIB}),
                                  applied=True, error="", by="agent", wall_now=wall, mono_now=mono),
               decision_log.entry(Decision(mono - 10, "a", Kind.BALLOON, 380 * MIB, "r", {"floor": 300 * MIB}),
                                  applied=False, error="busy", by="agent", wall_now=wall, mono_now=mono),
               decision_log.entry(Decision(mono - 5, "a", Kind.SHARES, {"nice": 0}, "r"),
                                  applied=True, error="", by="agent", wall_now=wall, mono_now=mono)]
    decision_log.append(tmp_path / "log", records)
    found = control_status.targets_from_log(decision_log.read(tmp_path / "log"), wall, mono)
    assert len(found) == 1 and found[0].size == 400 * MIB and found[0].floor == 300 * MIB
    assert abs(found[0].time - (mono - 20)) < 0.01


def test_status_names_the_other_controller(tmp_path):
    stand = StandIns(tmp_path, [], {})
    controller = control.Controller(stand, stand, ControlSettings(), who="the hvdesk app")  # type: ignore[arg-type]
    assert control_status.status(controller).state == "waiting"
    other = FileLock(tmp_path / control.LOCK_FILE, "the allocation controller")
    assert other.try_acquire("acting as hvdesk agent")
    try:
        text = control.holder(stand)  # type: ignore[arg-type]
        assert control_status.who_acts(text) == f"hvdesk agent (pid {os.getpid()})"
        controller.last = control.CycleReport(acting=False, holder=text)
        assert control_status.status(controller).text() == f"hvdesk agent (pid {os.getpid()}) acts"
        controller.settings.enabled = False  # switched off: only the holder asked by the caller counts
        controller.last = control.CycleReport(acting=False, holder="switched off")
        assert control_status.status(controller).state == "off"
        assert control_status.status(controller, text).who == f"hvdesk agent (pid {os.getpid()})"
    finally:
        other.release()


def test_thread_placement_reads_each_threads_cpus():
    allowed = sorted(os.sched_getaffinity(0))
    placement = host.thread_placement([threading.get_native_id(), 2**22 + 12345])  # the second is no thread
    assert placement == {0: allowed}
    assert [c.id for c in host.host_topology()] == allowed


def test_guest_own_use_leaves_out_the_balloons_pages():
    import numpy as np

    from hvdesk.monitor.series import guest_own_use

    used = np.array([100.0, 300.0, np.nan, 200.0]) * MIB
    balloon = np.array([512.0, 300.0, 300.0, np.nan]) * MIB
    own = guest_own_use(used, balloon, 512 * MIB, True) / MIB
    assert own[0] == 100 and own[1] == 88 and np.isnan(own[2]) and own[3] == 200
    assert guest_own_use(used, balloon, 512 * MIB, False) is used


def test_holder_on_a_library_it_cannot_write(tmp_path, monkeypatch):
    from hvdesk.core.errors import HvdeskError

    def refused(self, doing=""):
        raise HvdeskError("cannot lock the allocation controller to change it: Read-only file system")
    monkeypatch.setattr(FileLock, "try_acquire", refused)
    assert control.holder(StandIns(tmp_path, [], {})) == ""  # type: ignore[arg-type]
