"""The System page keeps the controller's memory floor (not on any page) at most the memory, so
lowering the memory never leaves the dialog with an error it gives no way to fix."""

from __future__ import annotations

import copy

from hvdesk.core.config import ResourcePolicy, VmConfig
from hvdesk.ui.settings_pages import SystemPage


def test_lowering_the_memory_lowers_the_floor_with_it(qtbot):
    page = SystemPage(host_mib=4096, host_cpus=2)
    qtbot.addWidget(page)
    config = VmConfig(name="vm", memory_mib=1024, resources=ResourcePolicy(min_memory_mib=512)).validate()
    page.load(config)
    page.memory.setValue(128)
    edited = copy.deepcopy(config)
    page.store(edited)
    assert (edited.memory_mib, edited.resources.min_memory_mib) == (128, 128)
    assert edited.validate() and config.resources.min_memory_mib == 512
    page.memory.setValue(2048)
    page.store(edited)
    assert edited.resources.min_memory_mib == 128  # raised memory leaves the floor where it was
