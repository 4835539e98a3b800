"""How long does the GUI thread stall while the engine works on it (qasync: one thread for Qt
and asyncio)? A 10 ms QTimer records how late it fires while real engine operations run: create
with a disk, start, pause, resume, force off, delete, and a watcher following the events.

    .venv/bin/python -m bench.bench_ui_loop [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TICK_MS = 10


async def engine_work(rounds: int, guest) -> None:
    from hvdesk.engine.library_ops import CreateRequest
    from hvdesk.engine.manager import Manager

    manager = Manager(watch=True, poll_interval=1.0)
    await manager.open()
    try:
        for n in range(rounds):
            name = f"loop{n}"
            await manager.create(CreateRequest(name, memory_mib=256, disk_size=1024**3, kernel=guest.kernel,
                                               initrd=guest.initrd, append=guest.append))
            await manager.start(name)
            await manager.pause(name)
            await manager.resume(name)
            await manager.stop(name, force=True, timeout=0)
            await manager.delete(name)
    finally:
        await manager.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hvdesk-loop-")
    os.environ.update(HVDESK_HOME=home, HVDESK_ACCEL="tcg",
                      HVDESK_RUNTIME_DIR=tempfile.mkdtemp(prefix="hvl-", dir="/tmp"))
    import qasync
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import hvdesk.engine.manager  # noqa: F401 - imports happen before the clock starts
    from tests.guest.build import ensure_tiny_guest

    guest = ensure_tiny_guest()

    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, (now - last[0]) * 1000 - TICK_MS))
        last[0] = now
    timer = QTimer(interval=TICK_MS)
    timer.timeout.connect(tick)
    timer.start()
    started = time.perf_counter()
    try:
        with loop:
            loop.run_until_complete(engine_work(args.rounds, guest))
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(os.environ["HVDESK_RUNTIME_DIR"], ignore_errors=True)
    elapsed = time.perf_counter() - started
    lateness.sort()
    print(f"{args.rounds} rounds of create(1G disk)/start/pause/resume/power off/delete in {elapsed:.2f} s; "
          f"{len(lateness)} ticks of {TICK_MS} ms")
    print(f"GUI tick lateness, ms: median {statistics.median(lateness):.2f}  "
          f"p99 {lateness[int(len(lateness) * 0.99)]:.2f}  max {lateness[-1]:.2f}")


if __name__ == "__main__":
    main()
