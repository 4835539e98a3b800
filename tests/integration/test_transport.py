"""The tcp transport (Windows' way, selected here by HVDESK_TRANSPORT=tcp) on real QEMU: loopback
ports, the VNC password, a detached child without -daemonize, found again by later hvdesk
processes, and a port taken between our pick and QEMU's bind. (packaging/bootstrap.sh also runs
the lifecycle, console and CLI tests under tcp.)"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import psutil
import pytest

from hvdesk.console.rfb import RfbClient
from hvdesk.core.errors import ConsoleError, QemuError
from hvdesk.engine import console
from hvdesk.engine.states import VmState
from hvdesk.qemu import transport as transports
from tests.integration.conftest import qmp_call, wait_for_serial, wait_until

pytestmark = pytest.mark.qemu


@pytest.fixture
def tcp(monkeypatch):
    monkeypatch.setenv("HVDESK_TRANSPORT", "tcp")


def hv(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HVDESK_TRANSPORT"}  # a later process, default (unix) set-up
    return subprocess.run([sys.executable, "-m", "hvdesk", *args], capture_output=True, text=True, timeout=120,
                          env=env)


async def test_tcp_vm_listens_on_loopback_with_a_vnc_password(tcp, manager, guest_request, tiny_guest):
    await manager.create(guest_request("win"))
    machine = await manager.start("win")
    link, run = machine.transport, machine.run
    assert link.kind == "tcp" and run is not None and run.transport["kind"] == "tcp"
    assert "-daemonize" not in run.argv  # started as a detached child, as on Windows
    qemu = psutil.Process(machine.pid)
    assert qemu.ppid() == os.getpid() and os.getsid(machine.pid) == machine.pid  # our child, in its own session
    listening = {c.laddr for c in qemu.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", link.qmp.port), ("127.0.0.1", link.ctl.port), ("127.0.0.1", link.vnc.port)}

    password = link.vnc_password()
    assert len(password) == 8 and password.isalnum() and password not in " ".join(run.argv)
    assert stat.S_IMODE(link.vnc_password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(machine.paths.run_dir.stat().st_mode) == 0o700
    vnc = await qmp_call(machine, "query-vnc")
    assert (vnc["auth"], vnc["host"], vnc["service"]) == ("vnc", "127.0.0.1", str(link.vnc.port))

    with pytest.raises(ConsoleError, match="requires a password"):
        await RfbClient().connect_tcp("127.0.0.1", link.vnc.port)
    with pytest.raises(ConsoleError, match="authentication failed"):
        await RfbClient(password=password[::-1] + "x").connect_tcp("127.0.0.1", link.vnc.port)
    await wait_for_serial(machine.paths.serial_log, tiny_guest.marker)
    png = await console.screenshot(manager, "win")  # the engine reads the password file
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    await manager.stop("win", timeout=60)  # the guest hears the power button over tcp QMP
    assert machine.state == VmState.STOPPED and not machine.paths.run_dir.exists()


async def test_later_processes_find_a_tcp_vm_again(tcp, engines, guest_request, tiny_guest):
    first = await engines()
    await first.create(guest_request("again"))
    machine = await first.start("again")
    await first.close()

    app = await engines(watch=True, poll_interval=0.2)  # the app restarted: attaches over tcp
    adopted = app.get("again")
    assert adopted.state == VmState.RUNNING and adopted.session is not None and adopted.transport.kind == "tcp"
    listed = json.loads(hv("list", "--json").stdout)  # the CLI's quick read, without the variable
    assert [(v["name"], v["state"], v["pid"]) for v in listed] == [("again", "running", machine.pid)]
    info = json.loads(hv("info", "again", "--json").stdout)
    assert info["sockets"] == {"transport": "tcp", "qmp": str(adopted.transport.qmp),
                               "ctl": str(adopted.transport.ctl), "vnc": str(adopted.transport.vnc)}
    assert hv("pause", "again").returncode == 0
    await wait_until(lambda: adopted.state == VmState.PAUSED, 5, "the app to hear the CLI's pause")
    done = hv("stop", "again", "--force", "--timeout", "0")
    assert done.returncode == 0, done.stderr
    await wait_until(lambda: adopted.state == VmState.STOPPED, 10, "the app to see it stopped")


def busy_port() -> socket.socket:
    """A port another program holds, as one could between our pick and QEMU's bind."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


async def test_a_port_taken_before_qemu_binds_is_retried(tcp, manager, guest_request, monkeypatch):
    # The race cannot be timed from outside: the pick is made to return a taken port first.
    holder, picks, real = busy_port(), [], transports.free_ports

    def racing(count: int) -> list[int]:
        picks.append(real(count))
        return [holder.getsockname()[1], *picks[-1][1:]] if len(picks) == 1 else picks[-1]
    monkeypatch.setattr(transports, "free_ports", racing)
    with holder:
        await manager.create(guest_request("race"))
        machine = await manager.start("race")
        assert len(picks) == 2 and machine.state == VmState.RUNNING
        assert machine.transport.qmp.port == picks[1][0] != holder.getsockname()[1]
        await manager.stop("race", force=True, timeout=0)


async def test_ports_taken_every_time_is_a_clear_error(tcp, manager, guest_request, monkeypatch):
    holder = busy_port()
    monkeypatch.setattr(transports, "free_ports", lambda count: [holder.getsockname()[1]] * count)
    with holder:
        await manager.create(guest_request("unlucky"))
        with pytest.raises(QemuError, match=r"taken by the time it started, in all 5 tries \(.*Address already in use"):
            await manager.start("unlucky")
    machine = manager.get("unlucky")
    assert machine.state == VmState.STOPPED and machine.pid is None and not machine.paths.run_dir.exists()
