"""Save state and resume times of a 512 MiB tiny guest (TCG), and the state file's size.

Each round: the guest runs (booted once, then resumed), `Manager.save` writes its state and ends
QEMU, `Manager.start` resumes it (until QEMU runs the guest again); medians over the rounds. For
comparison, the first boot's time from `start` to the guest's ready marker on its serial console.
QEMU writes pages of zeros as a flag each, so the file holds about what the guest has written to
its memory, not its size: the figure is for an idle tiny guest.

    .venv/bin/python -m bench.bench_savestate [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import emit, private_library
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager
from tests.guest.build import ensure_tiny_guest

NAME = "bench-save"
MEMORY_MIB = 512


async def wait_marker(path, marker: str, timeout: float = 120.0) -> float:
    began = time.monotonic()
    while marker not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"{marker!r} not seen in {path}")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def measure(rounds: int) -> dict:
    guest = ensure_tiny_guest()
    manager = await Manager().open()
    try:
        await manager.create(CreateRequest(name=NAME, os="linux", memory_mib=MEMORY_MIB, kernel=guest.kernel,
                                           initrd=guest.initrd, append=guest.append))
        began = time.monotonic()
        machine = await manager.start(NAME)
        boot = time.monotonic() - began + await wait_marker(machine.paths.serial_log, guest.marker)
        await asyncio.sleep(2.0)  # let its services settle
        saves, resumes, sizes = [], [], []
        for _ in range(rounds):
            done = await manager.save(NAME)
            saves.append(done.seconds)
            sizes.append(done.size)
            began = time.monotonic()
            await manager.start(NAME)
            resumes.append(time.monotonic() - began)
            await asyncio.sleep(1.0)
        await manager.stop(NAME, force=True, timeout=0)
        await manager.delete(NAME)
    finally:
        await manager.close()
    return {"memory_mib": MEMORY_MIB, "rounds": rounds, "save_s": saves, "resume_s": resumes,
            "save_median_s": statistics.median(saves), "resume_median_s": statistics.median(resumes),
            "file_bytes_median": int(statistics.median(sizes)), "first_boot_to_marker_s": boot}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_library():
        figures = asyncio.run(measure(args.rounds))
    mib = 1024 * 1024
    lines = [
        f"save state, {MEMORY_MIB} MiB tiny guest under TCG, {args.rounds} rounds (medians):",
        f"  save (stop, write, QEMU ends):  {figures['save_median_s']:.2f} s   "
        f"[{', '.join(f'{s:.2f}' for s in figures['save_s'])}]",
        f"  resume (start to guest running): {figures['resume_median_s']:.2f} s   "
        f"[{', '.join(f'{s:.2f}' for s in figures['resume_s'])}]",
        f"  state file: {figures['file_bytes_median'] / mib:.1f} MiB",
        f"  for comparison, first boot to the guest's marker: {figures['first_boot_to_marker_s']:.2f} s",
    ]
    emit(lines, figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
