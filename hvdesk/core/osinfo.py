"""OS presets: what a new VM of a given OS gets unless the user says otherwise, read from
resources/os/presets.toml (data, not code: a new OS is a new entry there)."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field

from hvdesk.core.errors import ConfigError
from hvdesk.core.paths import resources_dir


@dataclass(frozen=True)
class OsPreset:
    id: str
    label: str
    memory_mib: int  # recommended
    cpus: int
    disk_gib: int
    family: str = "other"  # linux | windows | bsd | other: picks the icon
    firmware: str = "bios"
    machine: str = "q35"
    min_memory_mib: int = 64
    tpm: bool = False  # needs a TPM 2.0 (Windows 11)
    virtio: bool = True  # has virtio drivers out of the box; else SATA and e1000
    patterns: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, OsPreset]:
    data = tomllib.loads((resources_dir() / "os" / "presets.toml").read_text(encoding="utf-8"))
    presets = {}
    for entry in data["preset"]:
        entry = dict(entry)
        entry["patterns"] = tuple(re.compile(p) for p in entry.get("patterns", ()))
        presets[entry["id"]] = OsPreset(**entry)
    return presets


_learned: dict[str, OsPreset] = {}  # presets met through osinfo-db (hvdesk.core.osinfo_db)


def presets() -> dict[str, OsPreset]:
    """Every preset by id: the bundled ones in the file's order (also the detection order), then
    any that osinfo-db supplied in this session."""
    return {**_load(), **{k: v for k, v in _learned.items() if k not in _load()}}


def learn(found: OsPreset) -> OsPreset:
    """Make a preset from outside the bundled file (osinfo-db) usable by id."""
    _learned.setdefault(found.id, found)
    return _learned[found.id] if found.id not in _load() else _load()[found.id]


def preset(os_id: str) -> OsPreset:
    try:
        return presets()[os_id]
    except KeyError:
        raise ConfigError(f"unknown OS {os_id!r} (known: {', '.join(sorted(_load()))})") from None


def family(os_id: str) -> str:
    """The OS family of a preset id, "other" for ids this hvdesk does not know."""
    found = presets().get(os_id)
    return found.family if found else "other"
