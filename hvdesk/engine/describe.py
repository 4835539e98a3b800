"""What `list` and `info` report about a VM, as plain data. The field names are documented in
the README and stay stable: scripts depend on them. The host and image modules load in the
functions that need them: `list` needs neither."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.errors import HvdeskError
from hvdesk.core.storage import read_regular
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState
from hvdesk.qemu import transport as transports

if TYPE_CHECKING:
    from hvdesk.core.config import Disk

# What `list --json` and `info --json` print: JSON for scripts, whose fields the README documents.
Report = dict[str, Any]


def summary(machine: Machine) -> Report:
    digest = machine.entry.digest  # all `list` needs, without reading vm.toml (core/digests.py)
    return {
        "name": machine.name,
        "uuid": digest.uuid if digest else None,
        "state": str(machine.state),
        "reason": machine.reason,
        "os": digest.os if digest else None,
        "memory_mib": digest.memory_mib if digest else None,
        "cpus": digest.cpus if digest else None,
        "pid": machine.pid,
    }


async def details(machine: Machine) -> Report:
    """Everything `info` shows, with each disk's sizes from qemu-img."""
    data = static_details(machine)
    for entry in data.get("disks", []):
        await _add_sizes(entry)
    return data


def details_now(machine: Machine) -> Report:
    """As details(), without an event loop (`hvdesk info`): qcow2 and raw disks' sizes come from
    their headers and the file system, others' from qemu-img."""
    from hvdesk.qemu import images

    data = static_details(machine)
    for entry in data.get("disks", []):
        try:
            info = images.info_now(Path(entry["path"]), entry["format"])
            entry.update(virtual_size=info.virtual_size, actual_size=info.actual_size)
        except HvdeskError as exc:
            entry["error"] = str(exc)
    return data


def static_details(machine: Machine) -> Report:
    """Everything `info` shows except disk sizes (which need qemu-img): quick enough to call
    from a UI handler."""
    data = summary(machine)
    data["folder"] = str(machine.entry.folder)
    config = machine.entry.config
    if config is None:
        return data
    paths = machine.paths
    data.update({
        "firmware": config.firmware,
        "machine": config.machine,
        "accel": config.accel,
        "accelerator": _accelerator(machine),
        "disks": [_disk(machine, d) for d in config.disks],
        "cdrom": {"iso": config.cdrom.iso, "bus": config.cdrom.bus} if config.cdrom else None,
        "boot_order": list(config.boot_order),
        "nics": [{"mode": n.mode, "model": n.model, "mac": n.mac,
                  "forwards": [vars(f).copy() for f in n.forwards]} for n in config.nics],
        "kernel": vars(config.kernel).copy() if config.kernel else None,
        "balloon": vars(config.balloon).copy(),
        "display": vars(config.display).copy(),
        "resources": vars(config.resources).copy(),
        "tpm": config.tpm,
        "sockets": _sockets(machine),
        "log": str(paths.qemu_log),
        "serial_log": str(paths.serial_log),
        "notes": config.notes,
    })
    data["saved_state"] = _saved_state(machine) if machine.state == VmState.SAVED else None
    return data


def _saved_state(machine: Machine) -> dict[str, Any] | None:
    """The saved state's file, size, time and whether it resumes paused (engine/savestate.py;
    read leniently here, for display: a start checks it)."""
    import json

    paths = machine.paths
    try:
        data = json.loads(read_regular(paths.saved_state_info))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {"file": str(paths.saved_state), "size": data.get("size"), "saved_at": data.get("saved_at"),
            "paused": data.get("paused")}


def _sockets(machine: Machine) -> dict[str, Any]:
    """Where its QEMU listens: unix socket paths, or tcp:127.0.0.1:PORT (qemu/transport.py); for a
    VM not running under tcp, null (its ports are picked when it starts)."""
    link = machine.transport
    if machine.run is None and transports.default_kind() == "tcp":
        return {"qmp": None, "ctl": None, "vnc": None, "transport": "tcp"}
    vnc = str(link.vnc) if machine.config.display.vnc else None
    return {"qmp": str(link.qmp), "ctl": str(link.ctl), "vnc": vnc, "transport": link.kind}  # (qmp first, as before)


def _accelerator(machine: Machine) -> dict[str, Any] | None:
    """The accelerator the running QEMU uses, or the one the next start would choose."""
    if machine.run is not None:
        return {"name": machine.run.accel, "reason": machine.run.accel_reason, "in_use": True}
    from hvdesk.engine import host

    found = host.accelerator(machine.config.accel)
    if found is None:
        return None
    return {"name": found[0], "reason": found[1], "in_use": False}


def _disk(machine: Machine, disk: Disk) -> dict[str, Any]:
    return {"path": str(machine.paths.resolve(disk.path)), "format": disk.format, "bus": disk.bus,
            "created": disk.created, "virtual_size": None, "actual_size": None, "error": None,
            "in_snapshots": disk.in_snapshots and not disk.readonly,
            "backing": [{"path": str(machine.paths.resolve(b.path)), "format": b.format} for b in disk.backing]}


async def _add_sizes(entry: dict[str, Any]) -> None:
    from hvdesk.qemu import images

    try:
        info = await images.info(Path(entry["path"]), force_share=True)  # a running VM holds its lock
        entry.update(virtual_size=info.virtual_size, actual_size=info.actual_size)
    except HvdeskError as exc:
        entry["error"] = str(exc)
