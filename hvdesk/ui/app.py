"""Starting the desktop app: Qt and the engine's asyncio loop share one thread through qasync,
so engine events reach widgets directly and no call crosses threads. Blocking work (qemu-img,
QEMU launch) is already asynchronous in the engine; the one-off accelerator probe runs in a
worker thread."""

from __future__ import annotations

from hvdesk.ui.imports import sources_not_kept

with sources_not_kept():  # PySide6's import hook reads each module's source: see hvdesk.ui.imports
    import argparse
    import asyncio
    import logging
    import os
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    import psutil
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from hvdesk import APP_NAME, DESKTOP_ID, __version__
    from hvdesk.core import control_settings
    from hvdesk.core.control_settings import ControlSettings
    from hvdesk.core.errors import ConfigError, HvdeskError, user_message
    from hvdesk.engine import host
    from hvdesk.engine.boot_watch import BootWatch
    from hvdesk.engine.controller import Controller
    from hvdesk.engine.install import InstallFlow
    from hvdesk.engine.manager import Manager
    from hvdesk.engine.monitoring import Monitor
    from hvdesk.ui.icons import app_icon
    from hvdesk.ui.main_window import MainWindow


log = logging.getLogger(__name__)
CONTROLLER_STOP_TIMEOUT = 10.0  # seconds for giving the VMs their memory back as the app closes


class _QuitAfterFirstPaint(QObject):
    """For benchmarks and installers' smoke tests: report the window's first paint, then close it."""

    def __init__(self, window: MainWindow, started: float) -> None:
        super().__init__(window)
        self._window, self._started = window, started

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self._window.isVisible():
            since_exec = time.time() - psutil.Process().create_time()  # includes Python and imports
            print(f"window painted {since_exec:.3f} s after the process started "
                  f"({time.perf_counter() - self._started:.3f} s after main())", flush=True)
            self._window.removeEventFilter(self)
            QTimer.singleShot(0, self._window.close)
        return False


async def run_app(app: QApplication, smoke_test: bool, started: float, interval: float) -> int:
    manager = Manager(watch=True)
    await manager.open()
    InstallFlow(manager)  # carries VMs from their installer ISO to their installed disk
    boot_watch = BootWatch(manager)  # a VM stuck under a hardware accelerator gets a notice
    monitor = Monitor(manager, interval=interval)
    monitor.start()
    settings, problem = load_control_settings()
    controller = Controller(manager, monitor, settings, who="the hvdesk app")
    if settings.enabled:
        controller.start()  # it acts unless another controller (hvdesk agent) holds the lock
    window = MainWindow(manager, monitor, boot_watch=boot_watch, controller=controller, controller_problem=problem)
    if smoke_test:
        window.installEventFilter(_QuitAfterFirstPaint(window, started))
    window.show()
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    await window.host_notice.refresh()
    window.accel_label.setText(await asyncio.to_thread(host.accelerator_status))
    await closed.wait()
    await window.runner.wait_idle()
    await boot_watch.close()
    await stop_controller(controller)
    await monitor.stop()
    await manager.close()  # stops watching; the VMs keep running
    await asyncio.get_running_loop().shutdown_default_executor()
    return 0


def load_control_settings() -> tuple[ControlSettings, str]:
    """The controller's saved settings, or the defaults and why the file could not be used (shown in
    the window; the file is left alone until the person saves the preferences)."""
    try:
        return control_settings.load(), ""
    except ConfigError as exc:
        log.warning("%s; the controller uses the default settings", exc)
        return ControlSettings(), str(exc)


async def stop_controller(controller: Controller) -> None:
    """Stop the controller as the app closes: the VMs it shrank get their memory back and the lock
    is dropped. Bounded: a hung QEMU must not keep the app from quitting (the lock dies with it)."""
    try:
        await asyncio.wait_for(controller.stop(), CONTROLLER_STOP_TIMEOUT)
    except TimeoutError:
        log.warning("the allocation controller did not stop within %.0f s", CONTROLLER_STOP_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="hvdesk gui", description="The hvdesk desktop app.")
    parser.add_argument("--smoke-test", action="store_true", help="open the window, report, and quit")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between samples of the live graphs (0.5-10, default 1)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("QT_ENABLE_HIGHDPI_SCALING", "1")
    with sources_not_kept():
        import qasync

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication), "hvdesk's Qt application is always a QApplication (widgets need one)"
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(DESKTOP_ID)  # so the desktop shell matches our windows to the menu entry
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # the loop ends when run_app returns, after cleanup
    loop = qasync.QEventLoop(app)
    # qasync's default executor starts 10 threads at once (for asyncio.to_thread); these start when
    # work comes, and the app's blocking work is a few one-off calls (~0.5 MiB of RSS a thread).
    loop.set_default_executor(ThreadPoolExecutor(max_workers=4, thread_name_prefix="hvdesk-worker"))
    asyncio.set_event_loop(loop)
    try:
        with loop:
            return loop.run_until_complete(run_app(app, args.smoke_test, started, args.interval))
    except (HvdeskError, OSError) as exc:
        print(f"hvdesk: {user_message(exc)}", file=sys.stderr)
        return 1
