"""The `hvdesk` command as a user runs it: a separate process per command, exit codes, JSON."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from hvdesk.core.paths import runtime_root
from hvdesk.qemu.process import is_alive, read_pid
from hvdesk.qemu.qmp import QmpSession
from tests.integration.conftest import endpoint, transport_kind, wait_for_serial, wait_until

pytestmark = pytest.mark.qemu


def hv(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hvdesk", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def guest_args(guest) -> list[str]:
    return ["--memory", "256M", "--kernel", str(guest.kernel), "--initrd", str(guest.initrd),
            "--append", guest.append]


async def test_full_cycle_through_the_cli(cli_home, tiny_guest):
    assert hv("--version").stdout.startswith("hvdesk ")
    done = hv("create", "cli vm", "--disk", "1G", "--cpus", "2", *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr
    assert "Created 'cli vm'" in done.stdout

    done = hv("start", "CLI VM")  # names are matched ignoring case
    assert done.returncode == 0, done.stderr
    assert "accelerator TCG" in done.stdout

    info = json.loads(hv("info", "cli vm", "--json").stdout)
    assert info["state"] == "running" and is_alive(info["pid"])  # still running: the CLI exited
    assert info["accelerator"] == {"name": "tcg", "reason": "set by HVDESK_ACCEL=tcg", "in_use": True}
    assert (info["memory_mib"], info["cpus"], info["os"]) == (256, 2, "other")
    assert info["disks"][0]["format"] == "qcow2" and info["disks"][0]["virtual_size"] == 1024**3
    assert set(info["sockets"]) == {"transport", "qmp", "ctl", "vnc"}
    assert info["sockets"]["transport"] == transport_kind()
    await wait_for_serial(Path(info["serial_log"]), tiny_guest.marker)

    listed = json.loads(hv("list", "--json").stdout)
    assert [(v["name"], v["state"]) for v in listed] == [("cli vm", "running")]
    assert hv("pause", "cli vm").stdout.strip() == "'cli vm' is paused"
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "paused"
    assert hv("resume", "cli vm").returncode == 0
    assert hv("reset", "cli vm").returncode == 0
    # the guest reboots; until its acpid runs again it would not hear the power button
    await wait_for_serial(Path(info["serial_log"]), tiny_guest.marker, count=2)

    done = hv("delete", "cli vm")
    assert done.returncode == 1 and "stop it first" in done.stderr
    done = hv("stop", "cli vm", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert not is_alive(info["pid"])
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "stopped"
    assert hv("delete", "cli vm").returncode == 0
    assert json.loads(hv("list", "--json").stdout) == []


@pytest.mark.parametrize("args, message", [
    (["start", "ghost"], "no VM named 'ghost'"),
    (["create", "bad/name"], "invalid VM name 'bad/name'"),
    (["create", "x", "--iso", "/nonexistent.iso"], "ISO image /nonexistent.iso does not exist"),
    (["create", "x", "--memory", "1T"], "more than this host has"),
    (["create", "x", "--attach-disk", "/etc"], "disk image /etc is not a file"),
    (["create", "x\n"], r"invalid VM name 'x\n': '\n' not allowed"),
    (["create", "x", "--disk", "1024B"], "disk size 1 KiB is too small (at least 1 MiB)"),
])
def test_user_errors_exit_1_with_one_line(cli_home, args, message):
    done = hv(*args)
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("args", [
    ["start"], ["frobnicate"], ["create", "x", "--memory", "lots"], ["create", "x", "--disk", "-3G"],
    ["stop", "x", "--timeout", "0"], ["create", "x", "--disk", "1G", "--attach-disk", "/a"],
])
def test_usage_errors_exit_2(cli_home, args):
    assert hv(*args).returncode == 2


def test_missing_qemu_is_a_clear_error(cli_home, tiny_guest, tmp_path):
    assert hv("create", "q", *guest_args(tiny_guest)).returncode == 0
    done = hv("start", "q", env={"HVDESK_QEMU_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert f"qemu-system-x86_64 not found in HVDESK_QEMU_DIR={tmp_path}" in done.stderr
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "stopped"


def test_corrupt_config_is_shown_inaccessible_and_others_still_work(cli_home, tiny_guest):
    assert hv("create", "fine", *guest_args(tiny_guest)).returncode == 0
    assert hv("create", "broken", *guest_args(tiny_guest)).returncode == 0
    (cli_home / "VMs" / "broken" / "vm.toml").write_text("schema = 1\nname = 'broken'\ncpus = 'many'\n")
    listed = {v["name"]: v for v in json.loads(hv("list", "--json").stdout)}
    assert listed["fine"]["state"] == "stopped"
    assert listed["broken"]["state"] == "inaccessible"
    assert "cpus: expected int, found str 'many'" in listed["broken"]["reason"]
    assert "inaccessible" in hv("list").stdout
    done = hv("start", "broken")
    assert done.returncode == 1 and "inaccessible" in done.stderr
    assert hv("delete", "broken").returncode == 0  # an inaccessible VM can still be removed
    assert [v["name"] for v in json.loads(hv("list", "--json").stdout)] == ["fine"]


def test_too_old_qemu_is_refused(cli_home, tiny_guest, tmp_path):
    # An old QEMU cannot be installed here, so a stand-in script answers --version like QEMU 5.2.
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\necho 'QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11)'\n")
    fake.chmod(0o755)
    assert hv("create", "old", *guest_args(tiny_guest)).returncode == 0
    done = hv("start", "old", env={"HVDESK_QEMU_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "QEMU 5.2.0 at" in done.stderr and "is too old: hvdesk needs 6.2 or newer" in done.stderr


def test_create_from_an_iso_detects_the_os_and_applies_its_preset(cli_home, tmp_path):
    from tests.unit.test_iso_detect import make_iso
    debian = make_iso(tmp_path / "debian-12.5.0-amd64-netinst.iso", "Debian 12.5.0 amd64 n",
                      {"/.disk/info": b'Debian GNU/Linux 12.5.0 "Bookworm" - Official amd64 NETINST'})
    done = hv("create", "deb", "--iso", str(debian))
    assert done.returncode == 0, done.stderr
    assert "OS detected from the ISO: Debian 12 (bookworm): the ISO's .disk/info says" in done.stdout
    info = json.loads(hv("info", "deb", "--json").stdout)
    assert (info["os"], info["memory_mib"], info["cpus"]) == ("debian12", 2048, 2)
    assert info["disks"][0]["virtual_size"] == 20 * 1024**3 and info["disks"][0]["bus"] == "virtio"
    assert info["cdrom"]["iso"] == str(debian)

    windows = make_iso(tmp_path / "Win11_23H2_English_x64v2.iso", "CCCOMA_X64FRE_EN-US_DV9",
                       {"/sources/install.wim": b"MSWIM"}, rock_ridge=False)
    assert hv("create", "win", "--iso", str(windows), "--memory", "2G").returncode == 0
    info = json.loads(hv("info", "win", "--json").stdout)
    assert (info["os"], info["firmware"], info["memory_mib"]) == ("win11", "uefi", 2048)  # --memory wins
    assert info["disks"][0]["bus"] == "sata" and info["nics"][0]["model"] == "e1000"  # no virtio drivers

    assert hv("create", "forced", "--iso", str(windows), "--os", "linux").returncode == 0
    assert json.loads(hv("info", "forced", "--json").stdout)["os"] == "linux"  # the person decides



def test_create_from_a_corrupt_iso_makes_an_other_vm_and_says_why(cli_home, tmp_path):
    from tests.unit.test_iso_detect import make_iso
    iso = make_iso(tmp_path / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                   {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST'})
    data = bytearray(iso.read_bytes())
    data[struct.unpack_from("<L", data, 16 * 2048 + 140)[0] * 2048 + 10] = 0  # pycdlib: struct.error
    corrupt = tmp_path / "corrupt.iso"
    corrupt.write_bytes(data)
    done = hv("create", "bad", "--iso", str(corrupt))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert ("OS not recognised from the ISO: the ISO's path table is damaged (unpack_from requires a buffer"
            in done.stdout) and "; set up as Other" in done.stdout
    info = json.loads(hv("info", "bad", "--json").stdout)
    assert (info["os"], info["cdrom"]["iso"]) == ("other", str(corrupt))

    junk = tmp_path / "holiday.iso"  # not ISO 9660 at all: the same, the person may know better
    junk.write_bytes(b"\0" * 65536)
    done = hv("create", "junk", "--iso", str(junk))
    assert done.returncode == 0 and "OS not recognised from the ISO: it is not an ISO 9660 image" in done.stdout
    assert hv("create", "chosen", "--iso", str(corrupt), "--os", "debian12").returncode == 0  # no detection

    done = hv("create", "ghost", "--iso", str(tmp_path / "missing.iso"))  # the user's mistake: an error
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert sorted(v["name"] for v in json.loads(hv("list", "--json").stdout)) == ["bad", "chosen", "junk"]
    assert sorted(p.name for p in (cli_home / "VMs").iterdir() if not p.name.startswith(".")) == [
        "bad", "chosen", "junk"]  # nothing written


def test_sizes_mean_what_they_say(cli_home):
    done = hv("create", "x", "--memory", "512B")  # 512 bytes, not 512 MiB
    assert done.returncode == 2 and "memory '512B' is not a whole number of MiB" in done.stderr
    assert hv("create", "tera", "--disk", "1024", "--memory", "1G").returncode == 0  # bare: GiB
    assert hv("create", "giga", "--disk", "1024M", "--memory", "256").returncode == 0  # bare: MiB
    info = {name: json.loads(hv("info", name, "--json").stdout) for name in ("tera", "giga")}
    assert (info["tera"]["disks"][0]["virtual_size"], info["tera"]["memory_mib"]) == (1024**4, 1024)
    assert (info["giga"]["disks"][0]["virtual_size"], info["giga"]["memory_mib"]) == (1024**3, 256)


def set_in_config(config: Path, **changes) -> None:
    data = tomllib.loads(config.read_text())
    data.update(changes)
    config.write_text(tomli_w.dumps(data))


def test_a_shared_vm_toml_cannot_run_host_commands(cli_home, tiny_guest, tmp_path):
    """Issue 9, finding 1: a port forward's address that smuggles in a guestfwd with cmd:."""
    marker = tmp_path / "PWNED"
    address = f"127.0.0.1:2298-:22,guestfwd=tcp:10.0.2.100:1234-cmd:touch {marker},hostfwd=tcp:127.0.0.1"
    assert hv("create", "shared", *guest_args(tiny_guest)).returncode == 0
    config = cli_home / "VMs" / "shared" / "vm.toml"
    nic = {**tomllib.loads(config.read_text())["nics"][0],
           "forwards": [{"protocol": "tcp", "host_port": 2298, "guest_port": 22, "host_address": address}]}
    set_in_config(config, nics=[nic])

    (listed,) = json.loads(hv("list", "--json").stdout)
    assert listed["state"] == "inaccessible"
    assert listed["reason"].endswith(f"nics[0].forwards[0].host_address: {address!r} is not an IPv4 address "
                                     "(e.g. 127.0.0.1, or 0.0.0.0 for every interface of the host)")
    assert "inaccessible (" in hv("list").stdout
    done = hv("start", "shared")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot start 'shared': it is inaccessible" in done.stderr and "host_address" in done.stderr
    assert not marker.exists()
    assert not list((cli_home / "VMs" / "shared" / "logs").glob("qemu.log*"))  # QEMU never ran


