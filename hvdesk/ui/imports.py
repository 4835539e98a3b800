"""Qt and pyqtgraph loaded without two heaps they would otherwise leave behind for good (app RSS
with 8 VMs 14 MiB less, measured); `hvdesk.ui` does it before any of its modules imports them.

1. PySide6's import hook (for its `__feature__` switching) reads the whole source of every module
   imported after PySide6, through `inspect.getsource`, to see whether it mentions PySide6; and
   linecache keeps every line it read, forever: ~100,000 lines for pyqtgraph and the UI, strings
   spread through the heap between objects that live on, so the heap never shrinks back. While
   these modules load, linecache keeps nothing (it reads a file again when a traceback needs it).
2. PySide6 creates a Qt class, and its enums, the first time someone uses it; pyqtgraph copies
   every name of QtCore, QtGui and QtWidgets into mirror modules of its own at import, creating
   all ~720 of them (~240 exist once the app has started). Here its mirror modules forward to
   PySide6's instead, so a class is created when it is first used, by pyqtgraph or by hvdesk, as
   PySide6 means it to be.
"""

from __future__ import annotations

import contextlib
import functools
import linecache
import sys
import types
from collections.abc import Iterator
from typing import Any

MIRRORED = ("QtCore", "QtGui", "QtWidgets")  # pyqtgraph.Qt's mirrors of PySide6's modules


class _KeepLatest(dict[str, Any]):
    """Holds only the entry written last: linecache reads an entry back right after writing it
    (a frozen bundle has no .py files, and its sources come through the loader that way)."""

    def __setitem__(self, key: str, value: Any) -> None:
        self.clear()
        super().__setitem__(key, value)


@contextlib.contextmanager
def sources_not_kept() -> Iterator[None]:
    """While modules load under PySide6's import hook: linecache keeps none of their source."""
    kept = linecache.cache
    linecache.cache = _KeepLatest()
    try:
        yield
    finally:
        linecache.cache = kept


def load_qt() -> None:
    """Import PySide6's widgets and pyqtgraph, pyqtgraph with mirrors that forward to PySide6."""
    if "pyqtgraph" in sys.modules:  # (imported before hvdesk.ui, by someone else: as it is)
        return
    with sources_not_kept():
        import PySide6.QtWidgets  # noqa: F401  (QtCore and QtGui with it)

        reals = [sys.modules[f"PySide6.{name}"] for name in MIRRORED]
        listings = {real: vars(real).get("__dir__") for real in reals}
        for real in reals:
            mirror = types.ModuleType(f"pyqtgraph.Qt.{real.__name__.rpartition('.')[2]}")
            vars(mirror)["__getattr__"] = functools.partial(getattr, real)  # PEP 562: the rest from PySide6
            sys.modules[mirror.__name__] = mirror  # (pyqtgraph.Qt's `from . import QtCore` finds it)
            # pyqtgraph copies what dir() lists: let it list only the classes created so far
            vars(real)["__dir__"] = functools.partial(list, vars(real))
        try:
            import pyqtgraph  # noqa: F401
        finally:
            for real, listing in listings.items():
                if listing is None:
                    del vars(real)["__dir__"]
                else:
                    vars(real)["__dir__"] = listing
