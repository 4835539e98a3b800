"""The VM library on disk: one folder per VM holding vm.toml, its disks and logs.

A folder whose vm.toml cannot be read or is invalid is still listed, as inaccessible with the
reason, so one broken file never hides the other VMs.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvdesk.core.digests import MEMO_FILE, Digest, Memo
from hvdesk.core.errors import ConfigError, HvdeskError, NotFoundError
from hvdesk.core.filelock import FileLock
from hvdesk.core.names import name_key, validate_name
from hvdesk.core.paths import make_private_dir

if TYPE_CHECKING:  # loaded when a vm.toml is read: a `list` of unchanged VMs reads none (core/digests.py)
    from hvdesk.core.config import VmConfig

CONFIG_FILE = "vm.toml"
LOG_DIR = "logs"
LOCK_FILE = ".hvdesk.lock"  # in each VM folder: held by whoever changes that VM
LIBRARY_LOCK = ".library.lock"  # in the library root: held to create, rename or delete a VM
STAGING_PREFIX = ".new-"  # a VM being created is built in a hidden folder, then renamed into place
DELETING_PREFIX = ".gone-"  # a deleted VM's folder is moved into a hidden one, then removed


class VmEntry:
    """One folder of the library: its config, or why it could not be read.

    From the scan's memo an entry knows only its digest (what `list` shows) and reads its config
    when first asked for it; `accessible`, `name` and `digest` never read the file."""

    __slots__ = ("folder", "error", "stamp", "digest", "_config")

    def __init__(self, folder: Path, config: VmConfig | None, error: str = "", stamp: int = 0,
                 digest: Digest | None = None) -> None:
        self.folder = folder
        self.error = error
        self.stamp = stamp  # config_stamp() when read: unchanged means no need to read it again
        self._config = config
        self.digest = Digest.of(config) if config is not None else (None if error else digest)

    @property
    def config(self) -> VmConfig | None:
        if self._config is None and self.digest is not None:
            try:
                self._config = read_config(self.folder)
                self.digest = Digest.of(self._config)
            except ConfigError as exc:  # changed since the memo saw it
                self.digest, self.error = None, str(exc)
        return self._config

    @property
    def name(self) -> str:
        return self.digest.name if self.digest is not None else self.folder.name

    @property
    def accessible(self) -> bool:
        return self.digest is not None

    def __repr__(self) -> str:
        return f"VmEntry({self.folder}, {self.digest or self.error!r})"

    @property
    def log_dir(self) -> Path:
        return self.folder / LOG_DIR


def _named_after_its_vm(entry: VmEntry) -> bool:
    return entry.digest is not None and name_key(entry.digest.name) == name_key(entry.folder.name)


STAGING_GRACE = 60.0  # seconds a staging folder without a holder's note may be its creator's first moments


def _maybe_being_made(staging: Path) -> bool:
    """A creator makes its staging folder, then locks it and writes its note into the lock: a
    young folder whose lock is missing or empty may be in that moment, and is left alone (one
    whose creator died holding the lock has the note)."""
    import time

    try:
        noted = (staging / LOCK_FILE).stat().st_size > 0
    except OSError:
        noted = False
    try:
        return not noted and time.time() - staging.stat().st_mtime < STAGING_GRACE
    except OSError:
        return True  # gone already


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see old or new, never
    half, and the new content survives a power cut."""
    import tempfile  # here, as shutil in remove_tree: `list` and `info` only read (tempfile brings shutil)

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


