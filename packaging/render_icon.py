"""Render hvdesk's SVG icon (resources/icons/hvdesk.svg) to a square PNG, for platforms whose
bundles want a bitmap icon (macOS .icns, Windows .ico: PyInstaller converts the PNG with Pillow).

    python packaging/render_icon.py OUT.png [SIZE]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "hvdesk.svg"


def render(out: Path, size: int = 1024) -> None:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts, image plugins)
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"render_icon: {SVG} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"render_icon: cannot write {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    render(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 1024)
