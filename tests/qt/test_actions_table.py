"""The app's menus and toolbar ask the engine's one table of which states allow which action."""

from __future__ import annotations

from hvdesk.engine.actions import Action, allows
from hvdesk.engine.states import VmState
from hvdesk.ui.window_actions import ACTIONS


def test_every_vm_action_of_the_app_is_an_engine_action():
    for spec in ACTIONS:
        assert all(isinstance(action, Action) for action in spec.actions), spec.key
    by_key = {spec.key: spec.actions for spec in ACTIONS}
    # Power Off is offered exactly where the engine's stop accepts it (it used to be offered while
    # another process was still launching the VM, and then refused).
    assert not any(allows(a, VmState.STARTING) for a in by_key["poweroff"])
    assert all(any(allows(a, s) for a in by_key["poweroff"]) for s in (VmState.RUNNING, VmState.PAUSED))
