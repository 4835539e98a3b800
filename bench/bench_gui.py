"""Benchmark hvdesk's desktop app: cold start to a painted window, and idle CPU beside running VMs.

1. cold start: a new `hvdesk gui --smoke-test` process per run (so "cold" means a fresh process;
   the OS file cache is warm), timed from spawn to its "window painted" line and to its exit,
   with 0 and with 20 VMs in the library; Qt's offscreen platform, then xcb on an Xvfb server;
2. idle: the CPU time of `hvdesk gui` (offscreen) over 30 s windows, with the library's 3 tiny
   guests stopped, then running (real QEMU, TCG); one of them selected, so once it runs the
   details pane shows its live preview;
3. for information: versions and date.

    .venv/bin/python -m bench.bench_gui [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import psutil
import PySide6
from PySide6.QtCore import qVersion

from bench.common import emit, private_library
from hvdesk.core.errors import HvdeskError
from hvdesk.core.osinfo import presets
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.qemu import binaries
from hvdesk.qemu.process import is_our_qemu, read_pid, terminate
from hvdesk.ui import prefs
from tests.guest.build import TinyGuest, ensure_tiny_guest

LIBRARY, RUNS = 20, 5
TINY = ("tiny-1", "tiny-2", "tiny-3")  # in the library of 20; the only VMs that run
SETTLE, WINDOW, WINDOWS = 5.0, 30.0, 2  # seconds; WINDOWS measurements per app process
PAINT_GOAL, IDLE_GOAL = 1.5, 0.5  # s to a painted window; % of one core
SMOKE_TIMEOUT, BOOT_TIMEOUT = 60.0, 120.0
APP = [sys.executable, "-m", "hvdesk", "gui"]
PAINTED = re.compile(r"window painted .*\(([\d.]+) s after main\(\)\)")


def spread(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "max": max(samples)}


def end(proc: subprocess.Popen) -> None:
    """SIGTERM to the process we started, SIGKILL if it is still there after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def xvfb():
    """One X server for every xcb run: xvfb-run per run would add the server's start-up to each."""
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()  # written once the server accepts clients
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        end(proc)


def smoke_run(env: dict, stderr) -> tuple[float, float, float]:
    """One smoke-test process: s from spawn to the paint line and to exit, and the app's own figure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*APP, "--smoke-test"], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    watchdog = threading.Timer(SMOKE_TIMEOUT, proc.kill)  # a window that never paints must not hang us
    watchdog.start()
    try:
        for line in proc.stdout:
            if found := PAINTED.match(line):
                painted = time.perf_counter() - t0
                break
        else:
            raise RuntimeError(f"the window never painted (exit code {proc.wait()})")
        proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the smoke test exited with {proc.returncode}")
        return painted, time.perf_counter() - t0, float(found[1])
    finally:
        watchdog.cancel()
        end(proc)


def cold_start(env: dict, stderr) -> dict:
    smoke_run(env, stderr)  # untimed: compiles .pyc files and fills the accelerator cache
    painted, exited, in_app = zip(*(smoke_run(env, stderr) for _ in range(RUNS)))
    return {"paint_s": spread(painted), "exit_s": spread(exited), "in_app_s": spread(in_app)}


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system time of the app, its reaped children and its live descendants."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def idle(env: dict, stderr) -> dict:
    """The app's CPU use, in % of one core, over WINDOWS windows after it settled; its RSS after."""
    proc = subprocess.Popen(APP, env=env, stdout=stderr, stderr=stderr)
    try:
        time.sleep(SETTLE)
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode} before it was measured")
        app = psutil.Process(proc.pid)
        percents = []
        for _ in range(WINDOWS):
            cpu0, t0 = cpu_seconds(app), time.perf_counter()
            time.sleep(WINDOW)
            percents.append(100 * (cpu_seconds(app) - cpu0) / (time.perf_counter() - t0))
        return {"cpu_pct": percents, "rss_mib": app.memory_info().rss / 2**20, "threads": app.num_threads()}
    finally:
        end(proc)


async def populate(manager: Manager, guest: TinyGuest) -> None:
    """Varied VMs that never run (BIOS presets only: the UEFI ones need OVMF), then the tiny guests."""
    bios_ids = [p.id for p in presets().values() if p.firmware == "bios"]
    for i in range(LIBRARY - len(TINY)):
        os_id = bios_ids[i % len(bios_ids)]
        await manager.create(CreateRequest(name=f"{os_id}-{i:02}", os=os_id, disk_size=2**30 if i % 4 == 0 else None,
                                           memory_mib=(256, 512, 1024, 2048, 4096)[i % 5]))
    for name in TINY:
        await manager.create(CreateRequest(name=name, memory_mib=256, kernel=guest.kernel, initrd=guest.initrd,
                                           append=guest.append))


