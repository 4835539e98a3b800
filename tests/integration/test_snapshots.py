"""Snapshots through the `hvdesk snapshot` command, on real QEMU with the tiny guest: offline ones
of the disks, live ones with the guest's memory (a shell variable typed through the console comes
back), a tree with a branch whose middle is deleted, a UEFI VM's qcow2 NVRAM, a raw disk refused by
name, and bad input that changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import wait_for_serial
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def ok(*args: str) -> str:
    done = hv(*args)
    assert done.returncode == 0, f"hvdesk {' '.join(args)}: {done.stderr}"
    return done.stdout


def refused(*args: str) -> str:
    done = hv(*args)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def info(name: str) -> dict:
    return json.loads(ok("info", name, "--json"))


def snapshots(name: str) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(ok("snapshot", name, "list", "--json"))}


def qemu_io(image: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(image)], capture_output=True, text=True)


def tags(image: Path) -> list[str]:
    done = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)], capture_output=True, text=True)
    return [s["name"] for s in json.loads(done.stdout).get("snapshots", [])]


def test_offline_snapshot_brings_back_the_disk(cli_home, tiny_guest):
    ok("create", "off", "--disk", "64M", *guest_args(tiny_guest))
    disk = Path(info("off")["disks"][0]["path"])
    assert "Took snapshot 'clean' of 'off' of its disks (stopped)" in ok("snapshot", "off", "take", "clean",
                                                                            "--description", "as created")
    assert qemu_io(disk, "write -P 0x5a 0 64k").returncode == 0
    assert "Pattern verification failed" not in qemu_io(disk, "read -P 0x5a 0 64k").stdout
    ok("modify", "off", "--memory", "300M")  # the settings come back too
    assert "it is stopped" in ok("snapshot", "off", "restore", "clean")
    assert "Pattern verification failed" not in qemu_io(disk, "read -P 0 0 64k").stdout  # the change is gone
    assert info("off")["memory_mib"] == 256
    row = snapshots("off")["clean"]
    assert (row["state"], row["parent"], row["current"], row["description"]) == ("stopped", None, True, "as created")


async def test_live_snapshots_tree_branch_and_bad_input(cli_home, tiny_guest):
    """One booted guest through all of it: the tree is base (stopped) -> one (running) -> two, and
    three branched from one; deleting one (the middle) keeps two and three restorable."""
    ok("create", "live", "--disk", "64M", *guest_args(tiny_guest))
    ok("snapshot", "live", "take", "base")
    ok("start", "live")
    serial = Path(info("live")["serial_log"])
    await wait_for_serial(serial, SHELL_MARKER)

    def set_marker(value: str) -> None:
        ok("send-keys", "live", "--text", f"M={value}\n")

    async def marker_is(value: str, count: int = 1) -> None:
        ok("send-keys", "live", "--text", "echo marker-$M > /dev/ttyS0\n")
        await wait_for_serial(serial, f"marker-{value}", count=count, timeout=30)

    set_marker("one")
    await marker_is("one")
    assert "with its memory (live)" in ok("snapshot", "live", "take", "one")
    set_marker("two")
    ok("snapshot", "live", "take", "two", "--description", "the second")
    set_marker("changed")
    assert "it is running" in ok("snapshot", "live", "restore", "one")
    assert info("live")["state"] == "running"
    await marker_is("one", count=2)  # the old marker is back: the guest's memory was restored
    set_marker("three")
    ok("snapshot", "live", "take", "three")
    tree = snapshots("live")
    assert {n: (r["parent"], r["state"], r["current"]) for n, r in tree.items()} == {
        "base": (None, "stopped", False), "one": ("base", "running", False), "two": ("one", "running", False),
        "three": ("one", "running", True)}

    # bad input: clear one-line errors, nothing lost, the VM still usable
    assert "already has a snapshot named 'two'" in refused("snapshot", "live", "take", "TWO")
    assert "'live' has no snapshot named 'nope'" in refused("snapshot", "live", "restore", "nope")
    assert "invalid snapshot name" in refused("snapshot", "live", "take", "a/b")
    assert "needs 'live' stopped; stop it first" in refused("snapshot", "live", "restore", "base")
    ok("pause", "live")
    assert "it is paused; resume it first" in refused("snapshot", "live", "take", "paused")
    assert "it is paused; resume it first" in refused("snapshot", "live", "restore", "two")
    ok("resume", "live")
    assert set(snapshots("live")) == {"base", "one", "two", "three"}

    assert "Deleted snapshot 'one'" in ok("snapshot", "live", "delete", "one")
    tree = snapshots("live")
    assert {n: r["parent"] for n, r in tree.items()} == {"base": None, "two": "base", "three": "base"}
    disk = Path(info("live")["disks"][0]["path"])
    assert len(tags(disk)) == 3
    ok("snapshot", "live", "restore", "two")
    await marker_is("two")
    ok("snapshot", "live", "restore", "three")
    await marker_is("three")
    assert snapshots("live")["three"]["current"]

    # a live snapshot restored on a stopped VM: a fresh QEMU, started paused for it, then running
    ok("stop", "live", "--force", "--timeout", "0")
    assert "it is running" in ok("snapshot", "live", "restore", "two")
    await marker_is("two")  # (a new QEMU: a new serial log, the last one kept as serial.log.1)
    ok("stop", "live", "--force", "--timeout", "0")
    assert "it is stopped" in ok("snapshot", "live", "restore", "base")


async def test_uefi_vm_snapshots_hold_its_qcow2_nvram(cli_home, tiny_guest):
    ok("create", "efi", "--disk", "64M", "--firmware", "uefi", *guest_args(tiny_guest))
    ok("modify", "efi", "--tpm", "on")
    folder = Path(info("efi")["folder"])
    nvram, tpm = folder / "uefi-vars.fd", folder / "tpm"
    assert nvram.read_bytes()[:4] == b"QFI\xfb"  # new UEFI VMs get their NVRAM as qcow2
    ok("start", "efi")  # (swtpm makes the TPM's state)
    ok("stop", "efi", "--force", "--timeout", "0")
    ok("snapshot", "efi", "take", "cold")
    assert any((folder / "snapshots").glob("*-tpm/*"))  # a stopped VM's TPM state is copied with it
    ok("start", "efi")
    ok("snapshot", "efi", "take", "warm")  # a running one's is in the saved device state
    assert "it is running" in ok("snapshot", "efi", "restore", "warm")
    ok("stop", "efi", "--force", "--timeout", "0")
    (tpm / "later").write_text("written after the snapshot")
    ok("snapshot", "efi", "restore", "cold")
    assert not (tpm / "later").exists() and any(tpm.iterdir())
    assert len(tags(nvram)) == 2

    # an NVRAM an older hvdesk wrote raw: refused live, converted (contents kept) at an offline snapshot
    template = next(p for p in (Path("/usr/share/OVMF/OVMF_VARS_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd"))
                    if p.is_file())
    shutil.copyfile(template, nvram)
    ok("start", "efi")
    assert "its UEFI NVRAM" in refused("snapshot", "efi", "take", "raw-live")
    ok("stop", "efi", "--force", "--timeout", "0")
    shutil.copyfile(template, nvram)  # (the firmware wrote its variables while it ran)
    out = ok("snapshot", "efi", "take", "after-convert")
    assert "converted the UEFI NVRAM of 'efi' from raw to qcow2" in out
    assert nvram.read_bytes()[:4] == b"QFI\xfb" and tags(nvram)
    done = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(template), str(nvram)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    ok("start", "efi")  # and it still boots from it


def test_raw_disk_is_refused_by_name_and_converted(cli_home, tiny_guest, tmp_path):
    raw = tmp_path / "data.img"
    raw.write_bytes(b"\x5a" * 65536 + b"\0" * (4 * 1024 * 1024 - 65536))
    ok("create", "rawvm", "--attach-disk", str(raw), *guest_args(tiny_guest))
    message = refused("snapshot", "rawvm", "take", "s")
    assert f"its disk 0 ({raw}) is raw, which cannot hold snapshots" in message
    assert "hvdesk snapshot rawvm convert-disk 0" in message and "exclude-disk 0" in message
    assert snapshots("rawvm") == {}
    out = ok("snapshot", "rawvm", "convert-disk", "0")
    assert "kept it" in out and raw.exists()  # an image attached from elsewhere is never removed
    converted = Path(info("rawvm")["disks"][0]["path"])
    assert converted.parent == Path(info("rawvm")["folder"]) and info("rawvm")["disks"][0]["format"] == "qcow2"
    assert "Pattern verification failed" not in qemu_io(converted, "read -P 0x5a 0 64k").stdout
    ok("snapshot", "rawvm", "take", "s")
    ok("snapshot", "rawvm", "exclude-disk", "0")
    assert info("rawvm")["disks"][0]["in_snapshots"] is False and "not in snapshots" in ok("info", "rawvm")
    assert "no qcow2 disk in its snapshots" in refused("snapshot", "rawvm", "take", "t")
    ok("create", "nodisk", *guest_args(tiny_guest))
    assert "it has no qcow2 disk in its snapshots to hold it" in refused("snapshot", "nodisk", "take", "s")
