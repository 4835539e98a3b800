"""The pages of the VM settings dialog. Each shows part of a VmConfig (`load`) and writes its
widgets back into one (`store`); the dialog validates the result."""

from __future__ import annotations

import re

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal, SignalInstance
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hvdesk.core.config import (
    FIRMWARES,
    MACHINES,
    MAX_MEMORY_MIB,
    MAX_SHARES,
    MIN_SHARES,
    NIC_MODELS,
    PIN_MODES,
    PROTOCOLS,
    VGA_MODELS,
    Nic,
    PortForward,
    VmConfig,
    random_mac,
)
from hvdesk.core.errors import ConfigError
from hvdesk.core.osinfo import presets
from hvdesk.core.units import format_approx
from hvdesk.ui.icons import os_icon

BOOT_LABELS = {"disk": "Hard disk", "cdrom": "Optical", "network": "Network"}
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes '²', which int() refuses


def hint(text: str) -> QLabel:
    label = QLabel(f"<span style='color:palette(mid)'>{text}</span>")
    label.setWordWrap(True)
    return label


def combo(values: tuple[str, ...], labels: dict[str, str] | None = None) -> QComboBox:
    box = QComboBox()
    for value in values:
        box.addItem((labels or {}).get(value, value), value)
    return box


def set_combo(box: QComboBox, value: str) -> None:
    box.setCurrentIndex(max(0, box.findData(value)))


