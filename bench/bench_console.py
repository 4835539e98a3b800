"""Benchmark the console's frame rate: hvdesk's RFB client, with and without its ConsoleView,
against a local server replaying full screens recorded from a real guest as fast as the client
asks, and against the limit (a bare socket reader of the same bytes); then what QEMU's VNC
server delivers from a real guest (TCG) redrawing its screen.

1. real guest: the tiny guest scrolls text on its 720x400 VGA text console; then it switches the
   std VGA to 1024x768 and 1920x1080 (32 bpp) through the Bochs VBE registers, fills video memory
   with noise and pans the display start, so every pixel changes. 8 of those screens are saved;
2. replay, per size: raw reader | client (asyncio) | client (qasync) | client + ConsoleView
   (qasync, offscreen, 1280x800 window, scaled), interleaved rounds; the server is another process;
3. for information: versions and date. --profile adds cProfile of the client at 1920x1080.

    .venv/bin/python -m bench.bench_console [--json] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import io
import json
import multiprocessing
import os
import pstats
import re
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

from hvdesk.console.keys import keys_for_text
from hvdesk.console.rfb import PIXEL_FORMAT, RAW, ConsoleEvents, RfbClient
from hvdesk.engine import console
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.qemu import binaries
from hvdesk.qemu.process import is_our_qemu, terminate
from tests.guest.build import SHELL_MARKER, ensure_tiny_guest

SIZES = ((1024, 768), (1920, 1080))
PAN = range(0, 128, 16)  # display start lines the guest cycles through
RECORD, ROUNDS, WINDOW, GUEST_WINDOW = 8, 4, 1.25, 5.0  # frames kept; replay rounds; seconds
VIEW_SIZE = (1280, 800)
FPS_GOAL, CPU_GOAL_MS = 60.0, 5.0
NAME = "console-bench"
# Typed into the guest's tty1 shell (errors go to the serial log). r: write Bochs VBE register $1
# (1 xres, 2 yres, 3 bpp, 4 enable, 5 bank, 9 y offset) through the VGA's MMIO BAR. f: set a
# W x H x 32 mode and fill $3 banks of video memory through the 64 KiB window at 0xA0000 (the
# kernel has no framebuffer driver, and /dev/mem writes to the linear framebuffer fail). l: run
# $3 for $2 seconds, counting rounds, bracketed by markers on the serial port.
DEFS = ("exec 2>/dev/ttyS0;r(){{ devmem $(({dispi}+2*$1)) 16 $2;}};f(){{ r 4 0;r 1 $1;r 2 $2;r 3 32;"
        "r 4 65;for b in $(seq 0 $3);do r 5 $b;dd if=/dev/urandom of=/dev/mem bs=64k seek=10 count=1 "
        "2>/dev/null;done;}};p(){{ for y in " + " ".join(map(str, PAN)) + ";do r 9 $y;done;}};"
        "s(){{ cat /init;}};l(){{ n=0;echo HVB-GO-$1>/dev/ttyS0;e=$(($(date +%s)+$2));while [ $(date +%s)"
        " -lt $e ];do $3;n=$((n+1));done;echo HVB-END-$1 $n>/dev/ttyS0;}};echo HVB-DEFS>/dev/ttyS0")


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# -- the real guest ------------------------------------------------------------------------------

async def serial(machine, pattern: str, timeout: float = 60.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, machine.paths.serial_log.read_text(errors="replace"))):
        if time.monotonic() > deadline:
            tail = machine.paths.serial_log.read_text(errors="replace")[-800:]
            raise RuntimeError(f"the guest did not print {pattern!r}; serial log ends:\n{tail}")
        await asyncio.sleep(0.05)
    return found


async def watch(machine, record: int) -> tuple[dict, list[bytes]]:
    """Frames/s the client receives from QEMU, once `record` distinct screens are saved."""
    shots, area, armed = [], [], []

    def frame() -> None:
        data = client.framebuffer.data
        if armed and len(shots) < record and (not shots or data != shots[-1]):
            shots.append(bytes(data))  # consecutive screens differ: the guest never shows one twice
    client = await console.connect(machine, ConsoleEvents(frame=frame, update=lambda x, y, w, h: area.append(w * h)))
    reader = asyncio.ensure_future(client.run())
    try:
        fb = await client.whole_screen()
        armed.append(True)
        while len(shots) < record:
            await client.next_frame()
        qemu = psutil.Process(machine.pid)
        q0, c0 = sum(qemu.cpu_times()[:2]), time.process_time()
        f0, a0, t0 = client.frames, len(area), time.perf_counter()
        await asyncio.sleep(GUEST_WINDOW)
        frames, elapsed = client.frames - f0, time.perf_counter() - t0
        return {"size": f"{fb.width}x{fb.height}", "fps": frames / elapsed,
                "cover": sum(area[a0:]) / max(frames, 1) / (fb.width * fb.height),
                "cpu_ms": (time.process_time() - c0) / max(frames, 1) * 1e3,
                "qemu_cpu": (sum(qemu.cpu_times()[:2]) - q0) / elapsed}, shots
    finally:
        await client.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader


async def guest_step(manager, command: str, tag: str, per_round: int, record: int = 0) -> tuple[dict, list]:
    """Type `command` (which runs `l tag ...`), watch while it runs, and wait until it is over."""
    machine = manager.get(NAME)
    await console.send_keys(manager, NAME, keys_for_text(command + "\n"))  # typed while the guest idles
    await serial(machine, f"HVB-GO-{tag}\n")
    t0 = time.perf_counter()
    fig, shots = await watch(machine, record)
    ran = int((await serial(machine, rf"HVB-END-{tag} (\d+)\n"))[1])
    fig["guest_redraws_per_s"] = ran * per_round / (time.perf_counter() - t0)  # upper bound of what it drew
    return fig, shots


async def real_guest(folder: Path) -> tuple[dict, dict]:
    guest = ensure_tiny_guest()
    manager = await Manager().open()
    machine = await manager.create(CreateRequest(name=NAME, memory_mib=256, kernel=guest.kernel,
                                                 initrd=guest.initrd, append=guest.append))
    figs, files = {}, {}
    try:
        await manager.start(NAME)
        await serial(machine, SHELL_MARKER)
        buses = await manager.command(machine, "query-pci")
        vga = next(dev for bus in buses for dev in bus["devices"] if dev.get("qdev_id") == "video0")
        bar2 = next(region["address"] for region in vga["regions"] if region["bar"] == 2)
        await console.send_keys(manager, NAME, keys_for_text(DEFS.format(dispi=bar2 + 0x500) + "\n"))
        await serial(machine, "HVB-DEFS\n")
        figs["text"], _ = await guest_step(manager, "l text 9 s", "text", 1)
        for w, h in SIZES:
            banks = -(-(h + PAN[-1]) * w * 4 // 65536)
            tag = f"{w}x{h}"
            figs[tag], shots = await guest_step(manager, f"f {w} {h} {banks - 1};l {tag} 14 p", tag, len(PAN), RECORD)
            if figs[tag]["size"] != tag:
                raise RuntimeError(f"the guest showed {figs[tag]['size']}, not {tag}")
            files[(w, h)] = [folder / f"{tag}-{i}.bgrx" for i in range(len(shots))]
            for path, shot in zip(files[(w, h)], shots):
                path.write_bytes(shot)
    finally:
        pid = machine.pid
        with contextlib.suppress(Exception):
            await manager.stop(NAME, force=True, timeout=0)
        if pid and is_our_qemu(pid, machine.config.uuid):
            await terminate(pid)
        await manager.close()
    return figs, files


# -- the replay server (its own process) -----------------------------------------------------------

CLIENT_BODY = {0: 19, 3: 9, 4: 7, 5: 5}  # SetPixelFormat, UpdateRequest, KeyEvent, PointerEvent


def update_requests(stream):
    """Yields once per FramebufferUpdateRequest; everything else the client says is skipped."""
    while kind := stream.read(1):
        if kind[0] == 2:  # SetEncodings
            (count,) = struct.unpack(">xH", stream.read(3))
            stream.read(4 * count)
        elif kind[0] in CLIENT_BODY:
            stream.read(CLIENT_BODY[kind[0]])
            if kind[0] == 3:
                yield
        else:
            raise OSError(f"unexpected client message {kind[0]}")


def serve(path: str, width: int, height: int, files: list[str], ready) -> None:
    """RFB 3.8, no security; each update request gets the next recorded screen as one Raw rectangle."""
    head = struct.pack(">BxHHHHHi", 0, 1, 0, 0, width, height, RAW)
    frames = [head + Path(name).read_bytes() for name in files]
    init = struct.pack(">HH", width, height) + PIXEL_FORMAT + struct.pack(">I", 6) + b"replay"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        ready.set()
        while True:  # one connection per measured run; the parent terminates us
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as stream, contextlib.suppress(OSError):
                conn.sendall(b"RFB 003.008\n")
                stream.read(12)
                conn.sendall(b"\x01\x01")  # one security type: None
                stream.read(1)
                conn.sendall(b"\0\0\0\0")  # security result: OK
                stream.read(1)  # the client's shared flag
                conn.sendall(init)
                for n, _ in enumerate(update_requests(stream)):
                    conn.sendall(frames[n % len(frames)])


# -- the sides measured against it ---------------------------------------------------------------

def recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        if not (n := sock.recv_into(view[got:])):
            raise ConnectionError("the replay server closed the connection")
        got += n


def raw_reader(path: Path, width: int, height: int, seconds: float) -> dict:
    """The limit: the same requests and bytes, read into one preallocated buffer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        small = memoryview(bytearray(64))
        recv_exact(sock, small[:12])
        sock.sendall(b"RFB 003.008\n")
        recv_exact(sock, small[:2])
        sock.sendall(b"\x01")
        recv_exact(sock, small[:4])
        sock.sendall(b"\x01")
        recv_exact(sock, small[:24])
        recv_exact(sock, small[:struct.unpack(">I", small[20:24])[0]])
        request = struct.pack(">BBHHHH", 3, 1, 0, 0, width, height)
        frame = memoryview(bytearray(16 + width * height * 4))
        for _ in range(2):  # warm-up
            sock.sendall(request)
            recv_exact(sock, frame)
        frames, c0, t0 = 0, time.process_time(), time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            sock.sendall(request)
            recv_exact(sock, frame)
            frames += 1
        return {"fps": frames / elapsed, "cpu_ms": (time.process_time() - c0) / frames * 1e3}


