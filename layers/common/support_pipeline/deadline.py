"""The time an invocation has left, visible to everything it calls.

Lambda kills a function at its timeout, wherever it is. The processor and the sweep set the
deadline from the Lambda context when an invocation starts; the Chatwoot client reads it before
every call and bounds the call's timeouts by it, and the callers stop starting new work when too
little is left. A context variable keeps concurrent invocations in one process (tests, the local
stack) apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from support_pipeline.processing.errors import TransientError

Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """The moment (on ``clock``) by which the current invocation must have answered."""

    expires_at: float
    clock: Clock = time.time

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.time) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.expires_at - self.clock()


_current: ContextVar[Deadline | None] = ContextVar("support_pipeline_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the invocation running in this context, if one was set."""
    return _current.get()


def remaining() -> float | None:
    """Seconds left in this invocation, or None when nothing set a deadline (CLI, tests)."""
    deadline = _current.get()
    return None if deadline is None else deadline.remaining()


@contextmanager
def running_until(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make ``deadline`` the current one for the duration of the block."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def from_lambda_context(context: object, clock: Clock = time.time) -> Deadline | None:
    """The deadline a Lambda context gives (``get_remaining_time_in_millis``), if it has one."""
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if get_remaining is None:
        return None
    try:
        millis = float(get_remaining())
    except (TypeError, ValueError):
        return None
    return Deadline(clock() + millis / 1000.0, clock)


def ensure(seconds: float, what: str) -> None:
    """Raise a transient ``deadline`` failure unless ``seconds`` are left for ``what``."""
    left = remaining()
    if left is not None and left < seconds:
        raise TransientError(
            "deadline", f"{what} not started: {max(left, 0):.1f} s left in the invocation"
        )
