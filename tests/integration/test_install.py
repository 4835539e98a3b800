"""The install flow end to end, offline: an installer ISO (built by the tests) partitions the VM's
empty disk, installs a bootable system and powers off; the engine ejects the ISO and boots the disk."""

from __future__ import annotations

import pytest

from hvdesk.engine.install import InstallFlow
from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.states import VmState
from tests.guest.installer import ensure_installer_iso
from tests.integration.conftest import wait_for_serial, wait_until

pytestmark = pytest.mark.qemu
MIB = 1024 * 1024


async def test_install_from_iso_then_boot_the_installed_disk(engines):
    installer = ensure_installer_iso()
    manager = await engines(watch=True, poll_interval=0.2)
    InstallFlow(manager)
    machine = await manager.create(CreateRequest("installed", os="linux", memory_mib=256, disk_size=64 * MIB,
                                                 iso=installer.path))
    assert machine.config.install and machine.config.cdrom.iso == str(installer.path)
    await manager.start("installed")
    # The installer partitions and fills the disk, then powers off: the flow ejects the ISO and
    # starts the VM again, from its disk.
    await wait_until(lambda: "Installation finished" in machine.notice, 180, "the install flow to finish")
    await wait_until(lambda: machine.state == VmState.RUNNING, 30, "the installed system running")
    await wait_for_serial(machine.paths.serial_log, installer.installed_marker, timeout=120)
    installer_run = machine.paths.serial_log.with_name("serial.log.1").read_text()
    assert installer.installer_marker in installer_run  # the first run was the installer's
    saved = manager.library.find("installed").config
    assert saved.install is False and saved.cdrom.iso == "" and saved.boot_order[0] == "disk"
    assert "ejected" in machine.notice and "powered the VM off" in machine.notice
