"""The app's icons, from resources/icons (SVG, so they stay sharp at any scale)."""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtGui import QIcon

from hvdesk.core.osinfo import family
from hvdesk.core.paths import resources_dir
from hvdesk.engine.states import VmState

STATE_ICONS = {
    VmState.RUNNING: "running", VmState.PAUSED: "paused", VmState.STOPPED: "stopped",
    VmState.STARTING: "busy", VmState.STOPPING: "busy", VmState.ABORTED: "aborted",
    VmState.INACCESSIBLE: "inaccessible", VmState.SAVED: "stopped",  # (until the app draws its own)
}


@lru_cache(maxsize=None)
def _icon(relative: str) -> QIcon:
    return QIcon(str(resources_dir() / "icons" / f"{relative}.svg"))


def action_icon(name: str) -> QIcon:
    return _icon(f"actions/{name}")


def state_icon(state: VmState) -> QIcon:
    return _icon(f"states/{STATE_ICONS[state]}")


def os_icon(os_id: str | None) -> QIcon:
    return _icon(f"os/{family(os_id or 'other')}")


def app_icon() -> QIcon:
    return _icon("hvdesk")
