"""The details pane: the selected VM in sections, as in VirtualBox's Manager, rendered from the
same data `hvdesk info` prints (engine.describe)."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from hvdesk.core.units import format_approx, format_size
from hvdesk.engine import describe, editing
from hvdesk.engine.machine import Machine
from hvdesk.engine.states import VmState
from hvdesk.ui.icons import action_icon, os_icon, state_icon
from hvdesk.ui.preview import PreviewWidget
from hvdesk.ui.vm_list import os_label, state_text

MIB = 1024 * 1024
SECTIONS = ("General", "System", "Display", "Storage", "Network", "Notes")


def _breakable(text: str) -> str:
    """Escaped, with break opportunities after path separators, so long paths wrap."""
    return html.escape(text).replace("/", "/&#8203;")


def _rows(pairs: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td style='padding-right:14px;color:palette(mid)'>{html.escape(k)}</td>"
                    f"<td>{_breakable(v)}</td></tr>" for k, v in pairs)
    return f"<table cellspacing='2'>{cells}</table>"


def section_rows(data: describe.Report) -> dict[str, list[tuple[str, str]]]:
    """What each section lists, from describe.static_details/details."""
    acc = data["accelerator"]
    boot = ", ".join({"disk": "Hard disk", "cdrom": "Optical", "network": "Network"}[b] for b in data["boot_order"])
    storage = []
    for n, disk in enumerate(data["disks"]):
        size = (f", {format_size(disk['virtual_size'])} ({format_approx(disk['actual_size'])} used)"
                if disk["virtual_size"] is not None else "")
        storage.append((f"Disk {n} ({disk['bus']})", f"{disk['path']} — {disk['format']}{size}"))
    if data["cdrom"] is not None:
        storage.append((f"Optical ({data['cdrom']['bus']})", data["cdrom"]["iso"] or "Empty"))
    network = []
    for n, nic in enumerate(data["nics"]):
        network.append((f"Adapter {n}", f"NAT, {nic['model']} ({nic['mac']})"))
        for fwd in nic["forwards"]:
            network.append(("  Port forward", f"{fwd['protocol'].upper()} {fwd['host_address']}:"
                                              f"{fwd['host_port']} → guest {fwd['guest_port']}"))
    system = [("Memory", format_size(data["memory_mib"] * MIB)), ("Processors", str(data["cpus"])),
              ("Firmware", data["firmware"].upper()), ("Chipset", data["machine"]), ("Boot order", boot),
              ("Balloon", "on, with free page reporting" if data["balloon"]["free_page_reporting"]
               else "on" if data["balloon"]["enabled"] else "off")]
    if acc:
        system.append(("Acceleration", f"{acc['name'].upper()}{'' if acc['in_use'] else ' (at next start)'}"))
    if data["kernel"]:
        system.append(("Direct boot", data["kernel"]["kernel"]))
    return {
        "General": [("Name", data["name"]), ("Operating system", os_label(data["os"])), ("Folder", data["folder"])],
        "System": system,
        "Display": [("Console", "VNC on a private socket" if data["sockets"]["vnc"] else "None")],
        "Storage": storage or [("", "No disks")],
        "Network": network or [("", "Not attached")],
        "Notes": [("", data["notes"] or "—")],
    }


class DetailsPane(QScrollArea):
    """Shows one machine; `show_log_requested` asks the window to open its log."""

    show_log_requested = Signal()
    restart_under_tcg_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # text wraps instead
        self._machine: Machine | None = None
        self._sizes_task: asyncio.Task[None] | None = None
        self.is_stalled: Callable[[Machine], bool] = lambda _machine: False  # set by the window
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(10)
        layout.addLayout(self._build_header())
        layout.addWidget(self._build_banner())
        self._content = QWidget()  # hidden for an inaccessible VM: there is nothing to show
        content = QVBoxLayout(self._content)
        content.setContentsMargins(0, 0, 0, 0)
        content.setSpacing(10)
        top = QHBoxLayout()
        self._sections: dict[str, QLabel] = {}
        column = QVBoxLayout()
        for title in SECTIONS[:3]:
            column.addWidget(self._section(title))
        column.addStretch()
        top.addLayout(column, 1)
        top.addWidget(self._build_preview(), 0, Qt.AlignmentFlag.AlignTop)
        content.addLayout(top)
        for title in SECTIONS[3:]:
            content.addWidget(self._section(title))
        layout.addWidget(self._content)
        layout.addStretch()
        self.setWidget(body)

    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self._os_icon = QLabel()
        row.addWidget(self._os_icon, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        self._title = QLabel()
        font = self._title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self._title.setFont(font)
        self._title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        state_row = QHBoxLayout()
        self._state_icon = QLabel()
        self._state = QLabel()
        state_row.addWidget(self._state_icon)
        state_row.addWidget(self._state, 1)
        text.addWidget(self._title)
        text.addLayout(state_row)
        row.addLayout(text, 1)
        return row

    def _build_banner(self) -> QFrame:
        self._banner = QFrame()
        self._banner.setObjectName("banner")
        self._banner.setFrameShape(QFrame.Shape.StyledPanel)
        row = QHBoxLayout(self._banner)
        self._banner_text = QLabel()
        self._banner_text.setWordWrap(True)
        self._banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._log_button = QPushButton(action_icon("log"), "Show Log")
        self._log_button.clicked.connect(self.show_log_requested)
        self.tcg_button = QPushButton(action_icon("start"), "Restart under TCG")
        self.tcg_button.setToolTip("Turn the VM off and start it again with software emulation")
        self.tcg_button.clicked.connect(self.restart_under_tcg_requested)
        row.addWidget(self._banner_text, 1)
        row.addWidget(self._log_button)
        row.addWidget(self.tcg_button)
        self._banner.hide()
        return self._banner

    def _build_preview(self) -> QFrame:
        frame = QFrame()
        frame.setObjectName("preview")
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        frame.setFixedSize(QSize(244, 184))
        inner = QVBoxLayout(frame)
        inner.setContentsMargins(2, 2, 2, 2)
        self.preview = PreviewWidget()
        inner.addWidget(self.preview)
        return frame

    def _section(self, title: str) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        heading = QLabel(f"<b>{title}</b>")
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        body = QLabel()
        body.setTextFormat(Qt.TextFormat.RichText)
        body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body.setWordWrap(True)
        body.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        body.setContentsMargins(8, 0, 0, 0)
        layout.addWidget(heading)
        layout.addWidget(line)
        layout.addWidget(body)
        self._sections[title] = body
        return box

    @property
    def machine(self) -> Machine | None:
        return self._machine

    def show_machine(self, machine: Machine | None) -> None:
        """Show `machine` (or nothing) now, then fill in disk sizes when qemu-img has answered."""
        changed = machine is not self._machine
        self._machine = machine
        if machine is None:
            self.preview.show_machine(None)
            return
        self._render_header(machine)
        self._content.setVisible(machine.entry.config is not None)
        if machine.entry.config is None:
            return
        data = describe.static_details(machine)
        self._render_sections(data)
        if changed or self._sizes_task is None or self._sizes_task.done():
            if self._sizes_task is not None:
                self._sizes_task.cancel()
            self._sizes_task = asyncio.ensure_future(self._load_sizes(machine))

    async def _load_sizes(self, machine: Machine) -> None:
        data = await describe.details(machine)
        if machine is self._machine and machine.entry.config is not None:
            self._render_sections(data)

    def _render_header(self, machine: Machine) -> None:
        config = machine.entry.config
        self._os_icon.setPixmap(os_icon(config.os if config else None).pixmap(48, 48))
        self._title.setText(machine.name)
        self._state_icon.setPixmap(state_icon(machine.state).pixmap(16, 16))
        self._state.setText(state_text(machine))
        banner = ""
        stalled = self.is_stalled(machine)
        if stalled:
            banner = f"<b>This VM seems stuck.</b> {html.escape(machine.notice)}"
        elif machine.state == VmState.ABORTED:
            banner = f"<b>The VM stopped unexpectedly.</b> {_breakable(machine.reason)}"
        elif machine.state == VmState.INACCESSIBLE:
            banner = f"<b>This VM's settings cannot be read.</b> {_breakable(machine.reason)}"
        elif config is not None and (pending := editing.pending_changes(machine)):
            banner = ("<b>Saved changes take effect at the next start:</b> "
                      + html.escape(", ".join(p.replace("_", " ") for p in pending)))
        elif machine.reason and machine.state.active:
            banner = html.escape(machine.reason)
        elif machine.notice:
            banner = html.escape(machine.notice)
        self._banner_text.setText(banner)
        self._log_button.setVisible(machine.state == VmState.ABORTED)
        self.tcg_button.setVisible(stalled)
        self._banner.setVisible(bool(banner))
        self.preview.show_machine(machine)

    def _render_sections(self, data: describe.Report) -> None:
        for title, pairs in section_rows(data).items():
            self._sections[title].setText(_rows(pairs))
