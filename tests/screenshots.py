"""Render the app to PNG for the README and for looking at it: run under Xvfb,

    xvfb-run -a -s "-screen 0 1280x900x24" .venv/bin/python -m tests.screenshots [OUT_DIR]

A private library gets VMs in different states (running with the tiny test guest, stopped,
aborted, inaccessible); the main window, the settings dialog and the welcome page are grabbed.
Every QEMU started here is killed at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "screenshots"
GIB = 1024**3


def private_env() -> None:
    home = Path(tempfile.mkdtemp(prefix="hvdesk-shots-"))
    # Accelerator "auto", as users have it: the status bar then says what this host really offers.
    os.environ.pop("HVDESK_ACCEL", None)
    os.environ.update(HVDESK_HOME=str(home), HVDESK_RUNTIME_DIR=tempfile.mkdtemp(prefix="hvs-", dir="/tmp"))


async def populate(manager) -> None:
    from hvdesk.engine.library_ops import CreateRequest
    from tests.guest.build import ensure_tiny_guest
    from tests.integration.conftest import wait_for_serial

    guest = ensure_tiny_guest()
    boot = dict(kernel=guest.kernel, initrd=guest.initrd, append=guest.append)
    busy = dict(boot, append=guest.append + " hvdesk.burn=25")  # one vCPU busy for a while: graphs that move
    running = await manager.create(CreateRequest("Debian 12", os="debian12", memory_mib=512, cpus=2,
                                                 disk_size=20 * GIB, notes="Build server", **busy))
    await manager.create(CreateRequest("Windows 11", os="win11", memory_mib=4096, cpus=2, disk_size=64 * GIB))
    await manager.create(CreateRequest("Alpine edge", os="alpine", memory_mib=256, **boot))
    broken = await manager.create(CreateRequest("Old lab VM", os="linux"))
    (broken.entry.folder / "vm.toml").write_text("schema = 1\nname = 'Old lab VM'\nmemory_mib = 'lots'\n")
    await manager.start("Alpine edge")
    aborted = manager.get("Alpine edge")
    await wait_for_serial(aborted.paths.serial_log, guest.marker)
    os.kill(aborted.pid, signal.SIGKILL)  # a crash, so the window shows "aborted" with its log
    await manager.start("Debian 12")
    await wait_for_serial(running.paths.serial_log, guest.marker)
    await manager.refresh()


async def grab(widget, name: str) -> None:
    await asyncio.sleep(1.0)  # Qt paints meanwhile: layouts, icons and async detail loads settle
    OUT.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(OUT / f"{name}.png"))
    print(OUT / f"{name}.png")


async def shoot_wizard(window) -> None:
    from hvdesk.ui.new_vm_wizard import NewVmWizard
    from tests.unit.test_iso_detect import make_iso

    iso = make_iso(Path(os.environ["HVDESK_HOME"]) / "debian-12.8.0-amd64-netinst.iso", "Debian 12.8.0 amd64 n",
                   {"/.disk/info": b'Debian GNU/Linux 12.8.0 "Bookworm" - Official amd64 NETINST'})
    window.new_vm()
    (wizard,) = [w for w in window.findChildren(NewVmWizard) if w.isVisible()]
    wizard.media.iso.setText(str(iso))
    for n, name in enumerate(("media", "name", "resources", "disk", "summary"), start=1):
        await grab(wizard, f"wizard-{n}-{name}")
        wizard.next()
    wizard.reject()


async def shoot_console(manager, window) -> None:
    from hvdesk.console.keys import keys_for_text
    from hvdesk.engine import console
    from hvdesk.ui.controller_prefs import ControllerPrefsDialog
    from tests.guest.build import SHELL_MARKER
    from tests.integration.conftest import wait_for_serial

    machine = manager.get("Debian 12")
    await wait_for_serial(machine.paths.serial_log, SHELL_MARKER)
    await console.send_keys(manager, "Debian 12", keys_for_text(
        "uname -a; ls /; cat /proc/cpuinfo | head -5; dd if=/dev/zero of=/run/hvdesk-alloc/a bs=1M count=96 "
        "2>/dev/null; dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct 2>/dev/null\n"))
    window.select("Debian 12")
    await grab(window, "main-window-preview")
    window.show_console()
    screen = window.consoles["Debian 12"]
    while screen.client is None or screen.client.frames == 0:  # connecting
        await asyncio.sleep(0.05)
    await screen.client.whole_screen()
    await grab(screen, "console")
    screen.resize(520, 340)
    await grab(screen, "console-scaled")
    screen.close()
    await asyncio.sleep(12)  # samples for the graphs
    window.tabs.setCurrentWidget(window.performance)
    await grab(window, "performance")
    window.tabs.setCurrentWidget(window.resources)  # the controller has ballooned it into its pool meanwhile
    await grab(window, "resources")
    window.show_preferences()
    (preferences,) = [d for d in window.findChildren(ControllerPrefsDialog) if d.isVisible()]
    await grab(preferences, "preferences")
    preferences.reject()
    window.show_overview()
    await grab(window.overview, "host-overview")
    window.overview.close()
    window.tabs.setCurrentWidget(window.details)


async def shoot_snapshots(manager, window) -> None:
    """The Snapshots tab with a small tree (an offline one, two live ones with thumbnails), and the
    Clone dialog of a stopped VM."""
    from hvdesk.ui.clone_dialog import CloneDialog
    from tests.guest.build import SHELL_MARKER
    from tests.integration.conftest import wait_for_serial

    machine = manager.get("Debian 12")
    await wait_for_serial(machine.paths.serial_log, SHELL_MARKER)
    snapshots = manager.snapshots
    await snapshots.take("Debian 12", "Fresh install", "Right after the installer finished, before any updates.")
    await snapshots.take("Debian 12", "Updated", "apt full-upgrade, kernel 6.1.0-28")
    await snapshots.take("Debian 12", "Build tools", "gcc, make and the project's dependencies installed")
    await snapshots.restore("Debian 12", "Updated")
    window.select("Debian 12")
    window.tabs.setCurrentWidget(window.snapshots)
    pane = window.snapshots
    pane.tree.setCurrentItem(pane.item_named("Build tools"))
    await grab(window, "snapshots")
    pane.take_button.click()
    assert pane.dialog is not None
    pane.dialog.description.setPlainText("Before trying the new compiler")
    await grab(pane.dialog, "snapshot-take")
    pane.dialog.reject()
    window.tabs.setCurrentWidget(window.details)
    window.select("Windows 11")
    window.clone_vm()
    (dialog,) = [d for d in window.findChildren(CloneDialog) if d.isVisible()]
    await grab(dialog, "clone")
    dialog.reject()


async def shoot() -> None:
    from hvdesk.core.control_settings import ControlSettings
    from hvdesk.engine.controller import Controller
    from hvdesk.engine.host import accelerator_status
    from hvdesk.engine.manager import Manager
    from hvdesk.engine.monitoring import Monitor
    from hvdesk.ui.main_window import MainWindow
    from hvdesk.ui.settings_dialog import SettingsDialog

    manager = Manager(watch=True)
    await manager.open()
    monitor = Monitor(manager, interval=1.0)
    monitor.start()
    # The allocation controller, switched on once the guests report their memory (a VM without
    # stats is held off for a minute), with a pool that makes it balloon the running VM.
    controller = Controller(manager, monitor, ControlSettings(enabled=False, interval=2, pool_mib=400),
                            who="the hvdesk app")
    window = MainWindow(manager, monitor, accel_text=accelerator_status(), controller=controller)
    window.resize(1100, 680)
    window.show()
    await grab(window, "welcome")
    await shoot_wizard(window)
    try:
        await populate(manager)
        await asyncio.sleep(1.5)  # the watcher notices the crash
        controller.settings.enabled = True
        controller.start()
        window.select("Debian 12")
        await grab(window, "main-window")
        window.select("Alpine edge")
        await grab(window, "main-window-aborted")
        window.select("Old lab VM")
        await grab(window, "main-window-inaccessible")
        window.select("Debian 12")
        dialog = SettingsDialog(manager, manager.get("Debian 12"), window.runner, window.prefs, window)
        dialog.show()
        dialog.tabs.setCurrentIndex(1)
        await grab(dialog, "settings-system")
        dialog.tabs.setCurrentIndex(2)
        await grab(dialog, "settings-storage")
        dialog.tabs.setCurrentWidget(dialog.pages["Resources"])
        await grab(dialog, "settings-resources")
        dialog.close()
        await shoot_console(manager, window)
        await shoot_snapshots(manager, window)
    finally:
        await controller.stop()
        for machine in manager.machines():
            if machine.pid:
                os.kill(machine.pid, signal.SIGKILL)
        await manager.close()
        window.close()
        shutil.rmtree(os.environ["HVDESK_HOME"], ignore_errors=True)


def main() -> None:
    private_env()
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(shoot())


if __name__ == "__main__":
    main()
