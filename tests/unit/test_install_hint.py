"""The one line that tells a user without QEMU what to run, for the distribution /etc/os-release names."""

from __future__ import annotations

import sys

import pytest

from hvdesk.qemu import binaries

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads an os-release file")


@pytest.mark.parametrize("os_release, expected", [
    ('NAME="Debian GNU/Linux"\nID=debian\n', "on Debian GNU/Linux: sudo apt install qemu-system-x86 qemu-utils"),
    ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n', "on Ubuntu: sudo apt install qemu-system-x86 qemu-utils"),
    ('NAME="Fedora Linux"\nID=fedora\n', "on Fedora Linux: sudo dnf install qemu-system-x86 qemu-img"),
    ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n',
     "on Rocky Linux: sudo dnf install qemu-system-x86 qemu-img"),
    ("NAME='Arch Linux'\nID=arch\n", "on Arch Linux: sudo pacman -S qemu-desktop"),
    ('NAME="openSUSE Tumbleweed"\nID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n',
     "on openSUSE Tumbleweed: sudo zypper install qemu-x86 qemu-tools"),
    ('ID=plan9\n', "install qemu-system-x86 and qemu-img from your distribution's packages"),
    ("", "install qemu-system-x86 and qemu-img from your distribution's packages"),
])
def test_each_distribution_gets_its_command(tmp_path, os_release, expected):
    path = tmp_path / "os-release"
    path.write_text(os_release)
    assert binaries.install_hint(path) == expected


def test_a_missing_os_release_still_gives_advice(tmp_path):
    assert "qemu-system-x86" in binaries.install_hint(tmp_path / "none")


def test_windows_looks_in_qemus_installer_folder_before_path(monkeypatch, tmp_path):
    """Windows cannot run here: sys.platform and the folder are mocked. A qemu-img.exe on PATH and
    one in QEMU's installer folder: the installer's wins; elsewhere PATH wins."""
    import os
    import stat

    from hvdesk.qemu import binaries

    installed, on_path = tmp_path / "Program Files" / "qemu", tmp_path / "bin"
    for folder in (installed, on_path):
        folder.mkdir(parents=True)
        exe = folder / "qemu-img.exe"
        exe.write_text("")
        exe.chmod(stat.S_IRWXU)
    monkeypatch.delenv("HVDESK_QEMU_DIR", raising=False)
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setitem(binaries.KNOWN_DIRS, "win32", [str(installed)])
    monkeypatch.setitem(binaries.KNOWN_DIRS, "linux", [str(installed)])
    monkeypatch.setattr(binaries.sys, "platform", "win32")
    monkeypatch.setattr(binaries.shutil, "which", lambda name: str(on_path / name) if os.path.exists(on_path / name)
                        else None)
    assert binaries.find_program("qemu-img") == installed / "qemu-img.exe"
    monkeypatch.setattr(binaries.sys, "platform", "linux")
    (on_path / "qemu-img").write_text("")
    (on_path / "qemu-img").chmod(stat.S_IRWXU)
    (installed / "qemu-img").write_text("")
    (installed / "qemu-img").chmod(stat.S_IRWXU)
    assert binaries.find_program("qemu-img") == on_path / "qemu-img"
