"""What the library's scan needs of each VM's vm.toml (name, uuid, OS, memory, CPUs), remembered
in a hidden file of the library's root by each file's stamp. A `list` of unchanged VMs then parses
no TOML and loads no config model: tomllib, dataclasses and the checks were most of its time.

The memo is a shortcut, never a source of truth: an entry whose stamp differs, a memo written by
another hvdesk (or Python), or one that does not read cleanly is ignored, and the VM's vm.toml is
read again. Everything that acts on a VM loads its full config (VmEntry.config), whatever the memo said.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hvdesk import __version__
from hvdesk.core import checks
from hvdesk.core.errors import ConfigError
from hvdesk.core.names import validate_name
from hvdesk.core.paths import sha256_hex

if TYPE_CHECKING:
    from hvdesk.core.config import VmConfig

MEMO_FILE = ".digests.json"  # in the library root; scan() skips hidden names
# The code that decides what a valid vm.toml is: a memo written by other code is ignored.
_VALIDATORS = ("config.py", "checks.py", "names.py")


class Digest(NamedTuple):
    name: str
    uuid: str
    os: str
    memory_mib: int
    cpus: int

    @classmethod
    def of(cls, config: VmConfig) -> Digest:
        return cls(config.name, config.uuid, config.os, config.memory_mib, config.cpus)


def _code_key() -> str:
    """The version, and the validating sources' content where there are sources (not in a frozen
    bundle): two installs of one hvdesk (a wheel, a checkout) share a memo, edited code does not."""
    here = os.path.dirname(__file__)
    parts = [__version__, str(sys.hexversion)]
    for name in _VALIDATORS:
        try:
            with open(os.path.join(here, name), "rb") as source:
                parts.append(sha256_hex(source.read())[:16])
        except OSError:
            parts.append("-")
    return " ".join(parts)


class Memo:
    """The remembered digests of one library root, by folder name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = _code_key()
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False

    @classmethod
    def read(cls, path: Path) -> Memo:
        memo = cls(path)
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return memo
        if isinstance(data, dict) and data.get("key") == memo.key and isinstance(data.get("vms"), dict):
            memo.entries = data["vms"]
        return memo

    def get(self, folder: str, stamp: int) -> Digest | str | None:
        """The digest (or the error that made the VM inaccessible) remembered for this stamp; None
        when there is none or it does not read as one."""
        entry = self.entries.get(folder)
        if not isinstance(entry, dict) or entry.get("stamp") != stamp or not stamp:
            return None
        if isinstance(entry.get("error"), str):
            return str(entry["error"])
        try:  # checked as vm.toml is: the uuid names a runtime folder
            digest = Digest(*entry["digest"])
            if not (all(isinstance(v, str) for v in digest[:3]) and all(type(v) is int for v in digest[3:])):
                return None
            validate_name(digest.name)
            checks.canonical_uuid(digest.uuid)
            checks.os_id(digest.os)
        except (KeyError, TypeError, ValueError, ConfigError):
            return None
        return digest

    def put(self, folder: str, stamp: int, found: Digest | str) -> None:
        value: dict[str, Any] = {"stamp": stamp}
        if isinstance(found, str):
            value["error"] = found
        else:
            value["digest"] = list(found)
        if self.entries.get(folder) != value:
            self.entries[folder] = value
            self.changed = True

    def keep_only(self, folders: set[str]) -> None:
        for gone in set(self.entries) - folders:
            del self.entries[gone]
            self.changed = True

    def write(self) -> None:
        """Replace the memo (a rename: readers see old or new); a cache, so failures pass silently
        and there is no fsync. Concurrent writers each write a consistent memo; the last one stays."""
        if not self.changed:
            return
        data = json.dumps({"key": self.key, "vms": self.entries}).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.path)
        except OSError:  # a read-only or full library: the next scan reads the files again
            with contextlib.suppress(OSError):
                tmp.unlink()
