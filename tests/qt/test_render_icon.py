"""The bitmap app icon the macOS (and Windows) bundles are made with: rendered from the SVG."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PySide6.QtGui import QImage

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "render_icon.py"


def test_the_icon_renders_square_and_drawn(qapp, tmp_path):
    spec = importlib.util.spec_from_file_location("render_icon", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "icon.png"
    module.render(out, 256)
    image = QImage(str(out))
    assert (image.width(), image.height()) == (256, 256)
    centre = image.pixelColor(128, 100)  # the screen of the monitor: opaque, light blue
    corner = image.pixelColor(0, 0)  # outside the drawing: transparent
    assert centre.alpha() == 255 and corner.alpha() == 0
