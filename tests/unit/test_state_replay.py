"""The state machine of a watching Manager, driven by QMP event sequences recorded from real QEMU
(tests/data/qmp-events, made by tests/fakes/record_qmp_events.py) and replayed through the fake
QMP server: the states and reasons its listeners see, in order. No guest boots."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import IO_ERROR
from tests.fakes.fake_qemu import FakeQemu

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "qmp-events"
NAME = "vm"


def recording(scenario: str) -> dict:
    return json.loads((RECORDINGS / f"{scenario}.json").read_text())


@dataclass
class Replayed:
    states: list[tuple[str, str]]  # (state, reason) as the listeners saw them, repeats folded
    events: list[tuple[str, dict]] = field(default_factory=list)  # as the QMP event hooks saw them
    pid: int = 0
    machine: Machine | None = None


Replay = Callable[..., Awaitable[Replayed]]


async def settled(machine: Machine, timeout: float = 10.0) -> None:
    """Until the watcher has seen QEMU gone (it waits for the process after the socket closes)."""
    deadline = time.monotonic() + timeout
    while machine.state.active:
        assert time.monotonic() < deadline, f"still {machine.state} after {timeout} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def replay(hv_home) -> AsyncIterator[Replay]:
    """Replays a recording into a watching Manager: the fake QEMU answers its attach with the
    recorded status, then sends the recorded events and, where QEMU ended, ends the same way."""
    maker = Manager()
    await maker.open()
    vm = await maker.create(CreateRequest(name=NAME, memory_mib=256))
    await maker.close()
    opened: list[FakeQemu | Manager] = []

    async def run(scenario: str, *, started_by: str | None = None) -> Replayed:
        recorded = recording(scenario)
        qemu = FakeQemu(vm, status=recorded["status_at_connect"])
        opened.append(await qemu.start(started_by=started_by))
        watcher = Manager(watch=True, poll_interval=60)  # events alone drive it: the poll never runs
        opened.append(watcher)
        seen: list[tuple[str, str]] = []
        result = Replayed(seen, pid=qemu.pid)
        watcher.subscribe(lambda m: seen.append((str(m.state), m.reason)))
        watcher.on_qmp_event(lambda _m, event, data: result.events.append((event, data)))
        await watcher.open()
        machine = result.machine = watcher.get(NAME)
        assert machine.session is not None, "the watcher did not attach to the fake's event socket"
        for step in recorded["steps"]:
            if "event" in step:
                await qemu.server.send_event(step["event"], step["data"])
            elif step.get("closed"):
                await (qemu.exit_cleanly() if recorded["exit"] == "clean" else qemu.crash())
        if recorded["exit"] is None:
            await watcher.command(machine, "query-status")  # answered after every event sent before it
        else:
            await settled(machine)
        result.states[:] = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
        return result

    yield run
    for thing in reversed(opened):
        await thing.close()


RUNNING = ("running", "")

EXPECTED = {
    "pause-resume": [RUNNING, ("paused", ""), RUNNING],
    "acpi-shutdown": [RUNNING, ("stopping", "the guest is powering off"), ("stopped", "")],
    "quit": [RUNNING, ("stopping", "turning off"), ("stopped", "")],
    "disk-full": [RUNNING, ("paused", IO_ERROR), ("stopping", "turning off"), ("stopped", "")],
    "host-reset": [RUNNING],  # a reset is not a state change: the guest runs on
    "guest-reset": [RUNNING],
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
async def test_recorded_sequence_moves_the_vm_through_these_states(replay, scenario):
    replayed = await replay(scenario)
    assert replayed.states == EXPECTED[scenario]
    recorded = [(s["event"], s["data"]) for s in recording(scenario)["steps"] if "event" in s]
    assert replayed.events == recorded  # every event reached the hooks, in order


async def test_a_reset_reaches_the_hooks_with_who_asked_for_it(replay):
    replayed = await replay("host-reset")
    reasons = [data["reason"] for event, data in replayed.events if event == "RESET"]
    assert reasons[0] == "host-qmp-system-reset" and set(reasons[1:]) == {"guest-reset"}


async def test_a_killed_qemu_is_aborted_with_its_pid_and_log(replay):
    replayed = await replay("killed")
    log = replayed.machine.paths.qemu_log
    assert replayed.states == [RUNNING, (
        "aborted", f"QEMU (pid {replayed.pid}) ended without a clean exit (killed or crashed); see {log}")]
    assert not replayed.machine.paths.run_dir.exists()


async def test_a_clean_exit_tidies_the_runtime_folder(replay):
    replayed = await replay("acpi-shutdown")
    assert not replayed.machine.paths.run_dir.exists()


async def test_a_vm_started_paused_is_paused_until_resumed(replay):
    replayed = await replay("start-paused-resume", started_by="start --paused")
    assert replayed.states == [("paused", "QEMU reports prelaunch"), RUNNING]


async def test_a_vm_another_hvdesk_is_starting_runs_once_that_start_resumes_it(replay):
    """The watcher attaches while another hvdesk's `start` has launched QEMU (prelaunch) and
    not yet sent `cont`: "starting". That start's `cont` then brings RESUME, as recorded."""
    replayed = await replay("start-paused-resume", started_by="start")
    assert replayed.states == [("starting", ""), RUNNING]


def test_every_recording_is_replayed():
    recorded = {path.stem for path in RECORDINGS.glob("*.json")}
    assert recorded == set(EXPECTED) | {"killed", "start-paused-resume"}
