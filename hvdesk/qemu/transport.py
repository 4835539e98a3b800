"""How hvdesk reaches a running QEMU: its two QMP monitors and its VNC console.

- unix (Linux, macOS; the default there): private unix sockets in the VM's 0700 runtime dir, and
  QEMU daemonizes itself (-daemonize). Only this user can reach them.
- tcp (Windows, where QEMU has no unix sockets and no -daemonize): QMP and VNC on 127.0.0.1 on
  ports picked free at start, VNC with a random password (QEMU `-object secret` read from a 0600
  file in the runtime dir, never on a command line), and QEMU started as a detached child.
  QMP itself has no authentication in QEMU: any local user who finds the port can drive the VM.
  That is why unix sockets stay the default where they exist; on Windows it is what other QEMU
  front ends do too. `HVDESK_TRANSPORT=tcp` selects it on Linux, so the tests exercise it here.

A running VM's transport is recorded in its run info (run.json), so any later hvdesk finds it.
"""

from __future__ import annotations

import os
import socket
import string
import sys
from pathlib import Path
from typing import NamedTuple

from hvdesk.core.errors import HvdeskError
from hvdesk.qemu.vm_paths import VmPaths

KINDS = ("unix", "tcp")
HOST = "127.0.0.1"  # loopback only: never reachable from another machine
VNC_BASE_PORT = 5900  # QEMU's -vnc takes a display number: port = 5900 + display
VNC_SECRET_ID = "vnc-password"
# RFB's VNC authentication keys DES with the password's first 8 bytes; longer adds nothing.
# 8 characters of 62 letters and digits: ~47 bits.
PASSWORD_LENGTH = 8
PASSWORD_ALPHABET = string.ascii_letters + string.digits


def default_kind() -> str:
    """HVDESK_TRANSPORT if set, else tcp on Windows and unix elsewhere."""
    kind = os.environ.get("HVDESK_TRANSPORT", "").strip().lower() or ("tcp" if sys.platform == "win32" else "unix")
    if kind not in KINDS:
        raise HvdeskError(f"HVDESK_TRANSPORT={kind!r}: use unix or tcp")
    return kind


class Endpoint(NamedTuple):  # (not dataclasses: `hvdesk list` reads transports and loads none)
    """One place to connect: a unix socket path, or a port on 127.0.0.1."""

    path: Path | None = None
    port: int = 0

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> str | tuple[str, int]:
        """As socket.connect takes it."""
        return str(self.path) if self.path is not None else (HOST, self.port)

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"tcp:{HOST}:{self.port}"

    def present(self) -> bool:
        """Whether there is anything to connect to: a unix socket file must exist (its runtime
        folder can be removed under a running QEMU); a port cannot be told without connecting."""
        return self.path is None or self.path.exists()


class Transport(NamedTuple):
    kind: str  # unix | tcp
    qmp: Endpoint  # the long-lived session: events, for the app watching the VM
    ctl: Endpoint  # short commands (CLI), so they never wait for the watcher
    vnc: Endpoint
    vnc_password_file: Path | None = None  # tcp: the VNC password, 0600 in the runtime dir

    @property
    def daemonize(self) -> bool:
        """unix: QEMU's own -daemonize. tcp: a detached child (Windows has no -daemonize; Linux
        starts tcp VMs the same way so that the tests cover Windows' launch)."""
        return self.kind == "unix"

    def vnc_password(self) -> str | None:
        if self.vnc_password_file is None:
            return None
        return self.vnc_password_file.read_text(encoding="ascii").strip()

    def to_dict(self) -> dict[str, object]:
        if self.kind == "unix":
            return {"kind": "unix"}  # the socket paths follow from the runtime dir
        return {"kind": "tcp", "host": HOST, "qmp": self.qmp.port, "ctl": self.ctl.port, "vnc": self.vnc.port}


def unix(paths: VmPaths) -> Transport:
    return Transport("unix", Endpoint(paths.qmp_socket), Endpoint(paths.ctl_socket), Endpoint(paths.vnc_socket))


def from_dict(paths: VmPaths, data: object) -> Transport:
    """The transport a run info recorded; unix for run infos without one (older hvdesk)."""
    if not isinstance(data, dict) or data.get("kind") != "tcp":
        return unix(paths)
    ports = [data.get(name) for name in ("qmp", "ctl", "vnc")]
    if not all(type(port) is int and 0 < port < 65536 for port in ports):
        raise HvdeskError(f"{paths.run_dir}: the run info's tcp ports are malformed")
    qmp, ctl, vnc = (Endpoint(port=port) for port in ports)  # type: ignore[arg-type]
    return Transport("tcp", qmp, ctl, vnc, paths.run_dir / "vnc.pass")


def new(kind: str, paths: VmPaths) -> Transport:
    """A transport for a new QEMU: unix sockets, or free ports and a new VNC password file (the
    runtime dir must exist)."""
    if kind == "unix":
        return unix(paths)
    import secrets  # here: only a start makes a password

    password_file = paths.run_dir / "vnc.pass"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH)))
    qmp, ctl, vnc = free_ports(3)
    return Transport("tcp", Endpoint(port=qmp), Endpoint(port=ctl), Endpoint(port=vnc), password_file)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now: bound to port 0 (the system picks), then released. Another
    program may take one before QEMU binds it; the start then retries (engine/lifecycle.py). VNC
    needs a port of at least 5900 (a display number): the system's ephemeral ports are."""
    held: list[socket.socket] = []  # held until all are picked, so the picks differ
    try:
        for _ in range(count * 20):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((HOST, 0))
            if sock.getsockname()[1] < VNC_BASE_PORT:
                held.pop().close()
            if len(held) == count:
                return [sock.getsockname()[1] for sock in held]
        raise HvdeskError(f"found no free port on {HOST} from {VNC_BASE_PORT} up (is the ephemeral port range "
                          "set below it?)")
    finally:
        for sock in held:
            sock.close()


def port_taken(message: str) -> bool:
    """QEMU's message when a port it was given is taken (QEMU 7.2: "Failed to find an available
    port: Address already in use"; Windows words the socket error its own way)."""
    return "Failed to find an available port" in message or "Failed to bind socket" in message
