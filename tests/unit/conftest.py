"""Fixtures of the engine tests that play QEMU with the fake QMP server (tests/fakes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hvdesk.engine.library_ops import CreateRequest
from hvdesk.engine.machine import Machine
from hvdesk.engine.manager import Manager
from tests.fakes.qmp_server import FakeQmpServer

VM_NAME = "vm"


@pytest.fixture
async def vm(hv_home) -> Machine:
    """A VM named "vm" in a private library, never started (no disk: nothing but its vm.toml)."""
    manager = Manager()
    await manager.open()
    machine = await manager.create(CreateRequest(name=VM_NAME, memory_mib=256))
    await manager.close()
    return machine


@pytest.fixture
async def server() -> AsyncIterator[FakeQmpServer]:
    """The fake QMP server, started on one socket (qmp.sock) of a short private folder."""
    folder = Path(tempfile.mkdtemp(prefix="qmpf-", dir="/tmp"))  # short: unix socket paths are limited
    fake = FakeQmpServer([folder / "qmp.sock"])
    await fake.start()
    yield fake
    await fake.close()
    shutil.rmtree(folder, ignore_errors=True)
