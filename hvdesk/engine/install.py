"""The install flow: a VM created from an installer ISO onto a new disk boots the CD (the empty disk
does not boot), and when the installation is over — the guest powers off or reboots after booting
from the CD, or ejects the CD itself — hvdesk ejects the ISO, keeps the disk first in the boot order,
and boots the installed system. It follows QMP events, so it runs with a watching Manager (the app)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from hvdesk.core.background import spawn
from hvdesk.core.config import CdDrive
from hvdesk.core.errors import HvdeskError
from hvdesk.engine import editing
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState

log = logging.getLogger(__name__)


class InstallFlow:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self._restart: set[Path] = set()  # VMs (folders) that powered off at the end of their installation
        manager.on_qmp_event(self._on_event)
        manager.subscribe(self._on_change)

    @staticmethod
    def _installing(machine: Machine) -> bool:
        """Installing, and this run booted with the installer in the drive."""
        config = machine.entry.config
        started = machine.run.config if machine.run else {}
        return bool(config and config.install and (started.get("cdrom") or {}).get("iso"))

    def _on_event(self, machine: Machine, event: str, data: dict[str, Any]) -> None:
        if not self._installing(machine):
            return
        if event == "SHUTDOWN" and data.get("reason") == "guest-shutdown":
            self._restart.add(machine.entry.folder)  # finish once QEMU has exited, then boot the disk
        elif event == "RESET" and data.get("reason") == "guest-reset":
            spawn(self._finish(machine, "the installer rebooted the VM", live=True))
        elif event == "DEVICE_TRAY_MOVED" and data.get("id") == "cd0" and data.get("tray-open"):
            spawn(self._finish(machine, "the installer ejected the CD", live=True))

    def _on_change(self, machine: Machine) -> None:
        if machine.entry.folder in self._restart and machine.state in (VmState.STOPPED, VmState.ABORTED):
            self._restart.discard(machine.entry.folder)
            spawn(self._finish(machine, "the installer powered the VM off", live=False))

    async def _finish(self, machine: Machine, why: str, live: bool) -> None:
        config = machine.config
        if not config.install:
            return
        iso = config.cdrom.iso if config.cdrom else ""
        boot_order = ["disk"] + [d for d in config.boot_order if d != "disk"]
        updated = dataclasses.replace(config, install=False, boot_order=boot_order,
                                      cdrom=CdDrive(iso="", bus=config.cdrom.bus) if config.cdrom else None)
        try:
            await editing.save_settings(self.manager, machine.name, updated)  # live: ejects the CD over QMP
            if not live:
                await self.manager.start(machine.name)
        except HvdeskError as exc:
            machine.notice = f"Installation finished ({why}), but hvdesk could not switch to the disk: {exc}"
            log.warning("%s: %s", machine.name, machine.notice)
            return
        machine.notice = (f"Installation finished ({why}): ejected {iso or 'the ISO'} and "
                          f"{'rebooting into' if live else 'started'} the installed system.")
        self.manager.reload(machine)
