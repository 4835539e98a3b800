"""The VM library on disk: one folder per VM holding vm.toml, its disks and logs.

A folder whose vm.toml cannot be read or is invalid is still listed, as inaccessible with the
reason, so one broken file never hides the other VMs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, HvdeskError, NotFoundError
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.paths import make_private_dir

CONFIG_FILE = "vm.toml"
LOG_DIR = "logs"


@dataclass
class VmEntry:
    """One folder of the library: its config, or why it could not be read."""

    folder: Path
    config: VmConfig | None
    error: str = ""
    stamp: int = 0  # vm.toml's mtime (ns) when read: unchanged means no need to read it again

    @property
    def name(self) -> str:
        return self.config.name if self.config else self.folder.name

    @property
    def accessible(self) -> bool:
        return self.config is not None

    @property
    def log_dir(self) -> Path:
        return self.folder / LOG_DIR


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see old or new, never
    half, and the new content survives a power cut."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def read_config(folder: Path) -> VmConfig:
    path = folder / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return VmConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_stamp(folder: Path) -> int:
    try:
        return os.stat(folder / CONFIG_FILE).st_mtime_ns
    except OSError:
        return 0


class Library:
    """The VM folders under one root (normally <data dir>/VMs)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> list[VmEntry]:
        if not self.root.is_dir():
            return []
        entries = []
        for folder in sorted(self.root.iterdir(), key=lambda p: name_key(p.name)):
            # A folder without vm.toml is not a VM (e.g. disks kept after "delete --keep-disks").
            if folder.name.startswith(".") or not os.path.lexists(folder / CONFIG_FILE):
                continue
            entries.append(self.load(folder))
        return entries

    def load(self, folder: Path) -> VmEntry:
        stamp = config_stamp(folder)
        try:
            return VmEntry(folder, read_config(folder), stamp=stamp)
        except ConfigError as exc:
            return VmEntry(folder, None, str(exc), stamp=stamp)

    def reload_if_changed(self, entry: VmEntry) -> VmEntry:
        return entry if entry.stamp and config_stamp(entry.folder) == entry.stamp else self.load(entry.folder)

    def find(self, name: str) -> VmEntry:
        for entry in self.scan():
            if name_key(entry.name) == name_key(name) or name_key(entry.folder.name) == name_key(name):
                return entry
        raise NotFoundError(f"no VM named {name!r}")

    def exists(self, name: str) -> bool:
        try:
            self.find(name)
        except NotFoundError:
            return False
        return True

    def create_folder(self, config: VmConfig, *, write_config: bool = True) -> Path:
        """Make the new VM's folder (0700) and write its vm.toml; refuse a taken name.

        With `write_config=False` the folder stays invisible to scan() until the caller saves the
        config, which it does last, once the VM's disks exist."""
        validate_name(config.name)
        if self.exists(config.name):
            raise ConfigError(f"a VM named {config.name!r} already exists (names ignore case)")
        make_private_dir(self.root)
        folder = self._free_folder(config.name)
        folder.mkdir(mode=0o700)
        (folder / LOG_DIR).mkdir(mode=0o700)
        if write_config:
            self.save(folder, config)
        return folder

    def _free_folder(self, name: str) -> Path:
        """The VM's folder is named after it, unless files of a deleted VM still hold that name."""
        taken = {name_key(p.name) for p in self.root.iterdir()}
        candidate, n = name, 1
        while name_key(candidate) in taken:
            n += 1
            candidate = f"{name}-{n}"
        return self.root / candidate

    def save(self, folder: Path, config: VmConfig) -> None:
        config.validate()
        atomic_write(folder / CONFIG_FILE, tomli_w.dumps(config.to_dict()).encode("utf-8"))

    def remove_folder(self, folder: Path) -> None:
        if folder.parent != self.root:
            raise HvdeskError(f"refusing to remove {folder}: not a VM folder of this library")
        shutil.rmtree(folder)
