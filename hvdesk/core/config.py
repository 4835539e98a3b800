"""The VM configuration: typed, validated, and stored as vm.toml.

Each field is declared once, with its type, default and rule (choices, range or a check) in its
metadata; loading, checking and saving all read those declarations, so a new option is one line.
A vm.toml can come from someone else: every value that reaches QEMU's command line has a rule.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from hvdesk.core import checks
from hvdesk.core.errors import ConfigError
from hvdesk.core.names import validate_name

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Section = TypeVar("_Section", bound="DataclassInstance")

SCHEMA_VERSION = 1

FIRMWARES = ("bios", "uefi")
MACHINES = ("q35", "pc")
ACCELERATORS = ("auto", "kvm", "hvf", "whpx", "tcg")
BOOT_DEVICES = ("disk", "cdrom", "network")
DISK_BUSES = ("virtio", "sata", "ide")
CD_BUSES = ("sata", "ide")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139")
NET_MODES = ("nat",)
VGA_MODELS = ("std", "virtio", "none")
PROTOCOLS = ("tcp", "udp")
# "default": the controller's global default; the others are control.inputs.PinMode's values.
PIN_MODES = ("default", "off", "balanced", "dedicated")
MIN_SHARES, MAX_SHARES = 1, 10000  # cgroup v2 cpu.weight's range; 100 is normal
# Image formats as qemu-img names them, which become -blockdev drivers: never a protocol or
# pseudo-format (vvfat, nbd, ssh, http...) that would reach beyond the image file. The same list
# as qemu/images.py's KNOWN_FORMATS (core cannot import from qemu).
DISK_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc", "qed", "qcow", "parallels", "dmg")
MAX_MEMORY_MIB = 4 * 1024 * 1024  # 4 TiB: far beyond any desktop host, catches unit mistakes
MAX_CPUS = 255  # QEMU's x86 limit without an IOMMU for x2APIC
DEFAULT_MIN_MEMORY_MIB = 256  # the controller's floor for a VM's memory, unless the VM has less

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _rule(*, choices: tuple[str, ...] = (), low: int | None = None, high: int | None = None,
          check: Callable[[Any], None] | None = None, **kw: Any) -> Any:
    """A field with its rule: one of `choices`, within `low`..`high`, or passing `check` (which
    raises ValueError saying what is wrong with the value)."""
    return field(metadata={"choices": choices, "low": low, "high": high, "check": check}, **kw)


def random_mac() -> str:
    """A locally administered MAC in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def _new_uuid() -> str:
    import uuid  # here: reading a vm.toml does not need the module (nor the platform module it loads)

    return str(uuid.uuid4())


@dataclass
class BackingImage:
    """One image below a disk in its backing chain, as the person approved it when attaching."""

    path: str = _rule(check=checks.path)  # absolute, or relative to the VM folder
    format: str = _rule(choices=DISK_FORMATS)


@dataclass
class Disk:
    path: str = _rule(check=checks.path)  # relative to the VM folder, or absolute
    format: str = _rule(choices=DISK_FORMATS)  # as qemu-img detected it; never guessed from the file name
    bus: str = _rule(choices=DISK_BUSES, default="virtio")
    created: bool = True  # made by hvdesk for this VM: deleting the VM deletes it
    readonly: bool = False
    # Held by the VM's snapshots (False: left out, as VirtualBox's write-through disks are: a
    # snapshot's restore leaves it as it is). Only qcow2 images can hold snapshots.
    in_snapshots: bool = True
    # The chain below the image, top first, pinned: QEMU opens exactly these, never what the
    # image's header names later (empty: the image must have no backing image).
    backing: list[BackingImage] = field(default_factory=list)


@dataclass
class CdDrive:
    iso: str = _rule(check=checks.optional_path, default="")  # empty: no media in the drive
    bus: str = _rule(choices=CD_BUSES, default="sata")


@dataclass
class PortForward:
    protocol: str = _rule(choices=PROTOCOLS, default="tcp")
    host_port: int = _rule(low=1, high=65535, default=2222)
    guest_port: int = _rule(low=1, high=65535, default=22)
    host_address: str = _rule(check=checks.ipv4_address, default="127.0.0.1")


