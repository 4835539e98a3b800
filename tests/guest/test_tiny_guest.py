"""Boot the tiny test guest in raw QEMU (no hvdesk code) and check its protocol."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .build import ACK_PREFIX, CHANNEL_NAME, POWEROFF_MARKER, TinyGuest, ensure_tiny_guest

BOOT_TIMEOUT = 60  # generous: CI machines are slow and shared
EXIT_TIMEOUT = 30
REPLY_TIMEOUT = 30


@pytest.fixture(scope="session")
def tiny_guest() -> TinyGuest:
    return ensure_tiny_guest()


def _connect_unix(path: Path, proc: subprocess.Popen, timeout: float) -> socket.socket:
    # QEMU creates its listening sockets a moment after it starts.
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(str(path))
            sock.settimeout(REPLY_TIMEOUT)
            return sock
        except OSError:
            sock.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Qmp:
    """Just enough QMP: one command at a time, events skipped."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rw")
        self._file.readline()  # greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments) -> object:
        self._file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self._file.flush()
        while True:
            reply = json.loads(self._file.readline())
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class Vm:
    """A raw QEMU process booting the tiny guest; always killed on exit."""

    def __init__(self, guest: TinyGuest, workdir: Path, machine: str,
                 channel: bool) -> None:
        self.log = workdir / "serial.log"
        self.channel_path = workdir / "ch.sock" if channel else None
        self._qmp_path = workdir / "qmp.sock"
        self._argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-machine", machine,
            "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{self.log}",
            "-qmp", f"unix:{self._qmp_path},server=on,wait=off",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", guest.append,
        ]
        if channel:
            self._argv += [
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=ch0,path={self.channel_path},server=on,wait=off",
                "-device", f"virtserialport,chardev=ch0,name={CHANNEL_NAME}",
            ]

    def __enter__(self) -> Vm:
        self.proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL)
        try:
            self.qmp = Qmp(_connect_unix(self._qmp_path, self.proc, BOOT_TIMEOUT))
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.qmp.close()
        self._kill()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def serial(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_serial(self, text: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Seconds until `text` is on the serial console."""
        start = time.monotonic()
        while text not in self.serial():
            if self.proc.poll() is not None:
                pytest.fail(f"QEMU exited ({self.proc.returncode}) "
                            f"before {text!r}:\n{self.serial()}")
            if time.monotonic() - start > timeout:
                pytest.fail(f"no {text!r} within {timeout}s:\n{self.serial()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def power_button(self) -> None:
        """Press the ACPI power button; the guest must make QEMU exit."""
        self.qmp.execute("system_powerdown")
        try:
            self.proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"QEMU still running {EXIT_TIMEOUT}s after "
                        f"system_powerdown:\n{self.serial()}")
        assert POWEROFF_MARKER in self.serial()
        assert self.proc.returncode == 0


def _command(sock_file, line: str) -> str:
    sock_file.write(line + "\n")
    sock_file.flush()
    return sock_file.readline().rstrip("\n")


def test_q35_channel_and_power_button(tiny_guest: TinyGuest, tmp_path: Path) -> None:
    with Vm(tiny_guest, tmp_path, "q35", channel=True) as vm:
        vm.wait_serial(tiny_guest.marker)
        sock = _connect_unix(vm.channel_path, vm.proc, BOOT_TIMEOUT)
        with sock, sock.makefile("rw") as ch:
            assert _command(ch, "echo hello") == f"{ACK_PREFIX} echo hello"
            assert _command(ch, "alloc 32") == f"{ACK_PREFIX} alloc 32"
        assert f"{ACK_PREFIX} alloc 32" in vm.serial()
        vm.power_button()


def test_pc_without_channel_and_power_button(tiny_guest: TinyGuest, tmp_path: Path) -> None:
    with Vm(tiny_guest, tmp_path, "pc", channel=False) as vm:
        vm.wait_serial(tiny_guest.marker)
        vm.power_button()
