"""What the faces need to know of the host, so that neither the app nor the command line reaches
into hvdesk.qemu itself: the emulator and its version, the accelerator new VMs get and why, the
host's size, and what a disk image holds."""

from __future__ import annotations

import os
from pathlib import Path

from hvdesk.core.errors import HvdeskError
from hvdesk.core.paths import cache_dir
from hvdesk.qemu import affinity, binaries, images
from hvdesk.qemu.affinity import HostCpu
from hvdesk.qemu.images import ImageInfo

__all__ = ["HostCpu", "ImageInfo", "accelerator", "accelerator_status", "host_limits", "host_topology",
           "image_info", "qemu_problem", "qemu_version", "thread_placement"]


def host_limits() -> tuple[int, int]:
    """(memory in MiB, logical CPUs) of this host."""
    import psutil  # here: every CLI command loads this module, and only create and the app's dialogs ask

    return psutil.virtual_memory().total // (1024 * 1024), os.cpu_count() or 1


def host_topology() -> list[HostCpu]:
    """The host CPUs this process may use (the ones a vCPU may run on), with core, cache and node."""
    return affinity.host_topology()


def thread_placement(tids: list[int]) -> dict[int, list[int]]:
    """{index: sorted host CPUs that thread tids[index] may run on now} (a vCPU's Cpus_allowed_list);
    threads that are gone, or a host that cannot tell, are left out."""
    placement = {}
    for index, tid in enumerate(tids):
        try:
            placement[index] = sorted(affinity.thread_cpus(tid))
        except (OSError, AttributeError):  # gone; no sched_getaffinity on this system
            continue
    return placement


def qemu_version() -> str:
    """`QEMU 7.2.22 (/usr/bin/qemu-system-x86_64)`, or why there is none."""
    try:
        emulator = binaries.find_emulator()
        return f"QEMU {binaries.program_version(emulator, cache_dir())} ({emulator})"
    except HvdeskError as exc:
        return str(exc)


def qemu_problem() -> str | None:
    """Why no VM can run on this host, with how to fix it on this system (QEMU or qemu-img is not
    installed), or None."""
    try:
        binaries.find_emulator()
        binaries.find_qemu_img()
    except HvdeskError as exc:
        return str(exc)
    return None


def accelerator(requested: str = "auto") -> tuple[str, str] | None:
    """(accelerator, why) that a VM asking for `requested` gets at its next start; None without QEMU.
    The first call may run the probe (under a second); later ones read its cached result."""
    from hvdesk.qemu import accel  # with its probe guest: `info` asks, `list` and the rest of the CLI do not

    try:
        choice = accel.choose(requested, binaries.find_emulator(), cache_dir())
    except HvdeskError:
        return None
    return choice.name, choice.reason


def accelerator_status() -> str:
    """One line for a status bar: which accelerator new VMs get, and why (or what is missing)."""
    from hvdesk.qemu import accel

    try:
        choice = accel.choose("auto", binaries.find_emulator(), cache_dir())
    except HvdeskError as exc:
        return f"⚠ {exc}"
    return f"Accelerator: {choice.describe()}"


async def image_info(path: Path) -> ImageInfo:
    """Format and sizes of a disk image, also while a running VM holds it (for showing only)."""
    return await images.info(path, force_share=True)
