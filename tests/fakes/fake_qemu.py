"""A stand-in for a VM's running QEMU: a process the engine takes for it, and the fake QMP server
on the VM's two QMP sockets, so the engine's own paths (pidfile, process check, sockets) are used
unchanged while each test scripts what "QEMU" says.

The process is a Python interpreter started with argv[0] `qemu-system-x86_64` and the VM's
`-uuid`, which is what `hvdesk.qemu.process.is_our_qemu` checks. It waits on its stdin, so it
ends with the test process even if a test dies before cleaning up. Its /proc comm stays
"python", so the suite's QEMU discovery (and its kill of leftover QEMUs) never sees it.
"""

from __future__ import annotations

import subprocess
import sys
import time

from hvdesk.core.paths import make_private_runtime_dir
from hvdesk.engine import runtime
from hvdesk.engine.machine import Machine
from hvdesk.qemu.vm_paths import VmPaths
from tests.fakes.qmp_server import FakeQmpServer

WAIT_ON_STDIN = "import sys; sys.stdin.buffer.read()"


class FakeQemu:
    def __init__(self, machine: Machine, *, status: str = "running") -> None:
        self.paths: VmPaths = machine.paths
        self.uuid = machine.config.uuid
        self.server = FakeQmpServer([self.paths.qmp_socket, self.paths.ctl_socket], status=status)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, started_by: str | None = None) -> FakeQemu:
        """Runtime folder, process, pidfile and sockets, as a launched QEMU has them.
        `started_by`: "start" or "start --paused" also writes the run.json an hvdesk start
        leaves (for a QEMU another hvdesk is still launching); None leaves none."""
        make_private_runtime_dir(self.paths.run_dir)
        self.process = subprocess.Popen(
            ["qemu-system-x86_64", "-I", "-S", "-c", WAIT_ON_STDIN, "-uuid", self.uuid],
            executable=sys.executable, stdin=subprocess.PIPE)
        self.paths.pidfile.write_text(f"{self.pid}\n")
        if started_by is not None:
            runtime.write_run_info(self.paths, runtime.RunInfo(
                self.pid, "tcg", "fake", time.time(), ["qemu-system-x86_64"], {}, started_by == "start --paused"))
        await self.server.start()
        return self

    async def exit_cleanly(self) -> None:
        """What QEMU does when the guest powers off or is told to quit: its pidfile goes, its
        sockets close, the process ends."""
        self.paths.pidfile.unlink(missing_ok=True)
        await self.server.hang_up()
        self._end()

    async def crash(self) -> None:
        """Killed: the sockets close, the process ends, the pidfile stays."""
        await self.server.hang_up()
        self._end()

    async def close(self) -> None:
        await self.server.close()
        self._end()

    def _end(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()

    async def __aenter__(self) -> FakeQemu:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
