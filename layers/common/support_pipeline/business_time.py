"""Business-time arithmetic: due dates and elapsed time that skip nights, weekends and holidays.

Windows are local wall-clock times in the policy's IANA zone, so DST shifts move them with the
local clock, as a support team expects. All inputs and outputs are UTC epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from support_pipeline.policy import SupportPolicy

MAX_DAYS = 4000  # a policy with no hours at all is refused at load; this bounds any loop


class BusinessCalendar:
    """The open windows of a support team."""

    def __init__(
        self,
        zone: ZoneInfo,
        weekly: dict[int, tuple[tuple[int, int], ...]],
        holidays: frozenset[date] = frozenset(),
    ) -> None:
        self.zone = zone
        self.weekly = weekly
        self.holidays = holidays

    @classmethod
    def from_policy(cls, policy: SupportPolicy) -> BusinessCalendar:
        return cls(policy.zone, policy.business_hours, policy.holidays)

    def _windows_on(self, day: date) -> Iterator[tuple[float, float]]:
        if day in self.holidays:
            return
        midnight = datetime(day.year, day.month, day.day)
        for start_min, end_min in self.weekly.get(day.weekday(), ()):
            start = (midnight + timedelta(minutes=start_min)).replace(tzinfo=self.zone)
            end = (midnight + timedelta(minutes=end_min)).replace(tzinfo=self.zone)
            yield start.timestamp(), end.timestamp()

    def _windows_from(self, epoch: float) -> Iterator[tuple[float, float]]:
        """Open windows (UTC epoch pairs) that end after ``epoch``, in order."""
        day = datetime.fromtimestamp(epoch, UTC).astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS):
            for start, end in self._windows_on(day):
                if end > epoch:
                    yield max(start, epoch), end
            day += timedelta(days=1)
        raise ValueError("no business hours within the search horizon")

    def add(self, start: float, seconds: float) -> float:
        """The moment ``seconds`` of business time after ``start``."""
        if seconds <= 0:
            return start
        remaining = seconds
        for window_start, window_end in self._windows_from(start):
            length = window_end - window_start
            if remaining <= length:
                return window_start + remaining
            remaining -= length
        raise AssertionError("unreachable")  # pragma: no cover

    def elapsed(self, start: float, end: float) -> float:
        """Business seconds between ``start`` and ``end`` (0 if end is not after start)."""
        if end <= start:
            return 0.0
        total = 0.0
        for window_start, window_end in self._windows_from(start):
            if window_start >= end:
                break
            total += min(window_end, end) - window_start
        return total


class WallClock:
    """Every second counts: the same interface for targets measured in wall-clock time."""

    def add(self, start: float, seconds: float) -> float:
        return start + max(seconds, 0)

    def elapsed(self, start: float, end: float) -> float:
        return max(0.0, end - start)
