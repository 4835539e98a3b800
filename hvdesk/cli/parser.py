"""The command line's grammar (argparse): every command, its options and their checks. Loaded only
when a command line is not one of the plain reading forms (cli/reading.py), whose process is
meant to be as short as `virsh list`'s."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hvdesk import __version__
from hvdesk.core.errors import HvdeskError
from hvdesk.core.units import parse_size

MIB = 1024 * 1024


def _memory(text: str) -> int:
    try:
        size = parse_size(text, what="memory", default_unit="M")
    except HvdeskError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size % MIB:
        raise argparse.ArgumentTypeError(f"memory {text!r} is not a whole number of MiB")
    return size // MIB


def _size(text: str) -> int:
    try:
        return parse_size(text, what="disk size", default_unit="G")
    except HvdeskError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the timeout cannot be negative")
    return value


class _VersionAction(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        from hvdesk.engine import host

        print(f"hvdesk {__version__}\n{host.qemu_version()}")
        parser.exit()


def _interval(text: str) -> float:
    value = _seconds(text)
    if not 0.5 <= value <= 10:
        raise argparse.ArgumentTypeError("the interval must be between 0.5 and 10 seconds")
    return value


def _whole(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
    return parse


def _bounded(what: str, low: int, high: int) -> Callable[[str], int]:
    whole = _whole(what)

    def parse(text: str) -> int:
        value = whole(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} {value} is outside {low}-{high}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hvdesk", description="Create, run and manage QEMU virtual machines.")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show hvdesk's and QEMU's versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the VMs and their states")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("create", help="create a VM")
    p.add_argument("name")
    p.add_argument("--os", help="OS preset id (default: detected from --iso, else other)")
    p.add_argument("--memory", type=_memory, metavar="MIB", help="memory: MiB, or with a unit (2G)")
    p.add_argument("--cpus", type=int, metavar="N", help="virtual CPUs")
    disk = p.add_mutually_exclusive_group()
    disk.add_argument("--disk", type=_size, metavar="SIZE", help="new thin qcow2 disk (20G, 512M)")
    disk.add_argument("--attach-disk", type=Path, metavar="PATH", help="use an existing disk image")
    p.add_argument("--allow-backing", action="store_true",
                   help="attach the image even though it reads from backing images outside the VM's folder")
    p.add_argument("--iso", type=Path, metavar="PATH", help="CD/DVD image to insert")
    p.add_argument("--kernel", type=Path, metavar="PATH", help="boot this kernel directly")
    p.add_argument("--initrd", type=Path, metavar="PATH", help="initrd for --kernel")
    p.add_argument("--append", default="", metavar="TEXT", help="kernel command line for --kernel")
    p.add_argument("--firmware", choices=("bios", "uefi"))
    p.add_argument("--machine", choices=("q35", "pc"))
    p.add_argument("--notes", default="")

    p = sub.add_parser("start", help="start a VM; returns once it runs and QMP answers")
    p.add_argument("name")
    p.add_argument("--paused", action="store_true", help="start with the vCPUs paused")
    p.add_argument("--discard-saved-state", action="store_true",
                   help="a saved VM: boot it afresh, deleting its saved state (else the start resumes it)")

    p = sub.add_parser("save", help="save a running VM's state to its folder and stop it; start resumes it")
    p.add_argument("name")

    p = sub.add_parser("stop", help="ACPI power-down; --force turns it off after the timeout")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="turn the VM off if it has not powered off in time")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                   help="seconds to wait for the guest (default 60; 0 with --force: at once)")

    for verb, text in (("pause", "pause a running VM"), ("resume", "resume a paused VM"),
                       ("reset", "hard-reset a VM")):
        sub.add_parser(verb, help=text).add_argument("name")

    p = sub.add_parser("info", help="show a VM's state and settings")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("stats", help="CPU, memory and disk of a running VM, one line per sample")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N samples (default: until Ctrl+C)")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="S", help="seconds between samples (0.5-10)")

    p = sub.add_parser("top", help="a refreshing table of all running VMs")
    p.add_argument("--interval", type=_interval, default=2.0, metavar="S", help="seconds between refreshes")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N refreshes")

    p = sub.add_parser("screenshot", help="save the VM's screen as PNG (through its VNC console)")
    p.add_argument("name")
    p.add_argument("file", type=Path, metavar="FILE.png")

    p = sub.add_parser("send-keys", help="type keys on the VM's keyboard (QEMU key names: ret, a, ctrl-alt-delete)")
    p.add_argument("name")
    p.add_argument("keys", nargs="*", metavar="KEY", help="a key or combo, e.g. ret, shift-a, ctrl-alt-f2")
    p.add_argument("--text", help="type this text (US keyboard layout), after the KEYs")

    once = "; acts on the running VM only (not saved: its next start begins afresh)"
    p = sub.add_parser("balloon", help="set a running VM's balloon target" + once)
    p.add_argument("name")
    p.add_argument("mib", type=_whole("MIB"), metavar="MIB", help="memory the guest should keep, in MiB")

    p = sub.add_parser("pin", help="pin one vCPU of a running VM to host CPUs" + once)
    p.add_argument("name")
    p.add_argument("--vcpu", type=_whole("vCPU"), required=True, metavar="I", help="the vCPU's index (0 is the first)")
    p.add_argument("--host-cpus", required=True, metavar="LIST", help="host CPUs, e.g. 1, 0-1 or 0-1,3")

    p = sub.add_parser("shares", help="set a running VM's CPU weight against other VMs" + once)
    p.add_argument("name")
    p.add_argument("shares", type=_whole("CPU shares"), metavar="N", help="1-10000; 100 is the default")

    p = sub.add_parser("agent", help="run the allocation controller without the app: balloons, vCPU pinning "
                       "and CPU shares of the running VMs, every --interval seconds, until Ctrl-C")
    p.add_argument("--interval", type=_bounded("interval", 2, 600), metavar="S",
                   help="seconds between control cycles (default: the saved setting, 10)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--pool", type=_bounded("pool", 16, 4 * 1024 * 1024), metavar="MIB",
                        help="the balloon sizes of all running auto-balloon VMs together stay at or under MIB")
    budget.add_argument("--host-target", type=_bounded("host target", 10, 95), metavar="PCT",
                        help="keep host memory use under PCT percent (default 80)")
    p.add_argument("--once", action="store_true", help="one control cycle, then exit (balloons stay as set)")
    p.add_argument("--json", action="store_true", help="print each decision as a JSON object")

    p = sub.add_parser("decisions", help="the allocation controller's decisions about a VM, newest last")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_bounded("limit", 1, 100000), default=200, metavar="N",
                   help="show the last N decisions (default 200)")

    from hvdesk.cli import modify  # here: it reads this module's memory type

    modify.add_parser(sub)

    p = sub.add_parser("clone", help="copy a stopped VM under a new name (new uuid and MAC addresses)")
    p.add_argument("name")
    p.add_argument("new_name", metavar="NEW")
    p.add_argument("--linked", action="store_true",
                   help="share the VM's disks as they are now instead of copying them (instant); the VM "
                        "cannot then be deleted while the clone exists")
    p.add_argument("--keep-macs", action="store_true",
                   help="keep the network cards' MAC addresses (default: new ones; two VMs with one MAC on a "
                        "network disturb each other)")

    from hvdesk.cli import snapshot

    snapshot.add_parser(sub)

    p = sub.add_parser("delete", help="delete a stopped VM")
    p.add_argument("name")
    p.add_argument("--keep-disks", action="store_true", help="keep the VM's disk images")
    return parser
