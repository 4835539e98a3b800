"""What monitoring costs, with 8 running tiny guests (TCG):

1. sampling cost per VM per tick (CPU time of this process), through a watching Manager (the
   app's way: QMP on held sessions) and a non-watching one (the CLI's: a connection per tick);
2. the whole app's CPU (% of one core) and RSS at a 1 s tick with the Performance tab shown,
   and, for comparison, with the Details tab shown;
3. `--baseline DIR`: the same app from another source tree (an older commit, e.g. from
   `git archive main | tar -x -C DIR`), its runs interleaved with this tree's on the same VMs:
   before and after in one run, as medians over `--rounds` runs each.

The machine is shared and has 2 cores: compare figures of one run, and look at the load average
printed with them.

    .venv/bin/python -m bench.bench_monitor [--vms 8] [--seconds 30] [--rounds 2] [--baseline DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
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

ROOT = Path(__file__).resolve().parent.parent
TABS = (("performance", 1), ("details", 0))


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


def app_cpu(seconds: float, tab: int, home: Path, tree: Path = ROOT) -> tuple[float, float]:
    """(% of one core, RSS MiB) of `hvdesk gui` from `tree` over `seconds`, after it settled."""
    (home / "hvdesk-ui.ini").write_text(f"[main]\ndetails_tab={tab}\nselected_vm=vm0\n")
    # With -m the working directory comes first on sys.path: this runs `tree`'s hvdesk.
    app = subprocess.Popen([sys.executable, "-m", "hvdesk", "gui"], cwd=tree, stdout=subprocess.DEVNULL,
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


def app_figures(args: argparse.Namespace, home: Path) -> dict:
    """Each (tree, tab) `args.rounds` times, interleaved, the order rotating every round."""
    trees = {"": ROOT} | ({"before_": args.baseline.resolve()} if args.baseline else {})
    for tree in trees.values():
        compileall.compile_dir(str(tree / "hvdesk"), quiet=1)  # as installed: no compiling in the runs
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {(p, t): [] for p in trees for t, _ in TABS}
    order = [(prefix, label, tab) for prefix in trees for label, tab in TABS]
    loads = []
    for n in range(args.rounds):
        for prefix, label, tab in order[n % len(order):] + order[:n % len(order)]:
            runs[prefix, label].append(app_cpu(args.seconds, tab, home, trees[prefix]))
            loads.append(os.getloadavg()[0])
    figures: dict = {"load_average": [round(min(loads), 2), round(statistics.median(loads), 2), round(max(loads), 2)]}
    for (prefix, label), values in runs.items():
        figures[f"{prefix}app_cpu_{label}"] = [round(c, 2) for c, _ in values]
        figures[f"{prefix}app_cpu_{label}_median"] = round(statistics.median(c for c, _ in values), 2)
        figures[f"{prefix}app_rss_mib_{label}"] = round(statistics.median(r for _, r in values), 1)
    return figures


def app_report(figures: dict, vms: int, baseline: bool) -> list[str]:
    lines = [f"app with {vms} running VMs, 1 s tick, medians of {len(figures['app_cpu_performance'])} runs each"
             f"{', interleaved with the baseline tree' if baseline else ''} (load average min/median/max "
             f"{' / '.join(str(v) for v in figures['load_average'])}):"]
    for label, _ in TABS:
        cpu, rss = figures[f"app_cpu_{label}_median"], figures[f"app_rss_mib_{label}"]
        line = f"  {label} tab shown: CPU {cpu:.2f} % of one core, RSS {rss} MiB"
        if baseline:
            old_cpu, old_rss = figures[f"before_app_cpu_{label}_median"], figures[f"before_app_rss_mib_{label}"]
            line += (f"   (before: {old_cpu:.2f} %, {old_rss} MiB; CPU x{cpu / old_cpu:.2f}, "
                     f"RSS {rss - old_rss:+.1f} MiB)")
        lines.append(line)
    return lines


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
    figures: dict = {"vms": args.vms}
    try:
        figures["sample_ms_per_vm_watch"] = await sampling_cost(watch=True)
        figures["sample_ms_per_vm_cli"] = await sampling_cost(watch=False)
        say(f"sampling cost per VM per tick (CPU ms): app (held QMP sessions) "
            f"{figures['sample_ms_per_vm_watch']:.2f}, CLI (a connection per tick) "
            f"{figures['sample_ms_per_vm_cli']:.2f}  (goal < 1 ms)")
        home = Path(os.environ["HVDESK_HOME"])
        figures.update(app_figures(args, home))
        for line in app_report(figures, args.vms, args.baseline is not None):
            say(line)
    finally:
        for name in names:
            await manager.stop(name, force=True, timeout=0)
        await manager.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured per app run")
    parser.add_argument("--rounds", type=int, default=2, help="app runs per tree and tab")
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also run the app from this source tree")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_library():
        figures = asyncio.run(main_async(args))
    emit([], figures, args.json)


if __name__ == "__main__":
    main()
