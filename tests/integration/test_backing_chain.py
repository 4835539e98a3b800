"""An attached image never shows the guest a host file it was not meant to (issue 9, item 2): the
backing chain is shown and refused unless approved, pinned on QEMU's command line so a header
changed later is ignored, and images reading data from other files (qcow2 data files) refused.
Real images made with qemu-img, real QEMU, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def secret(tmp_path) -> Path:
    """A host file the guest must not read: the audit's /home/you/secret."""
    path = tmp_path / "home" / "you-secret"
    path.write_bytes(b"TOP SECRET" * 52429)  # 512 KiB, so it can be a raw disk image
    os.chmod(path, 0o600)
    return path


def open_files(pid: int) -> set[str]:
    return {os.path.realpath(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def refused(done) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_a_backing_file_outside_is_shown_and_refused_unless_allowed(cli_home, tiny_guest, tmp_path, secret):
    appliance = tmp_path / "appliance.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(appliance))
    line = refused(hv("create", "app", "--attach-disk", str(appliance), *guest_args(tiny_guest)))
    assert f"{secret} (raw) <- {appliance} (qcow2)" in line and "--allow-backing" in line
    assert json.loads(hv("list", "--json").stdout) == []  # nothing was created

    done = hv("create", "app", "--attach-disk", str(appliance), "--allow-backing", *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr
    assert f"reads from its backing images: {secret} (raw) <- {appliance} (qcow2)" in done.stdout
    info = json.loads(hv("info", "app", "--json").stdout)
    assert info["disks"][0]["backing"] == [{"path": str(secret), "format": "raw"}]
    assert hv("start", "app").returncode == 0
    pid = json.loads(hv("info", "app", "--json").stdout)["pid"]
    assert str(secret) in open_files(pid)  # approved: the chain is opened as shown
    assert hv("stop", "app", "--force", "--timeout", "0").returncode == 0


def test_a_header_changed_after_attaching_is_ignored(cli_home, tiny_guest, tmp_path, secret):
    """The chain is pinned: an image with no backing file when attached is opened without one,
    even after its header is rewritten to name the secret."""
    image = tmp_path / "plain.qcow2"
    qemu_img("create", "-f", "qcow2", str(image), "1M")
    assert hv("create", "plain", "--attach-disk", str(image), *guest_args(tiny_guest)).returncode == 0
    qemu_img("rebase", "-u", "-b", str(secret), "-F", "raw", str(image))  # the image changes under us
    done = hv("start", "plain")
    assert done.returncode == 0, done.stderr
    pid = json.loads(hv("info", "plain", "--json").stdout)["pid"]
    opened = open_files(pid)
    assert str(image) in opened and str(secret) not in opened
    assert hv("stop", "plain", "--force", "--timeout", "0").returncode == 0


def test_images_that_read_other_files_are_refused(cli_home, tiny_guest, tmp_path, secret):
    # A qcow2 whose data lives in an external file: the secret, read as the disk's contents.
    with_data_file = tmp_path / "data-file.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on", str(with_data_file),
             str(secret.stat().st_size))
    assert "keeps its data in an external file" in refused(
        hv("create", "df", "--attach-disk", str(with_data_file), "--allow-backing", *guest_args(tiny_guest)))

    # A backing file that is not a file at all: a network address.
    networked = tmp_path / "net.qcow2"
    qemu_img("create", "-f", "qcow2", str(networked), "1M")
    qemu_img("rebase", "-u", "-b", "nbd://127.0.0.1:1/x", "-F", "raw", str(networked))
    assert "which is not a local file" in refused(
        hv("create", "net", "--attach-disk", str(networked), "--allow-backing", *guest_args(tiny_guest)))

    # A chain that loops.
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    qemu_img("create", "-f", "qcow2", str(a), "1M")
    qemu_img("create", "-f", "qcow2", "-b", str(a), "-F", "qcow2", str(b))
    qemu_img("rebase", "-u", "-b", str(b), "-F", "qcow2", str(a))
    assert "loops back" in refused(hv("create", "loop", "--attach-disk", str(b), "--allow-backing",
                                      *guest_args(tiny_guest)))

    # An image that gains a data file after it was attached: the start is refused.
    later = tmp_path / "later.qcow2"
    qemu_img("create", "-f", "qcow2", str(later), "1M")
    assert hv("create", "later", "--attach-disk", str(later), *guest_args(tiny_guest)).returncode == 0
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on", str(later),
             str(secret.stat().st_size))
    assert "keeps its data in an external file" in refused(hv("start", "later"))
    assert json.loads(hv("list", "--json").stdout)[-1]["state"] == "stopped"
    assert not json.loads(hv("list", "--json").stdout)[-1]["pid"]
