"""Clones (issue 13, item 3): full and linked clones of a stopped VM boot beside it with their own
uuid and MAC addresses, each keeping its own writes; a VM whose disks linked clones read cannot be
deleted; a clone that fails (a full disk) leaves nothing behind and the source as it was. Real
images, real QEMU, through the CLI as users run it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from hvdesk.core.digests import MEMO_FILE
from hvdesk.core.storage import LOCK_FILE, Library
from hvdesk.engine.manager import Manager
from hvdesk.qemu.images import pinned_spec
from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import wait_for_serial
from tests.integration.test_cli import guest_args, hv
from tests.integration.test_host_faults import one_line

pytestmark = pytest.mark.qemu

PATTERN = b"S" * 512  # what the source's disk holds before it is cloned


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def first_sector(image: Path, tmp_path: Path) -> bytes:
    """The first 512 bytes the guest would see: read through the image's whole backing chain."""
    out = tmp_path / f"{image.parent.name}-sector.raw"
    out.unlink(missing_ok=True)
    qemu_img("dd", "-O", "raw", f"if={image}", f"of={out}", "bs=512", "count=1")
    return out.read_bytes()[:512]


def config(home: Path, name: str) -> dict:
    return tomllib.loads((home / "VMs" / name / "vm.toml").read_text())


def make_source(home: Path, guest, name: str = "src") -> Path:
    done = hv("create", name, "--os", "linux", "--disk", "64M", *guest_args(guest))
    assert done.returncode == 0, done.stderr
    disk = home / "VMs" / name / "disk0.qcow2"
    subprocess.run(["qemu-io", "-c", "write -P 0x53 0 64k", str(disk)], check=True, capture_output=True)
    return disk


