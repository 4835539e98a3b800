"""The installed package, as a user runs it: HVDESK_INSTALLED names the installed command
(/usr/bin/hvdesk from the .deb, in CI's package stage: packaging/test-deb.sh); without it these
tests are skipped. Each command is a new process of the installed bundle, never the checkout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.guest.installer import ensure_installer_iso
from tests.integration.conftest import kill_our_qemus, wait_for_serial
from tests.integration.test_cli import guest_args

INSTALLED = os.environ.get("HVDESK_INSTALLED")
pytestmark = pytest.mark.deb  # deselected in the other stages, never skipped


def hv(*args: str, **env: str) -> subprocess.CompletedProcess:
    assert INSTALLED is not None, "HVDESK_INSTALLED must name the installed hvdesk (packaging/test-deb.sh sets it)"
    return subprocess.run([INSTALLED, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})


@pytest.fixture
def home(hv_home: Path):
    yield hv_home
    kill_our_qemus()


def test_the_command_is_the_installed_bundle():
    assert INSTALLED is not None
    real = Path(INSTALLED).resolve()
    assert real == Path("/usr/lib/hvdesk/hvdesk"), real  # the .deb's bundle, not a venv's script
    done = hv("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hvdesk ") and "QEMU" in done.stdout


def test_the_window_opens_and_paints(home):
    done = hv("gui", "--smoke-test", QT_QPA_PLATFORM="offscreen")
    assert done.returncode == 0, done.stderr
    assert "window painted" in done.stdout


def test_create_from_an_iso_detects_it_and_uses_the_preset(home):
    iso = ensure_installer_iso().path
    done = hv("create", "from iso", "--iso", str(iso), "--disk", "64M")
    assert done.returncode == 0, done.stderr
    assert "OS detected from the ISO: Other Linux" in done.stdout  # pycdlib read it, in the bundle
    info = json.loads(hv("info", "from iso", "--json").stdout)
    assert (info["state"], info["os"], info["memory_mib"]) == ("stopped", "linux", 1024)  # the preset's
    assert info["cdrom"]["iso"] == str(iso)
    assert info["disks"][0]["virtual_size"] == 64 * 1024 * 1024


@pytest.mark.qemu
async def test_a_vm_starts_boots_and_stops(home, tiny_guest):
    done = hv("create", "tiny", *guest_args(tiny_guest))
    assert done.returncode == 0, done.stderr
    done = hv("start", "tiny")
    assert done.returncode == 0, done.stderr
    info = json.loads(hv("info", "tiny", "--json").stdout)
    assert info["state"] == "running"
    await wait_for_serial(Path(info["serial_log"]), tiny_guest.marker)
    done = hv("stop", "tiny", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert json.loads(hv("list", "--json").stdout)[0]["state"] == "stopped"
