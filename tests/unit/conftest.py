"""Fixtures of the engine tests that play QEMU with the fake QMP server (tests/fakes)."""

from __future__ import annotations

import pytest

from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager

VM_NAME = "vm"


@pytest.fixture
async def vm(hv_home) -> Machine:
    """A VM named "vm" in a private library, never started (no disk: nothing but its vm.toml)."""
    manager = Manager()
    await manager.open()
    machine = await manager.create(CreateRequest(name=VM_NAME, memory_mib=256))
    await manager.close()
    return machine