async def boot(manager: Manager, guest: TinyGuest) -> list[float]:
    """Start the tiny guests; s from the first start() until each printed its marker."""
    t0 = time.perf_counter()
    for name in TINY:
        await manager.start(name)

    async def marker(name: str) -> float:
        log = manager.get(name).paths.serial_log
        while time.perf_counter() - t0 < BOOT_TIMEOUT:
            if guest.marker in log.read_text(errors="replace"):
                return time.perf_counter() - t0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"guest marker not seen in {log} within {BOOT_TIMEOUT:.0f} s")
    return list(await asyncio.gather(*map(marker, TINY)))


async def stop_all(manager: Manager) -> None:
    """Force off every VM still running; the pidfile check catches one the engine failed to stop."""
    for machine in manager.machines():
        with contextlib.suppress(HvdeskError):  # StateError: it was not running
            await manager.stop(machine.name, force=True, timeout=0)
        pid = read_pid(machine.paths.pidfile)
        if pid is not None and is_our_qemu(pid, machine.config.uuid):
            await terminate(pid)


async def run(stderr) -> dict:
    guest = ensure_tiny_guest()
    fig = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "pyside6": PySide6.__version__, "qt": qVersion(),
           "qemu": binaries.program_version(binaries.find_emulator()), "cold": {},
           "load_before": os.getloadavg()[0]}  # the host is shared: others' load inflates wall times
    offscreen = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    manager = await Manager().open()
    # The app processes are timed with blocking calls: fine, as a non-watch Manager runs no tasks.
    try:
        with xvfb() as display:
            xcb = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": display}
            for vms in (0, LIBRARY):
                if vms:
                    await populate(manager, guest)
                fig["cold"][vms] = {"offscreen": cold_start(offscreen, stderr), "xcb": cold_start(xcb, stderr)}
        store = prefs.Prefs()  # the app opens on the VM it showed last: make it one that will run
        store.set(prefs.SELECTED_VM, TINY[0])
        store.sync()
        fig["idle_stopped"] = idle(offscreen, stderr)
        fig["boot_to_marker_s"] = await boot(manager, guest)
        fig["idle_running"] = idle(offscreen, stderr)
    finally:
        await stop_all(manager)
        await manager.close()
    fig["load_after"] = os.getloadavg()[0]
    return fig


def _fmt(name: str, fig: dict) -> str:
    return f"{name} {fig['median']:.3f}/{fig['max']:.3f}"


def report(fig: dict) -> list[str]:
    lines = []
    say = lines.append
    say(f"hvdesk GUI bench  {fig['date']}  Python {fig['python']}  PySide6 {fig['pyside6']} (Qt {fig['qt']})"
        f"  QEMU {fig['qemu']}  TCG  load avg {fig['load_before']:.1f} -> {fig['load_after']:.1f} on"
        f" {os.cpu_count()} CPUs")
    say(f"cold start, s, median/max of {RUNS} (a new process each, warm file cache; goal with {LIBRARY} VMs:"
        f" painted < {PAINT_GOAL}); in-app = main() to paint, without interpreter start and imports:")
    for vms, platforms in fig["cold"].items():
        for platform, c in platforms.items():
            say(f"  {vms:>2} VMs {platform:9}  {_fmt('spawn->painted', c['paint_s'])}  "
                f"{_fmt('spawn->exit', c['exit_s'])}  {_fmt('in-app', c['in_app_s'])}")
    say("boot to marker, s from the first start(): " + "  ".join(f"{t:.1f}" for t in fig["boot_to_marker_s"]))
    say(f"idle app (offscreen, {LIBRARY} VMs, {TINY[0]} selected), CPU % of one core in {WINDOWS} x {WINDOW:.0f} s"
        f" after {SETTLE:.0f} s settling (goal with {len(TINY)} running < {IDLE_GOAL}):")
    for key, label in (("idle_stopped", "0 running"), ("idle_running", f"{len(TINY)} running")):
        f = fig[key]
        say(f"  {label:9}  " + "  ".join(f"{p:.2f}" for p in f["cpu_pct"])
            + f"  |  RSS {f['rss_mib']:.0f} MiB  threads {f['threads']}")
    say("app stderr, distinct lines:" if fig["app_stderr"] else "app stderr: empty")
    lines += [f"  {count:3} x {text}" for text, count in fig["app_stderr"].items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON on stdout, text on stderr")
    args = parser.parse_args()
    with private_library() as (home, _), open(home / "app-stderr.log", "w+") as stderr:
        fig = asyncio.run(run(stderr))  # every app process's stderr goes to one file, for the report
        stderr.seek(0)
        fig["app_stderr"] = dict(collections.Counter(line.rstrip() for line in stderr if line.strip()))
    emit(report(fig), fig, args.json)


if __name__ == "__main__":
    main()
