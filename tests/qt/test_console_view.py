"""The console view paints what the framebuffer holds: at 1:1 pixel for pixel, scaled like a
reference scaler; repainting only the rectangles of each update leaves the screen as a full
repaint would; full-screen motion is painted rough and then settles to the smooth picture.

"On screen" is the window's backing store (offscreen platform): what the view painted, update
after update, not a fresh render of it."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication

from hvdesk.console.framebuffer import Framebuffer
from hvdesk.console.rfb import RfbClient
from hvdesk.ui.console_quality import MOTION_GAP, ScaleQuality
from hvdesk.ui.console_view import ConsoleView


def open_view(qtbot, fb_size: tuple[int, int], scaled: bool, window: tuple[int, int] = (1280, 800),
              smooth_always: bool = False) -> tuple[ConsoleView, Framebuffer]:
    client = RfbClient()  # not connected: the view only reads its framebuffer
    client.framebuffer = fb = Framebuffer(*fb_size)
    view = ConsoleView()
    qtbot.addWidget(view)
    view.quality.enabled = not smooth_always
    view.set_scaled(scaled)
    view.attach(client)
    if scaled:
        view.resize(*window)
    view.show()
    qtbot.waitExposed(view)
    QApplication.processEvents()
    return view, fb


def on_screen(view: ConsoleView) -> np.ndarray:
    """The view's pixels as last painted (height x width x RGB)."""
    QApplication.processEvents()
    store = view.backingStore().paintDevice()
    assert isinstance(store, QImage)
    return rgb(store.copy(view.rect()))


def rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    rows = np.frombuffer(image.constBits(), np.uint8)[:image.sizeInBytes()].reshape(image.height(), -1)
    return rows[:, :image.width() * 4].reshape(image.height(), image.width(), 4)[..., 2::-1].copy()


def framebuffer_image(fb: Framebuffer) -> QImage:
    return QImage(bytes(fb.data), fb.width, fb.height, fb.stride, QImage.Format.Format_RGB32)


def update(view: ConsoleView, fb: Framebuffer, rects: list[tuple[int, int, int, int]], fill) -> None:
    """One FramebufferUpdate, as the RFB client delivers it: rectangles, then the frame's end."""
    for x, y, w, h in rects:
        fb.put(x, y, w, h, fill(w, h))
        view.area_changed(x, y, w, h)
    view.frame_done()


def noise(rng: random.Random):
    return lambda w, h: rng.randbytes(w * h * 4)


def solid(rng: random.Random):
    return lambda w, h: bytes([rng.randrange(256), rng.randrange(256), rng.randrange(256), 0]) * (w * h)


