"""`hvdesk modify` as a user runs it: each option changes what `info --json` shows; a bad one says
which option and what is wrong, exits non-zero and leaves vm.toml byte for byte as it was; a
running VM saves what it takes at its next start and refuses what it cannot change while it runs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hvdesk.qemu.process import is_alive
from tests.integration.test_cli import guest_args, hv

pytestmark = pytest.mark.qemu


def info(name: str) -> dict:
    done = hv("info", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def create(name: str, *args: str) -> Path:
    done = hv("create", name, "--memory", "512", *args)
    assert done.returncode == 0, done.stderr
    return Path(info(name)["folder"]) / "vm.toml"


def test_each_option_changes_what_info_shows(cli_home, tmp_path):
    create("web")
    iso = tmp_path / "media.iso"
    iso.write_bytes(b"\0" * 4096)
    done = hv("modify", "web", "--memory", "1G", "--cpus", "2", "--min-memory", "300", "--shares", "400",
              "--pin", "balanced", "--auto-balloon", "off", "--os", "debian12", "--notes", "for the web",
              "--firmware", "bios", "--machine", "pc", "--cd-bus", "ide", "--accel", "tcg",
              "--boot-order", "cdrom,disk,network", "--balloon", "on", "--free-page-reporting", "off",
              "--deflate-on-oom", "off", "--vga", "virtio", "--vnc", "off", "--tablet", "off",
              "--nic-model", "e1000", "--mac", "52:54:00:AB:CD:EF", "--forward", "tcp:2222:22",
              "--forward", "udp:127.0.0.1:5353:53", "--tpm", "on", "--cd", str(iso))
    assert done.returncode == 0, done.stderr
    assert "  --memory: 512 MiB -> 1024 MiB\n" in done.stdout and "at next start" not in done.stdout
    got = info("web")
    assert (got["memory_mib"], got["cpus"], got["os"], got["notes"]) == (1024, 2, "debian12", "for the web")
    assert (got["firmware"], got["machine"], got["accel"], got["tpm"]) == ("bios", "pc", "tcg", True)
    assert got["boot_order"] == ["cdrom", "disk", "network"]
    assert got["resources"] == {"auto_balloon": False, "min_memory_mib": 300, "shares": 400, "pin": "balanced"}
    assert got["balloon"] == {"enabled": True, "free_page_reporting": False, "deflate_on_oom": False}
    assert got["display"] == {"vnc": False, "vga": "virtio", "tablet": False}
    assert got["cdrom"] == {"iso": str(iso), "bus": "ide"}
    (nic,) = got["nics"]
    assert (nic["model"], nic["mac"]) == ("e1000", "52:54:00:ab:cd:ef")
    assert nic["forwards"] == [
        {"protocol": "tcp", "host_port": 2222, "guest_port": 22, "host_address": "127.0.0.1"},
        {"protocol": "udp", "host_port": 5353, "guest_port": 53, "host_address": "127.0.0.1"}]
    plain = hv("info", "web").stdout
    assert "Resources:   auto-balloon off, min 300 MiB, shares 400, pin balanced\n" in plain

    # The digest memo must not serve the old name, memory or CPUs to `list`.
    assert hv("list").stdout.splitlines()[1].split() == ["web", "stopped", "debian12", "1", "GiB", "2"]
    done = hv("modify", "web", "--name", "shop", "--no-forwards", "--cd", "none", "--memory", "768")
    assert done.returncode == 0, done.stderr
    assert "  --name: 'web' -> 'shop'\n" in done.stdout
    assert [(v["name"], v["memory_mib"]) for v in json.loads(hv("list", "--json").stdout)] == [("shop", 768)]
    got = info("shop")
    assert got["folder"].endswith("/shop") and got["cdrom"]["iso"] == "" and got["nics"][0]["forwards"] == []
    assert hv("modify", "shop", "--network", "off").returncode == 0
    assert info("shop")["nics"] == []
    assert hv("modify", "shop", "--network", "on").returncode == 0
    assert len(info("shop")["nics"]) == 1
    done = hv("modify", "shop", "--shares", "400")
    assert (done.returncode, done.stdout) == (0, "'shop': nothing changed (it already had these settings)\n")


BAD = [
    (["ghost", "--cpus", "2"], 1, "no VM named 'ghost'"),
    (["vm"], 1, "hvdesk: nothing to change"),
    (["vm", "--memory", "8"], 1, "hvdesk: --memory: 8 is out of range (16–4194304)"),
    (["vm", "--memory", "100T"], 1, "hvdesk: --memory: 104857600 is out of range"),
    (["vm", "--min-memory", "1G"], 1, "hvdesk: --min-memory: 1024 MiB is more than the VM's memory (512 MiB)"),
    (["vm", "--shares", "0"], 1, "hvdesk: --shares: 0 is out of range (1–10000)"),
    (["vm", "--shares", "10001"], 1, "hvdesk: --shares: 10001 is out of range (1–10000)"),
    (["vm", "--pin", "all"], 2, "argument --pin: invalid choice: 'all'"),
    (["vm", "--mac", "52:54:00:zz:00:01"], 1, "hvdesk: --mac: '52:54:00:zz:00:01' is not a MAC address"),
    (["vm", "--forward", "tcp:2222:22", "--forward", "tcp:2222:80"], 1,
     "hvdesk: --forward: host port tcp 2222 is already forwarded"),
    (["vm", "--forward", "sctp:1:2"], 2, "argument --forward"),
    (["vm", "--forward", "tcp:1:2", "--no-forwards"], 2, "--forward and --no-forwards do not go together"),
    (["vm", "--name", "a/b"], 1, "invalid VM name 'a/b': '/' not allowed"),
    (["vm", "--name", ""], 1, "invalid VM name: it is empty"),
    (["vm", "--name", "OTHER"], 1, "a VM named 'OTHER' already exists (names ignore case)"),
    (["vm", "--boot-order", "disk,floppy"], 1, "hvdesk: --boot-order: unknown device 'floppy'"),
    (["vm", "--boot-order", "disk,cdrom,disk"], 1, "hvdesk: --boot-order: a device is listed twice"),
    (["vm", "--tpm", "yes"], 2, "argument --tpm: 'yes': use on or off"),
    (["vm", "--cd", "/nonexistent.iso"], 1, "ISO image /nonexistent.iso does not exist"),
    (["vm", "--network", "off", "--mac", "52:54:00:00:00:01"], 1, "hvdesk: --mac: the VM has no network card"),
    (["vm", "--machine", "pc"], 1, "hvdesk: --cd-bus: the pc machine has no SATA controller; use ide"),
]


def test_bad_input_says_what_and_changes_nothing(cli_home):
    toml = create("vm")
    create("other")
    before = toml.read_bytes()
    # Two at a time, as scripts may run them (each waits for the VM's lock): less time.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda args: hv("modify", *args), [args for args, _, _ in BAD]))
    for (args, code, message), done in zip(BAD, results):
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        if code == 1:
            assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    assert toml.read_bytes() == before
    assert [v["name"] for v in json.loads(hv("list", "--json").stdout)] == ["other", "vm"]


def test_a_running_vm_saves_for_its_next_start_and_refuses_a_rename(cli_home, tiny_guest):
    assert hv("create", "live", *guest_args(tiny_guest)).returncode == 0
    assert hv("start", "live").returncode == 0
    toml = Path(info("live")["folder"]) / "vm.toml"
    done = hv("modify", "live", "--memory", "384", "--shares", "300", "--notes", "busy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("Changed 'live' (running):\n"
                           "  --notes: '' -> 'busy'\n"
                           "  --memory: 256 MiB -> 384 MiB (takes effect at next start)\n"
                           "  --shares: 100 -> 300 (the allocation controller applies it while the VM runs)\n")
    got = info("live")
    assert (got["state"], got["memory_mib"], got["resources"]["shares"]) == ("running", 384, 300)
    before = toml.read_bytes()
    done = hv("modify", "live", "--name", "renamed", "--cpus", "2")
    assert done.returncode == 1
    assert done.stderr == "hvdesk: cannot rename 'live' while it is running\n"
    assert toml.read_bytes() == before
    assert is_alive(got["pid"]) and info("live")["state"] == "running"  # untouched by the refusal
    assert hv("stop", "live", "--force", "--timeout", "0").returncode == 0