class LiveCellEdits(QStyledItemDelegate):
    """Table cell editors that write back every keystroke, so the dialog checks a cell as it is
    typed, like its line edits, rather than once the cell is left."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,  # Qt names it
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        editor = super().createEditor(parent, option, index)
        if isinstance(editor, QLineEdit):
            editor.textEdited.connect(lambda *_: self.commitData.emit(editor))
        return editor


class Page(QWidget):
    changed = Signal()

    def load(self, config: VmConfig) -> None:
        raise NotImplementedError

    def store(self, config: VmConfig) -> None:
        raise NotImplementedError

    def _notify(self, *signals: SignalInstance) -> None:
        for signal in signals:
            signal.connect(lambda *_: self.changed.emit())


class GeneralPage(Page):
    def __init__(self) -> None:
        super().__init__()
        self.name = QLineEdit()
        self.os = QComboBox()
        for item in presets().values():
            self.os.addItem(os_icon(item.id), item.label, item.id)
        self.notes = QPlainTextEdit()
        form = QFormLayout(self)
        form.addRow("&Name:", self.name)
        form.addRow("&Operating system:", self.os)
        form.addRow("N&otes:", self.notes)
        self._notify(self.name.textChanged, self.os.currentIndexChanged, self.notes.textChanged)

    def load(self, config: VmConfig) -> None:
        self.name.setText(config.name)
        if self.os.findData(config.os) < 0:
            self.os.addItem(os_icon(config.os), config.os, config.os)
        set_combo(self.os, config.os)
        self.notes.setPlainText(config.notes)

    def store(self, config: VmConfig) -> None:
        config.name, config.os, config.notes = self.name.text(), self.os.currentData(), self.notes.toPlainText()


class SystemPage(Page):
    def __init__(self, host_mib: int, host_cpus: int) -> None:
        super().__init__()
        self.memory = QSpinBox(minimum=16, maximum=host_mib, singleStep=256, suffix=" MiB")
        self.cpus = QSpinBox(minimum=1, maximum=host_cpus)
        self.firmware = combo(FIRMWARES, {"bios": "BIOS", "uefi": "UEFI"})
        self.machine = combo(MACHINES, {"q35": "Q35 (PCIe, AHCI)", "pc": "i440FX (PCI, IDE)"})
        self.boot = QListWidget()
        self.boot.setMaximumHeight(90)
        self.boot.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        up, down = QPushButton("Up"), QPushButton("Down")
        up.clicked.connect(lambda: self._move(-1))
        down.clicked.connect(lambda: self._move(1))
        boot_row = QHBoxLayout()
        boot_row.addWidget(self.boot, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(up)
        buttons.addWidget(down)
        buttons.addStretch()
        boot_row.addLayout(buttons)
        self.balloon = QCheckBox("Memory balloon (lets the host reclaim memory the guest does not use)")
        self.free_pages = QCheckBox("Free page reporting (return freed guest memory to the host)")
        form = QFormLayout(self)
        form.addRow("&Memory:", self.memory)
        form.addRow("", hint(f"This host has {format_approx(host_mib * 1024 * 1024)}."))
        form.addRow("&Processors:", self.cpus)
        form.addRow("", hint(f"Up to {host_cpus} on this host."))
        form.addRow("&Firmware:", self.firmware)
        form.addRow("&Chipset:", self.machine)
        form.addRow("Boot order:", boot_row)
        form.addRow("", self.balloon)
        form.addRow("", self.free_pages)
        self.balloon.toggled.connect(self.free_pages.setEnabled)
        self._notify(self.memory.valueChanged, self.cpus.valueChanged, self.firmware.currentIndexChanged,
                     self.machine.currentIndexChanged, self.boot.itemChanged, self.boot.model().rowsMoved,
                     self.balloon.toggled, self.free_pages.toggled)

    def _move(self, step: int) -> None:
        row = self.boot.currentRow()
        if row < 0 or not 0 <= row + step < self.boot.count():
            return
        item = self.boot.takeItem(row)
        self.boot.insertItem(row + step, item)
        self.boot.setCurrentRow(row + step)
        self.changed.emit()

    def load(self, config: VmConfig) -> None:
        self.memory.setValue(config.memory_mib)
        self.cpus.setValue(config.cpus)
        set_combo(self.firmware, config.firmware)
        set_combo(self.machine, config.machine)
        self.boot.clear()
        for device in config.boot_order + [d for d in BOOT_LABELS if d not in config.boot_order]:
            item = QListWidgetItem(BOOT_LABELS[device])
            item.setData(Qt.ItemDataRole.UserRole, device)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if device in config.boot_order else Qt.CheckState.Unchecked)
            self.boot.addItem(item)
        self.balloon.setChecked(config.balloon.enabled)
        self.free_pages.setChecked(config.balloon.free_page_reporting)
        self.free_pages.setEnabled(config.balloon.enabled)

    def store(self, config: VmConfig) -> None:
        config.memory_mib, config.cpus = self.memory.value(), self.cpus.value()
        # The controller's floor (not on these pages) follows the memory down; it is never above it.
        config.resources.min_memory_mib = min(config.resources.min_memory_mib, config.memory_mib)
        config.firmware, config.machine = self.firmware.currentData(), self.machine.currentData()
        items = [self.boot.item(i) for i in range(self.boot.count())]
        config.boot_order = [i.data(Qt.ItemDataRole.UserRole) for i in items
                             if i.checkState() == Qt.CheckState.Checked]
        config.balloon.enabled = self.balloon.isChecked()
        config.balloon.free_page_reporting = self.free_pages.isChecked()


class NetworkPage(Page):
    COLUMNS = ("Protocol", "Host address", "Host port", "Guest port")

    def __init__(self) -> None:
        super().__init__()
        self.enabled = QCheckBox("&Enable network adapter (NAT: the guest reaches the network through the host)")
        self.model = combo(NIC_MODELS, {"virtio": "virtio-net (fastest; needs drivers)", "e1000": "Intel e1000",
                                        "e1000e": "Intel e1000e", "rtl8139": "Realtek RTL8139"})
        self.mac = QLineEdit()
        regenerate = QPushButton("New")
        regenerate.clicked.connect(lambda: self.mac.setText(random_mac()))
        mac_row = QHBoxLayout()
        mac_row.addWidget(self.mac, 1)
        mac_row.addWidget(regenerate)
        self.forwards = QTableWidget(0, len(self.COLUMNS))
        self.forwards.setHorizontalHeaderLabels(self.COLUMNS)
        self.forwards.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.forwards.verticalHeader().hide()
        self.forwards.setItemDelegate(LiveCellEdits(self.forwards))
        add, remove = QPushButton("Add Rule"), QPushButton("Remove Rule")
        add.clicked.connect(lambda: self._add_rule(PortForward()))
        remove.clicked.connect(self._remove_rule)
        rule_buttons = QHBoxLayout()
        rule_buttons.addWidget(add)
        rule_buttons.addWidget(remove)
        rule_buttons.addStretch()
        form = QFormLayout(self)
        form.addRow(self.enabled)
        form.addRow("&Adapter:", self.model)
        mac_label = QLabel("&MAC address:")  # a row of two widgets has no buddy of its own
        mac_label.setBuddy(self.mac)
        form.addRow(mac_label, mac_row)
        form.addRow(QLabel("Port forwarding (connect to the host address and port to reach the guest's port):"))
        form.addRow(self.forwards)
        form.addRow(rule_buttons)
        self._extra_nics: list[Nic] = []
        self._notify(self.enabled.toggled, self.model.currentIndexChanged, self.mac.textChanged,
                     self.forwards.itemChanged)

    def _add_rule(self, rule: PortForward) -> None:
        row = self.forwards.rowCount()
        self.forwards.blockSignals(True)  # no validation of a half-built row
        self.forwards.insertRow(row)
        protocol = combo(PROTOCOLS, {"tcp": "TCP", "udp": "UDP"})
        set_combo(protocol, rule.protocol)
        protocol.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.forwards.setCellWidget(row, 0, protocol)
        for column, value in ((1, rule.host_address), (2, rule.host_port), (3, rule.guest_port)):
            self.forwards.setItem(row, column, QTableWidgetItem(str(value)))
        self.forwards.blockSignals(False)
        self.changed.emit()

    def _remove_rule(self) -> None:
        if self.forwards.currentRow() >= 0:
            self.forwards.removeRow(self.forwards.currentRow())
            self.changed.emit()

    def load(self, config: VmConfig) -> None:
        nic = config.nics[0] if config.nics else Nic()
        self._extra_nics = config.nics[1:]
        self.enabled.setChecked(bool(config.nics))
        set_combo(self.model, nic.model)
        self.mac.setText(nic.mac)
        self.forwards.setRowCount(0)
        for rule in nic.forwards:
            self._add_rule(rule)

    def _cell(self, row: int, column: int) -> str:
        item = self.forwards.item(row, column)
        assert item is not None, "_add_rule gives every row an item in columns 1-3"
        return item.text().strip()

    def _protocol(self, row: int) -> str:
        box = self.forwards.cellWidget(row, 0)
        assert isinstance(box, QComboBox), "_add_rule gives every row a protocol combo in column 0"
        return box.currentData()

    def _port(self, row: int, column: int) -> int:
        """The number in a cell; anything else is refused in the model's words for the field."""
        text = self._cell(row, column)
        if not _PORT.fullmatch(text):
            field = "host_port" if column == 2 else "guest_port"
            raise ConfigError(f"nics[0].forwards[{row}].{field}: {text!r} is not a port number (1–65535)")
        return int(text)

    def store(self, config: VmConfig) -> None:
        if not self.enabled.isChecked():
            config.nics = []
            return
        rules = [PortForward(self._protocol(row), self._port(row, 2), self._port(row, 3), self._cell(row, 1))
                 for row in range(self.forwards.rowCount())]
        config.nics = [Nic(model=self.model.currentData(), mac=self.mac.text().strip().lower(), forwards=rules),
                       *self._extra_nics]


