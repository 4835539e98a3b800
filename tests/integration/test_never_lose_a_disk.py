"""No command loses a disk: not over a QEMU whose runtime folder vanished, not a disk another VM
uses, not a create killed half-way (issue 9, items 4, 5 and 7). Through the CLI, as users do."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvdesk.qemu.process import is_alive
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def info(name: str) -> dict:
    done = hv("info", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_clear_line(done: subprocess.CompletedProcess) -> str:
    """A refused command: exit 1 and one line on stderr, never a traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hvdesk: "), done.stderr
    return lines[0]


async def test_a_qemu_whose_runtime_folder_vanished_is_still_found(cli_home, tiny_guest):
    assert hv("create", "orphan", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "orphan").returncode == 0
    before = info("orphan")
    pid, disk = before["pid"], Path(before["disks"][0]["path"])  # its guest may still be booting: no matter
    log = Path(before["log"])
    log_text = log.read_text()
    # A /tmp cleaner (or a logout removing /run/user/UID) takes the runtime folder away.
    shutil.rmtree(Path(before["sockets"]["qmp"]).parent)

    assert [(v["name"], v["state"], v["pid"]) for v in json.loads(hv("list", "--json").stdout)] == [
        ("orphan", "running", pid)]
    assert "is running" in one_clear_line(hv("start", "orphan"))
    assert "is running" in one_clear_line(hv("delete", "orphan"))
    assert is_alive(pid) and disk.exists()
    assert log.read_text().startswith(log_text)  # start did not rotate the live QEMU's log
    assert not log.with_name("qemu.log.1").exists()

    # Without its control socket the power button cannot be pressed, but it can be turned off.
    assert "control socket" in one_clear_line(hv("stop", "orphan", "--timeout", "1"))
    done = hv("stop", "orphan", "--force", "--timeout", "0")
    assert done.returncode == 0, done.stderr
    assert not is_alive(pid)
    assert info("orphan")["state"] == "stopped"
    assert hv("delete", "orphan").returncode == 0
    assert not disk.exists()


async def test_delete_refuses_while_qemu_runs_even_if_vm_toml_broke(cli_home, tiny_guest):
    assert hv("create", "broken", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "broken").returncode == 0
    details = info("broken")
    folder, pid = Path(details["folder"]), details["pid"]
    (folder / "vm.toml").write_text("this is = not [valid")
    listed = json.loads(hv("list", "--json").stdout)
    assert listed[0]["state"] == "inaccessible"
    line = one_clear_line(hv("delete", "broken"))
    assert f"its QEMU (pid {pid}) is still running" in line
    assert is_alive(pid) and (folder / "disk0.qcow2").exists()
    os.kill(pid, signal.SIGKILL)  # this test started it; hvdesk cannot stop a VM it cannot read


async def test_deleting_a_vm_keeps_the_disk_another_vm_attached(cli_home, tiny_guest):
    assert hv("create", "owner", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    disk = Path(info("owner")["disks"][0]["path"])
    done = hv("create", "borrower", "--attach-disk", str(disk), *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr

    done = hv("delete", "owner")
    assert done.returncode == 0, done.stderr
    assert f"kept {disk} (used by VM 'borrower')" in done.stdout
    assert disk.exists()
    assert [v["name"] for v in json.loads(hv("list", "--json").stdout)] == ["borrower"]
    done = hv("start", "borrower")
    assert done.returncode == 0, done.stderr
    assert hv("stop", "borrower", "--force", "--timeout", "0").returncode == 0


async def test_delete_refuses_a_disk_that_a_qemu_holds_open(cli_home, tiny_guest, tmp_path):
    """A QEMU hvdesk does not know (started by hand) has the VM's disk open: nothing is removed."""
    assert hv("create", "held", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    disk = Path(info("held")["disks"][0]["path"])
    other = subprocess.Popen(["qemu-system-x86_64", "-nodefaults", "-display", "none", "-accel", "tcg",
                              "-S", "-drive", f"file={disk},format=qcow2,if=none,id=d0,file.locking=off"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(str(disk) == os.path.realpath(f"/proc/{other.pid}/fd/{fd}")
                      for fd in os.listdir(f"/proc/{other.pid}/fd")):
            assert time.monotonic() < deadline and other.poll() is None, "QEMU never opened the disk"
            time.sleep(0.05)
        line = one_clear_line(hv("delete", "held"))
        assert f"{disk} is open in QEMU (pid {other.pid})" in line
        assert disk.exists() and (disk.parent / "vm.toml").exists()
    finally:
        other.kill()
        other.wait()
    assert hv("delete", "held").returncode == 0
    assert not disk.parent.exists()


def test_a_create_killed_half_way_is_cleaned_up_by_the_next_command(cli_home, tiny_guest):
    library = cli_home / "VMs"
    # Deterministic: the library's own create steps, in a process killed after the disk exists.
    script = ("import os, signal, subprocess\n"
              "from hvdesk.core.storage import Library\n"
              f"folder = Library(__import__('pathlib').Path({str(library)!r})).staging_folder()\n"
              "subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(folder / 'disk0.qcow2'), '64M'],"
              " check=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    leftovers = [p for p in library.iterdir() if p.name.startswith(".new-")]
    assert len(leftovers) == 1 and (leftovers[0] / "disk0.qcow2").exists()

    assert hv("list").returncode == 0
    assert not leftovers[0].exists()
    assert hv("create", "again", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    assert Path(info("again")["folder"]) == library / "again"  # not "again-2"

    # And for real: `hvdesk create` killed at random moments leaves a whole VM or nothing.
    rng = random.Random(9)
    for round_ in range(8):
        name = f"k{round_}"
        proc = subprocess.Popen([sys.executable, "-m", "hvdesk", "create", name, "--disk", "64M",
                                 *guest_args(tiny_guest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.15, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert hv("list").returncode == 0
        assert not [p for p in library.iterdir() if p.name.startswith(".new-")]
        folder = library / name
        if folder.exists():  # it finished: the whole VM is there
            assert (folder / "vm.toml").exists() and (folder / "disk0.qcow2").exists()
            assert info(name)["state"] == "stopped"
