"""Finding QEMU's programs and their versions.

Search order: HVDESK_QEMU_DIR alone when set (a private build, or tests); else PATH, then the
places installers put QEMU on each OS (on Windows, QEMU's installer folder first, then PATH).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hvdesk.core.errors import QemuError, QemuMissingError
from hvdesk.qemu import hostcache

KNOWN_DIRS = {
    "linux": ["/usr/bin", "/usr/local/bin", "/usr/libexec", "/snap/bin"],
    "darwin": ["/opt/homebrew/bin", "/usr/local/bin", "/opt/local/bin"],
    "win32": [r"C:\Program Files\qemu"],
}
INSTALL_HINTS = {
    "darwin": "with Homebrew: brew install qemu",
    "win32": "install QEMU for Windows from qemu.org/download (or set HVDESK_QEMU_DIR to its folder)",
}
# Linux: the command for the distribution /etc/os-release names (its ID, then the IDs it is like).
LINUX_INSTALL = {
    "debian": "sudo apt install qemu-system-x86 qemu-utils",  # also Ubuntu, Mint, Pop!_OS (ID_LIKE)
    "fedora": "sudo dnf install qemu-system-x86 qemu-img",  # also RHEL, CentOS, Rocky, Alma
    "arch": "sudo pacman -S qemu-desktop",
    "opensuse": "sudo zypper install qemu-x86 qemu-tools",
    "suse": "sudo zypper install qemu-x86 qemu-tools",
    "alpine": "sudo apk add qemu-system-x86_64 qemu-img",
    "gentoo": "sudo emerge app-emulation/qemu",
    "void": "sudo xbps-install qemu",
}


def install_hint(os_release: Path = Path("/etc/os-release")) -> str:
    """How to install QEMU on this system, as one short phrase."""
    if sys.platform != "linux":
        return INSTALL_HINTS.get(sys.platform, "install QEMU from your system's packages")
    fields: dict[str, str] = {}
    try:
        for line in os_release.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip().strip('"\'')
    except OSError:
        pass
    ids = [fields.get("ID", "").lower(), *fields.get("ID_LIKE", "").lower().split()]
    for distro in ids:
        for family, command in LINUX_INSTALL.items():
            if distro == family or distro.startswith(family + "-"):  # e.g. opensuse-tumbleweed
                name = fields.get("NAME") or distro
                return f"on {name}: {command}"
    return "install qemu-system-x86 and qemu-img from your distribution's packages"


MIN_VERSION = (6, 2)  # Ubuntu 22.04's; JSON -blockdev, free-page-reporting, -accel all present
_VERSION = re.compile(r"version (\d+\.\d+(?:\.\d+)?)")


def host_arch() -> str:
    # os.uname() where there is one (POSIX): the platform module's import costs a few ms of every start
    machine = (os.uname().machine if hasattr(os, "uname") else _platform_machine()).lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _platform_machine() -> str:
    import platform

    return platform.machine()


def find_program(name: str) -> Path:
    """Path of QEMU program `name` (e.g. "qemu-img"), or QemuMissingError saying how to install it."""
    exe = name + (".exe" if sys.platform == "win32" else "")
    override = os.environ.get("HVDESK_QEMU_DIR")
    if override:
        candidate = Path(override) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        raise QemuMissingError(f"{name} not found in HVDESK_QEMU_DIR={override}")
    # Windows: QEMU's own installer folder before PATH (which rarely holds QEMU there); elsewhere
    # PATH first, then the folders a GUI app's PATH may lack (Homebrew's).
    known = [Path(folder) / exe for folder in KNOWN_DIRS.get(sys.platform, [])]
    found = shutil.which(exe)
    on_path = [Path(found)] if found else []
    for candidate in [*known, *on_path] if sys.platform == "win32" else [*on_path, *known]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise QemuMissingError(f"QEMU is not installed: {name} not found ({install_hint()})")


def find_emulator(arch: str | None = None) -> Path:
    return find_program(f"qemu-system-{arch or host_arch()}")


def find_qemu_img() -> Path:
    return find_program("qemu-img")


def program_version(path: Path, cache_dir: Path | None = None) -> str:
    """"7.2.22" from `PROGRAM --version` (remembered per binary); "unknown" if it does not say."""
    def ask() -> dict[str, str]:
        try:
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return {"version": "unknown"}
        match = _VERSION.search(out)
        return {"version": match.group(1) if match else "unknown"}
    version = hostcache.remembered(cache_dir, hostcache.binary_key(path, "version"), ask).get("version")
    return version if isinstance(version, str) else "unknown"  # the cache is JSON on disk: whatever it holds


def check_version(path: Path, cache_dir: Path | None = None) -> str:
    """The emulator's version; QemuError if it is older than hvdesk supports."""
    version = program_version(path, cache_dir)
    parts = tuple(int(p) for p in version.split(".")[:2]) if version != "unknown" else MIN_VERSION
    if parts < MIN_VERSION:
        raise QemuError(f"QEMU {version} at {path} is too old: hvdesk needs "
                        f"{'.'.join(map(str, MIN_VERSION))} or newer")
    return version
