"""How the app loads Qt and pyqtgraph (hvdesk.ui.imports): in a fresh interpreter, as the app starts."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, linecache, sys
import hvdesk.ui.app
import PySide6.QtWidgets as real
import pyqtgraph.Qt as mirrors
kept = [name for name in linecache.cache if "pyqtgraph" in name or "hvdesk" in name]
created = "QUndoView" in vars(real)  # a class neither pyqtgraph nor hvdesk uses
forwarded = (mirrors.QtWidgets.QUndoView is real.QUndoView
             and mirrors.QtCore.QTimer is sys.modules["PySide6.QtCore"].QTimer)
own = hasattr(mirrors.QtWidgets, "QOpenGLWidget") and "QOpenGLWidget" not in vars(real)
linecache.getline(hvdesk.ui.app.__file__, 1)  # after start-up, linecache caches again
print(json.dumps({"kept": kept, "created": created, "forwarded": forwarded, "own": own,
                  "caches_again": hvdesk.ui.app.__file__ in linecache.cache}))
"""


def test_app_modules_leave_no_source_and_create_only_the_qt_classes_used():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}).stdout
    found = json.loads(out.splitlines()[-1])
    # PySide6's import hook read them all; linecache kept none but the module that sees to it
    assert [name.rpartition("/hvdesk/")[2] for name in found["kept"]] == ["ui/imports.py"]
    assert found["caches_again"]
    assert not found["created"]  # pyqtgraph's mirrors no longer create every Qt class at import
    assert found["forwarded"]  # ...but still give every one, PySide6's own
    assert found["own"]  # and what pyqtgraph adds to its mirrors stays there


def test_sources_come_through_a_loader_while_none_are_kept():
    """A frozen bundle (PyInstaller) has no .py files: linecache asks the module's loader, stores
    the lines and reads them back at once. (The .deb's bundle crashed at start when nothing was stored.)"""
    import linecache

    from hvdesk.ui.imports import sources_not_kept

    class Loader:
        def get_source(self, name: str) -> str:
            return "x = 1\ny = 2\n"

    module = {"__name__": "frozen_module", "__loader__": Loader()}
    with sources_not_kept():
        assert linecache.getlines("/nowhere/frozen_module.py", module) == ["x = 1\n", "y = 2\n"]
        linecache.getlines("/nowhere/other.py", {"__name__": "other", "__loader__": Loader()})
        assert len(linecache.cache) == 1  # the latest only
    assert "/nowhere/frozen_module.py" not in linecache.cache
