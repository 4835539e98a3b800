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
import inspect
import json
import os
import socket
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import emit, private_library
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.qemu import binaries
from hvdesk.qemu.process import is_our_qemu, read_pid, terminate
from hvdesk.qemu.qmp import QmpSession
from tests.guest.build import TinyGuest, ensure_tiny_guest

STARTS, BOOTS = 20, 3
RTT_BLOCKS, RTT_BLOCK, RTT_WARMUP, RECONNECT_WARMUP = 20, 100, 200, 10
START_GOAL, RTT_GOAL = 1.1, 1.5
CAPS = b'{"execute":"qmp_capabilities"}\n'
CONT = b'{"execute":"cont"}\n'
QUERY = b'{"execute":"query-status"}\n'
NAME = "bench"


def summary(samples: list[float], unit: str) -> dict:
    scale = {"ms": 1e3, "us": 1e6}[unit]
    return {"unit": unit, "n": len(samples), "median": statistics.median(samples) * scale,
            "p90": statistics.quantiles(samples, n=10, method="inclusive")[8] * scale}


def medians_ms(pieces: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(times) * 1e3 for name, times in pieces.items()}


class Laps:
    """Split times: each call files the time since the previous call under `name`."""

    def __init__(self, into: dict[str, list[float]]) -> None:
        self.into, self.start = into, time.perf_counter()
        self.last = self.start

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name].append(now - self.last)
        self.last = now

    def total(self) -> None:
        self.into["total"].append(self.last - self.start)


def _reply(line: bytes) -> dict | None:
    """The reply in `line`, or None for an event (events may come before a command's reply)."""
    message = json.loads(line)
    if "error" in message:
        raise RuntimeError(f"QMP error: {message['error']}")
    return None if "event" in message else message


class RawQmp:
    """The least a QMP client can do over asyncio streams: one JSON object a line."""

    async def open(self, path: Path) -> RawQmp:
        self.reader, self.writer = await asyncio.open_unix_connection(str(path))
        await self.reader.readline()  # the greeting: QEMU sends nothing before it
        await self.send(CAPS)
        return self

    async def send(self, line: bytes) -> dict:
        self.writer.write(line)
        while (message := _reply(await self.reader.readline())) is None:
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
        self.file.readline()
        self.send(CAPS)

    def send(self, line: bytes) -> dict:
        self.sock.sendall(line)
        while (message := _reply(self.file.readline())) is None:
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
    started: set[int] = field(default_factory=set)  # QEMU pids to make sure of at the end

    @property
    def machine(self) -> Machine:
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

    async def raw_start(self, laps: Laps) -> None:
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
        laps.total()

    async def raw_stop(self) -> None:
        pid = read_pid(self.raw_dir / "qemu.pid")
        self.started.add(pid)
        await terminate(pid)  # SIGTERM, then wait until the pid is gone

    async def wait_marker(self, since: float, timeout: float = 120.0) -> float:
        log = self.machine.paths.serial_log
        while time.perf_counter() - since < timeout:
            if self.guest.marker in log.read_text(errors="replace"):
                return time.perf_counter() - since
            await asyncio.sleep(0.02)
        raise RuntimeError(f"guest marker not seen in {log} within {timeout:.0f} s")

    async def cleanup(self) -> None:
        """End any QEMU we started that is still running (a failure half-way may leave one)."""
        uuid = self.machine.config.uuid
        pids = self.started | {read_pid(self.raw_dir / "qemu.pid"), read_pid(self.machine.paths.pidfile)}
        for pid in pids - {None}:
            if is_our_qemu(pid, uuid):
                await terminate(pid)


async def bench_start(b: Bench) -> dict:
    """Interleaved engine and raw starts, QEMU stopped after each; the first pair only warms up."""
    engine, boots, raw = [], [], defaultdict(list)
    for i in range(-1, STARTS):
        t0 = time.perf_counter()
        elapsed = await b.engine_start()
        if 0 <= i < BOOTS:
            boots.append(await b.wait_marker(t0))
        await b.engine_stop()
        await b.raw_start(Laps(raw if i >= 0 else defaultdict(list)))
        await b.raw_stop()
        engine += [elapsed] if i >= 0 else []
    fig = {"engine": summary(engine, "ms"), "raw": summary(raw["total"], "ms"),
           "raw_pieces_ms": medians_ms(raw), "boot_to_marker_s": boots}
    fig["ratio"] = fig["engine"]["median"] / fig["raw"]["median"]
    return fig