@dataclass
class Nic:
    mode: str = _rule(choices=NET_MODES, default="nat")
    model: str = _rule(choices=NIC_MODELS, default="virtio")
    mac: str = _rule(check=checks.mac_address, default_factory=random_mac)
    forwards: list[PortForward] = field(default_factory=list)


@dataclass
class Display:
    vnc: bool = True  # QEMU's VNC server on a private unix socket, for our console
    vga: str = _rule(choices=VGA_MODELS, default="std")
    tablet: bool = True  # usb-tablet: absolute pointer, so the console needs no mouse grab


@dataclass
class Balloon:
    enabled: bool = True
    free_page_reporting: bool = True  # the guest hands freed pages back to the host
    deflate_on_oom: bool = True  # without it a guest allocating past its balloon OOM-kills


@dataclass
class ResourcePolicy:
    """How the allocation controller treats the VM (it acts only while the VM runs)."""

    auto_balloon: bool = True  # the controller may shrink the balloon of an idle guest
    # Never ballooned below this; at most the VM's memory (VmConfig.validate).
    min_memory_mib: int = _rule(low=0, high=MAX_MEMORY_MIB, default=DEFAULT_MIN_MEMORY_MIB)
    shares: int = _rule(low=MIN_SHARES, high=MAX_SHARES, default=100)  # CPU weight against other VMs
    pin: str = _rule(choices=PIN_MODES, default="default")  # where its vCPU threads may run


@dataclass
class KernelBoot:
    kernel: str = _rule(check=checks.path)
    initrd: str = _rule(check=checks.optional_path, default="")
    append: str = _rule(check=checks.text, default="")  # one argv element: spaces and commas are fine


