"""Qt tests: the real window on the real engine (real QEMU, the tiny guest), offscreen.

Qt and asyncio share one qasync loop, as in the app. Test code runs outside the loop and drives
it with `run(...)`; after each test no top-level widget may be left open.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import qasync  # noqa: E402
from PySide6.QtCore import QCoreApplication, QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from hvdesk.core.control_settings import ControlSettings  # noqa: E402
from hvdesk.engine.controller import Controller  # noqa: E402
from hvdesk.engine.install import InstallFlow  # noqa: E402
from hvdesk.engine.manager import Manager  # noqa: E402
from hvdesk.engine.monitoring import Monitor  # noqa: E402
from hvdesk.ui.main_window import MainWindow  # noqa: E402
from tests.integration.conftest import guest_request, kill_our_qemus, tiny_guest, wait_until  # noqa: E402,F401

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="session")
def qloop(qapp):
    loop = qasync.QEventLoop(qapp)
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())  # its worker threads end before Qt
    loop.close()


@pytest.fixture
def run(qloop):
    """Run a coroutine on the app's loop (Qt events are processed meanwhile).

    Not qloop.run_until_complete: after the loop stops, qasync processes Qt events once more,
    and with no running loop then. Any asyncio callback due at that moment (the monitor's tick,
    a console read) runs there, and its task fails with "no running event loop"."""
    asyncio.set_event_loop(qloop)

    def run(coro, timeout: float = 120.0):
        future = asyncio.ensure_future(asyncio.wait_for(coro, timeout), loop=qloop)
        stop = lambda _: qloop.stop()  # noqa: E731
        future.add_done_callback(stop)
        try:
            qloop.run_forever()
        finally:
            future.remove_done_callback(stop)
        if not future.done():
            raise RuntimeError("the event loop stopped before the coroutine finished")
        return future.result()
    return run


@pytest.fixture
def until(run):
    """Wait, with Qt and the engine running, until `predicate()` holds."""
    def until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
        run(wait_until(predicate, timeout, what), timeout + 5)
    return until


def flush_deletes() -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()


async def _started(*parts) -> None:
    for part in parts:
        part.start()  # from inside the loop, as in the app: its task runs on the running loop


@pytest.fixture
def open_window(hv_home, run, qapp):
    """Opens main windows (as app restarts would); closes them and checks nothing leaked."""
    made: list[tuple[MainWindow, Manager, Monitor]] = []

    def open_window(poll_interval: float = 0.2, sample_interval: float = 0.5, boot_watch=None,
                    controller: ControlSettings | None = None, controller_problem: str = "") -> MainWindow:
        """`boot_watch(manager)` makes the window's BootWatch, when the test wants one; with
        `controller` settings, the window gets a Controller as in the app (started when enabled)."""
        manager = Manager(watch=True, poll_interval=poll_interval)
        run(manager.open())
        InstallFlow(manager)  # as the app does
        monitor = Monitor(manager, interval=sample_interval)
        run(_started(monitor))
        control = None
        if controller is not None:
            control = Controller(manager, monitor, controller, who="the hvdesk app")
            if controller.enabled:
                run(_started(control))
        window = MainWindow(manager, monitor, boot_watch=boot_watch(manager) if boot_watch else None,
                            controller=control, controller_problem=controller_problem)
        window.show()
        made.append((window, manager, monitor))
        return window
    yield open_window
    for window, manager, monitor in made:
        if window.isVisible():
            window.close()
        run(window.runner.wait_idle())
        sizes = window.details._sizes_task  # the Details pane's disk sizes, still being read
        if sizes is not None and not sizes.done():  # (a task dying after the loop ends trips a CPython bug)
            sizes.cancel()
            run(asyncio.gather(sizes, return_exceptions=True))
        if window.boot_watch is not None:
            run(window.boot_watch.close())
        run(window.controller.stop())
        run(monitor.stop())
        run(manager.close())
        window.deleteLater()
    kill_our_qemus()
    flush_deletes()
    leaked = [w for w in qapp.topLevelWidgets() if w.isVisible()]
    for widget in leaked:
        widget.close()
    assert not leaked, f"top-level widgets left open: {leaked}"


@pytest.fixture
def window(open_window) -> MainWindow:
    return open_window()


def row_texts(window: MainWindow) -> dict[str, str]:
    """{VM name: state text} as the list shows them."""
    model = window.filter_model
    return {model.index(r, 0).data(): model.index(r, 1).data() for r in range(model.rowCount())}


def message_box(window) -> QMessageBox:
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1, f"expected one open message box, found {boxes}"
    return boxes[0]


def click_button(box: QMessageBox, text: str) -> None:
    (button,) = [b for b in box.buttons() if b.text() == text]
    button.click()
