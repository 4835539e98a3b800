"""The transport seam's parts that need no QEMU (tests/integration/test_transport.py runs QEMU)."""

from __future__ import annotations

import socket
import stat
import sys
from pathlib import Path

import pytest

from hvdesk.core.errors import HvdeskError
from hvdesk.qemu import process, transport
from hvdesk.qemu.vm_paths import VmPaths


def test_default_is_unix_here_tcp_on_windows_and_the_variable_chooses(monkeypatch):
    monkeypatch.delenv("HVDESK_TRANSPORT", raising=False)
    assert transport.default_kind() == ("tcp" if sys.platform == "win32" else "unix")
    monkeypatch.setenv("HVDESK_TRANSPORT", " TCP ")
    assert transport.default_kind() == "tcp"
    monkeypatch.setenv("HVDESK_TRANSPORT", "unix")
    assert transport.default_kind() == "unix"
    monkeypatch.setenv("HVDESK_TRANSPORT", "pipe")
    with pytest.raises(HvdeskError, match="use unix or tcp"):
        transport.default_kind()
    monkeypatch.delenv("HVDESK_TRANSPORT")
    monkeypatch.setattr(sys, "platform", "win32")  # Windows cannot run here: its default, by its name
    assert transport.default_kind() == "tcp"


def test_windows_launch_flags():
    # Windows cannot run here: the flag computation is tested as a unit, against winbase.h's values
    # (subprocess defines these constants only on Windows).
    assert process.detach_options("win32") == {"creationflags": 0x00000200 | 0x00000008}
    if sys.platform == "win32":
        import subprocess
        assert process.detach_options("win32")["creationflags"] == (subprocess.CREATE_NEW_PROCESS_GROUP
                                                                    | subprocess.DETACHED_PROCESS)
    assert process.detach_options("linux") == {"start_new_session": True, "umask": 0o077}


def test_free_ports_are_distinct_loopback_ports_a_vnc_display_can_name():
    ports = transport.free_ports(3)
    assert len(set(ports)) == 3 and all(transport.VNC_BASE_PORT <= p < 65536 for p in ports)
    for port in ports:  # released: QEMU can bind them
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_new_tcp_transport_has_a_private_random_password(tmp_path):
    paths = VmPaths(tmp_path / "vm", tmp_path)
    one, two = transport.new("tcp", paths), transport.new("tcp", paths)
    assert one.vnc_password_file == two.vnc_password_file == tmp_path / "vnc.pass"
    assert stat.S_IMODE(one.vnc_password_file.stat().st_mode) == 0o600
    password = two.vnc_password()
    assert len(password) == transport.PASSWORD_LENGTH == 8 and set(password) <= set(transport.PASSWORD_ALPHABET)
    passwords = {transport.new("tcp", paths).vnc_password() for _ in range(20)}
    assert len(passwords) == 20  # random, not fixed
    assert transport.new("unix", paths) == transport.unix(paths) and not transport.unix(paths).vnc_password()


def test_run_info_round_trip_and_old_run_infos():
    paths = VmPaths(Path("/v"), Path("/r"))
    link = transport.Transport("tcp", transport.Endpoint(port=40001), transport.Endpoint(port=40002),
                               transport.Endpoint(port=40003), Path("/r/vnc.pass"))
    assert transport.from_dict(paths, link.to_dict()) == link
    assert str(link.ctl) == "tcp:127.0.0.1:40002" and link.ctl.address == ("127.0.0.1", 40002)
    assert transport.from_dict(paths, {}) == transport.from_dict(paths, None) == transport.unix(paths)
    assert transport.from_dict(paths, {"kind": "unix"}).ctl.path == Path("/r/ctl.sock")
    for bad in (0, 65536, "40001", True, None):
        with pytest.raises(HvdeskError, match="malformed"):
            transport.from_dict(paths, {**link.to_dict(), "vnc": bad})


def test_qemus_message_for_a_taken_port_is_recognised():
    assert transport.port_taken("-chardev socket,id=qmp,host=127.0.0.1,port=39905,server=on,wait=off: "
                                "Failed to find an available port: Address already in use")  # QEMU 7.2
    assert not transport.port_taken("Could not open '/x.qcow2': No such file or directory")
