"""`hvdesk modify NAME --option VALUE...`: the Settings dialog on the command line. One table says
each option's setting (a key of engine/modify.py), how its value is read and what it means; the
choices come from the config model's declarations. The engine applies, checks and saves; this
only reads the options, names them in the engine's errors, and says what was changed."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from hvdesk.cli.parser import _memory as memory_arg
from hvdesk.core.config import (
    ACCELERATORS,
    BOOT_DEVICES,
    CD_BUSES,
    FIRMWARES,
    MACHINES,
    MAX_SHARES,
    MIN_SHARES,
    NIC_MODELS,
    PIN_MODES,
    PROTOCOLS,
    VGA_MODELS,
)
from hvdesk.core.errors import ConfigError


def _memory(text: str) -> int:
    """As `create --memory` reads it; also 0, which only --min-memory allows (the engine checks)."""
    return 0 if text.strip() == "0" else memory_arg(text)


def _whole(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _switch(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: use on or off")
    return text == "on"


def _boot_order(text: str) -> list[str]:
    """Devices by comma (the engine refuses unknown and repeated ones); empty: boot nothing."""
    return [device.strip() for device in text.split(",")] if text.strip() else []


def _forward(text: str) -> dict[str, Any]:
    """PROTOCOL:HOSTPORT:GUESTPORT, or PROTOCOL:ADDRESS:HOSTPORT:GUESTPORT."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or parts[0] not in PROTOCOLS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use PROTOCOL:HOSTPORT:GUESTPORT or PROTOCOL:ADDRESS:HOSTPORT:GUESTPORT "
            f"(PROTOCOL: {', '.join(PROTOCOLS)})")
    rule: dict[str, Any] = {"protocol": parts[0]}
    if len(parts) == 4:
        rule["host_address"] = parts[1]
    for field, port in (("host_port", parts[-2]), ("guest_port", parts[-1])):
        if not re.fullmatch(r"[0-9]{1,5}", port):
            raise argparse.ArgumentTypeError(f"{text!r}: {port!r} is not a port number (1–65535)")
        rule[field] = int(port)
    return rule


def _cd(text: str) -> str:
    return "" if text == "none" else text


def _mac(text: str) -> str:
    return text.strip().lower()


class Option(NamedTuple):
    flag: str
    key: str  # the setting, as engine/modify.py's KEYS name it
    read: Callable[[str], Any] | None  # None: the choices, as they are
    metavar: str
    help: str
    choices: tuple[str, ...] = ()


