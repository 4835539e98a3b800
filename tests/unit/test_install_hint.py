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
