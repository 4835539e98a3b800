"""Several hvdesk processes at once on the same VMs (issue 9, item 6): each loser gets one clear
line or waits its turn, and nothing is corrupted, duplicated or lost. Real CLI processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hvdesk.qemu.discovery import qemu_processes
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def at_once(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run several `hvdesk ...` commands as simultaneous processes; their results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "hvdesk", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    results = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def assert_clean(done: subprocess.CompletedProcess) -> None:
    """Exit 0, or exit 1 with exactly one line saying why; never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), (done.args, done.returncode, done.stderr)
    if done.returncode == 1:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hvdesk: "), (done.args, done.stderr)


def listed() -> list[dict]:
    done = hv("list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_library_whole(library: Path) -> None:
    """Every VM folder is a whole VM: readable, its created disks present; no hidden half-VMs."""
    for vm in listed():
        assert vm["state"] != "inaccessible", vm
    for folder in library.iterdir():
        if folder.name.startswith("."):
            assert not folder.name.startswith((".new-", ".gone-")), f"left over: {folder}"
            continue
        assert (folder / "vm.toml").exists(), f"a folder without its vm.toml: {sorted(os.listdir(folder))}"
        assert (folder / "disk0.qcow2").exists(), f"a VM without its disk: {folder}"


def qemus_in(library: Path) -> list[int]:
    return [p.pid for p in qemu_processes(fresh=True) if str(library) in (p.option("-D") or "")]


def test_two_starts_at_once_start_it_once(cli_home, tiny_guest):
    assert hv("create", "race", "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    for _ in range(5):
        results = at_once(["start", "race"], ["start", "race"])
        for done in results:
            assert_clean(done)
        assert sorted(d.returncode for d in results) == [0, 1], [(d.returncode, d.stderr) for d in results]
        loser = next(d for d in results if d.returncode)
        assert "it is running" in loser.stderr
        assert [v["state"] for v in listed()] == ["running"]
        assert len(qemus_in(cli_home)) == 1
        assert hv("stop", "race", "--force", "--timeout", "0").returncode == 0


def test_start_and_delete_at_once_leave_a_whole_vm_or_none(cli_home, tiny_guest):
    library = cli_home / "VMs"
    for round_ in range(5):
        name = f"sd{round_}"
        assert hv("create", name, "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
        start, delete = at_once(["start", name], ["delete", name])
        assert_clean(start)
        assert_clean(delete)
        assert (start.returncode, delete.returncode) in ((0, 1), (1, 0)), (start.stderr, delete.stderr)
        if start.returncode == 0:  # start won: delete refused a running VM
            assert "it is running" in delete.stderr
            assert (library / name / "disk0.qcow2").exists()
            assert hv("stop", name, "--force", "--timeout", "0").returncode == 0
        else:  # delete won: nothing of the VM is left, and no QEMU runs from it
            assert "no VM named" in start.stderr or "deleted" in start.stderr, start.stderr
            assert not (library / name).exists()
        assert not qemus_in(cli_home)
        assert_library_whole(library)


def test_two_creates_of_one_name_make_one_vm(cli_home, tiny_guest):
    for round_ in range(5):
        name = f"twin{round_}"
        results = at_once(*[["create", name, "--disk", "64M", *guest_args(tiny_guest)]] * 2)
        for done in results:
            assert_clean(done)
        assert sorted(d.returncode for d in results) == [0, 1]
        assert "already exists" in next(d for d in results if d.returncode).stderr
    assert sorted(v["name"] for v in listed()) == [f"twin{i}" for i in range(5)]
    assert_library_whole(cli_home / "VMs")


def test_many_processes_many_operations(cli_home, tiny_guest):
    """Six processes a round, each a random operation on one of two VMs, for four rounds."""
    library = cli_home / "VMs"
    rng = random.Random(6)
    names = ["m0", "m1"]
    operations = [["start"], ["stop", "--force", "--timeout", "0"], ["delete"], ["pause"], ["resume"],
                  ["create", "--disk", "64M", *guest_args(tiny_guest)]]
    for name in names:
        assert hv("create", name, "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    tried = 0
    for _ in range(4):
        commands = []
        for _ in range(6):
            op = rng.choice(operations)
            commands.append([op[0], rng.choice(names), *op[1:]])
        for done in at_once(*commands):
            assert_clean(done)
            tried += 1
        assert_library_whole(library)
        alive = {v["name"]: v["state"] for v in listed()}
        running = sum(state in ("running", "paused") for state in alive.values())
        assert len(qemus_in(cli_home)) == running, (alive, qemus_in(cli_home))
    assert tried == 24


def test_a_hand_edited_duplicate_name_is_inaccessible(cli_home, tiny_guest):
    """Two folders claiming one name (a vm.toml edited by hand): the one named after it keeps it."""
    for name in ("web", "db"):
        assert hv("create", name, "--disk", "64M", *guest_args(tiny_guest)).returncode == 0
    config = cli_home / "VMs" / "db" / "vm.toml"
    config.write_text(config.read_text().replace('name = "db"', 'name = "WEB"'))
    rows = {(v["name"], v["state"]): v["reason"] for v in listed()}
    assert rows == {("web", "stopped"): "",
                    ("db", "inaccessible"): "its name 'WEB' is also used by the VM in folder 'web' (names ignore case)"}
    done = hv("start", "web")
    assert done.returncode == 0, done.stderr
    assert json.loads(hv("info", "web", "--json").stdout)["folder"] == str(cli_home / "VMs" / "web")
    assert hv("stop", "web", "--force", "--timeout", "0").returncode == 0
