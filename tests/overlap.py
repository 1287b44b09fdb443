"""Proof that two workers overlapped where a race would bite, instead of a hope that timing did.

A race test that merely starts two threads together passes just as well when one finishes
before the other begins (the conditional write is then never contested). ``Rendezvous`` holds
the first ``parties`` callers at one point, right before the conditional write they race on,
until all of them are there: after the run, ``assert_overlapped`` says they really were inside
together. A barrier that times out breaks, and the test fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Rendezvous:
    """The first ``parties`` callers of :meth:`wait` meet there; later ones pass straight on
    (the retries and drains after the race must not wait for a partner that never comes)."""

    def __init__(self, parties: int = 2, timeout: float = 10.0) -> None:
        self.parties = parties
        self._barrier = threading.Barrier(parties, timeout=timeout)
        self._lock = threading.Lock()
        self.arrived = 0
        self.passed = 0
        self.broken = False

    def wait(self) -> None:
        with self._lock:
            if self.arrived >= self.parties:
                return
            self.arrived += 1
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            self.broken = True
            raise
        with self._lock:
            self.passed += 1

    def before(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, called only once every party has reached it."""

        def met_first(*args: Any, **kwargs: Any) -> Any:
            self.wait()
            return function(*args, **kwargs)

        return met_first

    def assert_overlapped(self) -> None:
        assert not self.broken, "a worker waited in vain: the workers never overlapped"
        assert self.passed == self.parties, (
            f"{self.passed} of {self.parties} workers were inside the critical section together"
        )
