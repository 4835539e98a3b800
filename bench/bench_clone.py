"""Benchmark clones (issue 13, item 3), in a private library:

1. full clone throughput: Manager.clone of a VM whose 1 GiB qcow2 disk holds 512 MiB of data,
   against `cp` of the same image file to the same file system (interleaved rounds, medians; both
   read the image from the page cache, warm, as the host's other work allows);
2. linked clone wall time (goal < 1 s): Manager.clone(linked=True) of such a VM, and the whole
   `hvdesk clone NAME NEW --linked` process.
No VM is started: QEMU is not needed, qemu-img is.

    .venv/bin/python -m bench.bench_clone [--json] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

from bench.common import emit, private_library
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.manager import Manager

GIB, MIB = 1024**3, 1024**2
DATA = 512 * MIB
LINKED_GOAL = 1.0


def fill(path: os.PathLike[str], size: int = DATA) -> None:
    """`size` bytes of data at the start of the image (a pattern that is not zeros, so it is copied)."""
    subprocess.run(["qemu-io", "-c", f"write -P 0xab 0 {size}", str(path)], check=True, capture_output=True)


async def make_vm(manager: Manager, name: str) -> None:
    machine = await manager.create(CreateRequest(name=name, disk_size=GIB, memory_mib=256))
    fill(machine.entry.folder / "disk0.qcow2")


async def run(rounds: int) -> tuple[list[str], dict]:
    full, copies, linked, cli = [], [], [], []
    async with Manager() as manager:
        await make_vm(manager, "source")
        image = manager.get("source").entry.folder / "disk0.qcow2"
        copy_target = manager.library.root / "copy.qcow2"
        for n in range(rounds):
            began = time.perf_counter()
            subprocess.run(["cp", str(image), str(copy_target)], check=True)
            copies.append(time.perf_counter() - began)
            copy_target.unlink()
            done = await manager.clone("source", f"full-{n}")
            full.append(done.seconds)
            await manager.delete(f"full-{n}")
        for n in range(rounds):
            await make_vm(manager, f"base-{n}")
            done = await manager.clone(f"base-{n}", f"linked-{n}", linked=True)
            linked.append(done.seconds)
            await make_vm(manager, f"cli-{n}")
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hvdesk", "clone", f"cli-{n}", f"cli-linked-{n}", "--linked"],
                           check=True, capture_output=True)
            cli.append(time.perf_counter() - began)
    rate = statistics.median(DATA / s for s in full) / MIB
    cp_rate = statistics.median(DATA / s for s in copies) / MIB
    figures = {
        "full_clone_s": statistics.median(full), "full_clone_mib_s": rate,
        "cp_s": statistics.median(copies), "cp_mib_s": cp_rate, "full_over_cp": rate / cp_rate,
        "linked_clone_s": statistics.median(linked), "linked_clone_max_s": max(linked),
        "cli_linked_clone_s": statistics.median(cli), "rounds": rounds,
    }
    lines = [
        f"full clone of a 1 GiB qcow2 holding 512 MiB: median {figures['full_clone_s']:.2f} s = {rate:.0f} MiB/s; "
        f"cp of the same image: {figures['cp_s']:.2f} s = {cp_rate:.0f} MiB/s "
        f"(clone/cp throughput {figures['full_over_cp']:.2f}x, {rounds} interleaved rounds)",
        f"linked clone (engine): median {figures['linked_clone_s'] * 1000:.0f} ms, worst "
        f"{figures['linked_clone_max_s'] * 1000:.0f} ms (goal < {LINKED_GOAL:.0f} s: "
        f"{'met' if figures['linked_clone_max_s'] < LINKED_GOAL else 'MISSED'})",
        f"linked clone (`hvdesk clone --linked`, whole process): median {figures['cli_linked_clone_s'] * 1000:.0f} ms",
    ]
    return lines, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_library():
        lines, figures = asyncio.run(run(args.rounds))
    emit(lines, figures, args.json)


if __name__ == "__main__":
    main()
