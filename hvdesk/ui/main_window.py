"""The main window: the VM list on the left, the selected VM's details on the right, actions in
a toolbar, menus and the list's context menu. It shows engine state and calls engine
operations; it owns no VM logic."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hvdesk import __version__
from hvdesk.core.control_settings import ControlSettings
from hvdesk.engine import control_status
from hvdesk.engine.actions import Action, allows
from hvdesk.engine.boot_watch import BootWatch, restart_under_tcg
from hvdesk.engine.controller import Controller
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from hvdesk.engine.monitoring import Monitor
from hvdesk.engine.states import VmState
from hvdesk.ui import prefs
from hvdesk.ui.console_window import ConsoleWindow
from hvdesk.ui.controller_prefs import ControllerPrefsDialog
from hvdesk.ui.details import DetailsPane
from hvdesk.ui.host_notice import HostNotice
from hvdesk.ui.host_overview import HostOverview
from hvdesk.ui.icons import action_icon, app_icon
from hvdesk.ui.imports import sources_not_kept
from hvdesk.ui.log_viewer import LogViewer
from hvdesk.ui.performance import PerformancePane
from hvdesk.ui.progress import ProgressTask
from hvdesk.ui.resources_tab import ResourcesPane
from hvdesk.ui.save_state import save_state
from hvdesk.ui.settings_dialog import SettingsDialog
from hvdesk.ui.snapshots_tab import SnapshotsPane
from hvdesk.ui.tasks import TaskRunner
from hvdesk.ui.vm_list import MACHINE_ROLE, VmFilterModel, VmListModel, VmListView
from hvdesk.ui.welcome import WelcomePage
from hvdesk.ui.window_actions import ACTIONS

S = VmState


class MainWindow(QMainWindow):
    def __init__(self, manager: Manager, monitor: Monitor, *, accel_text: str = "",
                 boot_watch: BootWatch | None = None, controller: Controller | None = None,
                 controller_problem: str = "") -> None:
        """`controller`: the app's allocation controller (the caller starts and stops it); without
        one, a controller switched off stands in (it shows what another process does).
        `controller_problem`: why its settings could not be read."""
        super().__init__()
        self.manager, self.monitor, self.boot_watch = manager, monitor, boot_watch
        self.controller = controller or Controller(manager, monitor, ControlSettings(enabled=False),
                                                   who="the hvdesk app")
        self.controller_problem = controller_problem
        self.controller_status = control_status.StatusWatch(self.controller)
        self.prefs = prefs.Prefs()
        self.runner = TaskRunner(self)
        self._log_viewers: dict[str, LogViewer] = {}
        self.consoles: dict[str, ConsoleWindow] = {}
        self.overview: HostOverview | None = None
        self.saving: ProgressTask | None = None  # the last Save State (its dialog, and Cancel)
        self.setWindowTitle("hvdesk")
        self.setWindowIcon(app_icon())
        self.actions_by_key = self._make_actions()
        self._build_central()
        self._build_toolbar_and_menus()
        self.accel_label = QLabel(accel_text)
        self.statusBar().addWidget(self.accel_label, 1)
        self.controller_label = QLabel()
        self.controller_label.setToolTip("The allocation controller: who acts, and the host memory the running "
                                         "VMs' balloons give back (Edit ▸ Preferences)")
        self.statusBar().addPermanentWidget(self.controller_label)
        self._unsubscribers = [manager.subscribe(self._on_machine_changed),
                               monitor.subscribe(self.update_controller_status),
                               self.controller.subscribe(lambda _report: self.update_controller_status())]
        self.update_controller_status()
        self._restore()
        self._update_page()
        self._on_selection()

    # -- building ----------------------------------------------------------------------------

    def _make_actions(self) -> dict[str, QAction]:
        handlers: dict[str, Callable[[], None]] = {
            "new": self.new_vm, "settings": self.open_settings, "start": self.start_vm, "show": self.show_console,
            "pause": self.toggle_pause, "shutdown": self.shutdown_vm, "poweroff": self.power_off_vm,
            "reset": self.reset_vm, "save": self.save_state, "clone": self.clone_vm, "delete": self.delete_vm,
            "log": self.show_log,
            "overview": self.show_overview, "preferences": self.show_preferences,
        }
        actions = {}
        for spec in ACTIONS:
            action = QAction(action_icon(spec.icon), spec.text, self)
            if spec.shortcut is not None:
                action.setShortcut(QKeySequence(spec.shortcut))
            action.setToolTip(f"{spec.tip} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
                              if spec.shortcut else spec.tip)
            action.setStatusTip(spec.tip)
            action.triggered.connect(handlers[spec.key])
            actions[spec.key] = action
        return actions

    def _build_central(self) -> None:
        self.filter_edit = QLineEdit(placeholderText="Filter machines", clearButtonEnabled=True)
        self.list_model = VmListModel(self.manager, self.monitor, self)
        self.filter_model = VmFilterModel(self)
        self.filter_model.setSourceModel(self.list_model)
        self.filter_edit.textChanged.connect(self.filter_model.setFilterFixedString)
        self.list_view = VmListView()
        self.list_view.setModel(self.filter_model)
        self.list_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.list_view.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.list_view.doubleClicked.connect(self._on_double_click)
        self.list_view.customContextMenuRequested.connect(self._context_menu)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.addWidget(self.filter_edit)
        left_layout.addWidget(self.list_view)

        self.details = DetailsPane()
        self.details.show_log_requested.connect(self.show_log)
        if self.boot_watch is not None:
            self.details.is_stalled = self.boot_watch.is_stalled
            self.details.restart_under_tcg_requested.connect(self.restart_under_tcg)
        self.welcome = WelcomePage()
        self.welcome.create_requested.connect(self.new_vm)
        self.performance = PerformancePane(self.monitor)
        self.resources = ResourcesPane(self.monitor, self.controller, self.controller_status)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.details, "Details")
        self.tabs.addTab(self.performance, "Performance")
        self.tabs.addTab(self.resources, "Resources")
        self.snapshots = SnapshotsPane(self.manager, self.runner)
        self.tabs.addTab(self.snapshots, "Snapshots")
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(self.tabs)

        self.splitter = QSplitter()
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([500, 600])
        self.host_notice = HostNotice()  # shown while QEMU is missing
        self.controller_notice = QLabel()  # shown when controller.toml is not valid
        self.controller_notice.setObjectName("controllerNotice")
        self.controller_notice.setWordWrap(True)
        self.controller_notice.setStyleSheet("#controllerNotice { background: #fff4ce; border: 1px solid #e0c060; "
                                             "border-radius: 4px; padding: 6px; }")
        if self.controller_problem:
            self.controller_notice.setText(f"<b>The allocation controller's settings are not valid:</b> "
                                           f"{html.escape(self.controller_problem)}. It uses the default settings "
                                           "meanwhile; the file is left as it is until you save Edit ▸ Preferences.")
        self.controller_notice.setVisible(bool(self.controller_problem))
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.host_notice)
        column.addWidget(self.controller_notice)
        column.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

    def _build_toolbar_and_menus(self) -> None:
        a = self.actions_by_key
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        toolbar.setMovable(False)
        self.stop_menu = QMenu("Stop", self)
        self.stop_menu.addActions([a["shutdown"], a["poweroff"], a["reset"]])
        self.stop_button = QToolButton()
        self.stop_button.setText("Stop")
        self.stop_button.setIcon(action_icon("stop"))
        self.stop_button.setMenu(self.stop_menu)
        self.stop_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.stop_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        toolbar.addActions([a["new"], a["settings"]])
        toolbar.addSeparator()
        toolbar.addActions([a["start"], a["show"], a["pause"]])
        toolbar.addWidget(self.stop_button)
        toolbar.addSeparator()
        toolbar.addActions([a["delete"], a["log"]])
        toolbar.addSeparator()
        toolbar.addAction(a["overview"])

        menu = self.menuBar().addMenu("&Machine")
        menu.addActions([a["new"], a["settings"]])
        menu.addSeparator()
        menu.addActions([a["start"], a["show"], a["pause"]])
        menu.addMenu(self.stop_menu)
        menu.addAction(a["save"])
        menu.addSeparator()
        menu.addActions([a["clone"], a["delete"], a["log"]])
        menu.addSeparator()
        menu.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addAction(a["preferences"])
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(a["overview"])
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&About hvdesk", self._about)

    # -- state ---------------------------------------------------------------------------------

    def selected(self) -> Machine | None:
        rows = self.list_view.selectionModel().selectedRows()
        return rows[0].data(MACHINE_ROLE) if rows else None

    def select(self, name: str) -> bool:
        for row in range(self.filter_model.rowCount()):
            index = self.filter_model.index(row, 0)
            if index.data(MACHINE_ROLE).name.casefold() == name.casefold():
                self.list_view.selectionModel().select(
                    index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
                self.list_view.scrollTo(index)
                return True
        return False

    def _on_machine_changed(self, machine: Machine) -> None:
        # After a VM came or went the model was reset: put the selection back.
        if self.selected() is None and (self.details.machine is not None or self.list_model.rowCount()):
            name = self.details.machine.name if self.details.machine else self.prefs.get(prefs.SELECTED_VM)
            if not (name and self.select(name)) and self.filter_model.rowCount():
                self.select(self.filter_model.index(0, 0).data(MACHINE_ROLE).name)
        self._update_page()
        if machine is self.selected():
            self._on_selection()

    def _on_selection(self) -> None:
        machine = self.selected()
        if machine is not None:
            self.prefs.set(prefs.SELECTED_VM, machine.name)
        self.details.show_machine(machine)
        self.performance.show_machine(machine)
        self.resources.show_machine(machine)
        self.snapshots.show_machine(machine)
        self._update_page()
        state = machine.state if machine else None
        for spec in ACTIONS:
            enabled = not spec.actions or (state is not None and any(allows(a, state) for a in spec.actions))
            self.actions_by_key[spec.key].setEnabled(enabled)
        paused = state == S.PAUSED
        pause = self.actions_by_key["pause"]
        pause.setText("&Resume" if paused else "&Pause")
        pause.setIcon(action_icon("start" if paused else "pause"))
        self.stop_button.setEnabled(any(a.isEnabled() for a in self.stop_menu.actions()))

    def _update_page(self) -> None:
        empty = self.list_model.rowCount() == 0
        self.pages.setCurrentWidget(self.welcome if empty else self.tabs)
        if not empty and self.selected() is None:
            self.details.show_machine(None)

    # -- actions ---------------------------------------------------------------------------------

    def _on_double_click(self, index: QModelIndex) -> None:
        machine = index.data(MACHINE_ROLE)
        if allows(Action.START, machine.state):
            self.start_vm()
        elif allows(Action.SHOW, machine.state):
            self.show_console()

    def _context_menu(self, pos: QPoint) -> None:
        a = self.actions_by_key
        menu = QMenu(self)
        menu.addActions([a["start"], a["show"], a["pause"]])
        menu.addMenu(self.stop_menu)
        menu.addAction(a["save"])
        menu.addSeparator()
        menu.addActions([a["settings"], a["clone"], a["log"], a["delete"]])
        menu.popup(self.list_view.viewport().mapToGlobal(pos))

    def new_vm(self) -> None:
        # Loaded when first asked for: the wizard's ISO reader (pycdlib) and OS database are ~4 MiB
        # of RSS that a session which creates no VM never needs.
        with sources_not_kept():  # (see hvdesk.ui.imports)
            from hvdesk.ui.new_vm_wizard import NewVmWizard

        wizard = NewVmWizard(self.manager, self.runner, self.prefs, self)
        wizard.created.connect(self._created)
        wizard.finished.connect(lambda *_: wizard.deleteLater())
        wizard.open()

    def _created(self, name: str, customize: bool, start: bool) -> None:
        self.select(name)
        if customize:
            self.open_settings()  # the person starts it from there (or not)
        elif start:
            self.start_vm()

    def open_settings(self) -> None:
        machine = self.selected()
        if machine is not None and machine.entry.config is not None:
            SettingsDialog(self.manager, machine, self.runner, self.prefs, self).open()

    def _lifecycle(self, title: str, progress: str | None, call: Callable[[str], Awaitable[Machine]]) -> None:
        """`call(name)` on the selected VM; `progress` (if any) shows while it takes long."""
        machine = self.selected()
        if machine is not None:
            self.runner.run(call(machine.name), title=f"{title} {machine.name}", progress=progress)

    def start_vm(self) -> None:
        self._lifecycle("Cannot start", "Starting…", self.manager.start)

    def toggle_pause(self) -> None:
        machine = self.selected()
        if machine is not None and machine.state == S.PAUSED:
            self._lifecycle("Cannot resume", None, self.manager.resume)
        else:
            self._lifecycle("Cannot pause", None, self.manager.pause)

    def shutdown_vm(self) -> None:
        # Returns once the power button is pressed; the events show the guest going down.
        self._lifecycle("Cannot shut down", None, self.manager.shutdown)

    def power_off_vm(self) -> None:
        self._lifecycle("Cannot power off", "Powering off…",
                        lambda name: self.manager.stop(name, force=True, timeout=0))

    def reset_vm(self) -> None:
        self._lifecycle("Cannot reset", None, self.manager.reset)

    def save_state(self) -> None:
        machine = self.selected()
        if machine is not None:
            self.saving = save_state(self, self.manager, self.runner, machine.name)

    def clone_vm(self) -> None:
        machine = self.selected()
        if machine is None or machine.entry.config is None:
            return
        from hvdesk.ui.clone_dialog import CloneDialog  # (the clone engine loads when first asked for)

        dialog = CloneDialog(self.manager, machine, self.runner, self)
        dialog.cloned.connect(self.select)
        dialog.finished.connect(lambda *_: dialog.deleteLater())
        dialog.open()

    def delete_vm(self) -> None:
        machine = self.selected()
        if machine is None:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Delete virtual machine",
                          f"Delete “{machine.name}”?", parent=self)
        box.setInformativeText("“Delete All Files” also deletes the disk images hvdesk created for it. "
                               "“Keep Disks” removes the VM but leaves its disk images in its folder. "
                               "Disk images attached from elsewhere are never deleted.")
        everything = box.addButton("Delete All Files", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep Disks", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen(button: QAbstractButton) -> None:
            if button in (everything, keep):
                self.runner.run(self.manager.delete(machine.name, keep_disks=button is keep),
                                title=f"Cannot delete {machine.name}", progress="Deleting…")
        box.buttonClicked.connect(chosen)
        box.open()

    def show_console(self) -> None:
        machine = self.selected()
        if machine is None or machine.entry.config is None:
            return
        window = self.consoles.get(machine.name)
        if window is None:
            window = ConsoleWindow(self.manager, machine, self.runner, self.prefs)
            self.consoles[machine.name] = window
            window.destroyed.connect(lambda *_: self.consoles.pop(machine.name, None))
        window.show()
        window.raise_()
        window.activateWindow()

    def show_overview(self) -> None:
        if self.overview is None:
            self.overview = HostOverview(self.monitor, self)
            self.overview.finished.connect(lambda *_: setattr(self, "overview", None))
        self.overview.show()
        self.overview.raise_()

    def show_preferences(self) -> None:
        dialog = ControllerPrefsDialog(self.controller, self.runner, self.controller_problem, self)
        dialog.applied.connect(self._preferences_saved)
        dialog.finished.connect(lambda *_: dialog.deleteLater())
        dialog.open()

    def _preferences_saved(self) -> None:
        self.controller_problem = ""
        self.controller_notice.hide()
        self.update_controller_status()
        self.resources.redraw()

    def update_controller_status(self) -> None:
        """The status bar's "Controller: acting (this app) — given back 1.2 GiB from 3 VMs"."""
        back = control_status.given_back(self.manager, self.monitor)
        text = control_status.status_line(self.controller_status(), back)
        if self.controller_label.text() != text:
            self.controller_label.setText(text)

    def restart_under_tcg(self) -> None:
        machine = self.selected()
        if machine is not None:
            self.runner.run(restart_under_tcg(self.manager, machine.name), title="Cannot restart under TCG",
                            progress=f"Restarting {machine.name} under TCG…")

    def show_log(self) -> None:
        machine = self.selected()
        if machine is None or machine.entry.config is None:
            return
        viewer = self._log_viewers.get(machine.name)
        if viewer is None:
            viewer = LogViewer(machine, self)
            self._log_viewers[machine.name] = viewer
            viewer.finished.connect(lambda *_: self._log_viewers.pop(machine.name, None))
        viewer.show()
        viewer.raise_()

    def _about(self) -> None:
        QMessageBox.about(self, "About hvdesk", f"<h3>hvdesk {__version__}</h3><p>A desktop manager for QEMU "
                          "virtual machines.</p><p>VMs run as their own QEMU processes and keep running when "
                          "this window closes.</p>")

    # -- persistence -----------------------------------------------------------------------------

    def _restore(self) -> None:
        geometry = self.prefs.get(prefs.WINDOW_GEOMETRY)
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1000, 640)
        for pref, restore in ((prefs.SPLITTER, self.splitter.restoreState),
                              (prefs.LIST_HEADER, self.list_view.header().restoreState)):
            value = self.prefs.get(pref)
            if value is not None:
                restore(value)
        name = self.prefs.get(prefs.SELECTED_VM)
        if not (name and self.select(name)) and self.filter_model.rowCount():
            self.select(self.filter_model.index(0, 0).data(MACHINE_ROLE).name)
        self.tabs.setCurrentIndex(int(self.prefs.get(prefs.DETAILS_TAB)))
        # The list starts with the keyboard (arrows pick a VM), not the filter, whose blinking
        # cursor would repaint twice a second.
        self.list_view.setFocus()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Save the window's layout; the VMs keep running."""
        self.prefs.set(prefs.WINDOW_GEOMETRY, self.saveGeometry())
        self.prefs.set(prefs.SPLITTER, self.splitter.saveState())
        self.prefs.set(prefs.LIST_HEADER, self.list_view.header().saveState())
        self.prefs.set(prefs.DETAILS_TAB, self.tabs.currentIndex())
        self.prefs.sync()
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self.list_model.detach()
        self.performance.detach()
        self.resources.detach()
        for viewer in list(self._log_viewers.values()):
            viewer.close()
        self.details.preview.stop()
        if self.overview is not None:
            self.overview.close()
        super().closeEvent(event)
