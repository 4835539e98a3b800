"""Install from the test installer ISO onto an empty disk in raw QEMU (no hvdesk
code), then boot the installed disk on its own."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .installer import InstallerIso, ensure_installer_iso

TIMEOUT = 90  # generous: TCG on a slow, shared CI machine
DISK_SIZE = "64M"


@pytest.fixture(scope="session")
def installer_iso() -> InstallerIso:
    return ensure_installer_iso()


def _start(log: Path, disk: Path, iso: Path | None) -> subprocess.Popen:
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "256",
        "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
        "-drive", f"file={disk},if=virtio,format=qcow2",
        # c = disk first ("dc" would be CD first): the CD boots only while
        # the disk is not bootable yet.
        "-boot", "order=cd",
    ]
    if iso is not None:
        argv += ["-drive", f"file={iso},media=cdrom,if=none,id=cd,readonly=on",
                 "-device", "ide-cd,drive=cd,bus=ide.0"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL)


def _serial(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def _wait_serial(proc: subprocess.Popen, log: Path, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in _serial(log):
        if proc.poll() is not None:
            pytest.fail(f"QEMU exited ({proc.returncode}) before {text!r}:\n{_serial(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {TIMEOUT}s:\n{_serial(log)}")
        time.sleep(0.1)


def _wait_exit(proc: subprocess.Popen, log: Path) -> None:
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"QEMU still running after {TIMEOUT}s:\n{_serial(log)}")
    assert proc.returncode == 0, _serial(log)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_install_then_boot_installed_disk(installer_iso: InstallerIso, tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), DISK_SIZE],
                   check=True)

    # The installer writes the disk, then powers off: QEMU exits by itself.
    log = tmp_path / "install.log"
    proc = _start(log, disk, installer_iso.path)
    try:
        _wait_exit(proc, log)
    finally:
        _kill(proc)
    assert installer_iso.installer_marker in _serial(log)

    log = tmp_path / "installed.log"
    proc = _start(log, disk, iso=None)
    try:
        _wait_serial(proc, log, installer_iso.installed_marker)
    finally:
        _kill(proc)
