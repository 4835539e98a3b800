import os
import stat
import time

import pytest

from hvdesk.core.config import VmConfig
from hvdesk.core.errors import ConfigError, NotFoundError
from hvdesk.core.storage import Library, atomic_write


def test_create_and_scan(tmp_path):
    lib = Library(tmp_path / "VMs")
    folder = lib.create_folder(VmConfig(name="Alpha").validate())
    lib.create_folder(VmConfig(name="beta").validate())
    assert [e.name for e in lib.scan()] == ["Alpha", "beta"]
    assert lib.find("ALPHA").folder == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "vm.toml").stat().st_mode) == 0o600


def test_names_are_unique_ignoring_case(tmp_path):
    lib = Library(tmp_path / "VMs")
    lib.create_folder(VmConfig(name="Alpha").validate())
    with pytest.raises(ConfigError, match="already exists"):
        lib.create_folder(VmConfig(name="alpha").validate())


def test_unknown_vm(tmp_path):
    with pytest.raises(NotFoundError, match="no VM named 'ghost'"):
        Library(tmp_path / "VMs").find("ghost")


@pytest.mark.parametrize("content, reason", [
    (b"name = \"x\"\nmemory_mib = [", "not valid TOML"),
    (b"\xff\xfe garbage", "not valid TOML"),
    (b"schema = 1\nname = \"bad\"\nmemory_mib = -5\n", "memory_mib: -5 is out of range"),
    (b"", "schema: expected 1"),
])
def test_broken_config_is_inaccessible_not_fatal(tmp_path, content, reason):
    lib = Library(tmp_path / "VMs")
    lib.create_folder(VmConfig(name="good").validate())
    broken = lib.create_folder(VmConfig(name="broken").validate())
    (broken / "vm.toml").write_bytes(content)
    entries = {e.name: e for e in lib.scan()}
    assert entries["good"].accessible
    assert not entries["broken"].accessible
    assert reason in entries["broken"].error


def test_unreadable_config(tmp_path):
    if os.getuid() == 0:
        # root reads 0000 files; a directory where vm.toml should be is unreadable for everyone
        lib = Library(tmp_path / "VMs")
        folder = lib.create_folder(VmConfig(name="x").validate())
        (folder / "vm.toml").unlink()
        (folder / "vm.toml").mkdir()
        assert "cannot read" in lib.scan()[0].error
    else:
        lib = Library(tmp_path / "VMs")
        folder = lib.create_folder(VmConfig(name="x").validate())
        os.chmod(folder / "vm.toml", 0)
        assert "cannot read" in lib.scan()[0].error


