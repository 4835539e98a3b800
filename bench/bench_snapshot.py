"""Live snapshot take and restore times for a 512 MiB guest, on real QEMU (TCG) and the tiny guest.

Two guests of 512 MiB: one idle after boot, one whose shell filled 384 MiB of its memory with random
bytes (a tmpfs file, typed through the console: zero pages would cost QEMU nothing to save), so the
saved state is what a busy guest's would be. For each, ROUNDS times: a live snapshot (Manager.snapshots.take,
QEMU's snapshot-save job writing RAM and devices into the qcow2 disk) and a restore of it into the
running VM (snapshot-load); medians, with the size of the saved state. (A save right after a load
is slower in QEMU itself: raw QEMU, same guest, 0.2 s for a first save, 1.2-4.3 s after a load.)
Then a restore of a live snapshot into the stopped VM (a fresh QEMU started paused, then the load).

    .venv/bin/python -m bench.bench_snapshot [--json] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import emit, private_library
from hvdesk.console import keys
from hvdesk.engine import console
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from tests.guest.build import SHELL_MARKER, TinyGuest, ensure_tiny_guest

MEMORY_MIB = 512
FILLED_MIB = 384


async def wait_for(path: Path, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {path} after {timeout:g} s")
        await asyncio.sleep(0.05)


def state_size(image: Path, tag: str) -> int:
    done = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)], capture_output=True, text=True)
    return next(int(s["vm-state-size"]) for s in json.loads(done.stdout).get("snapshots", []) if s["name"] == tag)


async def measure(manager: Manager, guest: TinyGuest, name: str, fill: int, rounds: int) -> dict:
    machine = await manager.create(CreateRequest(name=name, os="linux", memory_mib=MEMORY_MIB, disk_size=64 << 20,
                                                 kernel=guest.kernel, initrd=guest.initrd, append=guest.append))
    await manager.start(name)
    await wait_for(machine.paths.serial_log, SHELL_MARKER)
    if fill:
        command = (f"dd if=/dev/urandom of=/run/hvdesk-alloc/random bs=1M count={fill} 2>/dev/null; "
                   "echo FILLED > /dev/ttyS0\n")
        await console.send_keys(manager, name, keys.keys_for_text(command))
        await wait_for(machine.paths.serial_log, "FILLED", timeout=300)
    takes, restores = [], []
    for i in range(rounds):
        started = time.perf_counter()
        done = await manager.snapshots.take(name, f"s{i}")
        takes.append(time.perf_counter() - started)
        started = time.perf_counter()
        await manager.snapshots.restore(name, f"s{i}")
        restores.append(time.perf_counter() - started)
    size = state_size(machine.paths.resolve(machine.config.disks[0].path), done.snapshot.tag)
    await manager.stop(name, force=True, timeout=0)
    cold = []
    for i in range(min(rounds, 3)):
        started = time.perf_counter()
        await manager.snapshots.restore(name, f"s{i}")
        cold.append(time.perf_counter() - started)
        await manager.stop(name, force=True, timeout=0)
    return {"take_ms": statistics.median(takes) * 1e3, "restore_ms": statistics.median(restores) * 1e3,
            "restore_stopped_ms": statistics.median(cold) * 1e3, "state_mib": size / 2**20,
            "takes_ms": [round(t * 1e3, 1) for t in takes], "restores_ms": [round(t * 1e3, 1) for t in restores]}


async def main(rounds: int) -> dict:
    guest = ensure_tiny_guest()
    manager = await Manager().open()
    try:
        return {"idle": await measure(manager, guest, "idle", 0, rounds),
                "filled": await measure(manager, guest, "filled", FILLED_MIB, rounds)}
    finally:
        await manager.close()


def report(figures: dict) -> list[str]:
    lines = [f"Live snapshots of a {MEMORY_MIB} MiB guest (TCG, medians; {datetime.date.today()}):"]
    for kind, what in (("idle", "idle after boot"), ("filled", f"{FILLED_MIB} MiB of its memory filled")):
        f = figures[kind]
        lines.append(f"  {what}: saved state {f['state_mib']:.0f} MiB; take {f['take_ms']:.0f} ms (the first, into an "
                     f"image without snapshots: {f['takes_ms'][0]:.0f} ms), restore into the running VM "
                     f"{f['restore_ms']:.0f} ms, restore into the stopped VM (start + load) "
                     f"{f['restore_stopped_ms']:.0f} ms")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_library():
        figures = asyncio.run(main(args.rounds))
    emit(report(figures), figures, args.json)