async def timed(call, n: int) -> list[float]:
    """Seconds each of `n` calls took; `call` may be blocking or return an awaitable."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        if inspect.isawaitable(result := call()):
            await result
        out.append(time.perf_counter() - t0)
    return out


async def bench_rtt(b: Bench) -> dict:
    """query-status round trips: the engine on ctl.sock, the raw clients (in turn) on qmp.sock."""
    paths = b.machine.paths
    session = QmpSession("hvdesk-bench")
    await session.connect(paths.ctl_socket)

    async def raw_asyncio(n: int) -> list[float]:
        qmp = await RawQmp().open(paths.qmp_socket)
        await timed(lambda: qmp.send(QUERY), RECONNECT_WARMUP)  # a fresh connection's first trips are slower
        out = await timed(lambda: qmp.send(QUERY), n)
        await qmp.close()
        return out

    async def raw_blocking(n: int) -> list[float]:
        qmp = BlockingQmp(paths.qmp_socket)
        await timed(lambda: qmp.send(QUERY), RECONNECT_WARMUP)
        out = await timed(lambda: qmp.send(QUERY), n)
        qmp.close()
        return out

    # qmp.sock serves one client at a time, so each raw block connects afresh (untimed).
    sides = {"engine": lambda n: timed(lambda: session.execute("query-status"), n),
             "raw_asyncio": raw_asyncio, "raw_blocking": raw_blocking}
    samples = defaultdict(list)
    for block in range(-1, RTT_BLOCKS):
        for name, side in sides.items():
            times = await side(RTT_WARMUP if block < 0 else RTT_BLOCK)
            samples[name] += times if block >= 0 else []
    await session.close()
    fig = {name: summary(times, "us") for name, times in samples.items()}
    fig["ratio_asyncio"] = fig["engine"]["median"] / fig["raw_asyncio"]["median"]
    fig["ratio_blocking"] = fig["engine"]["median"] / fig["raw_blocking"]["median"]
    return fig


def _pieces(medians: dict[str, float]) -> str:
    return "  ".join(f"{name} {ms:.2f}" for name, ms in medians.items())


def report(fig: dict) -> list[str]:
    s, r = fig["start"], fig["rtt"]
    lines = []
    say = lines.append
    say(f"hvdesk engine bench  {fig['date']}  Python {fig['python']}  QEMU {fig['qemu']}  TCG")
    say(f"start, ms ({STARTS} each, interleaved):  engine median {s['engine']['median']:.1f} "
        f"p90 {s['engine']['p90']:.1f}  |  raw median {s['raw']['median']:.1f} p90 {s['raw']['p90']:.1f}"
        f"  |  engine/raw {s['ratio']:.3f} (goal <= {START_GOAL})")
    say(f"  raw pieces, median ms: {_pieces(s['raw_pieces_ms'])}")
    say("boot to marker, s from start(): " + "  ".join(f"{t:.2f}" for t in s["boot_to_marker_s"]))
    say(f"query-status round trip, us ({RTT_BLOCKS * RTT_BLOCK} each, interleaved blocks of {RTT_BLOCK}):")
    for name in ("engine", "raw_asyncio", "raw_blocking"):
        say(f"  {name:13} median {r[name]['median']:7.1f}  p90 {r[name]['p90']:7.1f}")
    say(f"  engine/raw_asyncio {r['ratio_asyncio']:.2f} (goal <= {RTT_GOAL})  "
        f"engine/raw_blocking {r['ratio_blocking']:.2f}")
    return lines


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
    parser.add_argument("--json", action="store_true", help="JSON on stdout, text on stderr")
    args = parser.parse_args()
    with private_library():
        fig = asyncio.run(run())
    emit(report(fig), fig, args.json)


if __name__ == "__main__":
    main()