def test_atomic_write_keeps_old_content_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "vm.toml"
    atomic_write(target, b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["vm.toml"]  # no temp file left behind


def test_folder_left_by_deleted_vm_is_not_a_vm_and_does_not_block_the_name(tmp_path):
    lib = Library(tmp_path / "VMs")
    old = lib.create_folder(VmConfig(name="x").validate())
    (old / "vm.toml").unlink()  # what `delete --keep-disks` leaves: disks only
    (old / "disk0.qcow2").write_bytes(b"disk")
    assert lib.scan() == []
    new = lib.create_folder(VmConfig(name="x").validate())
    assert new.name == "x-2" and lib.find("x").folder == new


def test_a_hand_edited_duplicate_is_inaccessible_saying_why(tmp_path):
    lib = Library(tmp_path / "VMs")
    lib.create_folder(VmConfig(name="web").validate())
    other = lib.create_folder(VmConfig(name="db").validate())
    copied = lib.create_folder(VmConfig(name="web copy").validate())
    # Someone renames "db" to "WEB" by hand, and copies web's uuid into "web copy".
    (other / "vm.toml").write_text((other / "vm.toml").read_text().replace('name = "db"', 'name = "WEB"'))
    web_uuid = lib.find("web").config.uuid
    text = (copied / "vm.toml").read_text()
    (copied / "vm.toml").write_text(text.replace(lib.find("web copy").config.uuid, web_uuid))
    entries = {e.folder.name: e for e in lib.scan()}
    assert entries["web"].accessible
    assert entries["db"].error == "its name 'WEB' is also used by the VM in folder 'web' (names ignore case)"
    assert entries["web copy"].error == "its uuid is also used by the VM in folder 'web' (a copied folder?)"


def test_staging_folders_are_invisible_and_abandoned_ones_removed(tmp_path):
    lib = Library(tmp_path / "VMs")
    staging = lib.staging_folder()
    lib.save(staging, VmConfig(name="half").validate())
    assert lib.scan() == [] and staging.name.startswith(".new-")
    assert lib.remove_abandoned() == []  # its creator (this process) still holds it
    other = Library(lib.root)
    assert other.remove_abandoned() == []  # a second process sees the creator's lock too
    lock = lib._staging_locks.pop(staging)
    os.close(lock._fd)  # as if the creator were killed: its lock is gone, its note in the lock file stays
    assert other.remove_abandoned() == [staging] and not staging.exists()


def test_a_staging_folder_in_its_first_moment_is_not_taken_for_abandoned(tmp_path):
    """Its creator makes the folder, then locks it: another process cleaning up in between must not
    remove it (two creates at once lost a VM's disk that way). Only when it has stayed unlocked
    for a minute was its creator killed in that moment."""
    lib = Library(tmp_path / "VMs")
    lib.root.mkdir()
    young = lib.root / ".new-young"
    young.mkdir()
    (young / ".hvdesk.lock").touch()  # created, not yet locked nor noted
    assert lib.remove_abandoned() == [] and young.exists()
    old = lib.root / ".new-old"
    old.mkdir()
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert lib.remove_abandoned() == [old] and young.exists()


def test_every_write_of_a_vm_toml_changes_its_stamp(tmp_path):
    """File times tick in whole jiffies: two writes in one tick keep the time, not the stamp."""
    import os

    from hvdesk.core.storage import CONFIG_FILE, config_stamp

    config = tmp_path / CONFIG_FILE
    assert config_stamp(tmp_path) == 0
    config.write_text("name = 'a'\n")
    first = config_stamp(tmp_path)
    status = os.stat(config)
    config.write_text("name = 'a'\ncpus = 0\n")  # an edit in place, its time put back as it was
    os.utime(config, ns=(status.st_atime_ns, status.st_mtime_ns))
    second = config_stamp(tmp_path)
    assert 0 != first != second
    replacement = tmp_path / "new"
    replacement.write_text("name = 'a'\ncpus = 1\n")  # same size, then renamed over it (a new inode)
    os.utime(replacement, ns=(status.st_atime_ns, status.st_mtime_ns))
    replacement.replace(config)
    assert config_stamp(tmp_path) not in (0, first, second)


def test_a_tree_removed_by_two_processes_at_once_is_no_error(tmp_path, monkeypatch):
    """A delete removes its .gone- folder while another hvdesk's remove_abandoned removes the same:
    whichever comes second finds files gone under it, and must not fail the delete."""
    import shutil

    from hvdesk.core.storage import remove_tree

    tree = tmp_path / ".gone-x" / "vm"
    tree.mkdir(parents=True)
    for name in ("disk0.qcow2", "vm.toml"):
        (tree / name).write_bytes(b"x")
    real_unlink = os.unlink

    def racing_unlink(path, *args, **kwargs):  # the other process took this file first
        if str(path).endswith("disk0.qcow2") or getattr(path, "name", "") == "disk0.qcow2":
            real_unlink(path, *args, **kwargs)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(shutil.os, "unlink", racing_unlink)
    remove_tree(tmp_path / ".gone-x")
    assert not (tmp_path / ".gone-x").exists()
    (tmp_path / "kept").mkdir()
    monkeypatch.setattr(shutil.os, "unlink", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    (tmp_path / "kept" / "f").write_bytes(b"x")
    with pytest.raises(PermissionError):
        remove_tree(tmp_path / "kept")


def test_a_fifo_or_a_huge_file_in_place_of_a_vm_file_blocks_nothing(tmp_path):
    """A shared VM folder may hold a FIFO where vm.toml, snapshots.json or saved-state.json
    belong: reading one would block `hvdesk list` (and the app) for ever."""
    import subprocess
    import sys

    from hvdesk.core import snapshot_meta

    library = Library(tmp_path / "VMs")
    library.create_folder(VmConfig(name="good"))
    evil = tmp_path / "VMs" / "evil"
    evil.mkdir()
    os.mkfifo(evil / "vm.toml")
    os.mkfifo(evil / snapshot_meta.SNAPSHOTS_FILE)
    entries = {e.folder.name: e for e in library.scan()}
    assert entries["good"].accessible and not entries["evil"].accessible
    assert "not a regular file" in entries["evil"].error
    with pytest.raises(ConfigError, match="not a regular file"):
        snapshot_meta.read(evil)
    huge = tmp_path / "VMs" / "huge"
    huge.mkdir()
    with open(huge / "vm.toml", "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: nothing is written, nothing should be read
    assert "larger than" in {e.folder.name: e for e in library.scan()}["huge"].error
    saved = tmp_path / "VMs" / "good" / "saved-state.json"
    os.mkfifo(saved)
    import tempfile

    runtime = tempfile.mkdtemp(prefix="hvf-", dir="/tmp")  # short: socket paths
    env = {**os.environ, "HVDESK_HOME": str(tmp_path), "HVDESK_RUNTIME_DIR": runtime}

    def hv(*words: str) -> subprocess.CompletedProcess[str]:  # the timeout is the test: a FIFO read hangs
        return subprocess.run([sys.executable, "-m", "hvdesk", *words], capture_output=True, text=True,
                              timeout=30, env=env)
    listed = hv("list")
    assert listed.returncode == 0 and "not a regular file" in listed.stdout, listed.stdout + listed.stderr
    assert hv("info", "good").returncode == 0
