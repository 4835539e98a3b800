"""Choosing the accelerator a VM runs under.

`auto` takes the host's hardware accelerator (kvm, hvf, whpx) only after a real guest ran under
it: a few bytes of firmware that write to QEMU's debug-exit port, run with the CPU model we would
use (`-cpu host`). An accelerator that opens but cannot run guests (e.g. KVM on nested PVM, where
`-cpu host` aborts with "failed to set MSR") fails that probe, and the VM gets TCG with the reason.
Results are cached per QEMU binary and host kernel (hostcache), so the probe runs once, not per start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hvdesk.core.errors import ConfigError
from hvdesk.qemu import hostcache

HARDWARE_ACCEL = {"linux": "kvm", "darwin": "hvf", "win32": "whpx"}
ACCEL_NAMES = {"kvm": "KVM", "hvf": "Hypervisor.framework", "whpx": "Windows Hypervisor Platform", "tcg": "TCG"}
PROBE_EXIT = 0x2A  # written by the probe firmware; QEMU exits with (value << 1) | 1
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class AccelChoice:
    name: str  # kvm | hvf | whpx | tcg
    reason: str  # one line for the user: why this one

    @property
    def hardware(self) -> bool:
        return self.name != "tcg"

    def describe(self) -> str:
        return f"{ACCEL_NAMES.get(self.name, self.name)}: {self.reason}"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


Prober = Callable[[Path, str], ProbeResult]


def cpu_model(accel: str) -> str:
    """The guest CPU: the host's own under hardware acceleration, the richest TCG can emulate otherwise."""
    return "host" if accel in ("kvm", "hvf") else "max"


def choose(requested: str, emulator: Path, cache_dir: Path | None, *,
           platform_name: str = sys.platform, prober: Prober | None = None) -> AccelChoice:
    """Decide the accelerator. HVDESK_ACCEL beats the VM's own setting, which beats auto."""
    env = os.environ.get("HVDESK_ACCEL", "").strip().lower()
    if env and env != "auto":
        _check_known(env, "HVDESK_ACCEL")
        return AccelChoice(env, f"set by HVDESK_ACCEL={env}")
    if requested != "auto":
        _check_known(requested, "accel")
        return AccelChoice(requested, "set in the VM's settings")
    candidate = HARDWARE_ACCEL.get(platform_name)
    if candidate is None:
        return AccelChoice("tcg", f"no hardware accelerator is known for {platform_name}")
    label = ACCEL_NAMES[candidate]
    if candidate == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        why = ("/dev/kvm is missing" if not os.path.exists("/dev/kvm")
               else "no permission on /dev/kvm (join the kvm group)")
        return AccelChoice("tcg", f"{label} not usable: {why}")
    result = _cached_probe(emulator, candidate, cache_dir, prober or probe)
    if result.ok:
        return AccelChoice(candidate, f"{label} available ({result.detail})")
    return AccelChoice("tcg", f"{label} not usable on this host: {result.detail}")


def _check_known(name: str, source: str) -> None:
    if name not in ACCEL_NAMES:
        raise ConfigError(f"{source}: unknown accelerator {name!r} (use auto, kvm, hvf, whpx or tcg)")


def is_quick(requested: str, emulator: Path, cache_dir: Path | None, platform_name: str = sys.platform) -> bool:
    """Whether choose() will answer without running a probe."""
    env = os.environ.get("HVDESK_ACCEL", "").strip().lower()
    candidate = HARDWARE_ACCEL.get(platform_name)
    if (env and env != "auto") or requested != "auto" or candidate is None:
        return True
    return hostcache.known(cache_dir, hostcache.binary_key(emulator, f"probe-{candidate}"))


def _cached_probe(emulator: Path, accel: str, cache_dir: Path | None, prober: Prober) -> ProbeResult:
    def run() -> dict:
        result = prober(emulator, accel)
        return {"ok": result.ok, "detail": result.detail}
    return ProbeResult(**hostcache.remembered(cache_dir, hostcache.binary_key(emulator, f"probe-{accel}"), run))


def probe_firmware() -> bytes:
    """64 KiB of firmware whose reset vector does `mov al, 0x2a; out 0xf4, al; hlt`."""
    image = bytearray(b"\xf4" * 65536)
    code = bytes([0xB0, PROBE_EXIT, 0xE6, 0xF4, 0xF4])
    image[-16:-16 + len(code)] = code
    return bytes(image)


def probe(emulator: Path, accel: str) -> ProbeResult:
    """Run the probe firmware under `accel`; ok only if it reached the debug-exit port."""
    with tempfile.TemporaryDirectory(prefix="hvdesk-probe-") as tmp:
        firmware = Path(tmp) / "probe.bin"
        firmware.write_bytes(probe_firmware())
        argv = [str(emulator), "-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35",
                "-accel", accel, "-cpu", cpu_model(accel), "-m", "16", "-bios", str(firmware),
                "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return ProbeResult(False, f"a test guest did not finish within {PROBE_TIMEOUT:.0f} s")
        except OSError as exc:
            return ProbeResult(False, f"cannot run {emulator}: {exc.strerror}")
    if done.returncode == (PROBE_EXIT << 1) | 1:
        return ProbeResult(True, "a test guest ran")
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    first_error = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
    detail = first_error.removeprefix(f"{emulator}: ").removeprefix(f"{emulator.name}: ")
    return ProbeResult(False, f"a test guest failed ({detail or f'exit code {done.returncode}'})")
