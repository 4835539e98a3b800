"""Benchmark hvdesk's engine against the bare minimum, on real QEMU (TCG) and the tiny test guest.

1. start: Manager.start vs spawning the same argv and sending `cont` over a bare QMP socket;
2. query-status round trip: the engine's QmpSession vs minimal raw asyncio and blocking clients;
3. for information: versions, date, and the guest's boot-to-marker time.
The host is shared and noisy, so the sides are interleaved and compared as same-run ratios.

    .venv/bin/python -m bench.bench_engine [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hvdesk.core.paths import cache_dir
from hvdesk.engine import manager as manager_mod, runtime
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.qemu import accel, binaries
from hvdesk.qemu.argv import HostSetup, build_argv
from hvdesk.qemu.process import is_our_qemu, launch, read_pid, terminate
from hvdesk.qemu.qmp import QmpSession
from tests.guest.build import TinyGuest, ensure_tiny_guest

STARTS, BOOTS, BREAKDOWN_ROUNDS = 10, 3, 5
RTT_BLOCKS, RTT_BLOCK, RTT_WARMUP, RECONNECT_WARMUP = 20, 100, 200, 10
START_GOAL, RTT_GOAL = 1.1, 1.5
CAPS, CONT, QUERY = (b'{"execute":"%s"}\n' % c for c in (b"qmp_capabilities", b"cont", b"query-status"))
NAME = "bench"


def summary(samples: list[float], unit: float) -> dict:
    return {"median": statistics.median(samples) * unit, "n": len(samples),
            "p90": statistics.quantiles(samples, n=10, method="inclusive")[8] * unit}


class Laps:
    """Split times: each call files the time since the previous call under `name`."""

    def __init__(self, into: dict[str, list[float]]) -> None:
        self.into, self.start = into, time.perf_counter()
        self.last = self.start

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name].append(now - self.last)
        self.last = now

    def total(self) -> float:
        self.into["total"].append(self.last - self.start)
        return self.last - self.start


def _parse(line: bytes) -> dict | None:
    """A reply, or None for an event (they can arrive between a command and its reply)."""
    message = json.loads(line)
    if "error" in message:
        raise RuntimeError(f"QMP error: {message['error']}")
    return None if "event" in message else message


class RawQmp:
    """The least a QMP client can do over asyncio streams: one JSON object a line."""

    async def open(self, path: Path) -> RawQmp:
        self.reader, self.writer = await asyncio.open_unix_connection(str(path))
        await self.reply()  # the greeting
        await self.send(CAPS)
        return self

    async def send(self, line: bytes) -> dict:
        self.writer.write(line)
        return await self.reply()

    async def reply(self) -> dict:
        while (message := _parse(await self.reader.readline())) is None:
            pass
        return message

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class BlockingQmp:
    """The same over a blocking socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.reply()
        self.send(CAPS)

    def send(self, line: bytes) -> dict:
        self.sock.sendall(line)
        return self.reply()

    def reply(self) -> dict:
        while (message := _parse(self.file.readline())) is None:
            pass
        return message

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class Bench:
    manager: Manager
    guest: TinyGuest
    raw_dir: Path  # the raw side's runtime dir, so its sockets and pidfile never meet the engine's
    raw_argv: list[str] = field(default_factory=list)
    started: set[int] = field(default_factory=set)  # every QEMU pid we launched, for the cleanup

    @property
    def machine(self):
        return self.manager.get(NAME)

    async def engine_start(self) -> float:
        t0 = time.perf_counter()
        machine = await self.manager.start(NAME)
        elapsed = time.perf_counter() - t0
        self.started.add(machine.pid)
        run_dir = str(machine.paths.run_dir)
        self.raw_argv = [arg.replace(run_dir, str(self.raw_dir)) for arg in machine.run.argv]
        return elapsed

    async def engine_stop(self) -> None:
        await self.manager.stop(NAME, force=True, timeout=0)

    async def raw_start(self, laps: Laps) -> float:
        proc = await asyncio.create_subprocess_exec(
            *self.raw_argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        if await proc.wait() != 0:  # -daemonize: the parent exits once QEMU is set up
            raise RuntimeError(f"raw QEMU failed; see {self.machine.paths.qemu_log}")
        laps("spawn")
        qmp = await RawQmp().open(self.raw_dir / "ctl.sock")
        laps("connect")
        await qmp.send(CONT)
        laps("cont")
        await qmp.close()
        laps("close")
        self.started.add(read_pid(self.raw_dir / "qemu.pid"))
        return laps.total()

    async def raw_stop(self) -> None:
        pid = read_pid(self.raw_dir / "qemu.pid")
        await terminate(pid)  # SIGTERM, and wait until the pid is gone

    async def wait_marker(self, since: float, timeout: float = 120.0) -> float:
        log = self.machine.paths.serial_log
        while time.perf_counter() - since < timeout:
            if self.guest.marker in log.read_text(errors="replace"):
                return time.perf_counter() - since
            await asyncio.sleep(0.02)
        raise RuntimeError(f"guest marker not seen in {log} within {timeout:.0f} s")

    async def cleanup(self) -> None:
        uuid = self.machine.config.uuid
        for pid in self.started:
            if pid is not None and is_our_qemu(pid, uuid):
                await terminate(pid)


async def bench_start(b: Bench) -> dict:
    """Interleaved engine and raw starts, QEMU stopped between each; the first pair only warms up."""
    engine, boots, raw_pieces = [], [], defaultdict(list)
    for i in range(-1, STARTS):
        t0 = time.perf_counter()
        elapsed = await b.engine_start()
        if 0 <= i < BOOTS:
            boots.append(await b.wait_marker(t0))
        await b.engine_stop()
        pieces = raw_pieces if i >= 0 else defaultdict(list)
        await b.raw_start(Laps(pieces))
        await b.raw_stop()
        if i >= 0:
            engine.append(elapsed)
    fig = {"engine": summary(engine, 1e3), "raw": summary(raw_pieces["total"], 1e3),
           "raw_pieces": {k: statistics.median(v) * 1e3 for k, v in raw_pieces.items()},
           "boot_to_marker_s": boots}
    fig["ratio"] = fig["engine"]["median"] / fig["raw"]["median"]
    return fig


async def engine_pieces(b: Bench, laps: Laps) -> None:
    """Manager.start's steps in its order (hvdesk/engine/manager.py), timed one by one."""
    manager, machine = b.manager, b.machine
    async with manager.lock(machine):
        await manager.refresh_state(machine)
        laps("refresh_state")
        config, paths = machine.config, machine.paths
        manager_mod._check_files(machine)
        laps("check_files")
        emulator = binaries.find_emulator()
        laps("find_emulator")
        choice = accel.choose(config.accel, emulator, cache_dir())
        laps("accel.choose")
        argv = build_argv(config, HostSetup(emulator, choice.name, manager_mod._uefi_code(machine)), paths)
        laps("build_argv")
        runtime.prepare_run_dir(paths)
        laps("prepare_run_dir")
        runtime.prepare_logs(paths)
        run = runtime.RunInfo(0, choice.name, choice.reason, time.time(), argv)
        runtime.write_run_info(paths, run)
        laps("prepare_logs+run_info")
        machine.pid = await launch(argv, paths.pidfile, paths.qemu_log)
        b.started.add(machine.pid)
        laps("launch")
        run.pid = machine.pid
        runtime.write_run_info(paths, run)
        laps("run_info")
        session = QmpSession(f"hvdesk-{machine.name}")
        await session.connect(paths.ctl_socket)
        laps("connect")
        await session.execute("cont")
        laps("cont")
        await session.close()
        laps("close")
        runtime.clear_aborted(paths)
        laps("clear_aborted")


async def bench_breakdown(b: Bench) -> dict:
    pieces = defaultdict(list)
    for _ in range(BREAKDOWN_ROUNDS):
        laps = Laps(pieces)
        await engine_pieces(b, laps)
        laps.total()
        await b.engine_stop()
    return {k: statistics.median(v) * 1e3 for k, v in pieces.items()}


async def bench_rtt(b: Bench) -> dict:
    """query-status round trips: the engine on ctl.sock, the raw clients (in turn) on qmp.sock."""
    paths = b.machine.paths
    session = QmpSession("hvdesk-bench")
    await session.connect(paths.ctl_socket)

    async def engine(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await session.execute("query-status")
            out.append(time.perf_counter() - t0)
        return out

    async def raw_asyncio(n: int) -> list[float]:
        qmp, out = await RawQmp().open(paths.qmp_socket), []
        for _ in range(RECONNECT_WARMUP):  # a fresh connection's first trips are not typical
            await qmp.send(QUERY)
        for _ in range(n):
            t0 = time.perf_counter()
            await qmp.send(QUERY)
            out.append(time.perf_counter() - t0)
        await qmp.close()
        return out

    async def raw_blocking(n: int) -> list[float]:
        qmp, out = BlockingQmp(paths.qmp_socket), []
        for _ in range(RECONNECT_WARMUP):
            qmp.send(QUERY)
        for _ in range(n):
            t0 = time.perf_counter()
            qmp.send(QUERY)
            out.append(time.perf_counter() - t0)
        qmp.close()
        return out

    # qmp.sock takes one client at a time, so each raw block connects afresh (untimed).
    sides = {"engine": engine, "raw_asyncio": raw_asyncio, "raw_blocking": raw_blocking}
    for side in sides.values():
        await side(RTT_WARMUP)
    samples = defaultdict(list)
    for _ in range(RTT_BLOCKS):
        for name, side in sides.items():
            samples[name] += await side(RTT_BLOCK)
    await session.close()
    fig = {name: summary(s, 1e6) for name, s in samples.items()}
    fig["ratio_asyncio"] = fig["engine"]["median"] / fig["raw_asyncio"]["median"]
    fig["ratio_blocking"] = fig["engine"]["median"] / fig["raw_blocking"]["median"]
    return fig


def report(fig: dict, out) -> None:
    s, r = fig["start"], fig["rtt"]
    print(f"hvdesk engine bench  {fig['date']}  Python {fig['python']}  QEMU {fig['qemu']}  TCG", file=out)
    print(f"start, ms ({STARTS} each, interleaved):  engine median {s['engine']['median']:.1f} "
          f"p90 {s['engine']['p90']:.1f}  |  raw median {s['raw']['median']:.1f} p90 {s['raw']['p90']:.1f}"
          f"  |  engine/raw {s['ratio']:.3f} (goal <= {START_GOAL})", file=out)
    print("  raw pieces, median ms: " + "  ".join(f"{k} {v:.2f}" for k, v in s["raw_pieces"].items()), file=out)
    if "breakdown" in fig:
        print(f"  engine pieces ({BREAKDOWN_ROUNDS} starts), median ms: "
              + "  ".join(f"{k} {v:.2f}" for k, v in fig["breakdown"].items()), file=out)
    print("boot to marker, s from start(): " + "  ".join(f"{t:.2f}" for t in s["boot_to_marker_s"]), file=out)
    print(f"query-status round trip, us ({RTT_BLOCKS * RTT_BLOCK} each, blocks of {RTT_BLOCK}):", file=out)
    for name in ("engine", "raw_asyncio", "raw_blocking"):
        print(f"  {name:13} median {r[name]['median']:7.1f}  p90 {r[name]['p90']:7.1f}", file=out)
    print(f"  engine/raw_asyncio {r['ratio_asyncio']:.2f} (goal <= {RTT_GOAL})  "
          f"engine/raw_blocking {r['ratio_blocking']:.2f}", file=out)


async def run() -> dict:
    guest = ensure_tiny_guest()
    fig = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "qemu": binaries.program_version(binaries.find_emulator())}
    manager = await Manager().open()
    await manager.create(CreateRequest(name=NAME, memory_mib=256, kernel=guest.kernel, initrd=guest.initrd,
                                       append=guest.append))
    b = Bench(manager, guest, Path(os.environ["HVDESK_RUNTIME_DIR"]) / "raw")
    b.raw_dir.mkdir(mode=0o700)
    try:
        fig["start"] = await bench_start(b)
        if fig["start"]["ratio"] > START_GOAL:
            fig["breakdown"] = await bench_breakdown(b)
        t0 = time.perf_counter()
        await b.engine_start()
        await b.wait_marker(t0)  # round trips against an idle, booted guest
        fig["rtt"] = await bench_rtt(b)
        await b.engine_stop()
    finally:
        await b.cleanup()
        await manager.close()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (the text goes to stderr)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hvdesk-bench-")
    rundir = tempfile.mkdtemp(prefix="hvb-", dir="/tmp")  # short: unix socket paths must be < 100 bytes
    os.environ.update(HVDESK_HOME=home, HVDESK_RUNTIME_DIR=rundir, HVDESK_ACCEL="tcg")
    try:
        fig = asyncio.run(run())
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(rundir, ignore_errors=True)
    report(fig, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
