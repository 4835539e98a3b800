"""A saved state's files are read as untrusted: a description that is damaged, from another VM, or
that does not match its state file stops the resume with one line naming the way out; only a
complete description makes a VM *saved*, for the engine and the quick read path alike."""

from __future__ import annotations

import json
import os

import pytest

from hvdesk.core.errors import StateError
from hvdesk.engine import savestate
from hvdesk.engine.glance import Glance
from hvdesk.engine.manager import Manager
from hvdesk.engine.states import VmState
from tests.unit.conftest import VM_NAME


def _save(machine, **changes) -> None:
    """Files as a completed save leaves them (the state file: 100 bytes of QEMU's magic and zeros)."""
    paths = machine.paths
    paths.saved_state.write_bytes(savestate.QEMU_MAGIC + bytes(96))
    info = {"format": savestate.FORMAT, "paused": False, "saved_at": 1.0, "size": 100,
            "config": machine.config.to_dict(), **changes}
    paths.saved_state_info.write_text(json.dumps(info))


async def _state(hv_home) -> VmState:
    async with Manager() as manager:
        return manager.get(VM_NAME).state


async def test_a_complete_description_makes_the_vm_saved_both_ways(vm, hv_home):
    vm.paths.saved_state_part.write_bytes(b"half")  # a save under way is no saved state
    assert await _state(hv_home) == VmState.STOPPED
    _save(vm)
    assert await _state(hv_home) == VmState.SAVED
    assert Glance().open(inspect=True).get(VM_NAME).state == VmState.SAVED
    info = savestate.read_info(vm)
    assert (info.paused, info.size, info.config.uuid) == (False, 100, vm.uuid)
    savestate.discard(vm.paths)
    assert not any(p.name.startswith((".saved-state", "saved-state")) for p in vm.entry.folder.iterdir())
    assert await _state(hv_home) == VmState.STOPPED


@pytest.mark.parametrize("damage, says", [
    (lambda m: m.paths.saved_state_info.write_text("{not json"), "is unreadable"),
    (lambda m: _save(m, format=99), "not a saved-state description hvdesk knows"),
    (lambda m: _save(m, size="100"), "is malformed"),
    (lambda m: _save(m, paused="yes"), "is malformed"),
    (lambda m: _save(m, config=[]), "has no settings"),
    (lambda m: _save(m, config={**m.config.to_dict(), "memory_mib": -1}), "its saved settings are invalid"),
    (lambda m: _save(m, config={**m.config.to_dict(), "uuid": "00000000-0000-4000-8000-000000000000"}),
     "saved by another VM"),
    (lambda m: _save(m, size=4096), "has 100 bytes, 4096 were saved"),
    (lambda m: (_save(m), m.paths.saved_state.unlink()), "its state file is missing"),
    (lambda m: (_save(m), m.paths.saved_state.unlink(), os.symlink("/etc/passwd", m.paths.saved_state)),
     "is not a plain file of this user"),
])
async def test_a_damaged_saved_state_is_refused_with_the_way_out(vm, hv_home, damage, says):
    _save(vm)
    damage(vm)
    with pytest.raises(StateError) as caught:
        savestate.read_info(vm)
    message = str(caught.value)
    assert says in message and "cannot be resumed" in message
    assert f"hvdesk start {VM_NAME} --discard-saved-state" in message and "\n" not in message


async def test_a_saved_vm_refuses_disk_and_cd_changes_but_takes_other_settings(vm, hv_home):
    from hvdesk.engine import editing
    from hvdesk.engine.modify import modify

    _save(vm)
    async with Manager() as manager:
        with pytest.raises(StateError, match="it is saved; start it"):
            await editing.set_cd(manager, VM_NAME, None)
        done = await modify(manager, VM_NAME, {"memory_mib": 384})
        assert done.machine.config.memory_mib == 384 and done.machine.state == VmState.SAVED
    assert savestate.read_info(vm).config.memory_mib == 256  # the resume builds what was saved


async def test_deleting_a_saved_vm_deletes_its_state(vm, hv_home):
    _save(vm)
    async with Manager() as manager:
        await manager.delete(VM_NAME)
    assert not vm.entry.folder.exists()