def some_rects(rng: random.Random, width: int, height: int, count: int, least: int = 1):
    rects = []
    for _ in range(count):
        w, h = rng.randint(least, width // 3), rng.randint(least, height // 3)
        rects.append((rng.randrange(width - w + 1), rng.randrange(height - h + 1), w, h))
    return rects


def test_at_1_to_1_the_screen_is_the_framebuffer_after_partial_updates(qtbot):
    view, fb = open_view(qtbot, (320, 200), scaled=False)
    rng = random.Random(7)
    update(view, fb, [(0, 0, 320, 200)], noise(rng))
    for _ in range(12):
        update(view, fb, some_rects(rng, 320, 200, rng.randint(1, 4)), noise(rng))
        assert (on_screen(view) == rgb(framebuffer_image(fb))).all()


def test_each_update_is_one_repaint_of_just_its_rectangles(qtbot):
    view, fb = open_view(qtbot, (320, 200), scaled=False)
    painted = []
    view.paintEvent = lambda event, paint=view.paintEvent: (painted.append(event.region()), paint(event))[1]
    update(view, fb, [(10, 20, 30, 40), (200, 100, 50, 10)], solid(random.Random(1)))
    QApplication.processEvents()
    assert len(painted) == 1
    assert painted[0].boundingRect() == QRect(10, 20, 240, 90)
    assert not painted[0].contains(QRect(100, 80, 10, 10))  # between the two: not repainted


def test_the_picture_keeps_its_aspect_ratio_centred_in_whole_pixels(qtbot):
    view, _ = open_view(qtbot, (1920, 1080), scaled=True, window=(1280, 800))
    assert view.target_rect() == QRectF(0, 40, 1280, 720)
    view.resize(1000, 1000)
    assert view.target_rect() == QRectF(0, 219, 1000, 562)  # 1000 * 1080 / 1920 = 562.5


def smooth_render(view: ConsoleView, fb: Framebuffer, smooth: bool = True) -> np.ndarray:
    """The whole picture drawn at once into a fresh image, the view's geometry, black around it."""
    image = QImage(view.size(), QImage.Format.Format_RGB32)
    image.fill(QColor(0, 0, 0))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
    painter.drawImage(view.target_rect(), framebuffer_image(fb))
    painter.end()
    return rgb(image)


@pytest.mark.parametrize("window", [(1280, 800), (997, 601)])
def test_scaled_partial_updates_equal_a_whole_smooth_repaint(qtbot, window):
    """Every damaged rectangle, mapped through the scale with the filter's reach, is repainted:
    no stale pixel at its edges, nothing misplaced. (Noise: a stale or misplaced pixel is off by
    ~85 levels on average; Qt's bilinear steps, started at a clip edge, round up to 3 apart.)"""
    view, fb = open_view(qtbot, (960, 540), scaled=True, window=window, smooth_always=True)
    rng = random.Random(3)
    update(view, fb, [(0, 0, 960, 540)], noise(rng))
    for _ in range(10):
        update(view, fb, some_rects(rng, 960, 540, rng.randint(1, 3)), noise(rng))
        assert np.abs(on_screen(view).astype(int) - smooth_render(view, fb)).max() <= 4


def test_the_scaled_picture_matches_a_reference_scaler(qtbot):
    """Against QImage.scaled (Qt's area-averaging scaler, another algorithm): the same picture,
    up to the filters' difference at the edges of shapes."""
    view, fb = open_view(qtbot, (1920, 1080), scaled=True, window=(1280, 800), smooth_always=True)
    rng = random.Random(5)
    update(view, fb, [(0, 0, 1920, 1080)], solid(rng))
    for _ in range(6):
        update(view, fb, some_rects(rng, 1920, 1080, 3, least=60), solid(rng))
    reference = framebuffer_image(fb).scaled(1280, 720, Qt.AspectRatioMode.IgnoreAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation)
    shown = on_screen(view)
    assert not shown[:40].any() and not shown[760:].any()  # black bars above and below
    diff = np.abs(shown[40:760].astype(int) - rgb(reference).astype(int))
    assert diff.mean() < 2.0
    assert (diff.max(axis=2) > 40).mean() < 0.02  # only pixels on shape edges differ much


def test_full_screen_motion_is_painted_rough_then_settles_smooth(qtbot):
    view, fb = open_view(qtbot, (960, 540), scaled=True, window=(640, 400))
    qtbot.wait(int(MOTION_GAP * 1000) + 50)  # the window's first paint is long past
    rng = random.Random(9)
    update(view, fb, [(0, 0, 960, 540)], noise(rng))
    assert (on_screen(view) == smooth_render(view, fb)).all()  # a single big change: smooth at once
    update(view, fb, [(0, 0, 960, 540)], noise(rng))  # another right after it: motion
    assert (on_screen(view) == smooth_render(view, fb, smooth=False)).all()
    assert view.quality.rough
    update(view, fb, [(100, 100, 20, 20)], noise(rng))  # a small change during motion stays smooth
    qtbot.waitUntil(lambda: not view.quality.rough, timeout=int(MOTION_GAP * 1000) + 1000)
    assert (on_screen(view) == smooth_render(view, fb)).all()  # settled: all smooth again


def test_scale_quality_rules():
    quality = ScaleQuality()
    assert quality.smooth(10, 1000, now=0.0)  # small: smooth
    assert quality.smooth(500, 1000, now=0.0) and not quality.rough  # large, alone: smooth
    assert not quality.smooth(500, 1000, now=0.05) and quality.rough  # large again soon: rough
    assert quality.smooth(500, 1000, now=0.05 + MOTION_GAP + 0.01)  # large, after a pause
    assert quality.settle() and not quality.rough and not quality.settle()
    assert quality.smooth(900, 1000, now=0.3)  # the settling repaint itself is smooth
    quality.enabled = False
    assert quality.smooth(900, 1000, now=0.31)