def remove_tree(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove a folder and what it holds. What vanishes meanwhile is no error: another hvdesk may
    be tidying the same folder (a deleted VM's .gone- folder, found by remove_abandoned)."""
    import shutil  # here: with the compressors it loads, a tenth of `hvdesk list`, which removes nothing

    def tolerate_vanished(function: object, name: str, exc_info: Any) -> None:  # (type, error, traceback)
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(path, ignore_errors=ignore_errors, onerror=tolerate_vanished)


MAX_SMALL_FILE = 8 * 1024 * 1024  # a vm.toml or hvdesk's JSON beside it is never near this


def read_regular(path: Path, limit: int = MAX_SMALL_FILE) -> bytes:
    """A small file of a VM folder, which may come from someone else: a FIFO or device put in its
    place would block the read (and `hvdesk list` with it), so only a regular file is read, and at
    most `limit` bytes of it (OSError otherwise, as for a file that cannot be read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if status.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit // 1024} KiB", str(path))
        chunks = []
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_config(folder: Path) -> VmConfig:
    import tomllib

    from hvdesk.core.config import VmConfig

    path = folder / CONFIG_FILE
    try:
        raw = read_regular(path)
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


def raw_disk_paths(folder: Path, *, backing_only: bool = False) -> list[str]:
    """The disk paths (and backing images) a VM folder's vm.toml names, read leniently: also from a vm.toml too broken
    to load as a VM (so a delete elsewhere never removes a disk this one still uses). `backing_only`: just the
    backing images (what a linked clone reads from its source)."""
    import tomllib

    try:
        data = tomllib.loads(read_regular(folder / CONFIG_FILE).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    disks = data.get("disks")
    if not isinstance(disks, list):
        return []
    tops = [d for d in disks if isinstance(d, dict)]
    below = [b for d in tops if isinstance(d.get("backing"), list) for b in d["backing"] if isinstance(b, dict)]
    images = below if backing_only else tops + below
    return [image["path"] for image in images if isinstance(image.get("path"), str)]


def config_stamp(folder: Path) -> int:
    """A fingerprint of the VM's vm.toml that changes with every write: its time stamp alone may
    not (file times tick in whole jiffies, and two writes can fall in one), so its size and inode
    (an atomic write makes a new one) count too. 0: there is none."""
    try:
        status = os.stat(folder / CONFIG_FILE)
    except OSError:
        return 0
    return hash((status.st_mtime_ns, status.st_size, status.st_ino)) or 1


class Library:
    """The VM folders under one root (normally <data dir>/VMs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging_locks: dict[Path, FileLock] = {}

    def scan(self) -> list[VmEntry]:
        """Every VM folder, by name. Of two folders that claim one name or one uuid (a copied or
        hand-edited vm.toml), one keeps it — the folder named after the VM, else the first — and
        the other is inaccessible, saying why."""
        if not self.root.is_dir():
            return []
        memo = Memo.read(self.root / MEMO_FILE)
        entries = []
        for folder in sorted(self.root.iterdir(), key=lambda p: name_key(p.name)):
            # A folder without vm.toml is not a VM (e.g. disks kept after "delete --keep-disks").
            if folder.name.startswith(".") or not os.path.lexists(folder / CONFIG_FILE):
                continue
            entries.append(self._remembered(folder, memo))
        memo.keep_only({entry.folder.name for entry in entries})
        memo.write()
        names: dict[str, str] = {}
        uuids: dict[str, str] = {}
        for i, entry in sorted(enumerate(entries), key=lambda item: not _named_after_its_vm(item[1])):
            if entry.digest is None:
                continue
            same_name = names.setdefault(name_key(entry.digest.name), entry.folder.name)
            same_uuid = uuids.setdefault(entry.digest.uuid, entry.folder.name)
            if same_name != entry.folder.name:
                entries[i] = VmEntry(entry.folder, None, f"its name {entry.digest.name!r} is also used by the VM "
                                                         f"in folder {same_name!r} (names ignore case)", entry.stamp)
            elif same_uuid != entry.folder.name:
                entries[i] = VmEntry(entry.folder, None, f"its uuid is also used by the VM in folder {same_uuid!r} "
                                                         "(a copied folder?)", entry.stamp)
        return entries

    def lock(self) -> FileLock:
        """The library's lock: taken to create, rename or delete a VM (names must stay unique)."""
        make_private_dir(self.root)
        return FileLock(self.root / LIBRARY_LOCK, "the VM library")

    def _remembered(self, folder: Path, memo: Memo) -> VmEntry:
        """The folder's entry from the memo when its vm.toml is unchanged, else read (and remembered)."""
        stamp = config_stamp(folder)
        found = memo.get(folder.name, stamp)
        if isinstance(found, Digest):
            return VmEntry(folder, None, stamp=stamp, digest=found)
        if isinstance(found, str):
            return VmEntry(folder, None, found, stamp=stamp)
        entry = self._read(folder, stamp)
        if stamp:
            memo.put(folder.name, stamp, entry.digest or entry.error)
        return entry

    def load(self, folder: Path) -> VmEntry:
        """The folder's entry read now, and remembered for the next scan (a new or edited VM: the
        next `list` then reads no file, and needs no space to remember it)."""
        stamp = config_stamp(folder)
        entry = self._read(folder, stamp)
        if stamp and folder.parent == self.root:
            memo = Memo.read(self.root / MEMO_FILE)
            memo.put(folder.name, stamp, entry.digest or entry.error)
            memo.write()
        return entry

    def _read(self, folder: Path, stamp: int) -> VmEntry:
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

    def create_folder(self, config: VmConfig) -> Path:
        """Make the new VM's folder (0700) and write its vm.toml; refuse a taken name. The caller
        holds the library lock."""
        staging = self.staging_folder()
        try:
            self.save(staging, config)
            return self.publish(staging, config.name)
        except BaseException:
            self.discard(staging)
            raise

    def staging_folder(self) -> Path:
        """A hidden, private folder to build a new VM in, invisible to scan() until publish().
        It holds a lock for as long as its creator lives, so a creator killed half-way leaves
        a folder that remove_abandoned() recognises."""
        make_private_dir(self.root)
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        (folder / LOG_DIR).mkdir(mode=0o700)
        self._staging_locks[folder] = lock = FileLock(folder / LOCK_FILE, "a VM being created")
        lock.try_acquire("creating a VM")
        return folder

    def publish(self, staging: Path, name: str) -> Path:
        """Move a complete new VM into the library under its name (the caller holds the
        library lock and has saved its vm.toml)."""
        validate_name(name)
        if self.exists(name):
            raise ConfigError(f"a VM named {name!r} already exists (names ignore case)")
        folder = self._free_folder(name)
        os.rename(staging, folder)
        self._release_staging(staging)
        return folder

    def discard(self, staging: Path) -> None:
        """Remove a staging folder whose VM will not be created (an error or a cancel)."""
        remove_tree(staging, ignore_errors=True)
        self._release_staging(staging)

    def _release_staging(self, staging: Path) -> None:
        lock = self._staging_locks.pop(staging, None)
        if lock is not None:
            lock.release()

    def remove_abandoned(self) -> list[Path]:
        """Staging folders whose creator died (killed mid-create), and what a delete killed half-way
        left: removed; returns them."""
        removed: list[Path] = []
        try:
            hidden = [p for p in self.root.iterdir() if p.name.startswith(".") and p.is_dir()]
        except OSError:
            return removed
        for folder in hidden:
            if folder.name.startswith(DELETING_PREFIX):  # nobody uses what a delete moved here
                remove_tree(folder, ignore_errors=True)
                removed.append(folder)
        candidates = [p for p in hidden if p.name.startswith(STAGING_PREFIX)]
        for folder in candidates:
            if folder in self._staging_locks or _maybe_being_made(folder):
                continue
            lock = FileLock(folder / LOCK_FILE, "a VM being created")
            try:
                if not lock.try_acquire("removing an abandoned VM"):
                    continue  # its creator is alive
            except (OSError, HvdeskError):  # e.g. a read-only library: leave it for a later start
                continue
            try:
                remove_tree(folder)
                removed.append(folder)
            except OSError:
                pass
            finally:
                lock.release()
        return removed

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
        import tomli_w  # here: most commands only read

        atomic_write(folder / CONFIG_FILE, tomli_w.dumps(config.to_dict()).encode("utf-8"))

    def remove_folder(self, folder: Path) -> None:
        if folder.parent != self.root:
            raise HvdeskError(f"refusing to remove {folder}: not a VM folder of this library")
        # Moved out of the way first, in one rename: a process waiting for the VM's lock (which it
        # creates if missing) would otherwise re-create the lock file in the folder being removed,
        # and leave a folder that is no VM.
        import tempfile

        gone = Path(tempfile.mkdtemp(prefix=DELETING_PREFIX, dir=self.root))
        folder.rename(gone / folder.name)
        remove_tree(gone)
