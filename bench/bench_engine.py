"""Benchmark hvdesk's engine against the bare minimum, on real QEMU (TCG) and the tiny test guest.

1. start in process: Manager.start vs spawning the same argv and sending `cont` over a bare QMP socket;
2. start, whole process: `hvdesk start NAME` until it exits vs bench/minimal_start.py (a person's
   script: spawn the same argv, blocking socket, greeting, qmp_capabilities, cont), and from there
   to the guest's boot marker on its serial console (hvdesk vs that raw QEMU);
3. query-status round trip: the engine's QmpSession vs minimal raw asyncio and blocking clients.
The host is shared and noisy, so the sides are interleaved and compared as same-run ratios of medians.

    .venv/bin/python -m bench.bench_engine [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

STARTS, CLI_STARTS, BOOTS = 20, 20, 8  # BOOTS: the first rounds of CLI_STARTS also wait for the marker
RTT_BLOCKS, RTT_BLOCK, RTT_WARMUP, RECONNECT_WARMUP = 20, 100, 200, 10
START_GOAL, CLI_START_GOAL, BOOT_GOAL, RTT_GOAL = 1.1, 1.3, 1.05, 1.3
MARKER_POLL = 0.005  # s between looks at the serial log, the same for both sides
MINIMAL_START = Path(__file__).with_name("minimal_start.py")
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
    raw_dir: Path  # the raw side's runtime dir and logs, so its files never meet the engine's
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
        self.learn_raw_argv(machine.run.argv)
        return elapsed

    def learn_raw_argv(self, argv: list[str]) -> None:
        """The engine's argv with the raw side's runtime dir and logs (its serial log, to look for
        the marker in a file only the raw QEMU writes)."""
        paths = self.machine.paths
        moves = {str(paths.run_dir): str(self.raw_dir), str(paths.serial_log): str(self.raw_serial_log),
                 str(paths.qemu_log): str(self.raw_dir / "qemu.log")}
        for old, new in moves.items():
            argv = [arg.replace(old, new) for arg in argv]
        self.raw_argv = argv

    @property
    def raw_serial_log(self) -> Path:
        return self.raw_dir / "serial.log"

    async def cli_start(self) -> tuple[float, float]:
        """`hvdesk start NAME` as a user runs it: (its start time, seconds until it exited)."""
        return await run_to_exit([*hvdesk_command(), "start", NAME])

    async def minimal_start(self) -> tuple[float, float]:
        return await run_to_exit([sys.executable, str(MINIMAL_START), json.dumps(self.raw_argv),
                                  str(self.raw_dir / "ctl.sock")])

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

    async def wait_marker(self, since: float, log: Path | None = None, timeout: float = 120.0) -> float:
        """Seconds from `since` until the guest's marker is in its serial log (the engine's by default)."""
        log = log or self.machine.paths.serial_log
        marker = self.guest.marker.encode()
        while time.perf_counter() - since < timeout:
            with contextlib.suppress(FileNotFoundError):
                if marker in log.read_bytes():
                    return time.perf_counter() - since
            await asyncio.sleep(MARKER_POLL)
        raise RuntimeError(f"guest marker not seen in {log} within {timeout:.0f} s")

    async def cleanup(self) -> None:
        """End any QEMU we started that is still running (a failure half-way may leave one)."""
        uuid = self.machine.config.uuid
        pids = self.started | {read_pid(self.raw_dir / "qemu.pid"), read_pid(self.machine.paths.pidfile)}
        for pid in pids - {None}:
            if is_our_qemu(pid, uuid):
                await terminate(pid)


def hvdesk_command() -> list[str]:
    """The `hvdesk` a user runs: this environment's console script, else the module."""
    script = Path(sys.executable).with_name("hvdesk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hvdesk"]


