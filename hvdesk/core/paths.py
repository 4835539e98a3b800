"""Where hvdesk keeps things: the VM library, caches, and private runtime dirs for sockets."""

from __future__ import annotations

import importlib
import os
import stat
import sys
from pathlib import Path

from hvdesk.core.errors import HvdeskError

APP = "hvdesk"
# sun_path is 108 bytes on Linux, 104 on macOS; leave room for the socket's own name.
MAX_SOCKET_DIR = 90


def data_dir() -> Path:
    """The per-user data folder; HVDESK_HOME overrides it (tests, portable installs)."""
    home = os.environ.get("HVDESK_HOME")
    return Path(home).expanduser().resolve() if home else _user_dir("data")


def vms_dir() -> Path:
    return data_dir() / "VMs"


def cache_dir() -> Path:
    home = os.environ.get("HVDESK_HOME")
    return data_dir() / "cache" if home else _user_dir("cache")


# The XDG base directories (https://specifications.freedesktop.org/basedir-spec/): where
# platformdirs puts user data and caches on Linux and the BSDs.
_XDG = {"data": ("XDG_DATA_HOME", ".local/share"), "cache": ("XDG_CACHE_HOME", ".cache")}


def _user_dir(kind: str) -> Path:
    """The user's data or cache folder for hvdesk. On Linux the XDG rules are applied here, as
    platformdirs applies them (tests/unit/test_paths.py compares): its import, which brings
    tempfile, shutil and the compressors, would be a sixth of `hvdesk list`'s time."""
    if sys.platform.startswith("linux"):
        variable, default = _XDG[kind]
        base = os.environ.get(variable, "").strip()
        if not os.path.isabs(base):  # unset, empty, or relative, which the spec says to ignore
            base = os.path.expanduser(f"~/{default}")
        return Path(base) / APP
    import platformdirs

    return Path(platformdirs.user_data_dir(APP) if kind == "data" else platformdirs.user_cache_dir(APP))


def runtime_base() -> Path:
    """The first folder of hvdesk's runtime files that is hvdesk's own: hvdesk/ under
    XDG_RUNTIME_DIR when there is one, else hvdesk-<uid> in the temp dir; HVDESK_RUNTIME_DIR
    overrides."""
    override = os.environ.get("HVDESK_RUNTIME_DIR")
    if override:
        return Path(override)
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / APP
    import tempfile  # here: only without XDG_RUNTIME_DIR (see _user_dir for why it costs)

    if not hasattr(os, "getuid"):  # Windows: %TEMP% is already under the user's own profile
        return Path(tempfile.gettempdir()) / APP
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def runtime_root() -> Path:
    """A private folder for sockets and pid files, one per data dir (so two libraries never meet)."""
    library_key = sha256_hex(str(data_dir()).encode())[:8]
    root = runtime_base() / library_key
    if len(str(root)) + 1 + 36 > MAX_SOCKET_DIR:  # + "/<uuid>"
        raise HvdeskError(
            f"runtime folder {root} is too long for unix sockets; set HVDESK_RUNTIME_DIR to a short path"
        )
    return root


def sha256_hex(data: bytes) -> str:
    """SHA-256 from CPython's own module where there is one: hashlib loads OpenSSL first, a few ms
    of every command (`hvdesk list` aims at ~60 ms in all). Same digest either way."""
    for module in ("_sha2", "_sha256"):  # 3.12+, 3.11
        try:
            return str(importlib.import_module(module).sha256(data).hexdigest())
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256(data).hexdigest()


def make_private_runtime_dir(path: Path) -> Path:
    """Create `path` with every level from the runtime base down 0700, owned by this user and no
    symlink, as OpenSSH treats its sockets: another user who made a level first (say
    /tmp/hvdesk-<uid>) could otherwise rename our sockets away or put their own in."""
    base = runtime_base()
    if base != path and base not in path.parents:
        raise HvdeskError(f"{path} is not inside the runtime folder {base}")
    if not os.environ.get("HVDESK_RUNTIME_DIR") and os.environ.get("XDG_RUNTIME_DIR"):
        _check_owned(base.parent, "XDG_RUNTIME_DIR", allow_group_read=True)
    base.parent.mkdir(parents=True, exist_ok=True)  # /tmp, /run/user/UID or the override's parents
    level = base
    for part in ("", *path.relative_to(base).parts):
        level = level / part if part else level
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            pass
        _check_owned(level, "runtime folder")
    return path


def _check_owned(path: Path, what: str, *, allow_group_read: bool = False) -> None:
    """Refuse a folder that is a symlink, not a folder, or another user's; tighten our own."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise HvdeskError(f"{what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise HvdeskError(f"{what} {path} is a symbolic link; refusing to put private files there "
                          "(remove it, or set HVDESK_RUNTIME_DIR)")
    if not stat.S_ISDIR(info.st_mode):
        raise HvdeskError(f"{what} {path} is not a folder; refusing to put private files there")
    # (Windows has no uids, and owner-only access there is the profile folder's ACL, not a mode.)
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise HvdeskError(f"{what} {path} belongs to another user (uid {info.st_uid}); refusing to put private "
                          "files there (remove it, or set HVDESK_RUNTIME_DIR)")
    loose = 0o022 if allow_group_read else 0o077
    if info.st_mode & loose:
        if allow_group_read:
            raise HvdeskError(f"{what} {path} is writable by others; refusing to put private files there")
        os.chmod(path, 0o700)  # ours, made by an older hvdesk or a loose umask: nobody else could write in it


def make_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700, and refuse one that others could tamper with."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_owned(path, "folder")
    return path


def resources_dir() -> Path:
    """Icons and data files: the package hvdesk.resources, which is `resources/` at the top of a
    checkout (mapped there for editable installs) and a folder inside the package in wheels and
    bundles. Files are read from it as files (Qt wants paths), so it must be a real folder."""
    import importlib.resources

    folder = importlib.resources.files("hvdesk.resources")
    if not isinstance(folder, Path) or not folder.is_dir():
        raise HvdeskError(f"hvdesk's data files are not a folder ({folder!r}): the installation is broken; "
                          "reinstall hvdesk")
    return folder