async def client_run(path: Path, seconds: float, view=None) -> dict:
    """hvdesk's client (and view, if given) on the running loop: frames/s received and painted."""
    client = RfbClient(events=ConsoleEvents(update=view.area_changed) if view else None)
    await client.connect_unix(path)
    reader = asyncio.ensure_future(client.run())
    try:
        if view is not None:
            view.attach(client)
        await client.whole_screen()
        await client.next_frame()  # warm-up
        paints = lambda: view.paints if view is not None else 0  # noqa: E731
        f0, p0, c0, t0 = client.frames, paints(), time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        frames, elapsed = client.frames - f0, time.perf_counter() - t0
        fig = {"fps": frames / elapsed, "cpu_ms": (time.process_time() - c0) / max(frames, 1) * 1e3}
        return fig | ({"painted_fps": (paints() - p0) / elapsed} if view is not None else {})
    finally:
        if view is not None:
            view.attach(None)
        await client.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader


def make_view():
    """A ConsoleView in its own 1280x800 window (offscreen), counting its paint events."""
    from hvdesk.ui.console_view import ConsoleView

    class CountingView(ConsoleView):
        paints = 0

        def paintEvent(self, event) -> None:
            super().paintEvent(event)
            CountingView.paints += 1
    view = CountingView()
    view.resize(*VIEW_SIZE)
    view.show()
    return view


