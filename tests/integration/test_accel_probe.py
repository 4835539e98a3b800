"""The accelerator probe with real QEMU: its guest passes under TCG, its checks really fail, and `auto`
never picks a KVM that cannot boot Linux. On nested-PVM hosts `-cpu host` fails at once, but KVM with
`-cpu qemu64` reaches long mode and then crawls (a kernel sits in its decompressor for minutes): that real
KVM, not a mock, is what the last test runs against. Whether the host's KVM boots Linux is settled there
independently, by booting the tiny guest under it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hvdesk.qemu import accel, binaries, probe_firmware
from tests.guest.build import TinyGuest

pytestmark = pytest.mark.qemu


def test_probe_guest_runs_under_tcg():
    run = accel.run_test_guest(binaries.find_emulator(), "tcg")
    assert run.ok, run.detail
    assert run.seconds is not None and 0 < run.seconds < accel.PROBE_TIMEOUT


def test_a_failed_check_is_reported_not_taken_for_success(monkeypatch):
    monkeypatch.setattr(probe_firmware, "COMPUTE_EXPECTED", probe_firmware.COMPUTE_EXPECTED ^ 1)
    run = accel.run_test_guest(binaries.find_emulator(), "tcg")
    assert (run.ok, run.detail) == (False, "a computation gave a wrong result")


def test_a_guest_that_runs_out_of_time_in_long_mode_is_too_slow():
    run = accel.run_test_guest(binaries.find_emulator(), "tcg", limit=0.01)
    assert not run.ok and run.too_slow
    assert run.detail == "it did not finish within 0.01 s in long mode"


def test_auto_never_picks_a_kvm_that_cannot_boot_linux(tiny_guest, tmp_path, monkeypatch):
    monkeypatch.delenv("HVDESK_ACCEL", raising=False)
    host_model = accel.cpu_model
    monkeypatch.setattr(accel, "cpu_model", lambda name: "qemu64" if name == "kvm" else host_model(name))
    emulator = binaries.find_emulator()
    choice = accel.choose("auto", emulator, tmp_path / "cache", platform_name="linux")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):  # e.g. CI without KVM: TCG, saying why
        assert choice.name == "tcg"
        assert choice.reason.startswith("KVM not usable: ") and "/dev/kvm" in choice.reason
        return
    tcg_boot = boot_seconds(emulator, tiny_guest, "tcg", "max", tmp_path / "tcg.log", timeout=90)
    assert tcg_boot is not None, "the tiny guest does not boot under TCG"
    kvm_boot = boot_seconds(emulator, tiny_guest, "kvm", "qemu64", tmp_path / "kvm.log", timeout=max(3 * tcg_boot, 10))
    if kvm_boot is None:  # KVM cannot boot Linux in reasonable time here (nested PVM): never choose it
        assert choice.name == "tcg", f"KVM chosen ({choice.reason}), but Linux does not boot under it"
        assert choice.reason.startswith("KVM not usable on this host: a test guest"), choice.reason
    elif kvm_boot < tcg_boot / 2:  # KVM boots Linux, clearly faster than TCG: it is what auto must take
        assert choice.name == "kvm", f"TCG chosen ({choice.reason}), but Linux boots under KVM in {kvm_boot:.1f} s"
        assert "under TCG" in choice.reason
    else:  # boots, but not clearly faster: either choice may be right, as long as it says why
        assert "under TCG" in choice.reason or choice.reason.startswith("KVM not usable on this host: ")


def boot_seconds(emulator: Path, guest: TinyGuest, accel_name: str, cpu: str, serial: Path,
                 timeout: float) -> float | None:
    """Seconds until the tiny guest's ready marker appears on its serial port, or None within `timeout`."""
    argv = [str(emulator), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "q35", "-accel", accel_name, "-cpu", cpu, "-m", "256",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd), "-append", guest.append,
            "-serial", f"file:{serial}"]
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout and qemu.poll() is None:
            if serial.exists() and guest.marker in serial.read_text(errors="replace"):
                return time.monotonic() - started
            time.sleep(0.05)
        return None
    finally:
        qemu.kill()
        qemu.wait()