ON_OFF = "on|off"
OPTIONS = (
    Option("--name", "name", str, "NEW", "rename the VM (only while it is stopped)"),
    Option("--os", "os", str, "ID", "OS preset id (as `create --os` takes)"),
    Option("--notes", "notes", str, "TEXT", "free text"),
    Option("--memory", "memory_mib", _memory, "MIB", "memory: MiB, or with a unit (2G)"),
    Option("--cpus", "cpus", _whole, "N", "virtual CPUs"),
    Option("--firmware", "firmware", None, "", "", FIRMWARES),
    Option("--machine", "machine", None, "", "chipset", MACHINES),
    Option("--accel", "accel", None, "", "accelerator (auto: the best this host has)", ACCELERATORS),
    Option("--boot-order", "boot_order", _boot_order, ",".join(BOOT_DEVICES),
           f"devices to boot from, in order, by comma ({', '.join(BOOT_DEVICES)})"),
    Option("--tpm", "tpm", _switch, ON_OFF, "a TPM 2.0 (swtpm)"),
    Option("--balloon", "balloon.enabled", _switch, ON_OFF, "the memory balloon"),
    Option("--free-page-reporting", "balloon.free_page_reporting", _switch, ON_OFF,
           "the guest returns freed memory to the host"),
    Option("--deflate-on-oom", "balloon.deflate_on_oom", _switch, ON_OFF,
           "the balloon gives memory back before the guest runs out"),
    Option("--vga", "display.vga", None, "", "graphics card", VGA_MODELS),
    Option("--vnc", "display.vnc", _switch, ON_OFF, "the console (VNC on a private socket)"),
    Option("--tablet", "display.tablet", _switch, ON_OFF, "USB tablet: an absolute pointer"),
    Option("--auto-balloon", "resources.auto_balloon", _switch, ON_OFF,
           "the allocation controller may shrink the balloon of an idle guest"),
    Option("--min-memory", "resources.min_memory_mib", _memory, "MIB",
           "the controller never balloons the VM below this (at most --memory)"),
    Option("--shares", "resources.shares", _whole, "N", f"CPU weight against other VMs, {MIN_SHARES}-{MAX_SHARES} "
           "(100 is normal)"),
    Option("--pin", "resources.pin", None, "", "where the controller lets the vCPU threads run", PIN_MODES),
    Option("--network", "nics", _switch, ON_OFF, "a network card (NAT); off removes the VM's network cards"),
    Option("--nic-model", "nics[0].model", None, "", "network card model", NIC_MODELS),
    Option("--mac", "nics[0].mac", _mac, "MAC", "the network card's MAC address"),
    Option("--forward", "nics[0].forwards", _forward, "tcp:HOSTPORT:GUESTPORT",
           "forward a host port to the guest (repeat for more; replaces the VM's forwards)"),
    Option("--cd", "cdrom.iso", _cd, "ISO|none", "insert an ISO image (live while it runs), or none to eject"),
    Option("--cd-bus", "cdrom.bus", None, "", "the CD drive's bus", CD_BUSES),
)
NO_FORWARDS = "--no-forwards"
FORWARDS = "nics[0].forwards"


def add_parser(sub: Any) -> None:
    """The `modify` command in the parser's subcommands."""
    p = sub.add_parser("modify", help="change a VM's settings (those of the Settings dialog)",
                       description="Change a VM's settings. A running VM takes the name, notes and CD at once; "
                       "other settings are saved and take effect at its next start.")
    p.add_argument("name")
    for option in OPTIONS:
        kind = dict(choices=option.choices) if option.choices else dict(type=option.read, metavar=option.metavar)
        p.add_argument(option.flag, dest=_dest(option.key), default=None,
                       action="append" if option.key == FORWARDS else "store", help=option.help or None, **kind)
    p.add_argument(NO_FORWARDS, action="store_true", help="remove every port forward")


def _dest(key: str) -> str:
    return "set " + key  # apart from the command's own arguments (`name` is the VM's)


def changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line names, by key."""
    given = {o.key: getattr(args, _dest(o.key)) for o in OPTIONS}
    found = {key: value for key, value in given.items() if value is not None}
    if args.no_forwards:
        found[FORWARDS] = []
    return found


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.no_forwards and getattr(args, _dest(FORWARDS)) is not None:
        parser.error(f"modify: --forward and {NO_FORWARDS} do not go together")


def in_option_words(error: ConfigError) -> ConfigError:
    """The engine's message about a setting, naming the option that sets it instead."""
    text = str(error)
    for option in sorted(OPTIONS, key=lambda o: -len(o.key)):
        if text.startswith(option.key) and text[len(option.key):len(option.key) + 1] in (":", "[", "."):
            return ConfigError(f"{option.flag}{text[text.index(':'):]}")
    return error


def flag_of(key: str) -> str:
    return next(o.flag for o in OPTIONS if o.key == key)


def shown(key: str, value: Any) -> str:
    """A setting's value as the option takes it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key == FORWARDS:
        rules = [f"{r.protocol}:{r.host_address}:{r.host_port}:{r.guest_port}" for r in value]
        return ", ".join(rules) or "none"
    if isinstance(value, list):
        return ",".join(value) or "none"
    if key.endswith("memory_mib"):
        return f"{value} MiB"
    if key == "cdrom.iso" and not value:
        return "none"
    return repr(value) if isinstance(value, str) and key in ("name", "notes") else str(value)