def capacity(folder: Path, size: tuple[int, int], files: list[Path], qloop, view, profile: bool) -> dict:
    """Interleaved rounds of every side against one replay server process; medians."""
    width, height = size
    path = folder / f"replay-{width}.sock"
    spawn = multiprocessing.get_context("spawn")  # a fresh process: no Qt or loop state forked
    ready = spawn.Event()
    server = spawn.Process(target=serve, args=(str(path), width, height, [str(f) for f in files], ready), daemon=True)
    server.start()

    def on_qasync(coro):
        asyncio.set_event_loop(qloop)
        return qloop.run_until_complete(coro)
    sides = {"raw": lambda seconds: raw_reader(path, width, height, seconds),
             "client": lambda seconds: asyncio.run(client_run(path, seconds)),
             "client_qasync": lambda seconds: on_qasync(client_run(path, seconds)),
             "client_view": lambda seconds: on_qasync(client_run(path, seconds, view))}
    try:
        if not ready.wait(60):
            raise RuntimeError("the replay server did not start")
        runs = defaultdict(list)
        for round_ in range(-1, ROUNDS):  # the first round only warms up
            for name, side in sides.items():
                fig = side(WINDOW)
                runs[name] += [fig] if round_ >= 0 else []
        fig = {name: median_of(samples) for name, samples in runs.items()}
        if profile:
            fig["profile"] = {name: profiled(sides[name]) for name in ("client", "client_view")}
        return fig
    finally:
        server.terminate()
        server.join()