def installed_env() -> dict[str, str]:
    """This environment as an installed hvdesk sees it: with its bytecode cached. (Some shells here
    set PYTHONDONTWRITEBYTECODE, which would compile hvdesk's sources on every run, ~60 ms.)"""
    return {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


async def run_to_exit(argv: list[str]) -> tuple[float, float]:
    """(perf_counter at spawn, seconds until the process exited); it must succeed."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, env=installed_env(),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return t0, elapsed


async def bench_start(b: Bench) -> dict:
    """Interleaved engine and raw starts, QEMU stopped after each; the first pair only warms up."""
    engine, raw = [], defaultdict(list)
    for i in range(-1, STARTS):
        elapsed = await b.engine_start()
        await b.engine_stop()
        await b.raw_start(Laps(raw if i >= 0 else defaultdict(list)))
        await b.raw_stop()
        engine += [elapsed] if i >= 0 else []
    fig = {"engine": summary(engine, "ms"), "raw": summary(raw["total"], "ms"), "raw_pieces_ms": medians_ms(raw)}
    fig["ratio"] = fig["engine"]["median"] / fig["raw"]["median"]
    return fig


async def bench_cli_start(b: Bench) -> dict:
    """Whole processes, interleaved: `hvdesk start` and the minimal script, QEMU stopped after each;
    the first BOOTS rounds also wait for the guest's marker. The first pair only warms up."""
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(-1, CLI_STARTS):
        keep = i >= 0
        b.machine.paths.serial_log.unlink(missing_ok=True)  # no marker left from the round before
        t0, elapsed = await b.cli_start()
        times["hvdesk"] += [elapsed] if keep else []
        if keep and i < BOOTS:
            times["hvdesk_boot"].append(await b.wait_marker(t0))
        await b.engine_stop()
        b.raw_serial_log.unlink(missing_ok=True)
        t0, elapsed = await b.minimal_start()
        times["minimal"] += [elapsed] if keep else []
        if keep and i < BOOTS:
            times["minimal_boot"].append(await b.wait_marker(t0, b.raw_serial_log))
        await b.raw_stop()
    fig = {"hvdesk": summary(times["hvdesk"], "ms"), "minimal": summary(times["minimal"], "ms"),
           "hvdesk_boot": summary(times["hvdesk_boot"], "ms"), "minimal_boot": summary(times["minimal_boot"], "ms")}
    fig["ratio"] = fig["hvdesk"]["median"] / fig["minimal"]["median"]
    fig["boot_ratio"] = fig["hvdesk_boot"]["median"] / fig["minimal_boot"]["median"]
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


def _row(label: str, ours: dict, theirs: dict, ratio: float, goal: float) -> str:
    unit = ours["unit"]
    return (f"  {label:38} {ours['median']:8.1f} {theirs['median']:8.1f} {unit:3} {ratio:6.2f}x  (goal <= {goal}"
            f"{'' if ratio <= goal else ', MISSED'})   p90 {ours['p90']:.1f} / {theirs['p90']:.1f}")


def report(fig: dict) -> list[str]:
    s, c, r = fig["start"], fig["cli_start"], fig["rtt"]
    lines = [f"hvdesk engine bench  {fig['date']}  Python {fig['python']}  QEMU {fig['qemu']}  TCG",
             f"  {'medians, interleaved rounds':38} {'hvdesk':>8} {'minimal':>8} {'':3} {'ratio':>6}",
             _row(f"QMP query-status round trip ({RTT_BLOCKS * RTT_BLOCK})", r["engine"], r["raw_asyncio"],
                  r["ratio_asyncio"], RTT_GOAL),
             _row(f"`hvdesk start`, whole process ({CLI_STARTS})", c["hvdesk"], c["minimal"], c["ratio"],
                  CLI_START_GOAL),
             _row(f"start to the guest's boot marker ({BOOTS})", c["hvdesk_boot"], c["minimal_boot"],
                  c["boot_ratio"], BOOT_GOAL),
             _row(f"Manager.start in process ({STARTS})", s["engine"], s["raw"], s["ratio"], START_GOAL),
             f"  round trip vs a blocking client: {r['engine']['median']:.1f} vs {r['raw_blocking']['median']:.1f} us"
             f" ({r['ratio_blocking']:.2f}x); raw start pieces, median ms: {_pieces(s['raw_pieces_ms'])}"]
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
        fig["cli_start"] = await bench_cli_start(b)
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
