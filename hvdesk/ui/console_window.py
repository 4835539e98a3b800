"""A VM's console window, like VirtualBox's VM window: its screen, keyboard and mouse, key
combinations, scaling, fullscreen and screenshots. It reconnects by itself when the VM starts
again, and offers Start while it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hvdesk.console import keys
from hvdesk.console.rfb import RfbClient
from hvdesk.core.background import spawn
from hvdesk.core.errors import ConsoleError, HvdeskError
from hvdesk.engine import console as engine_console
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState
from hvdesk.ui import prefs
from hvdesk.ui.console_view import ConsoleView
from hvdesk.ui.icons import action_icon, app_icon
from hvdesk.ui.tasks import TaskRunner

COMBOS = [("Ctrl+Alt+Del", "ctrl-alt-delete"), ("Ctrl+Alt+Backspace", "ctrl-alt-backspace"),
          *[(f"Ctrl+Alt+F{n}", f"ctrl-alt-f{n}") for n in range(1, 13)], ("Print Screen", "print")]
TOOLBAR_HIDE_MS = 2000
CHROME = 80  # toolbar and frame, when sizing the window to the guest's screen


class ConsoleWindow(QMainWindow):
    def __init__(self, manager: Manager, machine: Machine, runner: TaskRunner, app_prefs: prefs.Prefs) -> None:
        super().__init__()
        self.manager, self.machine, self.runner, self.prefs = manager, machine, runner, app_prefs
        self.client: RfbClient | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = False
        self._closed = False
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowIcon(app_icon())
        self.view = ConsoleView()
        self.view.grab_changed.connect(self._update_status)
        self.view.near_top.connect(self._reveal_toolbar)
        self.scroll_area = QScrollArea()
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll_area.setStyleSheet("QScrollArea { background: black; border: none; }")
        self.scroll_area.setWidget(self.view)
        self.scroll_area.setWidgetResizable(True)
        self.stopped_page = self._build_stopped_page()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.scroll_area)
        self.pages.addWidget(self.stopped_page)
        self.setCentralWidget(self.pages)
        self._build_toolbar()
        self.grab_label = QLabel()
        self.statusBar().addPermanentWidget(self.grab_label)
        self._update_status(False)
        self._hide_timer = QTimer(self, singleShot=True, interval=TOOLBAR_HIDE_MS)
        self._hide_timer.timeout.connect(self._hide_toolbar_in_fullscreen)
        self._sized_to: QSize | None = None  # the guest screen size the window was last sized to
        self._unsubscribe = manager.subscribe(self._on_machine)
        self.resize(800, 600)
        self._on_machine(machine)

    def _build_stopped_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addStretch()
        self.stopped_label = QLabel()
        self.stopped_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.start_button = QPushButton(action_icon("start"), "Start")
        self.start_button.clicked.connect(self._start)
        layout.addWidget(self.stopped_label)
        layout.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch()
        return page

    def _build_toolbar(self) -> None:
        self.toolbar = self.addToolBar("Console")
        self.toolbar.setObjectName("console-toolbar")
        self.toolbar.setMovable(False)
        self.keys_menu = QMenu("Keys", self)
        for label, combo in COMBOS:
            self.keys_menu.addAction(label, functools.partial(self.send_combo, combo))
        keys_button = QToolButton()
        keys_button.setText("Send Keys")
        keys_button.setMenu(self.keys_menu)
        keys_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.toolbar.addWidget(keys_button)
        self.scale_action = QAction("Scale to Window", self, checkable=True, checked=True)
        self.scale_action.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.scale_action.toggled.connect(self.set_scaled)
        self.fullscreen_action = QAction("Fullscreen", self, checkable=True)
        self.fullscreen_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.fullscreen_action.toggled.connect(self.set_fullscreen)
        self.grab_action = QAction("Capture Keyboard", self, checkable=True)
        self.grab_action.toggled.connect(lambda on: self.view.set_grab(on))
        screenshot = QAction("Screenshot…", self)
        screenshot.setShortcut(QKeySequence("Ctrl+Shift+S"))
        screenshot.triggered.connect(self.ask_screenshot)
        for action in (self.scale_action, self.fullscreen_action, self.grab_action, screenshot):
            self.toolbar.addAction(action)
            self.addAction(action)  # shortcuts work in fullscreen too, with the toolbar hidden

    # -- state and connection ----------------------------------------------------------------

    def _on_machine(self, machine: Machine) -> None:
        if machine is not self.machine:
            return
        if machine not in self.manager.machines():  # deleted
            self.close()
            return
        self.setWindowTitle(f"{machine.name} [{machine.state}] — hvdesk")
        if allows(Action.SHOW, machine.state):
            if self.client is None and not self._connecting:
                self._connecting = True
                spawn(self._connect())
        elif machine.state in (VmState.STOPPED, VmState.ABORTED, VmState.INACCESSIBLE):
            self._show_stopped(f"{machine.name} is {machine.state}.")

    async def _connect(self) -> None:
        if self._closed:
            return
        try:
            events = self.view.events(resize=lambda w, h: self._resized())
            client = await engine_console.connect(self.machine, events)
        except HvdeskError as exc:
            self._connecting = False
            self._show_stopped(f"Cannot show the screen: {exc}")
            return
        self._connecting = False
        if self._closed:
            await client.close()
            return
        self.client = client
        self.view.attach(client)
        self.pages.setCurrentWidget(self.scroll_area)
        self._reader = asyncio.ensure_future(self._read(client))
        with contextlib.suppress(ConsoleError):
            await client.whole_screen()
            self._resized()

    async def _read(self, client: RfbClient) -> None:
        try:
            await client.run()
        except ConsoleError as exc:
            if not self._closed:
                self.statusBar().showMessage(str(exc), 5000)
        finally:
            if self._closed:
                return  # noqa: B012 - the window is gone; nothing to update
            if self.client is client:
                self.client = None
                self.view.attach(None)
            # The VM may have been restarted under us: look again.
            QTimer.singleShot(200, self._recheck)

    def _recheck(self) -> None:
        if not self._closed:
            self._on_machine(self.machine)

    def _show_stopped(self, text: str) -> None:
        self.stopped_label.setText(text)
        self.start_button.setVisible(allows(Action.START, self.machine.state))
        self.pages.setCurrentWidget(self.stopped_page)

    def _start(self) -> None:
        self.runner.run(self.manager.start(self.machine.name), title=f"Cannot start {self.machine.name}",
                        progress="Starting…")

    def _resized(self) -> None:
        """Size the window to the guest's screen when it first shows and when it changes."""
        self.view.framebuffer_resized()
        size = self.view.framebuffer_size()
        if size == self._sized_to or self.isFullScreen() or self.isMaximized():
            return
        self._sized_to = size
        screen = self.screen().availableGeometry() if self.screen() else None
        width, height = size.width(), size.height() + CHROME
        if screen is not None:
            width, height = min(width, screen.width()), min(height, screen.height())
        self.resize(width, height)

    # -- actions -----------------------------------------------------------------------------

    def send_combo(self, combo: str) -> None:
        client = self.client
        if client is None:
            return
        plan = [keys.key(part) for part in keys.combo(combo)]
        for scancode, keysym in plan:
            client.key(True, keysym, scancode)
        for scancode, keysym in reversed(plan):
            client.key(False, keysym, scancode)

    def set_scaled(self, scaled: bool) -> None:
        self.view.set_scaled(scaled)
        self.scroll_area.setWidgetResizable(scaled)

    def set_fullscreen(self, on: bool) -> None:
        if on:
            self.showFullScreen()
            self.toolbar.hide()
            self.statusBar().hide()
        else:
            self.showNormal()
            self.toolbar.show()
            self.statusBar().show()

    def _reveal_toolbar(self) -> None:
        if self.isFullScreen():
            self.toolbar.show()
            self._hide_timer.start()

    def _hide_toolbar_in_fullscreen(self) -> None:
        if self.isFullScreen() and not self.toolbar.underMouse():
            self.toolbar.hide()
        elif self.isFullScreen():
            self._hide_timer.start()

    def _update_status(self, grabbing: bool) -> None:
        self.grab_action.setChecked(grabbing)
        self.grab_label.setText("Keyboard captured — Right Ctrl releases it" if grabbing
                                else "Click the screen to capture the keyboard")

    def ask_screenshot(self) -> None:
        image = self.view.snapshot()
        if image.isNull():
            return
        start = Path(self.prefs.get(prefs.LAST_FOLDER) or Path.home()) / f"{self.machine.name}.png"
        dialog = QFileDialog(self, "Save Screenshot", str(start), "PNG images (*.png)")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("png")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda path: self.save_screenshot(Path(path), image))
        dialog.open()

    def save_screenshot(self, path: Path, image: QImage | None = None) -> bool:
        image = image if image is not None else self.view.snapshot()
        self.prefs.set(prefs.LAST_FOLDER, str(path.parent))
        # PySide6 takes the format as str (bytes raise ValueError), though its stubs say bytes.
        saved = image.save(str(path), "PNG")  # type: ignore[call-overload]
        self.statusBar().showMessage(f"Saved {path}" if saved else f"Could not save {path}", 5000)
        return saved

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing the console never stops the VM."""
        self._closed = True
        self._unsubscribe()
        self.view.set_grab(False)
        client, self.client = self.client, None
        if client is not None:
            spawn(client.close())
        super().closeEvent(event)
