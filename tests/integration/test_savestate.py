"""Save state through the command line, on the tiny guest: `hvdesk save` writes the guest's state
next to it and ends QEMU; `hvdesk start` resumes the same guest (no reboot, its clock goes on); a
state QEMU cannot load is kept; a disk too full for the state leaves the VM running and no file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from hvdesk.core.errors import StateError
from hvdesk.engine.states import VmState
from hvdesk.qemu.process import is_alive
from tests.guest.build import READY_MARKER, SHELL_MARKER
from tests.integration.conftest import wait_for_serial, wait_until
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu

UPTIME = "echo {tag} $(cut -d' ' -f1 /proc/uptime) >/dev/ttyS0\n"


async def _uptime(name: str, serial: Path, tag: str, env: dict | None = None) -> float:
    """The guest's uptime in seconds, typed on its console and read back from its serial log."""
    done = hv("send-keys", name, "--text", UPTIME.format(tag=tag), env=env)
    assert done.returncode == 0, done.stderr
    pattern = re.compile(rf"^{tag} ([0-9]+\.[0-9]+)\r?$", re.M)
    deadline = time.monotonic() + 30
    while not (found := pattern.search(serial.read_text(errors="replace"))):
        assert time.monotonic() < deadline, serial.read_text(errors="replace")[-500:]
        await asyncio.sleep(0.05)
    return float(found.group(1))


