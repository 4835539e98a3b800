"""The app's own preferences (window geometry, columns, last folder...), each declared once
with its default. Stored by QSettings; beside the library when HVDESK_HOME is set."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSettings

from hvdesk.core.paths import data_dir


@dataclass(frozen=True)
class Pref:
    key: str
    default: Any


WINDOW_GEOMETRY = Pref("main/geometry", None)
WINDOW_STATE = Pref("main/state", None)
SPLITTER = Pref("main/splitter", None)
LIST_HEADER = Pref("main/list_header", None)
SELECTED_VM = Pref("main/selected_vm", "")
DETAILS_TAB = Pref("main/details_tab", 0)  # 0 Details, 1 Performance, 2 Resources, 3 Snapshots
LAST_FOLDER = Pref("files/last_folder", "")


class Prefs:
    def __init__(self) -> None:
        if os.environ.get("HVDESK_HOME"):
            self._store = QSettings(str(data_dir() / "hvdesk-ui.ini"), QSettings.Format.IniFormat)
        else:
            self._store = QSettings("hvdesk", "hvdesk")

    def get(self, pref: Pref) -> Any:
        value = self._store.value(pref.key, pref.default)
        return pref.default if value is None else value

    def set(self, pref: Pref, value: Any) -> None:
        self._store.setValue(pref.key, value)

    def sync(self) -> None:
        self._store.sync()
