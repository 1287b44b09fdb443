"""Exponential backoff with jitter, driven by SQS's ApproximateReceiveCount."""

from __future__ import annotations

import random
from collections.abc import Callable

SQS_MAX_VISIBILITY_SECONDS = 43200


def backoff_ceiling(receive_count: int, base: int, cap: int) -> int:
    """``min(cap, base * 2^(n-1))`` for the n-th receive (n >= 1)."""
    exponent = min(max(receive_count, 1) - 1, 32)
    return int(min(cap, base * 2**exponent, SQS_MAX_VISIBILITY_SECONDS))


def visibility_timeout(
    receive_count: int,
    base: int,
    cap: int,
    rng: Callable[[], float] = random.random,
    scale: float = 1.0,
) -> int:
    """Seconds to hide a failed message: "equal jitter" in [ceiling/2, ceiling].

    Half the delay is fixed so the delays grow with the attempts; the random half spreads a burst
    of failures (say, a Chatwoot outage) so retries do not arrive in lockstep. ``scale`` shortens
    every delay alike, for practice on the local stack (deployed: always 1).
    """
    ceiling = backoff_ceiling(receive_count, base, cap)
    half = ceiling / 2
    return max(0, round((half + rng() * half) * scale))