async def test_tpm_vm_starts_from_a_folder_with_a_comma(cli_home, tiny_guest, tmp_path, monkeypatch):
    """swtpm cannot escape a comma in its options; QEMU's options double it. Both must work."""
    home = tmp_path / "my,vms=1 'q' ü"
    home.mkdir()
    monkeypatch.setenv("HVDESK_HOME", str(home))  # also for kill_our_qemus at the end
    assert hv("create", "tpm vm", *guest_args(tiny_guest)).returncode == 0
    folder = home / "VMs" / "tpm vm"
    set_in_config(folder / "vm.toml", tpm=True)
    done = hv("start", "tpm vm")
    assert done.returncode == 0, done.stderr
    info = json.loads(hv("info", "tpm vm", "--json").stdout)  # QEMU and swtpm run: the guest's boot is no matter
    session = QmpSession("test")
    await session.connect(endpoint(info["sockets"]["ctl"]))
    try:
        (tpm,) = await session.execute("query-tpm")
    finally:
        await session.close()
    assert (tpm["id"], tpm["model"], tpm["options"]["type"]) == ("tpm0", "tpm-crb", "emulator")
    assert any((folder / "tpm").iterdir()), "swtpm keeps its state in the VM's folder"
    (swtpm_pidfile,) = runtime_root().glob("*/swtpm.pid")
    swtpm = read_pid(swtpm_pidfile)
    assert is_alive(swtpm)
    done = hv("stop", "tpm vm", "--force", "--timeout", "0")
    assert done.returncode == 0, done.stderr
    await wait_until(lambda: not is_alive(swtpm), 10, "swtpm to end with QEMU")
