"""Checks for config values that end up on QEMU's command line, where a stray ',' or '=' would add
an option of the writer's choosing. Each raises ValueError with the reason, naming the value;
config.py names the field. Patterns use fullmatch: `$` would also match before a trailing newline."""

from __future__ import annotations

import ipaddress
import re

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# osinfo-db short ids (debian12, win2k22, opensuse15.5, dragonflybsd1.0A) and the bundled presets'.
_OS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def text(value: str) -> None:
    """Text passed to QEMU (one argv element): exec() cannot carry a NUL, and a line break has no
    business in a path or a kernel command line."""
    if "\0" in value:
        raise ValueError(f"{value!r} contains a NUL character")
    if "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} contains a line break")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError(f"{value!r} is not valid Unicode (a lone surrogate)")


def path(value: str) -> None:
    """A file QEMU opens: text that is not empty."""
    if not value:
        raise ValueError("the path is empty")
    text(value)


def optional_path(value: str) -> None:
    """A path where empty means "none" (no CD in the drive, no initrd)."""
    if value:
        path(value)


def ipv4_address(value: str) -> None:
    """QEMU's hostfwd reads the host address with inet_aton: IPv4 only (7.2 answers "Bad host
    address" to [::1]), and in the dotted form alone, so nothing else can ride along."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every "
                             "interface of the host)") from None
        raise ValueError(f"{value!r} is an IPv6 address; QEMU's port forwarding takes IPv4 addresses only "
                         "(e.g. 127.0.0.1)") from None


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def mac_address(value: str) -> None:
    if not _MAC.fullmatch(value):
        raise ValueError(f"{value!r} is not a MAC address (six lower-case hex pairs: 52:54:00:12:34:56)")
    if int(value[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast address, which cannot name a network card")


def canonical_uuid(value: str) -> None:
    """The uuid names the VM's runtime folder and goes to -uuid: one spelling only."""
    if _CANONICAL_UUID.fullmatch(value):
        return
    import uuid as uuidlib  # only to say what is wrong (its import costs `hvdesk list` ~4 ms)

    try:
        canonical = str(uuidlib.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    if value != canonical:
        raise ValueError(f"{value!r} is not in canonical form (lower-case 8-4-4-4-12 hex digits: {canonical})")


def os_id(value: str) -> None:
    if not _OS_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not an OS id (letters, digits, '.', '_', '+', '-'; e.g. debian12)")
