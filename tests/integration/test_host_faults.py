"""Faults of the host, never a traceback and nothing lost (issue 9, items 8, 10 and 12): a full
disk, a read-only home, a disk error that pauses a VM, QEMU refusing a command, a start that
never resumed. Real tmpfs mounts, real QEMU, through the CLI as users run it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from hvdesk.core.digests import MEMO_FILE
from hvdesk.core.errors import QemuError
from hvdesk.engine import editing, runtime
from hvdesk.engine.states import LAUNCH_GRACE
from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import wait_for_serial
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def one_line(done) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hvdesk: "), done.stderr
    return lines[0]


def test_a_full_disk_fails_create_clearly_and_leaves_nothing(cli_home, small_disk, tiny_guest, monkeypatch):
    disk = small_disk(4096)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    assert hv("create", "kept", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    config = (disk.path / "VMs" / "kept" / "vm.toml").read_bytes()
    disk.fill(leave=4096)
    line = one_line(hv("create", "new", "--disk", "64M", *guest_args(tiny_guest)))
    assert line.startswith(f"hvdesk: cannot create the disk of 'new' in {disk.path / 'VMs'}: ")
    assert "No space left on device" in line
    kept = sorted(p.name for p in (disk.path / "VMs").iterdir() if p.name not in (".library.lock", MEMO_FILE))
    assert kept == ["kept"]
    assert [v["name"] for v in json.loads(hv("list", "--json").stdout)] == ["kept"]
    assert (disk.path / "VMs" / "kept" / "vm.toml").read_bytes() == config


async def test_a_full_disk_never_half_writes_a_vm_file(engines, small_disk, guest_request, monkeypatch):
    disk = small_disk(4096)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    manager = await engines()
    machine = await manager.create(guest_request("vm"))
    before = (machine.entry.folder / "vm.toml").read_bytes()
    disk.fill(leave=0)
    edited = machine.config.__class__(**{**machine.config.__dict__, "notes": "x" * 20000})
    with pytest.raises(OSError, match="No space left on device"):
        await editing.save_settings(manager, "vm", edited)
    assert (machine.entry.folder / "vm.toml").read_bytes() == before  # atomic: the old file, whole
    assert not [p for p in machine.entry.folder.iterdir() if p.name.endswith(".tmp")]


def test_a_read_only_home_reads_fine_and_refuses_changes_clearly(cli_home, small_disk, tiny_guest, monkeypatch):
    disk = small_disk(8192)
    monkeypatch.setenv("HVDESK_HOME", str(disk.path))
    assert hv("create", "vm", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    disk.read_only()
    assert [(v["name"], v["state"]) for v in json.loads(hv("list", "--json").stdout)] == [("vm", "stopped")]
    assert hv("info", "vm").returncode == 0
    for command in (["create", "other", *guest_args(tiny_guest)], ["start", "vm"], ["delete", "vm"]):
        assert "Read-only file system" in one_line(hv(*command)), command
    assert (disk.path / "VMs" / "vm" / "disk0.qcow2").exists()


async def test_a_disk_error_pauses_the_vm_with_its_reason(cli_home, small_disk, tiny_guest):
    """The VM's disk lives on a 2 MiB tmpfs: writing 32 MiB fills it, QEMU stops the VM with an
    I/O error; `list` says why, and `resume` says it stopped again at once."""
    disk = small_disk(2048)
    image = disk.path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "256M"], check=True)
    done = hv("create", "io", "--os", "linux", "--attach-disk", str(image), *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr  # linux: a virtio disk, which the tiny guest has a driver for
    assert hv("start", "io").returncode == 0
    serial = Path(json.loads(hv("info", "io", "--json").stdout)["serial_log"])
    await wait_for_serial(serial, SHELL_MARKER)
    typed = hv("send-keys", "io", "--text", "dd if=/dev/urandom of=/dev/vda bs=1M count=32 oflag=direct\n")
    assert typed.returncode == 0, typed.stderr
    deadline = time.monotonic() + 90
    while (row := json.loads(hv("list", "--json").stdout)[0])["state"] != "paused":
        assert time.monotonic() < deadline, row
        time.sleep(0.5)
    assert row["reason"] == "stopped by a disk I/O error (is the host's disk full?)"
    assert "paused (stopped by a disk I/O error" in hv("list").stdout
    line = one_line(hv("resume", "io"))
    assert "stopped again at once: the disk error persists" in line
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "paused"
    assert hv("stop", "io", "--force", "--timeout", "0").returncode == 0


async def test_qemu_refusing_a_command_is_a_clear_error(manager, guest_request):
    await manager.create(guest_request("refuse"))
    machine = await manager.start("refuse", paused=True)
    with pytest.raises(QemuError, match="^QEMU refused eject: Device 'no-such-drive' not found$"):
        await manager.command(machine, "eject", {"id": "no-such-drive"})
    await manager.stop("refuse", force=True, timeout=0)


async def test_a_start_still_launching_is_starting_not_paused(engines, guest_request):
    """QEMU waits in prelaunch until the start that launched it says `cont`. Another hvdesk that
    looks meanwhile sees "starting"; a start that died there leaves a VM that says so."""
    manager = await engines()
    await manager.create(guest_request("launch"))
    machine = await manager.start("launch", paused=True)  # QEMU in prelaunch, as mid-start
    run = runtime.read_run_info(machine.paths)
    run.paused = False  # ...as if a plain start were still about to resume it
    runtime.write_run_info(machine.paths, run)
    other = await engines()
    assert (other.get("launch").state, other.get("launch").reason) == ("starting", "")
    run.started_at -= LAUNCH_GRACE + 1  # that start never came back
    runtime.write_run_info(machine.paths, run)
    third = await engines()
    assert (third.get("launch").state, third.get("launch").reason) == (
        "paused", "QEMU was started but never resumed (its start was interrupted)")
    await third.resume("launch")
    assert third.get("launch").state == "running"
