"""The runtime folder (sockets, pidfile) is private at every level, never another user's and never
through a symlink (issue 9, item 3), and tampering inside it never fools hvdesk into acting on
the wrong process. Through the CLI, with the runtime folder in its default place (the temp dir)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from hvdesk.qemu.discovery import qemu_processes
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


@pytest.fixture
def tmp_base(cli_home, monkeypatch):
    """hvdesk's default runtime place: hvdesk-<uid> in a temp dir of this test's own (short, for
    socket paths), with no XDG_RUNTIME_DIR and no override."""
    base = Path(tempfile.mkdtemp(prefix="hvr-", dir="/tmp"))
    os.chmod(base, 0o1777)  # like /tmp itself: anyone may create a folder here first
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.delenv("HVDESK_RUNTIME_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield base
    for proc in qemu_processes(fresh=True):  # the QEMUs of this test only
        if (proc.option("-pidfile") or "").startswith(str(base)):
            os.kill(proc.pid, 9)
    shutil.rmtree(base, ignore_errors=True)


def another_users_folder(path: Path) -> None:
    """A folder at `path` that belongs to someone else."""
    path.mkdir(mode=0o777)
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)  # nobody
    else:  # a non-root test cannot give a folder away: point at one root owns instead
        path.rmdir()
        path.symlink_to("/usr")


def refusal(done) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def ours(tmp_base: Path) -> Path:
    return tmp_base / f"hvdesk-{os.getuid()}"


def test_a_runtime_folder_made_first_by_another_user_is_refused(tmp_base, tiny_guest):
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    another_users_folder(ours(tmp_base))
    line = refusal(hv("start", "vm"))
    assert f"runtime folder {ours(tmp_base)}" in line
    assert "belongs to another user" in line or "symbolic link" in line
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "stopped"


def test_a_symlinked_runtime_folder_is_refused_at_every_level(tmp_base, tiny_guest):
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    elsewhere = Path(tempfile.mkdtemp(dir=tmp_base))
    ours(tmp_base).symlink_to(elsewhere)
    assert "is a symbolic link" in refusal(hv("start", "vm"))
    assert not any(elsewhere.iterdir())  # nothing was put there

    ours(tmp_base).unlink()
    ours(tmp_base).mkdir(mode=0o700)
    library_key = next(iter(json.loads(hv("info", "vm", "--json").stdout)["sockets"].values()))
    inner = Path(library_key).parent.parent  # <base>/<library key>/<uuid>/qmp.sock
    inner.symlink_to(elsewhere)
    assert "is a symbolic link" in refusal(hv("start", "vm"))
    assert not any(elsewhere.iterdir())


def test_every_level_is_made_private_and_ours(tmp_base, tiny_guest):
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    ours(tmp_base).mkdir(mode=0o755)  # as an older hvdesk made it
    done = hv("start", "vm")
    assert done.returncode == 0, done.stderr
    run_dir = Path(json.loads(hv("info", "vm", "--json").stdout)["sockets"]["qmp"]).parent
    levels = [run_dir, run_dir.parent, run_dir.parent.parent]
    assert levels[-1] == ours(tmp_base)
    for level in levels:
        info = level.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        assert stat.S_IMODE(info.st_mode) == 0o700, level
    assert hv("stop", "vm", "--force", "--timeout", "0").returncode == 0


def test_an_xdg_runtime_dir_others_can_write_is_refused(tmp_base, tiny_guest, monkeypatch):
    assert hv("create", "vm", *guest_args(tiny_guest)).returncode == 0
    xdg = Path(tempfile.mkdtemp(dir=tmp_base))
    os.chmod(xdg, 0o777)
    line = refusal(hv("start", "vm", env={"XDG_RUNTIME_DIR": str(xdg)}))
    assert f"XDG_RUNTIME_DIR {xdg} is writable by others" in line


def test_a_pidfile_pointing_at_another_process_fools_nobody(tmp_base, tiny_guest):
    """Tampering inside the runtime folder: a pidfile naming a process that is not this VM's QEMU
    (here PID 1 and this test's own process) neither shows the VM running nor gets that process
    killed by stop or delete."""
    assert hv("create", "vm", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "vm").returncode == 0
    run_dir = Path(json.loads(hv("info", "vm", "--json").stdout)["sockets"]["qmp"]).parent
    assert hv("stop", "vm", "--force", "--timeout", "0").returncode == 0
    for pid in (1, os.getpid()):
        run_dir.mkdir(mode=0o700, exist_ok=True)
        (run_dir / "qemu.pid").write_text(f"{pid}\n")
        (run_dir / "run.json").write_text("{not json")
        assert json.loads(hv("list", "--json").stdout)[0]["state"] in ("stopped", "aborted")
        assert "cannot stop" in refusal(hv("stop", "vm", "--force", "--timeout", "0"))
    assert hv("delete", "vm").returncode == 0
    assert os.getpid() and Path("/proc/1").exists()
