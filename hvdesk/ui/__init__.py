"""The desktop app (PySide6). A thin layer: it shows engine state and calls engine operations."""
