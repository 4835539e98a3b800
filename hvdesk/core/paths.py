"""Where hvdesk keeps things: the VM library, caches, and private runtime dirs for sockets."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import platformdirs

from hvdesk.core.errors import HvdeskError

APP = "hvdesk"
# sun_path is 108 bytes on Linux, 104 on macOS; leave room for the socket's own name.
MAX_SOCKET_DIR = 90


def data_dir() -> Path:
    """The per-user data folder; HVDESK_HOME overrides it (tests, portable installs)."""
    home = os.environ.get("HVDESK_HOME")
    return Path(home).expanduser().resolve() if home else Path(platformdirs.user_data_dir(APP))


def vms_dir() -> Path:
    return data_dir() / "VMs"


def cache_dir() -> Path:
    home = os.environ.get("HVDESK_HOME")
    return data_dir() / "cache" if home else Path(platformdirs.user_cache_dir(APP))


def runtime_root() -> Path:
    """A private folder for sockets and pid files, one per data dir (so two libraries never meet).

    Under XDG_RUNTIME_DIR when there is one; else in the temp dir, owned by us and 0700.
    HVDESK_RUNTIME_DIR overrides.
    """
    override = os.environ.get("HVDESK_RUNTIME_DIR")
    if override:
        base = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / APP
    else:
        base = Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"
    library_key = hashlib.sha256(str(data_dir()).encode()).hexdigest()[:8]
    root = base / library_key
    if len(str(root)) + 1 + 36 > MAX_SOCKET_DIR:  # + "/<uuid>"
        raise HvdeskError(
            f"runtime folder {root} is too long for unix sockets; set HVDESK_RUNTIME_DIR to a short path"
        )
    return root


def make_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700, and refuse one that others could tamper with."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise HvdeskError(f"{path} is not a plain folder; refusing to put private files there")
    if info.st_uid != os.getuid():
        raise HvdeskError(f"{path} belongs to another user; refusing to put private files there")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def resources_dir() -> Path:
    """Icons, desktop files and data: `resources/` at the top of a source checkout (also an
    editable install), shipped as the package hvdesk.resources in wheels and bundles."""
    try:
        import importlib.resources

        return Path(str(importlib.resources.files("hvdesk.resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "resources"
