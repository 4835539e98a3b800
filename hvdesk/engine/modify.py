"""Changing a VM's settings from a plain mapping, `{"memory_mib": 2048, "display.vga": "virtio"}`:
the command line's form of the Settings dialog. The changes are applied to a copy of the config
(inside the VM's guard, so nothing another hvdesk saved meanwhile is lost), validated, and saved
by editing.edit_settings, as the dialog's are: a bad value leaves vm.toml as it was.

A key is the setting's place in VmConfig, as ConfigError messages name it, so a face can say
which of its options a message is about. Disks are not settings here: they have their own
operations (editing.add_new_disk, attach_disk, remove_disk, resize_disk).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hvdesk.core.config import Balloon, CdDrive, Display, Nic, PortForward, ResourcePolicy, VmConfig
from hvdesk.core.errors import ConfigError
from hvdesk.engine import editing
from hvdesk.engine.context import Engine
from hvdesk.engine.host import host_limits
from hvdesk.engine.library_ops import existing_file
from hvdesk.engine.machine import Machine

_SECTIONS = {"display": Display, "balloon": Balloon, "resources": ResourcePolicy}
_TOP = ("name", "os", "notes", "memory_mib", "cpus", "firmware", "machine", "accel", "boot_order", "tpm")
NIC = "nics[0]."  # the first network card: the one the Settings dialog edits
# Every key `modify` takes. "nics" is whether the VM has a network card (True adds one if it has
# none; False removes them all); "cdrom.iso" is an ISO path, or "" to eject.
KEYS: tuple[str, ...] = (
    *_TOP,
    *(f"{section}.{f.name}" for section, kind in _SECTIONS.items() for f in dataclasses.fields(kind)),
    "nics", *(NIC + f.name for f in dataclasses.fields(Nic) if f.name != "mode"),
    "cdrom.iso", "cdrom.bus",
)
CONTROLLER = "resources."  # read by the allocation controller while the VM runs, never by QEMU


@dataclass(frozen=True)
class Modified:
    machine: Machine
    changed: dict[str, tuple[Any, Any]]  # key -> (before, now), for the keys whose value changed, in KEYS order
    at_next_start: tuple[str, ...]  # of those, what the running QEMU takes only when it starts again
    by_controller: tuple[str, ...]  # of those, what the allocation controller applies while the VM runs


async def modify(manager: Engine, name: str, changes: Mapping[str, Any]) -> Modified:
    """Apply `changes` to the VM's settings and save them; ConfigError (naming the key) if one is
    unknown or invalid, StateError if the VM's state forbids one (a rename while it runs)."""
    if not changes:
        raise ConfigError("nothing to change")
    for key in changes:
        if key not in KEYS:
            raise ConfigError(f"{key}: not a setting modify changes")
    current = manager.get(name)
    renaming = "name" in changes and changes["name"] != current.name
    before: dict[str, Any] = {}

    def edit(config: VmConfig) -> VmConfig:
        before.update((key, value_of(config, key)) for key in changes)
        edited = apply(config, changes)
        _check_host(config, edited)
        return edited

    machine = await editing.edit_settings(manager, name, edit, renaming=renaming)
    changed = {k: (before[k], value_of(machine.config, k)) for k in KEYS
               if k in changes and value_of(machine.config, k) != before[k]}
    pending = set(editing.pending_changes(machine))
    return Modified(machine, changed,
                    at_next_start=tuple(k for k in changed if _top(k) in pending),
                    by_controller=tuple(k for k in changed if k.startswith(CONTROLLER)) if machine.state.active
                    else ())


def apply(config: VmConfig, changes: Mapping[str, Any]) -> VmConfig:
    """A validated copy of `config` with `changes`; `config` and its sections are left as they were."""
    new = dataclasses.replace(config)
    if "nics" in changes:
        wanted = changes["nics"]
        if not isinstance(wanted, bool):
            raise ConfigError(f"nics: expected on or off (bool), found {wanted!r}")
        new.nics = (list(config.nics) or [Nic()]) if wanted else []
    for key, value in changes.items():
        if key in _TOP:
            setattr(new, key, list(value) if key == "boot_order" else value)
        elif key.startswith(NIC):
            new.nics = [_nic_with(new.nics, key.removeprefix(NIC), value), *new.nics[1:]]
        elif key.startswith("cdrom."):
            new.cdrom = _cd_with(new, key.removeprefix("cdrom."), value)
        elif key != "nics":
            section, _, field = key.partition(".")
            setattr(new, section, dataclasses.replace(getattr(new, section), **{field: value}))
    return new.validate()


def value_of(config: VmConfig, key: str) -> Any:
    """The setting at `key` (a KEYS entry); None for a network card or CD drive the VM lacks."""
    if key == "nics":
        return bool(config.nics)
    if key.startswith(NIC):
        return getattr(config.nics[0], key.removeprefix(NIC)) if config.nics else None
    if key.startswith("cdrom."):
        return getattr(config.cdrom, key.removeprefix("cdrom.")) if config.cdrom else None
    section, _, field = key.partition(".")
    return getattr(getattr(config, section), field) if field else getattr(config, section)


def _nic_with(nics: list[Nic], field: str, value: Any) -> Nic:
    if not nics:
        raise ConfigError(f"{NIC}{field}: the VM has no network card (add one first)")
    if field == "forwards":
        value = [_forward(i, rule) for i, rule in enumerate(value)]
    return dataclasses.replace(nics[0], **{field: value})


def _forward(index: int, rule: Any) -> PortForward:
    """A port forward from plain data ({protocol, host_port, guest_port[, host_address]})."""
    if isinstance(rule, PortForward):
        return rule
    names = {f.name for f in dataclasses.fields(PortForward)}
    if not isinstance(rule, Mapping) or not set(rule) <= names:
        raise ConfigError(f"{NIC}forwards[{index}]: expected a table of {', '.join(sorted(names))}")
    return PortForward(**rule)


def _cd_with(config: VmConfig, field: str, value: Any) -> CdDrive:
    drive = config.cdrom or CdDrive(bus="ide" if config.machine == "pc" else "sata")
    if field == "iso" and value:
        if not isinstance(value, str | Path):
            raise ConfigError(f"cdrom.iso: expected a path, found {value!r}")
        value = str(existing_file(Path(value), "ISO image"))  # as set_cd checks it
    return dataclasses.replace(drive, **{field: value})


def _check_host(old: VmConfig, new: VmConfig) -> None:
    """Memory and vCPUs within what this host has, as create asks (only when they change: a VM
    brought from a bigger host keeps its settings until someone changes them)."""
    if (new.memory_mib, new.cpus) == (old.memory_mib, old.cpus):
        return
    host_mib, host_cpus = host_limits()
    if new.memory_mib != old.memory_mib and new.memory_mib > host_mib:
        raise ConfigError(f"memory_mib: {new.memory_mib} MiB is more than this host has ({host_mib} MiB)")
    if new.cpus != old.cpus and new.cpus > host_cpus:
        raise ConfigError(f"cpus: {new.cpus} vCPUs is more than this host has ({host_cpus} logical CPUs)")


def _top(key: str) -> str:
    return key.split(".", 1)[0].split("[", 1)[0]