@dataclass
class VmConfig:
    name: str
    uuid: str = _rule(check=checks.canonical_uuid, default_factory=_new_uuid)
    os: str = _rule(check=checks.os_id, default="other")
    memory_mib: int = _rule(low=16, high=MAX_MEMORY_MIB, default=1024)
    cpus: int = _rule(low=1, high=MAX_CPUS, default=1)
    firmware: str = _rule(choices=FIRMWARES, default="bios")
    machine: str = _rule(choices=MACHINES, default="q35")
    accel: str = _rule(choices=ACCELERATORS, default="auto")
    boot_order: list[str] = field(default_factory=lambda: ["disk", "cdrom"])
    disks: list[Disk] = field(default_factory=list)
    cdrom: CdDrive | None = field(default_factory=CdDrive)
    nics: list[Nic] = field(default_factory=lambda: [Nic()])
    display: Display = field(default_factory=Display)
    balloon: Balloon = field(default_factory=Balloon)
    resources: ResourcePolicy = field(default_factory=ResourcePolicy)
    kernel: KernelBoot | None = None
    tpm: bool = False  # a TPM 2.0 (swtpm), as Windows 11 requires
    install: bool = False  # an OS is being installed from the CD: hvdesk ejects it when that is done
    notes: str = ""

    def validate(self) -> VmConfig:
        """Check every field's rule and the rules between fields; raise ConfigError naming the field."""
        _check_fields(self, "")
        validate_name(self.name)
        for device in self.boot_order:
            if device not in BOOT_DEVICES:
                raise ConfigError(f"boot_order: unknown device {device!r} (use {', '.join(BOOT_DEVICES)})")
        if len(set(self.boot_order)) != len(self.boot_order):
            raise ConfigError("boot_order: a device is listed twice")
        if self.machine == "pc" and any(d.bus == "sata" for d in self.disks):
            raise ConfigError("disks: the pc machine has no SATA controller; use virtio or ide")
        if self.machine == "pc" and self.cdrom is not None and self.cdrom.bus == "sata":
            raise ConfigError("cdrom.bus: the pc machine has no SATA controller; use ide")
        macs = [n.mac for n in self.nics]
        if len(set(macs)) != len(macs):
            raise ConfigError("nics: two network cards share a MAC address")
        _check_forwards(self.nics)
        if self.resources.min_memory_mib > self.memory_mib:
            raise ConfigError(f"resources.min_memory_mib: {self.resources.min_memory_mib} MiB is more than the "
                              f"VM's memory ({self.memory_mib} MiB)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for TOML (which has no null: unset optional sections are left out)."""
        return {"schema": SCHEMA_VERSION, **_drop_none(dataclasses.asdict(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VmConfig:
        data = dict(data)
        schema = data.pop("schema", None)
        if schema != SCHEMA_VERSION:
            if isinstance(schema, int) and schema > SCHEMA_VERSION:
                raise ConfigError(f"written by a newer hvdesk (schema {schema}; this one reads {SCHEMA_VERSION})")
            raise ConfigError(f"schema: expected {SCHEMA_VERSION}, found {schema!r}")
        if "resources" not in data and isinstance(memory := data.get("memory_mib"), int):
            # Written before the [resources] section: the default floor, or the VM's memory if less.
            data["resources"] = {"min_memory_mib": max(0, min(DEFAULT_MIN_MEMORY_MIB, memory))}
        return _load(cls, data, "").validate()


def _check_forwards(nics: list[Nic]) -> None:
    """No host port forwarded twice: QEMU would fail to start on the second one."""
    taken: dict[tuple[str, int], list[str]] = {}
    for i, nic in enumerate(nics):
        for j, rule in enumerate(nic.forwards):
            addresses = taken.setdefault((rule.protocol, rule.host_port), [])
            if any(a == rule.host_address or "0.0.0.0" in (a, rule.host_address) for a in addresses):
                raise ConfigError(f"nics[{i}].forwards[{j}]: host port {rule.protocol} {rule.host_port} "
                                  f"is already forwarded")
            addresses.append(rule.host_address)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _where(prefix: str, name: str) -> str:
    return f"{prefix}{name}" if prefix else name


def _load(cls: type[_Section], data: Any, prefix: str) -> _Section:
    """Build dataclass `cls` from plain data, checking every value's type against the declaration."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'file'}: expected a table")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        # The name comes from the file: quoted unless plain, so the message stays one line.
        name = unknown[0] if isinstance(unknown[0], str) and _PLAIN_KEY.fullmatch(unknown[0]) else repr(unknown[0])
        raise ConfigError(f"{_where(prefix, name)}: unknown setting")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], _where(prefix, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_where(prefix, f.name)}: missing")
    return cls(**values)


@functools.cache
def _hints(cls: type[DataclassInstance]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):  # "X | None": None is written by leaving the key out
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):  # a hint names a class, never an instance
        return _load(kind, value, where + ".")
    _check_type(kind, value, where)
    return value


def _check_type(kind: Any, value: Any, where: str) -> None:
    # bool is an int in Python; a config that says `cpus = true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, found {type(value).__name__} {value!r}")


def _check_fields(obj: DataclassInstance, prefix: str) -> None:
    """Every field's type and rule, recursively; configs built in code (the settings dialog, the
    CLI) pass here as well as loaded ones, so a rule is never skipped."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, where, kind = getattr(obj, f.name), _where(prefix, f.name), hints[f.name]
        if kind in (str, int, bool):
            _check_type(kind, value, where)
        rule = f.metadata
        if rule.get("choices") and value not in rule["choices"]:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(rule['choices'])}")
        if rule.get("low") is not None and not rule["low"] <= value <= rule["high"]:
            raise ConfigError(f"{where}: {value} is out of range ({rule['low']}–{rule['high']})")
        if rule.get("check") is not None:
            try:
                rule["check"](value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                _check_fields(item, f"{where}[{i}]." if isinstance(value, list) else where + ".")


# Other declared settings files (the controller's) use the same declarations, loading and checks.
declared = _rule


def load_declared(cls: type[_Section], data: Any) -> _Section:
    """Build and check the dataclass `cls` (fields declared with `declared`) from plain data."""
    section = _load(cls, data, "")
    _check_fields(section, "")
    return section


def check_declared(section: DataclassInstance) -> None:
    _check_fields(section, "")
