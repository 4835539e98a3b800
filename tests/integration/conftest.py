"""Real QEMU (TCG) with the tiny guest: fixtures that create VMs and clean up every process
they started, found by pid in this test's own runtime dir."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hvdesk.core.paths import runtime_root
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from hvdesk.qemu import cpu_weight
from hvdesk.qemu.discovery import qemu_processes
from hvdesk.qemu.process import is_alive, read_pid
from hvdesk.qemu.qmp import QmpSession
from hvdesk.qemu.transport import Endpoint, default_kind
from tests.guest.build import TinyGuest, ensure_tiny_guest

BOOT_TIMEOUT = 90.0  # generous: CI machines are shared and TCG is slow


@pytest.fixture(scope="session")
def tiny_guest() -> TinyGuest:
    return ensure_tiny_guest()  # fails (never skips) if the guest cannot be built


def kill_our_qemus() -> None:
    """Kill the QEMUs this test started: those whose pidfile is in its runtime dir, and those
    whose runtime dir a test removed under them (found by their -pidfile argument)."""
    root = runtime_root()
    pids = {read_pid(pidfile) for pidfile in root.glob("*/qemu.pid")}
    pids |= {proc.pid for proc in qemu_processes(fresh=True)
             if (proc.option("-pidfile") or "").startswith(str(root) + os.sep)}
    for pid in pids:
        if pid is not None and is_alive(pid):
            os.kill(pid, signal.SIGKILL)


class SmallDisk:
    """A real tmpfs of a few MiB, to fill up or make read-only (mount needs root, or sudo -n)."""

    def __init__(self, where: Path, size_kib: int) -> None:
        self.path = where
        self._mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(where))

    @staticmethod
    def _mount(*args: str) -> None:
        command = ["mount", *args] if os.getuid() == 0 else ["sudo", "-n", "mount", *args]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"these tests need to mount a tmpfs (root or sudo): {done.stderr}"

    def fill(self, leave: int = 0) -> None:
        """Fill it up but for about `leave` bytes."""
        free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
        with open(self.path / ".filler", "ab") as handle:
            handle.write(b"\0" * max(free - leave, 0))

    def read_only(self) -> None:
        self._mount("-o", "remount,ro", str(self.path))

    def remove(self) -> None:
        command = ["umount", "-l", str(self.path)]
        subprocess.run(command if os.getuid() == 0 else ["sudo", "-n", *command], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)  # our mount point (the app may write its prefs late)


@pytest.fixture
def small_disk():
    """Makes SmallDisks (a size in KiB each); unmounts them after the test and its QEMUs."""
    made: list[SmallDisk] = []

    def make(size_kib: int) -> SmallDisk:
        disk = SmallDisk(Path(tempfile.mkdtemp(prefix="hvfs-", dir="/tmp")), size_kib)
        made.append(disk)
        return disk
    yield make
    kill_our_qemus()
    for disk in made:
        disk.remove()


@pytest.fixture
def cli_home(hv_home: Path):
    """A private library for tests that run the `hvdesk` command; kills their QEMUs after."""
    yield hv_home
    kill_our_qemus()


@pytest.fixture
def cgroups(cli_home):
    """After the test (and before cli_home's own cleanup): its QEMUs killed, and the VM cgroups it
    made removed, so a failing test leaves none behind."""
    mechanism = cpu_weight.detect()
    folder = mechanism.base / cpu_weight.FOLDER if mechanism.base is not None else None
    before = set(folder.iterdir()) if folder is not None and folder.is_dir() else set()
    yield mechanism
    kill_our_qemus()
    if folder is not None and folder.is_dir():
        for group in set(folder.iterdir()) - before:
            for _ in range(40):
                if not cpu_weight.tasks(group):
                    group.rmdir()
                    break
                time.sleep(0.05)


@pytest.fixture
async def manager(hv_home: Path):
    mgr = Manager()
    await mgr.open()
    yield mgr
    await mgr.close()
    kill_our_qemus()


@pytest.fixture
async def engines(hv_home: Path):
    """Makes more Managers, as separate app or CLI processes would have; at the end closes them
    all and kills the QEMUs this test started."""
    made: list[Manager] = []

    async def make(**options) -> Manager:
        engine = Manager(**options)
        await engine.open()
        made.append(engine)
        return engine
    yield make
    for engine in made:
        await engine.close()
    kill_our_qemus()


@pytest.fixture
def guest_request(tiny_guest: TinyGuest):
    def make(name: str, **fields) -> CreateRequest:
        fields.setdefault("memory_mib", 256)
        fields.setdefault("os", "linux")  # the tiny guest is Linux: virtio disks and network
        return CreateRequest(name=name, kernel=tiny_guest.kernel, initrd=tiny_guest.initrd,
                             append=fields.pop("append", tiny_guest.append), **fields)
    return make


async def wait_for_serial(path: Path, text: str, count: int = 1, timeout: float = BOOT_TIMEOUT) -> float:
    """Seconds until `text` has appeared `count` times in the serial log."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if path.read_text(errors="replace").count(text) >= count:
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.05)
    tail = path.read_text(errors="replace")[-2000:] if path.exists() else "(no serial log)"
    raise AssertionError(f"{text!r} x{count} not seen in {path} within {timeout} s; serial tail:\n{tail}")


async def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def endpoint(text: str) -> Endpoint:
    """An endpoint as `hvdesk info --json` names it: a socket path, or tcp:127.0.0.1:PORT."""
    if text.startswith("tcp:"):
        host, port = text[4:].rsplit(":", 1)
        assert host == "127.0.0.1", text  # loopback only
        return Endpoint(port=int(port))
    return Endpoint(Path(text))


def transport_kind() -> str:
    """The transport the tests run under (HVDESK_TRANSPORT; bootstrap.sh runs some modules under tcp too)."""
    return default_kind()


async def qmp_call(machine, command: str, arguments: dict | None = None):
    """A command on the VM's short-command socket, independent of the engine under test."""
    session = QmpSession("test")
    await session.connect(machine.transport.ctl)
    try:
        return await session.execute(command, arguments)
    finally:
        await session.close()
