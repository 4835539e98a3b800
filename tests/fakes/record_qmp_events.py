"""Record what a real QEMU sends on a watcher's QMP socket in a few lifecycle scenarios, into
tests/data/qmp-events/<scenario>.json, for the state-machine tests that replay them through the
fake QMP server (tests/fakes/qmp_server.py).

    .venv/bin/python -m tests.fakes.record_qmp_events [SCENARIO...]

Each scenario boots the tiny test guest under TCG in a private library, holds the VM's event
socket (qmp.sock) the way a watching Manager does, and drives the VM like another hvdesk process
would (a CLI-style Manager on the command socket, the guest's own console, a signal). The
disk-error scenario mounts a 2 MiB tmpfs, so it needs root or passwordless sudo. Recordings are
reviewed as diffs and committed; re-record when QEMU's behaviour worth following changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hvdesk.console.keys import keys_for_text
from hvdesk.engine import console
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.qemu.binaries import find_emulator, program_version
from hvdesk.qemu.process import is_alive, wait_gone
from hvdesk.qemu.qmp import QmpSession
from tests.guest.build import SHELL_MARKER, TinyGuest, ensure_tiny_guest
from tests.integration.conftest import SmallDisk, wait_for_serial

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "qmp-events"
END_TIMEOUT = 60.0  # seconds for QEMU to end after the last action (a guest power-off under TCG)


@dataclass
class Recording:
    """The messages QEMU sent on the socket, with our actions between them."""

    steps: list[dict]
    connected_at: float
    run_dir: Path  # written as <run_dir> (VNC events name their socket), so re-recordings diff cleanly

    def on_event(self, name: str, data: dict, stamp: float) -> None:
        data = json.loads(json.dumps(data).replace(str(self.run_dir), "<run_dir>"))
        self.steps.append({"event": name, "data": data, "t": round(stamp - self.connected_at, 3)})

    def note(self, action: str) -> None:
        self.steps.append({"do": action})


@dataclass
class Run:
    manager: Manager
    machine: Machine
    guest: TinyGuest
    recording: Recording

    async def act(self, action: str, step: Awaitable[object]) -> None:
        self.recording.note(action)
        await step

    async def type_on_console(self, text: str) -> None:
        await wait_for_serial(self.machine.paths.serial_log, SHELL_MARKER)
        await self.act(f"type {text.strip()!r} on the guest's console",
                       console.send_keys(self.manager, self.machine.name, keys_for_text(text)))


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    drive: Callable[[Run], Awaitable[None]]
    ends: bool  # the scenario ends with QEMU exiting (the socket closes)
    start_paused: bool = False
    small_disk: bool = False


async def _pause_resume(run: Run) -> None:
    await run.act("hvdesk pause", run.manager.pause(run.machine.name))
    await run.act("hvdesk resume", run.manager.resume(run.machine.name))


async def _start_paused_then_resume(run: Run) -> None:
    await run.act("hvdesk resume", run.manager.resume(run.machine.name))


async def _acpi_shutdown(run: Run) -> None:
    await run.act("hvdesk shutdown (ACPI power button)", run.manager.shutdown(run.machine.name))


async def _host_reset(run: Run) -> None:
    await run.act("hvdesk reset", run.manager.reset(run.machine.name))
    await wait_for_serial(run.machine.paths.serial_log, run.guest.marker, count=2)


async def _guest_reset(run: Run) -> None:
    await run.type_on_console("reboot -f\n")
    await wait_for_serial(run.machine.paths.serial_log, run.guest.marker, count=2)


async def _quit(run: Run) -> None:
    await run.act("QMP quit on the command socket (hvdesk stop --force)",
                  run.manager.command(run.machine, "quit"))


async def _kill(run: Run) -> None:
    run.recording.note("SIGKILL to QEMU")
    os.kill(run.machine.pid, signal.SIGKILL)


async def _disk_full(run: Run) -> None:
    await run.type_on_console("dd if=/dev/urandom of=/dev/vda bs=1M count=32 oflag=direct\n")
    deadline = time.monotonic() + 90
    while not any(step.get("event") == "STOP" for step in run.recording.steps):
        if time.monotonic() > deadline:
            raise AssertionError("no STOP after filling the disk")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # the other queued requests fail too: keep their events
    await _quit(run)


SCENARIOS = [
    Scenario("pause-resume", "pause, then resume, by another hvdesk process", _pause_resume, ends=False),
    Scenario("start-paused-resume", "a VM started --paused (prelaunch), then resumed", _start_paused_then_resume,
             ends=False, start_paused=True),
    Scenario("acpi-shutdown", "the ACPI power button; the guest powers off, QEMU exits", _acpi_shutdown, ends=True),
    Scenario("host-reset", "hvdesk reset (QMP system_reset); the guest boots again", _host_reset, ends=False),
    Scenario("guest-reset", "the guest reboots itself (reboot -f)", _guest_reset, ends=False),
    Scenario("quit", "QMP quit (a forced power-off); QEMU exits at once", _quit, ends=True),
    Scenario("killed", "QEMU killed with SIGKILL: no event, the socket closes, the pidfile stays", _kill,
             ends=True),
    Scenario("disk-full", "the guest writes to a disk on a full host file system (werror=stop), then quit",
             _disk_full, ends=True, small_disk=True),
]


async def record(scenario: Scenario, guest: TinyGuest, qemu_version: str) -> dict:
    manager = Manager()
    await manager.open()
    disk: SmallDisk | None = None
    request = CreateRequest(name=scenario.name, os="linux", memory_mib=256, kernel=guest.kernel,
                            initrd=guest.initrd, append=guest.append)
    if scenario.small_disk:
        disk = SmallDisk(Path(tempfile.mkdtemp(prefix="hvrec-", dir="/tmp")), 2048)
        image = disk.path / "small.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "256M"], check=True)
        request.attach_disk = image
    machine = await manager.create(request)
    try:
        await manager.start(scenario.name, paused=scenario.start_paused)
        if not scenario.start_paused:
            await wait_for_serial(machine.paths.serial_log, guest.marker)
        recording = Recording([], time.time(), machine.paths.run_dir)
        session = QmpSession("recorder", on_event=recording.on_event)
        await session.connect(machine.paths.qmp_socket)
        status = (await session.execute("query-status"))["status"]
        pid = machine.pid
        await scenario.drive(Run(manager, machine, guest, recording))
        exit_kind = None
        if scenario.ends:
            await asyncio.wait_for(session.wait_closed(), END_TIMEOUT)
            recording.steps.append({"closed": True})
            await session.close()
            await wait_gone(pid, 10.0)
            exit_kind = "killed" if machine.paths.pidfile.exists() else "clean"
        else:
            await asyncio.sleep(0.5)  # anything that trails the last action
            await session.close()
        return {
            "scenario": scenario.name,
            "about": scenario.about,
            "recorded_with": f"QEMU {qemu_version}, python -m tests.fakes.record_qmp_events",
            "status_at_connect": status,
            "steps": recording.steps,
            "exit": exit_kind,  # clean: QEMU removed its pidfile; killed: it is left behind
        }
    finally:
        if machine.pid is not None and is_alive(machine.pid):
            os.kill(machine.pid, signal.SIGKILL)
            await wait_gone(machine.pid, 5.0)
        await manager.close()
        if disk is not None:
            disk.remove()


def to_json(recording: dict) -> str:
    """Indented, but one line per step, so a re-recording reads as a short diff."""
    steps = ",\n".join(f"    {json.dumps(step)}" for step in recording["steps"])
    head = json.dumps({k: v for k, v in recording.items() if k != "steps"}, indent=2)[:-2]
    return f'{head},\n  "steps": [\n{steps}\n  ]\n}}\n'


async def main(names: list[str]) -> int:
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SCENARIOS)}")
        return 2
    guest = ensure_tiny_guest()
    with tempfile.TemporaryDirectory(prefix="hvrec-home-") as home, \
            tempfile.TemporaryDirectory(prefix="hvrec-", dir="/tmp") as run_dir:
        os.environ.update(HVDESK_HOME=home, HVDESK_RUNTIME_DIR=run_dir, HVDESK_ACCEL="tcg")
        qemu_version = program_version(find_emulator(), Path(home))
        RECORDINGS.mkdir(parents=True, exist_ok=True)
        for scenario in chosen:
            result = await record(scenario, guest, qemu_version)
            target = RECORDINGS / f"{scenario.name}.json"
            target.write_text(to_json(result))
            events = [s["event"] for s in result["steps"] if "event" in s]
            print(f"{scenario.name}: {result['status_at_connect']} {' '.join(events)} (exit: {result['exit']})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
