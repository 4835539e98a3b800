"""numpy arrays to QPolygonF without a Python object per point: the polygon's own memory is
filled through a numpy view of it (a 1,800-point curve in ~20 µs instead of ~2 ms)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shiboken6
from PySide6.QtGui import QPolygonF


def polygon(xs: np.ndarray, ys: np.ndarray) -> QPolygonF:
    """The points (xs[i], ys[i]) as a QPolygonF; xs and ys have the same length."""
    result = QPolygonF()
    count = len(xs)
    if not count:
        return result
    result.resize(count)
    # A QPolygonF is a contiguous array of QPointF, each two doubles (x, y). (PySide's stubs call
    # data() a QPointF and VoidPtr one-argument; at run time it is the array's address.)
    memory: Any = shiboken6.VoidPtr(result.data(), count * 16, True)  # type: ignore[call-arg, arg-type]
    view = np.frombuffer(memory, np.float64).reshape(count, 2)
    view[:, 0] = xs
    view[:, 1] = ys
    return result


def finite_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of finite values: a missing sample is a gap in the line, not a zero."""
    finite = np.isfinite(values)
    if not finite.any():
        return []
    if finite.all():
        return [(0, len(values))]
    edges = np.flatnonzero(np.diff(np.concatenate(([False], finite, [False])).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
