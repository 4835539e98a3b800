"""What a start needs to know before QEMU runs: the files exist, which binary and accelerator,
the UEFI firmware and NVRAM, and the command line; and tidying a TPM emulator that outlived a failed
start."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from hvdesk.core.errors import DiskError, HvdeskError, NotFoundError
from hvdesk.core.paths import cache_dir
from hvdesk.engine.machine import Machine
from hvdesk.qemu import binaries, firmware, hostcache, images
from hvdesk.qemu.argv import HostSetup, build_argv
from hvdesk.qemu.process import is_alive, read_pid
from hvdesk.qemu.transport import Transport
from hvdesk.qemu.vm_paths import VmPaths

if TYPE_CHECKING:
    from hvdesk.qemu.accel import AccelChoice


def plan(machine: Machine) -> tuple[HostSetup, AccelChoice]:
    """Everything a start needs to know before QEMU runs: files, binary, accelerator, firmware."""
    from hvdesk.qemu import accel  # with its probe guest: only a start needs it, and every command loads this module

    _check_files(machine)
    emulator = binaries.find_emulator()
    binaries.check_version(emulator, cache_dir())
    choice = accel.choose(machine.config.accel, emulator, cache_dir())
    code = _uefi_code(machine)
    vars_format = firmware.nvram_format(machine.paths.uefi_vars) if code is not None else "raw"
    return HostSetup(emulator, choice.name, uefi_code=code, uefi_vars_format=vars_format), choice


def argv(machine: Machine, host: HostSetup, link: Transport) -> list[str]:
    """The command line, for a transport picked once the runtime dir exists (it holds the VNC password)."""
    return build_argv(machine.config, dataclasses.replace(host, transport=link), machine.paths)


async def check_images(machine: Machine, doing: str = "start") -> None:
    """No disk image (or image below one) reads data from a file nobody approved: an image can be
    changed after it was attached. Backing images need no check here, the command line pins them;
    a qcow2 external data file or VMDK extents cannot be pinned, so they are refused."""
    paths = machine.paths
    for disk in machine.config.disks:
        for fmt, path in [(disk.format, paths.resolve(disk.path)),
                          *((b.format, paths.resolve(b.path)) for b in disk.backing)]:
            if fmt == "raw":
                continue
            if fmt == "qcow2":
                data_file = images.qcow2_data_file(path)
                problem = (f"{path} keeps its data in an external file ({data_file}); hvdesk does not use such "
                           "images") if data_file is not None else None
            else:
                problem = images.unsupported_references(await images.info(path, force_share=True))
            if problem is not None:
                raise DiskError(f"cannot {doing} {machine.name!r}: {problem}")
    if machine.config.firmware == "uefi":
        await prepare_nvram(machine)


async def prepare_nvram(machine: Machine) -> None:
    """A UEFI VM's NVRAM: made from the firmware's template if missing (first start, or deleted),
    as qcow2; a qcow2 one must keep its data in itself, as a disk must."""
    vars_file = machine.paths.uefi_vars
    if not os.path.lexists(vars_file):
        await firmware.new_nvram(firmware.find_uefi(machine.config.machine).vars_template, vars_file)
    elif images.is_qcow2(vars_file) and (data_file := images.qcow2_data_file(vars_file)) is not None:
        raise DiskError(f"cannot start {machine.name!r}: its UEFI NVRAM {vars_file} keeps its data in an external "
                        f"file ({data_file}); hvdesk does not use such images")


def stop_swtpm(paths: VmPaths) -> None:
    """swtpm ends by itself when QEMU closes its socket; if QEMU never connected, end it here."""
    pid = read_pid(paths.tpm_pidfile)
    if pid is not None and is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def is_quick(machine: Machine) -> bool:
    from hvdesk.qemu import accel

    try:
        emulator = binaries.find_emulator()
    except HvdeskError:
        return True  # fails at once, with the message
    return (hostcache.known(cache_dir(), hostcache.binary_key(emulator, "version"))
            and accel.is_quick(machine.config.accel, emulator, cache_dir()))


def _check_files(machine: Machine) -> None:
    """Every file the VM needs exists: a clear error now beats QEMU's later."""
    config, paths = machine.config, machine.paths
    needed = [("disk image", d.path) for d in config.disks]
    needed += [("backing image", b.path) for d in config.disks for b in d.backing]
    if config.cdrom is not None and config.cdrom.iso:
        needed.append(("CD image", config.cdrom.iso))
    if config.kernel is not None:
        needed += [("kernel", config.kernel.kernel)] + ([("initrd", config.kernel.initrd)]
                                                        if config.kernel.initrd else [])
    for what, path in needed:
        if not paths.resolve(path).is_file():
            raise NotFoundError(f"cannot start {machine.name!r}: its {what} {paths.resolve(path)} does not exist")


def _uefi_code(machine: Machine) -> Path | None:
    if machine.config.firmware != "uefi":
        return None
    if not machine.paths.uefi_vars.is_file():  # check_images makes it; a folder or a dangling link is no NVRAM
        raise NotFoundError(f"cannot start {machine.name!r}: its UEFI NVRAM {machine.paths.uefi_vars} is not a file")
    return firmware.find_uefi(machine.config.machine).code
