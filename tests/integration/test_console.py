"""The RFB client against real servers: QEMU's (the tiny guest's screen) and TigerVNC's Xvnc,
a different implementation, with VNC authentication."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hvdesk.console.rfb import ConsoleEvents, RfbClient
from hvdesk.core.errors import ConsoleError
from hvdesk.engine import console
from tests.guest.build import SHELL_MARKER
from tests.integration.conftest import qmp_call, transport_kind, wait_for_serial, wait_until

pytestmark = pytest.mark.qemu


def read_ppm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    magic, width, height, depth, pixels = data.split(maxsplit=4)
    assert magic == b"P6" and depth == b"255"
    return int(width), int(height), pixels


async def running_vm(manager, guest_request, tiny_guest, name: str, **fields):
    machine = await manager.create(guest_request(name, **fields))
    await manager.start(name)
    await wait_for_serial(machine.paths.serial_log, SHELL_MARKER)
    return machine


async def test_rfb_frame_equals_qmp_screendump(manager, guest_request, tiny_guest, tmp_path):
    machine = await running_vm(manager, guest_request, tiny_guest, "dump")
    await manager.pause("dump")  # a still picture (but for the text cursor's blink: see below)
    client = await console.connect(machine)
    reader = asyncio.ensure_future(client.run())
    try:
        fb = await client.whole_screen()
        dump = tmp_path / "screen.ppm"
        for _ in range(20):  # the VGA cursor blinks: compare at a moment both sides agree on
            before = fb.rgb()
            await qmp_call(machine, "screendump", {"filename": str(dump)})
            await asyncio.sleep(0.15)  # any update QEMU still sends arrives
            width, height, pixels = read_ppm(dump)
            if before == fb.rgb() == pixels:
                break
        assert (width, height) == (fb.width, fb.height) == (720, 400)
        assert fb.rgb() == pixels, "the RFB framebuffer differs from QEMU's own screendump"
        assert pixels.count(0) < len(pixels)  # not a black screen: text is on it
    finally:
        await client.close()
        reader.cancel()


async def test_guest_resolution_change_is_followed(manager, guest_request, tiny_guest):
    # vga=0x315: the kernel switches the BIOS text screen to a 800x600 VESA mode while booting.
    machine = await manager.create(guest_request("vesa", append=tiny_guest.append + " vga=0x315"))
    await manager.start("vesa", paused=True)
    sizes = []
    client = await console.connect(machine, ConsoleEvents(resize=lambda w, h: sizes.append((w, h))))
    reader = asyncio.ensure_future(client.run())
    try:
        first = (client.framebuffer.width, client.framebuffer.height)
        await manager.resume("vesa")
        await wait_until(lambda: (client.framebuffer.width, client.framebuffer.height) == (800, 600), 60,
                         "the 800x600 VESA mode")
        assert first != (800, 600) and sizes[-1] == (800, 600)
        fb = await client.whole_screen()
        assert len(fb.data) == 800 * 600 * 4
    finally:
        await client.close()
        reader.cancel()


def hv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hvdesk", *args], capture_output=True, text=True, timeout=120)


async def test_cli_send_keys_and_screenshot(manager, guest_request, tiny_guest, tmp_path):
    machine = await running_vm(manager, guest_request, tiny_guest, "typist")
    done = hv("send-keys", "typist", "--text", "echo clityped > /dev/ttyS0\n")
    assert done.returncode == 0, done.stderr
    await wait_for_serial(machine.paths.serial_log, "clityped", timeout=20)
    shot = tmp_path / "screen.png"
    assert hv("screenshot", "typist", str(shot)).returncode == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.read_bytes()[16:24] == (720).to_bytes(4, "big") + (400).to_bytes(4, "big")
    done = hv("send-keys", "typist", "ctrl-alt-delete-typo")
    assert done.returncode == 1 and "unknown key 'typo'" in done.stderr
    await manager.stop("typist", force=True, timeout=0)
    done = hv("screenshot", "typist", str(shot))
    assert done.returncode == 1 and "its screen exists only while it runs" in done.stderr


@pytest.fixture
def xvnc():
    """TigerVNC's Xvnc on a private unix socket, requiring a VNC password."""
    if not shutil.which("Xvnc") or not shutil.which("vncpasswd"):
        pytest.fail("Xvnc/vncpasswd missing: the bootstrap installs tigervnc-standalone-server tigervnc-tools")
    folder = Path(tempfile.mkdtemp(prefix="xv-", dir="/tmp"))
    password_file = folder / "passwd"
    password_file.write_bytes(subprocess.run(["vncpasswd", "-f"], input=b"s3cret!\ns3cret!\n",
                                             capture_output=True, check=True).stdout)
    sock = folder / "vnc.sock"
    display = f":{50 + os.getpid() % 200}"
    server = subprocess.Popen(["Xvnc", display, "-rfbunixpath", str(sock), "-rfbport", "-1", "-SecurityTypes",
                               "VncAuth", "-rfbauth", str(password_file), "-geometry", "640x480", "-depth", "24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)
    assert sock.exists(), "Xvnc did not start"
    yield sock
    server.terminate()
    server.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


async def test_vnc_auth_against_tigervnc(xvnc):
    client = RfbClient(password="s3cret!")
    await client.connect_unix(xvnc)
    reader = asyncio.ensure_future(client.run())
    try:
        fb = await client.whole_screen()
        assert (fb.width, fb.height) == (640, 480) and client.server.version == (3, 8)
        assert client.server.name  # Xvnc names its desktop "user@host"
        client.key(True, 0x61)
        client.key(False, 0x61)
        client.pointer(10, 10, 0)
        await client.flush()
    finally:
        await client.close()
        reader.cancel()
    with pytest.raises(ConsoleError, match="authentication failed"):
        await RfbClient(password="wrong").connect_unix(xvnc)
    with pytest.raises(ConsoleError, match="requires a password"):
        await RfbClient().connect_unix(xvnc)


async def test_refused_socket_is_a_clear_error(tmp_path):
    with pytest.raises(ConsoleError, match="cannot connect to the VNC console"):
        await RfbClient().connect_unix(tmp_path / "nothing.sock")


def test_json_of_info_names_the_vnc_socket(hv_home, tiny_guest):
    from tests.integration.test_cli import guest_args
    assert hv("create", "sock", *guest_args(tiny_guest)).returncode == 0
    sockets = json.loads(hv("info", "sock", "--json").stdout)["sockets"]
    if transport_kind() == "unix":
        assert sockets["vnc"].endswith("/vnc.sock") and sockets["transport"] == "unix"
    else:  # its port is picked when it starts
        assert sockets == {"transport": "tcp", "qmp": None, "ctl": None, "vnc": None}
