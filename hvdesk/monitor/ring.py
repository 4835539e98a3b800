"""Fixed-size series of numbers: the newest N samples, oldest first, in constant memory."""

from __future__ import annotations

import math

import numpy as np

MISSING = math.nan  # a sample that could not be taken is a gap in the graph, never a zero


class Ring:
    def __init__(self, capacity: int, dtype: type[np.floating] = np.float64) -> None:
        self.capacity = capacity
        self._data = np.full(capacity, MISSING, dtype=dtype)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, value: float | None) -> None:
        self._data[self._next] = MISSING if value is None else value
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def values(self, last: int | None = None) -> np.ndarray:
        """The newest `last` values (all by default), oldest first, as a new array."""
        count = self._count if last is None else min(last, self._count)
        start = (self._next - count) % self.capacity
        if start + count <= self.capacity:
            return self._data[start:start + count].copy()
        return np.concatenate((self._data[start:], self._data[:self._next]))

    def latest(self) -> float | None:
        if not self._count:
            return None
        value = self._data[(self._next - 1) % self.capacity]
        return None if math.isnan(value) else float(value)


class Counter:
    """Turns an ever-growing counter (bytes read, CPU seconds) into a rate per second. A counter
    that goes backwards (the VM restarted, QEMU reset it) starts a new baseline: no bogus spike."""

    def __init__(self) -> None:
        self._value: float | None = None
        self._time: float | None = None

    def rate(self, value: float | None, now: float) -> float | None:
        previous, then = self._value, self._time
        self._value, self._time = value, now
        if value is None or previous is None or then is None or value < previous or now <= then:
            return None
        return (value - previous) / (now - then)

    def reset(self) -> None:
        self._value = self._time = None