def _info(name: str, env: dict | None = None) -> dict:
    done = hv("info", name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_save_then_start_resumes_the_same_guest(cli_home, tiny_guest):
    cd = str(tiny_guest.initrd)  # any file will do as the CD: the guest boots its kernel directly
    assert hv("create", "keeper", "--disk", "64M", "--iso", cd, *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "keeper").returncode == 0
    info = _info("keeper")
    serial, pid = Path(info["serial_log"]), info["pid"]
    await wait_for_serial(serial, SHELL_MARKER)
    before = await _uptime("keeper", serial, "UP1")

    done = hv("save", "keeper")
    assert done.returncode == 0, done.stderr
    assert "Saved the state of 'keeper'" in done.stdout and "hvdesk start keeper" in done.stdout
    assert not is_alive(pid)
    info = _info("keeper")
    assert (info["state"], info["pid"]) == ("saved", None)
    state_file = Path(info["saved_state"]["file"])
    assert state_file.parent == Path(info["folder"]) and info["saved_state"]["paused"] is False
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600 and state_file.stat().st_size == info["saved_state"]["size"]
    assert not list(Path(info["folder"]).glob(".saved-state*"))  # no part file left
    assert [(v["name"], v["state"]) for v in json.loads(hv("list", "--json").stdout)] == [("keeper", "saved")]
    assert "Saved state: " in hv("info", "keeper").stdout
    # the guest's disks and CD must stay as it last saw them; resume has nothing to resume
    refused = hv("resume", "keeper")
    assert refused.returncode == 1 and "it is saved" in refused.stderr
    refused = hv("modify", "keeper", "--cd", "none")
    assert refused.returncode == 1 and "while it is saved" in refused.stderr
    # other settings may change: the resume uses those it was saved with (QEMU would refuse to load
    # 256 MiB of RAM into 384), the next boot the new ones
    done = hv("modify", "keeper", "--memory", "384M")
    assert done.returncode == 0, done.stderr

    # A state file QEMU cannot load: a clear error, the file kept, the VM still saved.
    good = state_file.with_name("good-copy")
    shutil.copyfile(state_file, good)
    with open(state_file, "r+b") as handle:
        handle.seek(4)  # past the magic: the stream's version
        handle.write(b"\xff\xff\xff\xff")
    done = hv("start", "keeper")
    assert done.returncode == 1
    assert "cannot resume the saved state of 'keeper'" in done.stderr and "--discard-saved-state" in done.stderr
    assert state_file.exists() and _info("keeper")["state"] == "saved"
    os.replace(good, state_file)

    done = hv("start", "keeper")
    assert done.returncode == 0, done.stderr
    assert "Resumed the saved state of 'keeper' (running" in done.stdout
    info = _info("keeper")
    assert info["state"] == "running" and info["saved_state"] is None
    assert not state_file.exists() and not Path(info["folder"], "saved-state.json").exists()
    after = await _uptime("keeper", serial, "UP2")  # the same shell, still at its prompt
    log = serial.read_text(errors="replace")
    assert READY_MARKER not in log and SHELL_MARKER not in log  # this run's log: no boot, no new shell
    assert before <= after < before + 60, (before, after)  # its clock went on from where it was

    # saved again, then booted afresh on purpose: the saved state goes, the new settings come
    assert hv("save", "keeper").returncode == 0
    done = hv("start", "keeper", "--discard-saved-state")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Started 'keeper' (running")
    assert not state_file.exists() and _info("keeper")["saved_state"] is None
    run = json.loads((Path(info["sockets"]["qmp"]).parent / "run.json").read_text())
    assert run["config"]["memory_mib"] == 384 and "-incoming" not in run["argv"]
    done = hv("stop", "keeper", "--force", "--timeout", "0")
    assert done.returncode == 0, done.stderr
    assert _info("keeper")["state"] == "stopped"


async def test_a_full_disk_fails_the_save_and_the_vm_runs_on(cli_home, tiny_guest, small_disk):
    disk = small_disk(4096)  # room for the VM's files and logs, not for its 256 MiB of state
    env = {"HVDESK_HOME": str(disk.path)}
    assert hv("create", "full", *guest_args(tiny_guest), env=env).returncode == 0
    assert hv("start", "full", env=env).returncode == 0
    try:
        await _full_disk_save(env)
    finally:  # (its runtime folder is not the test's, where kill_our_qemus looks)
        hv("stop", "full", "--force", "--timeout", "0", env=env)


async def _full_disk_save(env: dict) -> None:
    info = _info("full", env)
    serial = Path(info["serial_log"])
    await wait_for_serial(serial, SHELL_MARKER)

    done = hv("save", "full", env=env)
    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "could not save the state of 'full'" in message and "still running" in message
    info = _info("full", env)
    assert info["state"] == "running" and is_alive(info["pid"])
    assert sorted(p.name for p in Path(info["folder"]).iterdir() if "saved-state" in p.name) == []
    await _uptime("full", serial, "ALIVE", env)  # the guest still runs and reads its keyboard



async def test_the_app_saves_and_resumes_over_its_watched_session(engines, guest_request, monkeypatch):
    app = await engines(watch=True, poll_interval=0.2)  # the app's engine: QMP events drive the states
    machine = await app.create(guest_request("watched"))
    await app.start("watched")
    await wait_for_serial(machine.paths.serial_log, READY_MARKER)

    # A save interrupted while QEMU writes (Ctrl-C cancels the command's task): no file, the guest runs on.
    def interrupt(step) -> None:
        if step.status != "completed" and not job.cancelled():
            job.cancel()
    job = asyncio.ensure_future(app.save("watched", interrupt))
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not [p.name for p in machine.entry.folder.iterdir() if "saved-state" in p.name]
    await wait_until(lambda: machine.state == VmState.RUNNING, 10, "the interrupted save to let the guest run")
    assert (await app.command(machine, "query-status"))["status"] == "running"

    seen: list[str] = []
    app.subscribe(lambda m: seen.append(str(m.state)) if m is machine else None)
    steps = []
    done = await app.save("watched", steps.append)
    assert machine.state == VmState.SAVED and machine.pid is None and machine.session is None
    assert steps and steps[-1].status == "completed" and steps[-1].transferred > 0
    assert done.size == machine.paths.saved_state.stat().st_size and seen[-1] == "saved"
    cli = await engines()  # another hvdesk sees it saved, and resumes it
    assert cli.get("watched").state == VmState.SAVED
    await cli.start("watched")
    await wait_until(lambda: machine.state == VmState.RUNNING, 10, "the app to see the resumed VM")
    assert not machine.paths.saved_state.exists()

    # the tcp transport (Windows) cannot hand QEMU the file: a clear refusal, the VM running on
    await cli.stop("watched", force=True, timeout=0)
    monkeypatch.setenv("HVDESK_TRANSPORT", "tcp")
    await cli.start("watched", paused=True)
    with pytest.raises(StateError, match="tcp transport.*needs the unix transport"):
        await cli.save("watched")
    assert cli.get("watched").state == VmState.PAUSED


async def test_a_uefi_vm_with_a_tpm_resumes_where_it_was(cli_home, tiny_guest):
    """The firmware's NVRAM (a qcow2 pflash) and swtpm's state travel in the saved state: the
    guest resumes without a reboot (its clock goes on, its new serial log shows no boot), and
    swtpm runs again beside the resumed QEMU."""
    assert hv("create", "efi", "--disk", "64M", "--firmware", "uefi", *guest_args(tiny_guest)).returncode == 0
    assert hv("modify", "efi", "--tpm", "on").returncode == 0
    assert hv("start", "efi").returncode == 0
    info = _info("efi")
    serial = Path(info["serial_log"])
    await wait_for_serial(serial, SHELL_MARKER)
    before = await _uptime("efi", serial, "UP1")
    done = hv("save", "efi")
    assert done.returncode == 0, done.stderr
    assert _info("efi")["state"] == "saved"
    done = hv("start", "efi")
    assert done.returncode == 0, done.stderr
    assert "Resumed the saved state" in done.stdout
    after = await _uptime("efi", serial, "UP2")
    assert before < after < before + 60, (before, after)
    assert READY_MARKER not in serial.read_text(errors="replace"), "the resumed run's log shows no boot"
    assert _info("efi")["state"] == "running"  # (QEMU with a TPM runs only beside a live swtpm)
