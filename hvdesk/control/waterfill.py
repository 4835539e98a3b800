"""Share-weighted water-filling: split a budget between claims that each have a floor and a cap.

Every claim gets its floor first; what is left rises like water in vessels whose widths are the
weights, each vessel stopping at its cap. So a claim with twice the weight gets twice the surplus
above its floor, until it is full. Exact (sorted breakpoints), O(n log n); no rounding here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    floor: float
    cap: float
    weight: float  # > 0


def water_fill(claims: Sequence[Claim], budget: float) -> list[float]:
    """Allocations in the claims' order. Each lies in [floor, cap]; they sum to the budget when it
    lies between the floors' sum and the caps' sum, else to the nearer of the two."""
    surplus = budget - sum(c.floor for c in claims)
    if surplus <= 0:
        return [c.floor for c in claims]
    extra = [0.0] * len(claims)
    # fill the claims that reach their cap first, in order of the level at which they do
    order = sorted(range(len(claims)), key=lambda i: (claims[i].cap - claims[i].floor) / claims[i].weight)
    weight_left = sum(c.weight for c in claims)
    for position, index in enumerate(order):
        claim = claims[index]
        level = surplus / weight_left
        room = claim.cap - claim.floor
        if room > level * claim.weight:
            for rest in order[position:]:  # none of the rest reaches its cap
                extra[rest] = level * claims[rest].weight
            break
        extra[index] = room
        surplus -= room
        weight_left -= claim.weight
    return [c.floor + e for c, e in zip(claims, extra)]
