"""A snapshot's description is changed in hvdesk's record alone, checked as a new one is, and a
snapshot that does not exist is named in the error."""

from __future__ import annotations

import pytest

from hvdesk.core import snapshot_meta as meta
from hvdesk.core.errors import ConfigError, NotFoundError
from hvdesk.core.snapshot_meta import Snapshot, SnapshotTree
from hvdesk.engine.manager import Manager
from tests.unit.conftest import VM_NAME


def _tree(machine) -> SnapshotTree:
    base = Snapshot(id="0" * 16, name="base", time=1.0, state="stopped", config=machine.config.to_dict(), images=[])
    top = Snapshot(id="1" * 16, name="top", time=2.0, state="stopped", config=machine.config.to_dict(), images=[],
                   parent=base.id, description="old")
    return SnapshotTree([base, top], top.id)


async def test_a_description_is_changed_and_nothing_else(vm, hv_home):
    meta.write(vm.entry.folder, _tree(vm))
    async with Manager() as manager:
        done = await manager.snapshots.describe(VM_NAME, "TOP", "after the update\nsecond line")
        assert done.snapshot.description == "after the update\nsecond line"
        _, tree = manager.snapshots.tree(VM_NAME)
    assert [(s.name, s.parent, s.description) for s in tree.snapshots] == [
        ("base", None, ""), ("top", "0" * 16, "after the update\nsecond line")]
    assert tree.current == "1" * 16


async def test_a_bad_description_or_unknown_snapshot_is_refused(vm, hv_home):
    meta.write(vm.entry.folder, _tree(vm))
    async with Manager() as manager:
        with pytest.raises(ConfigError, match="longer than"):
            await manager.snapshots.describe(VM_NAME, "top", "x" * (meta.MAX_DESCRIPTION + 1))
        with pytest.raises(NotFoundError, match="no snapshot named 'nope'"):
            await manager.snapshots.describe(VM_NAME, "nope", "text")
    assert meta.read(vm.entry.folder).by_id("1" * 16).description == "old"
