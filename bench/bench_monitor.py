"""What monitoring costs, with 8 running tiny guests (TCG):

1. sampling cost per VM per tick (CPU time of this process), through a watching Manager (the
   app's way: QMP on held sessions) and a non-watching one (the CLI's: a connection per tick);
2. the whole app's CPU (% of one core) and RSS at a 1 s tick with the Performance tab shown,
   and, for comparison, with the Details tab shown.

    .venv/bin/python -m bench.bench_monitor [--vms 8] [--seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.common import emit, private_library
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.engine.monitoring import Monitor
from tests.guest.build import ensure_tiny_guest
from tests.integration.conftest import wait_for_serial


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def sampling_cost(watch: bool, ticks: int = 20) -> float:
    """Median CPU ms per VM per tick."""
    manager = Manager(watch=watch)
    await manager.open()
    monitor = Monitor(manager, interval=1.0)
    costs = []
    try:
        await monitor.tick()
        for _ in range(ticks):
            await asyncio.sleep(0.25)
            await monitor.tick()
            costs.append(monitor.last_tick_cpu / max(monitor.last_tick_vms, 1) * 1000)
    finally:
        await manager.close()
    return statistics.median(costs)


def app_cpu(seconds: float, tab: int, home: Path) -> tuple[float, float]:
    """(% of one core, RSS MiB) of `hvdesk gui` over `seconds`, after it settled."""
    (home / "hvdesk-ui.ini").write_text(f"[main]\ndetails_tab={tab}\nselected_vm=vm0\n")
    app = subprocess.Popen([sys.executable, "-m", "hvdesk", "gui"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    try:
        proc = psutil.Process(app.pid)
        time.sleep(6)  # start-up, first samples
        before, start = proc.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, elapsed = proc.cpu_times(), time.monotonic() - start
        used = (after.user + after.system) - (before.user + before.system)
        return used / elapsed * 100, proc.memory_info().rss / 2**20
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(5)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


async def main_async(args: argparse.Namespace) -> dict:
    guest = ensure_tiny_guest()
    manager = Manager()
    await manager.open()
    names = [f"vm{n}" for n in range(args.vms)]
    for name in names:
        await manager.create(CreateRequest(name, memory_mib=256, disk_size=64 * 2**20, kernel=guest.kernel,
                                           initrd=guest.initrd, append=guest.append))
        await manager.start(name)
    for name in names:
        await wait_for_serial(manager.get(name).paths.serial_log, guest.marker, timeout=180)
    figures = {"vms": args.vms}
    try:
        figures["sample_ms_per_vm_watch"] = await sampling_cost(watch=True)
        figures["sample_ms_per_vm_cli"] = await sampling_cost(watch=False)
        say(f"sampling cost per VM per tick (CPU ms): app (held QMP sessions) "
            f"{figures['sample_ms_per_vm_watch']:.2f}, CLI (a connection per tick) "
            f"{figures['sample_ms_per_vm_cli']:.2f}  (goal < 1 ms)")
        home = Path(os.environ["HVDESK_HOME"])
        for label, tab in (("performance", 1), ("details", 0)):
            runs = [app_cpu(args.seconds, tab, home) for _ in range(2)]
            figures[f"app_cpu_{label}"] = [round(c, 2) for c, _ in runs]
            figures[f"app_rss_mib_{label}"] = round(max(r for _, r in runs), 1)
            say(f"app with {args.vms} running VMs, {label} tab shown, 1 s tick: CPU "
                f"{' / '.join(f'{c:.2f}' for c, _ in runs)} % of one core (goal < 1 %), "
                f"RSS {figures[f'app_rss_mib_{label}']} MiB")
    finally:
        for name in names:
            await manager.stop(name, force=True, timeout=0)
        await manager.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_library():
        figures = asyncio.run(main_async(args))
    emit([], figures, args.json)


if __name__ == "__main__":
    main()
