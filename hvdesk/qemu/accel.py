"""Choosing the accelerator a VM runs under.

`auto` takes the host's hardware accelerator (kvm, hvf, whpx) only after a test guest ran under it,
with the CPU model we would use, correctly and faster than under TCG. The guest (probe_firmware) does what
an OS's early boot does: real mode to long mode with paging, an MSR write, CPUID, tens of MiB of fresh
memory, a computation. Its long-mode part is timed under TCG first; the hardware run gets no more time than
that. So KVM on nested PVM fails whichever way it breaks: `-cpu host` aborts ("failed to set MSR"), or the
guest reaches long mode and then crawls, as a Linux kernel does there in its decompressor.
Results are cached per QEMU binary and host kernel (hostcache), so the probe runs once, not per start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hvdesk.core.errors import ConfigError
from hvdesk.qemu import hostcache

HARDWARE_ACCEL = {"linux": "kvm", "darwin": "hvf", "win32": "whpx"}
ACCEL_NAMES = {"kvm": "KVM", "hvf": "Hypervisor.framework", "whpx": "Windows Hypervisor Platform", "tcg": "TCG"}
PROBE_TOPIC = "probe-longmode"  # hostcache key: results of the older real-mode-only probe are not reused
PROBE_TIMEOUT = 10.0  # for QEMU to reach long mode; and for the long-mode part where there is no TCG time
POLL_SECONDS = 0.005


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
    return hostcache.known(cache_dir, hostcache.binary_key(emulator, f"{PROBE_TOPIC}-{candidate}"))


def _cached_probe(emulator: Path, accel: str, cache_dir: Path | None, prober: Prober) -> ProbeResult:
    def run() -> dict[str, Any]:
        result = prober(emulator, accel)
        return {"ok": result.ok, "detail": result.detail}
    key = hostcache.binary_key(emulator, f"{PROBE_TOPIC}-{accel}")
    return ProbeResult(**hostcache.remembered(cache_dir, key, run))


@dataclass(frozen=True)
class GuestRun:
    """One run of the test guest."""
    ok: bool
    seconds: float | None  # from its long-mode mark to its end; None if it never got there
    detail: str  # why it failed
    too_slow: bool = False  # killed in long mode when its time was up


def probe(emulator: Path, accel: str) -> ProbeResult:
    """ok if the test guest runs correctly under `accel` and, in long mode, faster than under TCG."""
    tcg = run_test_guest(emulator, "tcg")
    limit = tcg.seconds if tcg.ok and tcg.seconds is not None else PROBE_TIMEOUT
    hardware = run_test_guest(emulator, accel, limit=limit)
    if hardware.too_slow and tcg.ok:
        return ProbeResult(False, f"a test guest in long mode ran no faster than under TCG "
                                  f"(unfinished after {limit:.2f} s, the time TCG took)")
    if not hardware.ok:
        return ProbeResult(False, f"a test guest failed ({hardware.detail})")
    if not tcg.ok:  # e.g. a QEMU built without TCG: nothing to compare with, but it did run correctly
        return ProbeResult(True, f"test guest {hardware.seconds:.2f} s; under TCG it failed ({tcg.detail})")
    return ProbeResult(True, f"test guest {hardware.seconds:.2f} s vs {tcg.seconds:.2f} s under TCG")


def run_test_guest(emulator: Path, accel: str, limit: float = PROBE_TIMEOUT) -> GuestRun:
    """Run the probe firmware under `accel` with the CPU model a VM would get. It has PROBE_TIMEOUT to
    reach long mode, then `limit` seconds to finish; ok only if it wrote EXIT_OK to the debug-exit port."""
    from hvdesk.qemu import probe_firmware  # here: only a first start probes (its assembler tables cost every start)

    with tempfile.TemporaryDirectory(prefix="hvdesk-probe-") as tmp:
        firmware, mark, errors = Path(tmp) / "probe.bin", Path(tmp) / "long-mode", Path(tmp) / "stderr"
        firmware.write_bytes(probe_firmware.image())
        argv = [str(emulator), "-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35",
                "-accel", accel, "-cpu", cpu_model(accel), "-m", str(probe_firmware.MEMORY_MIB),
                "-bios", str(firmware), "-no-reboot", "-debugcon", f"file:{mark}",
                "-device", f"isa-debug-exit,iobase={probe_firmware.EXIT_PORT:#x},iosize=1"]
        try:
            with errors.open("w") as stderr:
                qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        except OSError as exc:
            return GuestRun(False, None, f"cannot run {emulator}: {exc.strerror}")
        try:
            status, seconds = _watch(qemu, mark, limit)
        finally:
            if qemu.poll() is None:  # interrupted: leave no QEMU behind
                qemu.kill()
                qemu.wait()
        stderr_text = errors.read_text(errors="replace")
    if status is None and seconds is None:
        return GuestRun(False, None, f"it did not reach long mode within {PROBE_TIMEOUT:.0f} s")
    if status is None:
        return GuestRun(False, seconds, f"it did not finish within {limit:.2f} s in long mode", too_slow=True)
    if status == probe_firmware.exit_status(probe_firmware.EXIT_OK):
        return GuestRun(True, seconds, "")
    why = probe_firmware.failure(status) or _qemu_error(stderr_text, emulator) or f"exit code {status}"
    return GuestRun(False, seconds, why)


def _watch(qemu: subprocess.Popen[bytes], mark: Path, limit: float) -> tuple[int | None, float | None]:
    """Wait for QEMU to exit: (its status, or None once killed at its deadline; seconds since the guest's
    long-mode mark, or None without one). Polling is portable, and 5 ms is fine against ~0.3 s under TCG."""
    started, marked = time.monotonic(), None
    while True:
        now = time.monotonic()
        if marked is None and _written(mark):
            marked = now
        since_mark = now - marked if marked is not None else None
        status = qemu.poll()
        if status is not None:
            return status, since_mark
        if now > (marked + limit if marked is not None else started + PROBE_TIMEOUT):
            qemu.kill()
            qemu.wait()
            return None, since_mark
        time.sleep(POLL_SECONDS)


def _written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _qemu_error(stderr: str, emulator: Path) -> str:
    """QEMU's first error line (else its first line), without the program name."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first_error = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
    return first_error.removeprefix(f"{emulator}: ").removeprefix(f"{emulator.name}: ")
