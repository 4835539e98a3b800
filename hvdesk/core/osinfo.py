"""OS presets: what a new VM of a given OS gets unless the user says otherwise.

A short list for now; the new-VM wizard widens it (and reads osinfo-db where installed).
"""

from __future__ import annotations

from dataclasses import dataclass

from hvdesk.core.errors import ConfigError


@dataclass(frozen=True)
class OsPreset:
    id: str
    label: str
    memory_mib: int
    cpus: int
    disk_gib: int
    family: str = "other"  # linux | windows | bsd | other: picks the icon
    firmware: str = "bios"
    machine: str = "q35"


PRESETS = {p.id: p for p in (
    OsPreset("other", "Other", 512, 1, 8),
    OsPreset("linux", "Other Linux", 1024, 1, 16, "linux"),
    OsPreset("debian12", "Debian 12", 2048, 2, 20, "linux"),
    OsPreset("ubuntu24.04", "Ubuntu 24.04", 4096, 2, 25, "linux"),
    OsPreset("fedora", "Fedora", 4096, 2, 25, "linux"),
    OsPreset("alpine", "Alpine Linux", 512, 1, 4, "linux"),
    OsPreset("freebsd", "FreeBSD", 2048, 2, 20, "bsd"),
    OsPreset("win10", "Windows 10", 4096, 2, 64, "windows"),
    OsPreset("win11", "Windows 11", 4096, 2, 64, "windows", firmware="uefi"),
)}


def preset(os_id: str) -> OsPreset:
    try:
        return PRESETS[os_id]
    except KeyError:
        raise ConfigError(f"unknown OS {os_id!r} (known: {', '.join(sorted(PRESETS))})") from None


def family(os_id: str) -> str:
    """The OS family of a preset id, "other" for ids this hvdesk does not know."""
    found = PRESETS.get(os_id)
    return found.family if found else "other"