def profiled(side) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(side, 3.0)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
    return out.getvalue()


# -- report ----------------------------------------------------------------------------------------

def report(fig: dict) -> list[str]:
    lines = [f"hvdesk console bench  {fig['date']}  Python {fig['python']}  PySide6 {fig['pyside6']} "
             f"(Qt {fig['qt']})  QEMU {fig['qemu']}  TCG  {os.cpu_count()} CPUs, load {fig['load']:.1f}",
             f"real guest (QEMU VNC, Raw, {GUEST_WINDOW:g} s each): frames/s received, screen covered per "
             "frame, client CPU/frame, QEMU CPU, guest redraws/s"]
    for tag, g in fig["guest"].items():
        lines.append(f"  {tag:9} {g['size']:>9}  {g['fps']:5.1f} fps  cover {g['cover']:4.0%}  "
                     f"{g['cpu_ms']:5.2f} ms  QEMU {g['qemu_cpu']:4.0%}  guest {g['guest_redraws_per_s']:5.1f}/s")
    lines.append(f"replay of {RECORD} recorded screens, one full Raw rectangle per request "
                 f"({ROUNDS} interleaved rounds of {WINDOW:g} s, medians; view {VIEW_SIZE[0]}x{VIEW_SIZE[1]} scaled):")
    for size, c in fig["replay"].items():
        limit = c["raw"]["fps"]
        lines.append(f"  {size}: limit (bare reader) {limit:6.1f} fps {c['raw']['cpu_ms']:5.2f} ms CPU/frame")
        for name in ("client", "client_qasync", "client_view"):
            s = c[name]
            painted = f"  painted {s['painted_fps']:5.1f} fps" if "painted_fps" in s else ""
            lines.append(f"    {name:13} {s['fps']:6.1f} fps ({s['fps'] / limit:4.0%} of limit)  "
                         f"{s['cpu_ms']:5.2f} ms CPU/frame{painted}")
    hd = fig["replay"]["1920x1080"]
    met = lambda s: s["fps"] >= FPS_GOAL and s["cpu_ms"] < CPU_GOAL_MS  # noqa: E731
    lines.append(f"verdict 1080p (goal >= {FPS_GOAL:g} fps, < {CPU_GOAL_MS:g} ms CPU/frame): client "
                 f"{'meets' if met(hd['client']) else 'MISSES'} it ({hd['client']['fps']:.0f} fps, "
                 f"{hd['client']['cpu_ms']:.1f} ms); with the view {'meets' if met(hd['client_view']) else 'MISSES'} "
                 f"it ({hd['client_view']['fps']:.0f} fps received, {hd['client_view']['painted_fps']:.0f} painted, "
                 f"{hd['client_view']['cpu_ms']:.1f} ms)")
    for name, text in hd.get("profile", {}).items():
        lines += [f"cProfile of {name} at 1920x1080, 3 s (by own time):", text]
    return lines


def run(folder: Path, profile: bool) -> dict:
    import PySide6
    import qasync
    from PySide6.QtCore import qVersion
    from PySide6.QtWidgets import QApplication

    fig = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "pyside6": PySide6.__version__, "qt": qVersion(), "load": os.getloadavg()[0],
           "qemu": binaries.program_version(binaries.find_emulator())}
    fig["guest"], files = asyncio.run(real_guest(folder))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    qloop = qasync.QEventLoop(app)
    view = make_view()
    try:
        fig["replay"] = {f"{w}x{h}": capacity(folder, (w, h), files[(w, h)], qloop, view, profile and w == 1920)
                         for w, h in SIZES}
    finally:
        view.close()
        qloop.close()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON on stdout, text on stderr")
    parser.add_argument("--profile", action="store_true", help="also cProfile the client at 1920x1080")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hvdesk-bench-")
    rundir = tempfile.mkdtemp(prefix="hvb-", dir="/tmp")  # short: unix socket paths must be < 100 bytes
    os.environ.update(HVDESK_HOME=home, HVDESK_RUNTIME_DIR=rundir, HVDESK_ACCEL="tcg")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        fig = run(Path(rundir), args.profile)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(rundir, ignore_errors=True)
    print("\n".join(report(fig)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