class DisplayPage(Page):
    def __init__(self) -> None:
        super().__init__()
        self.vga = combo(VGA_MODELS, {"std": "Standard VGA", "virtio": "virtio-gpu (VGA compatible)",
                                      "none": "None (headless)"})
        self.vnc = QCheckBox("Console: show the screen in hvdesk (VNC on a private socket)")
        self.tablet = QCheckBox("USB tablet: the pointer follows the mouse without capture")
        form = QFormLayout(self)
        form.addRow("&Graphics:", self.vga)
        form.addRow("", self.vnc)
        form.addRow("", self.tablet)
        self._notify(self.vga.currentIndexChanged, self.vnc.toggled, self.tablet.toggled)

    def load(self, config: VmConfig) -> None:
        set_combo(self.vga, config.display.vga)
        self.vnc.setChecked(config.display.vnc)
        self.tablet.setChecked(config.display.tablet)

    def store(self, config: VmConfig) -> None:
        config.display.vga = self.vga.currentData()
        config.display.vnc = self.vnc.isChecked()
        config.display.tablet = self.tablet.isChecked()



class ResourcesPage(Page):
    """How the allocation controller treats the VM (vm.toml's [resources]); it acts while the VM runs."""

    PIN_LABELS = {"default": "Default (as in Preferences)", "off": "Off: vCPUs run anywhere",
                  "balanced": "Balanced: spread over cores and caches",
                  "dedicated": "Dedicated: each vCPU on a host CPU of its own"}

    def __init__(self) -> None:
        super().__init__()
        self.auto_balloon = QCheckBox("&Automatic balloon: the controller may shrink this VM's memory while "
                                      "its guest does not use it")
        self.min_memory = QSpinBox(minimum=0, maximum=MAX_MEMORY_MIB, singleStep=64, suffix=" MiB")
        self.shares = QSpinBox(minimum=MIN_SHARES, maximum=MAX_SHARES, singleStep=10)
        self.pin = combo(PIN_MODES, self.PIN_LABELS)
        form = QFormLayout()
        column = QVBoxLayout(self)
        column.addLayout(form)
        column.addStretch()  # the rows stay together at the top
        form.addRow(self.auto_balloon)
        form.addRow("&Minimum memory:", self.min_memory)
        form.addRow("", hint("The balloon never leaves the guest less than this, nor less than it uses plus a "
                             "reserve. At most the VM's memory (System)."))
        form.addRow("CPU s&hares:", self.shares)
        form.addRow("", hint("Its CPU time against other VMs' when the host is busy: 100 is normal, 200 twice "
                             "as much (1–10000)."))
        form.addRow("&Pin vCPUs:", self.pin)
        form.addRow("", hint("Where its vCPU threads may run on the host's CPUs. Changes apply while it runs "
                             "(at the controller's next cycle)."))
        self._loaded = (0, 0)  # (minimum, memory) as loaded: a VM saved with min > memory stays editable
        self._notify(self.auto_balloon.toggled, self.min_memory.valueChanged, self.shares.valueChanged,
                     self.pin.currentIndexChanged)

    def load(self, config: VmConfig) -> None:
        resources = config.resources
        self.auto_balloon.setChecked(resources.auto_balloon)
        self.auto_balloon.setEnabled(config.balloon.enabled)
        if not config.balloon.enabled:
            self.auto_balloon.setToolTip("The VM has no balloon device (System page)")
        self.min_memory.setValue(resources.min_memory_mib)
        self.shares.setValue(resources.shares)
        set_combo(self.pin, resources.pin)
        self._loaded = (resources.min_memory_mib, config.memory_mib)

    def store(self, config: VmConfig) -> None:
        """After the System page (the memory it sets is the limit)."""
        minimum = self.min_memory.value()
        if minimum > config.memory_mib and (minimum, config.memory_mib) != self._loaded:
            raise ConfigError(f"Minimum memory ({minimum} MiB, Resources) is more than the VM's memory "
                              f"({config.memory_mib} MiB, System): make it at most {config.memory_mib} MiB.")
        resources = config.resources
        resources.auto_balloon = self.auto_balloon.isChecked()
        resources.min_memory_mib = minimum
        resources.shares = self.shares.value()
        resources.pin = self.pin.currentData()