async def test_full_and_linked_clones_boot_beside_the_source_each_with_its_own_writes(cli_home, tiny_guest,
                                                                                      tmp_path):
    vms = cli_home / "VMs"
    make_source(cli_home, tiny_guest)
    done = hv("clone", "src", "full")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Cloned 'src' to 'full' (full copy, ")
    done = hv("clone", "src", "linked", "--linked")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Cloned 'src' to 'linked' (linked, in ")
    assert "'src' cannot be deleted while 'linked' uses its disks" in done.stdout

    configs = {name: config(cli_home, name) for name in ("src", "full", "linked")}
    macs = {name: c["nics"][0]["mac"] for name, c in configs.items()}
    assert len(set(macs.values())) == 3 and len({c["uuid"] for c in configs.values()}) == 3
    assert configs["full"]["disks"][0]["backing"] == []
    (base,) = [p for p in (vms / "src").iterdir() if p.name.startswith("base-")]
    assert configs["src"]["disks"][0] == {**configs["src"]["disks"][0], "path": "disk0.qcow2",
                                          "backing": [{"path": base.name, "format": "qcow2"}]}
    assert configs["linked"]["disks"][0]["backing"] == [{"path": str(base), "format": "qcow2"}]
    for name in ("src", "full", "linked"):
        qemu_img("check", str(vms / name / "disk0.qcow2"))
    chain = json.loads(qemu_img("info", "--backing-chain", "--output=json", str(vms / "linked" / "disk0.qcow2")))
    assert [Path(layer["filename"]) for layer in chain] == [vms / "linked" / "disk0.qcow2", base]
    assert all(first_sector(vms / name / "disk0.qcow2", tmp_path) == PATTERN for name in ("src", "full", "linked"))

    for name in ("src", "full", "linked"):  # side by side
        assert hv("start", name).returncode == 0
    for name in ("src", "full", "linked"):
        serial = vms / name / "logs" / "serial.log"
        await wait_for_serial(serial, SHELL_MARKER)
        # each guest sees its own MAC (the command echoed on the screen does not contain it)
        assert hv("send-keys", name, "--text", "cat /sys/class/net/eth0/address > /dev/ttyS0\n").returncode == 0
        await wait_for_serial(serial, macs[name], timeout=30)
    for name in ("src", "linked"):  # both write over the base's data, each to its own overlay
        text = (f"printf MARK-{name} | dd of=/dev/vda bs=512 conv=sync oflag=direct "
                "&& echo wrote-$((40+2)) > /dev/ttyS0\n")
        assert hv("send-keys", name, "--text", text).returncode == 0
    for name in ("src", "linked"):
        await wait_for_serial(vms / name / "logs" / "serial.log", "wrote-42", timeout=30)
    for name in ("src", "full", "linked"):
        done = hv("stop", name, "--force", "--timeout", "20")
        assert done.returncode == 0, done.stderr
    assert first_sector(vms / "src" / "disk0.qcow2", tmp_path).startswith(b"MARK-src\0")
    assert first_sector(vms / "linked" / "disk0.qcow2", tmp_path).startswith(b"MARK-linked\0")
    assert first_sector(vms / "full" / "disk0.qcow2", tmp_path) == PATTERN
    assert first_sector(base, tmp_path) == PATTERN  # nobody wrote the base


def test_a_vm_with_linked_clones_is_not_deleted_and_keeps_its_folder(cli_home, tiny_guest):
    vms = cli_home / "VMs"
    make_source(cli_home, tiny_guest, "web")
    assert hv("clone", "web", "web-2", "--linked").returncode == 0
    assert hv("clone", "web", "web-3", "--linked").returncode == 0  # a second base below the first
    assert hv("clone", "web-2", "web-4", "--linked").returncode == 0  # a clone of a clone
    line = one_line(hv("delete", "web"))
    assert line == ("hvdesk: cannot delete 'web': linked clones 'web-2', 'web-3', 'web-4' use its disk; "
                    "delete them first")
    assert one_line(hv("delete", "web", "--keep-disks")) == line
    assert sorted(p.name for p in vms.iterdir() if not p.name.startswith(".")) == ["web", "web-2", "web-3", "web-4"]
    # a rename keeps the folder that the clones' backing images are in
    assert hv("modify", "web", "--name", "www").returncode == 0
    assert (vms / "web" / "vm.toml").exists() and config(cli_home, "web")["name"] == "www"
    chain = json.loads(qemu_img("info", "--backing-chain", "--output=json", str(vms / "web-4" / "disk0.qcow2")))
    assert len(chain) == 3  # web-4 <- web-2's base <- web's first base
    for name in ("web", "web-2", "web-3", "web-4"):
        qemu_img("check", str(vms / name / "disk0.qcow2"))

    # --keep-macs: the network cards keep their addresses (new ones otherwise)
    assert hv("clone", "web-3", "twin", "--keep-macs").returncode == 0
    macs = {n: [nic["mac"] for nic in config(cli_home, n)["nics"]] for n in ("web-2", "web-3", "twin", "web-4")}
    assert macs["twin"] == macs["web-3"] and macs["web-4"] != macs["web-2"] and macs["twin"]
    assert hv("delete", "twin").returncode == 0

    # a VM with snapshots: they live in its disks, which a linked clone would turn into bases
    assert hv("snapshot", "web-3", "take", "s1").returncode == 0
    assert "it has snapshots" in one_line(hv("clone", "web-3", "web-5", "--linked"))
    assert not (vms / "web-5").exists()

    done = hv("clone", "web-4", "flat")  # a full clone of a chain: one image, read through the pinned chain
    assert done.returncode == 0, done.stderr
    assert config(cli_home, "flat")["disks"][0]["backing"] == []
    assert "backing-filename" not in json.loads(qemu_img("info", "--output=json", str(vms / "flat" / "disk0.qcow2")))
    assert first_sector(vms / "flat" / "disk0.qcow2", cli_home) == PATTERN
    assert hv("delete", "flat").returncode == 0

    assert one_line(hv("delete", "web-2")) == ("hvdesk: cannot delete 'web-2': linked clone 'web-4' uses its disk; "
                                               "delete it first")
    for name in ("web-4", "web-2", "web-3"):  # deleting a clone is fine, and leaves the source's files
        done = hv("delete", name)
        assert done.returncode == 0, done.stderr
    assert first_sector(vms / "web" / "disk0.qcow2", cli_home) == PATTERN
    assert hv("delete", "www").returncode == 0
    assert not (vms / "web").exists()


async def test_a_clone_that_fails_leaves_nothing_and_the_source_boots(cli_home, small_disk, tiny_guest,
                                                                      monkeypatch):
    disk = small_disk(4096)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    vms = disk.path / "VMs"
    make_source(disk.path, tiny_guest)
    assert one_line(hv("clone", "src", "SRC")) == "hvdesk: a VM named 'SRC' already exists (names ignore case)"
    assert one_line(hv("clone", "src", "a/b")).startswith("hvdesk: invalid VM name 'a/b'")
    before = {p.name: p.read_bytes() for p in (vms / "src").iterdir() if p.is_file() and p.name != LOCK_FILE}
    disk.fill(leave=64 * 1024)
    line = one_line(hv("clone", "src", "full"))
    assert line.startswith("hvdesk: cannot clone 'src' to 'full': ") and "No space left on device" in line, line
    line = one_line(hv("clone", "src", "linked", "--linked"))
    assert line.startswith("hvdesk: cannot clone 'src' to 'linked': ") and "No space left on device" in line, line
    assert sorted(p.name for p in vms.iterdir() if p.name not in (".library.lock", MEMO_FILE)) == ["src"]
    assert {p.name: p.read_bytes() for p in (vms / "src").iterdir() if p.is_file() and p.name != LOCK_FILE} == before
    (disk.path / ".filler").unlink()
    assert hv("start", "src").returncode == 0
    await wait_for_serial(vms / "src" / "logs" / "serial.log", tiny_guest.marker)
    assert hv("stop", "src", "--force", "--timeout", "0").returncode == 0
    assert first_sector(vms / "src" / "disk0.qcow2", disk.path) == PATTERN


def test_a_running_vm_is_not_cloned(cli_home, tiny_guest):
    make_source(cli_home, tiny_guest)
    assert hv("start", "src", "--paused").returncode == 0
    for extra in ([], ["--linked"]):
        assert one_line(hv("clone", "src", "copy", *extra)) == ("hvdesk: cannot clone 'src': it is paused; "
                                                                 "stop it first")
    assert hv("stop", "src", "--force", "--timeout", "0").returncode == 0
    assert [v["name"] for v in json.loads(hv("list", "--json").stdout)] == ["src"]


@pytest.mark.parametrize("linked", [False, True], ids=["full", "linked"])
def test_a_clone_has_its_own_copy_of_the_uefi_variables_and_tpm_state(cli_home, tiny_guest, linked):
    vms = cli_home / "VMs"
    done = hv("create", "uefi", "--os", "linux", "--disk", "64M", "--firmware", "uefi", *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr
    nvram, tpm = vms / "uefi" / "uefi-vars.fd", vms / "uefi" / "tpm"
    with open(nvram, "r+b") as handle:  # as if the guest had saved a boot entry
        handle.write(b"BOOT-ENTRY")
    tpm.mkdir(mode=0o700)
    (tpm / "tpm2-00.permall").write_bytes(b"TPM-STATE")  # as swtpm leaves it after a first start
    done = hv("clone", "uefi", "copy", *(["--linked"] if linked else []))
    assert done.returncode == 0, done.stderr
    copy = vms / "copy"
    assert (copy / "uefi-vars.fd").read_bytes() == nvram.read_bytes()
    assert (copy / "tpm" / "tpm2-00.permall").read_bytes() == b"TPM-STATE"
    assert not os.path.samefile(copy / "uefi-vars.fd", nvram)  # copies, not shared: each VM writes its own
    for path in (copy / "uefi-vars.fd", copy / "tpm" / "tpm2-00.permall"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert (copy / "tpm").stat().st_mode & 0o777 == 0o700
    assert config(cli_home, "copy")["firmware"] == "uefi"


def pinned_first_sector(home: Path, name: str, tmp_path: Path) -> bytes:
    """The first sector as the VM's vm.toml pins its chain (what QEMU would show the guest)."""
    folder = home / "VMs" / name
    disk = config(home, name)["disks"][0]

    def where(path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else folder / path
    spec = pinned_spec(where(disk["path"]), disk["format"], [(where(b["path"]), b["format"]) for b in disk["backing"]])
    out = tmp_path / "pinned-sector.raw"
    out.unlink(missing_ok=True)
    qemu_img("dd", "-O", "raw", f"if={spec}", f"of={out}", "bs=512", "count=1")
    return out.read_bytes()[:512]


def fail_after_overlay_rename(monkeypatch):
    """The source's new overlay has taken its disk's name, then the process dies."""
    replace = os.replace

    def failing(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        if ".clone-" in os.fspath(src):
            raise OSError(errno.EIO, "injected failure", os.fspath(src))
    monkeypatch.setattr(os, "replace", failing)


def fail_second_source_save(monkeypatch):
    save, calls = Library.save, []

    def failing(self, folder, config):
        calls.append(folder)
        if config.name == "src" and calls.count(folder) == 2:
            raise OSError(errno.EIO, "injected failure", str(folder))
        return save(self, folder, config)
    monkeypatch.setattr(Library, "save", failing)


def fail_publish(monkeypatch):
    def failing(self, staging, name):
        raise OSError(errno.EIO, "injected failure", str(staging))
    monkeypatch.setattr(Library, "publish", failing)


async def test_a_linked_clone_failing_at_any_step_of_the_commit_leaves_the_source_valid(cli_home, tiny_guest,
                                                                                         tmp_path, monkeypatch):
    """Each step of the source's rearrangement failing (as a crash there would leave it): its
    vm.toml still names a chain that reads the source's data, no clone appears, nothing is staged."""
    vms = cli_home / "VMs"
    make_source(cli_home, tiny_guest)
    for inject in (fail_after_overlay_rename, fail_second_source_save, fail_publish):
        async with Manager() as manager:
            with monkeypatch.context() as patch:
                inject(patch)
                with pytest.raises(OSError, match="injected failure"):
                    await manager.clone("src", "linked", linked=True)
        assert pinned_first_sector(cli_home, "src", tmp_path) == PATTERN, inject.__name__
        assert sorted(p.name for p in vms.iterdir() if p.name not in (".library.lock", MEMO_FILE)) == ["src"]
    assert hv("start", "src").returncode == 0
    await wait_for_serial(vms / "src" / "logs" / "serial.log", tiny_guest.marker)
    assert hv("stop", "src", "--force", "--timeout", "0").returncode == 0
    done = hv("clone", "src", "linked", "--linked")  # and linked clones still work
    assert done.returncode == 0, done.stderr
    assert pinned_first_sector(cli_home, "linked", tmp_path) == PATTERN
