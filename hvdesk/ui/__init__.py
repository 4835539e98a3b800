"""The desktop app (PySide6). A thin layer: it shows engine state and calls engine operations."""

# Before anything here imports PySide6: shiboken replaces Python's __import__ with its feature-
# switching hook, and modules imported through it leave more heap behind (numpy ~4.7 MiB; with the
# engine's modules ~6.6 MiB of the app's RSS, measured). So they are imported first.
import numpy  # noqa: F401  (import order is the point)

import hvdesk.engine.manager  # noqa: F401
import hvdesk.engine.monitoring  # noqa: F401
from hvdesk.ui.imports import load_qt

load_qt()  # PySide6 and pyqtgraph, without what they would leave on the heap (see there)
