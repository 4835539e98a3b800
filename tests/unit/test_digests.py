"""The library's memo of what `list` shows (core/digests.py): a scan of unchanged VMs reads no
vm.toml, any change is seen, and a memo that is stale, foreign or tampered with is never believed."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hvdesk.core import storage
from hvdesk.core.config import VmConfig
from hvdesk.core.digests import MEMO_FILE, Digest
from hvdesk.core.storage import CONFIG_FILE, Library


@pytest.fixture
def lib(tmp_path):
    library = Library(tmp_path / "VMs")
    for name, memory in (("alpha", 512), ("beta", 2048)):
        library.create_folder(VmConfig(name=name, memory_mib=memory, os="debian12").validate())
    (library.root / MEMO_FILE).unlink()  # (creation scans too): each test starts with no memo
    return library


@pytest.fixture
def reads(monkeypatch):
    """Every vm.toml the code under test reads, by folder name."""
    seen: list[str] = []
    real = storage.read_config

    def counting(folder):
        seen.append(folder.name)
        return real(folder)

    monkeypatch.setattr(storage, "read_config", counting)
    return seen


def test_a_second_scan_reads_no_config_and_sees_the_same(lib, reads):
    first = [(e.name, e.digest) for e in lib.scan()]
    assert sorted(reads) == ["alpha", "beta"]
    reads.clear()
    entries = lib.scan()
    assert [(e.name, e.digest) for e in entries] == first
    assert reads == []
    assert entries[1].digest.memory_mib == 2048 and entries[1].digest.os == "debian12"
    assert stat.S_IMODE((lib.root / MEMO_FILE).stat().st_mode) == 0o600


def test_the_config_is_read_when_asked_for(lib, reads):
    lib.scan()
    reads.clear()
    entry = lib.scan()[0]
    assert entry.config.name == "alpha" and entry.config.memory_mib == 512
    assert reads == ["alpha"]


def test_a_changed_config_is_read_again(lib, reads):
    lib.scan()
    folder = lib.find("beta").folder
    lib.save(folder, VmConfig(name="beta", memory_mib=4096).validate())
    reads.clear()
    entry = next(e for e in lib.scan() if e.name == "beta")
    assert reads == ["beta"]
    assert entry.digest.memory_mib == 4096


def test_a_broken_config_is_remembered_broken_until_fixed(lib, reads):
    folder = lib.find("alpha").folder
    (folder / CONFIG_FILE).write_bytes(b"name = [")
    lib.scan()
    reads.clear()
    entry = next(e for e in lib.scan() if e.folder == folder)
    assert not entry.accessible and "not valid TOML" in entry.error and entry.config is None
    assert reads == []
    lib.save(folder, VmConfig(name="alpha").validate())
    assert next(e for e in lib.scan() if e.folder == folder).accessible


def test_two_folders_claiming_one_name_stay_detected_from_the_memo(lib):
    alpha = lib.find("alpha").folder
    copy = lib.root / "alpha-copy"
    copy.mkdir()
    (copy / CONFIG_FILE).write_bytes((alpha / CONFIG_FILE).read_bytes())
    for _ in range(2):  # from the files, then from the memo
        entries = {e.folder.name: e for e in lib.scan()}
        assert entries["alpha"].accessible
        assert not entries["alpha-copy"].accessible and "also used by the VM" in entries["alpha-copy"].error


def _tamper(lib, change):
    memo_path = lib.root / MEMO_FILE
    data = json.loads(memo_path.read_text())
    change(data)
    memo_path.write_text(json.dumps(data))


@pytest.mark.parametrize("field, value", [
    (1, "../../../etc"),  # the uuid names a runtime folder
    (0, "bad/name"),
    (0, ".hidden"),
    (2, "x,y=1"),
    (3, "512"),
    (4, True),
])
def test_a_memo_with_values_vm_toml_could_not_hold_is_not_believed(lib, reads, field, value):
    lib.scan()

    def change(data):
        data["vms"]["alpha"]["digest"][field] = value

    _tamper(lib, change)
    reads.clear()
    entry = next(e for e in lib.scan() if e.folder.name == "alpha")
    assert reads == ["alpha"]
    assert entry.digest == Digest.of(entry.config)


def test_a_memo_written_by_other_code_or_unreadable_is_ignored(lib, reads):
    lib.scan()
    _tamper(lib, lambda data: data.update(key="hvdesk 0.0.1"))
    reads.clear()
    lib.scan()
    assert sorted(reads) == ["alpha", "beta"]
    (lib.root / MEMO_FILE).write_bytes(b"\x00not json")
    reads.clear()
    assert [e.name for e in lib.scan()] == ["alpha", "beta"]
    assert sorted(reads) == ["alpha", "beta"]


def test_a_memo_that_cannot_be_written_costs_nothing_but_time(lib, reads, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("hvdesk.core.digests.os.open", refuse)
    assert [e.name for e in lib.scan()] == ["alpha", "beta"]
    assert [e.name for e in lib.scan()] == ["alpha", "beta"]
    assert not any(p.name.endswith(".tmp") for p in lib.root.iterdir())


def test_the_memo_key_follows_the_validating_code_not_where_it_is_installed(tmp_path, monkeypatch):
    import shutil

    from hvdesk.core import digests

    here = digests._code_key()
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        for name in digests._VALIDATORS:
            shutil.copyfile(os.path.join(os.path.dirname(digests.__file__), name), tmp_path / copy / name)
    monkeypatch.setattr(digests, "__file__", str(tmp_path / "a" / "digests.py"))
    assert digests._code_key() == here  # another install of the same code
    (tmp_path / "a" / "checks.py").write_text("# a rule changed\n", encoding="utf-8")
    assert digests._code_key() != here
