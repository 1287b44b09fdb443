"""Small, exact statistics the report uses, and the shape of a compared number."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def median(values: Iterable[float]) -> float | None:
    """The middle value (the mean of the two middle ones for an even count); None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values
    at or below it (p90 of 10 values is the 9th smallest). None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def mean(values: Iterable[float]) -> float | None:
    found = list(values)
    return sum(found) / len(found) if found else None


def percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, rounded to 0.1; None when ``whole`` is 0 (no data is
    never 100 %)."""
    if whole <= 0:
        return None
    return round(100.0 * part / whole, 1)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def compared(
    value: float | None,
    previous: float | None,
    *,
    unit: str,
    target: float | None = None,
    better: str = "higher",
) -> dict[str, Any]:
    """One number of the report beside the previous period's and its target.

    ``value`` None means no data (shown as such, never as 0 or 100 %). ``meets_target`` is None
    when there is no target or no value; else whether the value is on the right side of it
    (``better`` says which side that is).
    """
    change = None if value is None or previous is None else round(value - previous, 2)
    meets: bool | None = None
    if value is not None and target is not None:
        meets = value >= target if better == "higher" else value <= target
    return {
        "value": value,
        "previous": previous,
        "change": change,
        "unit": unit,
        "target": target,
        "better": better,
        "meets_target": meets,
    }
