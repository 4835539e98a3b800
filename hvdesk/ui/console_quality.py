"""When a scaled console repaint may skip smooth filtering.

A smooth (bilinear) downscale of a whole 1080p screen costs ~3 ms of CPU in Qt's raster engine,
three to four times the rest of a frame (receiving it, and a nearest-pixel scale). It is needed
for a still picture: text scaled by nearest pixel loses strokes. While most of the screen keeps
changing (video, scrolling, a guest redrawing everything), each picture stays up for a frame
or two, and the saving matters most. So: small repaints are always smooth; a large one is smooth
unless another large one came just before it (motion); once the motion stops, the picture is
repainted smooth (`settle_after` seconds after the last rough paint).
"""

from __future__ import annotations

from dataclasses import dataclass

LARGE_SHARE = 0.25  # a repaint of at least this share of the picture is "large"
MOTION_GAP = 0.15  # large repaints closer together than this (seconds) are motion


@dataclass
class ScaleQuality:
    enabled: bool = True  # False: every paint smooth
    last_large: float = float("-inf")
    rough: bool = False  # something on screen was painted without smoothing
    settle_after: float = MOTION_GAP

    def smooth(self, area: int, picture_area: int, now: float) -> bool:
        """Whether to paint `area` pixels (of a picture of `picture_area`) smoothly at `now`."""
        if not self.enabled or area < LARGE_SHARE * picture_area:
            return True
        moving = now - self.last_large < MOTION_GAP
        self.last_large = now
        self.rough = self.rough or moving
        return not moving

    def settle(self) -> bool:
        """Called `settle_after` seconds after a rough paint with no paint since: True if the
        whole picture should now be repainted smooth (the next paint is)."""
        if not self.rough:
            return False
        self.rough = False
        self.last_large = float("-inf")  # the repaint is not motion
        return True
