"""The list sparklines' numpy-to-polygon path (ui/polyline.py), without QEMU."""

from __future__ import annotations

import math

import numpy as np

from hvdesk.ui.polyline import finite_runs, polygon


def test_polygon_holds_the_points_in_order():
    line = polygon(np.array([0.0, 1.5, 3.0]), np.array([10.0, -2.0, 7.25]))
    assert [(p.x(), p.y()) for p in line] == [(0.0, 10.0), (1.5, -2.0), (3.0, 7.25)]
    assert polygon(np.array([]), np.array([])).isEmpty()


def test_finite_runs_split_at_missing_samples():
    nan = math.nan
    assert finite_runs(np.array([1.0, 2.0, 3.0])) == [(0, 3)]
    assert finite_runs(np.array([nan, 1.0, 2.0, nan, nan, 3.0])) == [(1, 3), (5, 6)]
    assert finite_runs(np.array([nan, nan])) == []
    assert finite_runs(np.array([])) == []

