"""Report periods: local days in the support policy's time zone.

A week is Monday 00:00 to the next Monday 00:00 on the support team's own clock, so a week in
which clocks change has 167 or 169 hours, and a "day" is always a local calendar date (the
``account_day`` timeline items are bucketed by). Any other period is a run of whole local days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
MAX_DAYS = 92  # a quarter: the report reads one day at a time


class PeriodError(ValueError):
    """A period that cannot be reported on (malformed, empty, too long)."""


@dataclass(frozen=True)
class Period:
    """Whole local days ``first`` (inclusive) to ``last`` (inclusive) in ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise PeriodError("the period ends before it starts")
        if len(self.days) > MAX_DAYS:
            raise PeriodError(f"a report covers at most {MAX_DAYS} days")

    @classmethod
    def iso_week(cls, label: str, zone: ZoneInfo) -> Period:
        """``YYYY-Www``: that ISO week, Monday to Sunday."""
        found = WEEK_RE.match(label.strip())
        if not found:
            raise PeriodError(f"{label!r} is not a week like 2026-W39")
        try:
            monday = date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1)
        except ValueError as exc:
            raise PeriodError(f"{label!r} is not a week of that year") from exc
        return cls(monday, monday + timedelta(days=6), zone)

    @classmethod
    def last_full_week(cls, now: float, zone: ZoneInfo) -> Period:
        """The latest Monday-to-Sunday week that ended before ``now`` (local time)."""
        today = datetime.fromtimestamp(now, UTC).astimezone(zone).date()
        this_monday = today - timedelta(days=today.weekday())
        monday = this_monday - timedelta(days=7)
        return cls(monday, monday + timedelta(days=6), zone)

    @classmethod
    def week_to_date(cls, now: float, zone: ZoneInfo) -> Period:
        """This week so far: Monday to today (the local stack's "latest report")."""
        today = datetime.fromtimestamp(now, UTC).astimezone(zone).date()
        return cls(today - timedelta(days=today.weekday()), today, zone)

    @classmethod
    def between(cls, start: str, end: str, zone: ZoneInfo) -> Period:
        """``--from`` and ``--to`` as local dates, both included."""
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError as exc:
            raise PeriodError(f"dates are YYYY-MM-DD: {exc}") from None
        return cls(first, last, zone)

    # ---- what the period is --------------------------------------------------------------
    @property
    def days(self) -> list[date]:
        count = (self.last - self.first).days + 1
        return [self.first + timedelta(days=i) for i in range(count)]

    @property
    def is_week(self) -> bool:
        return self.first.weekday() == 0 and (self.last - self.first).days == 6

    @property
    def label(self) -> str:
        """``2026-W39`` for an ISO week, else ``2026-09-01_2026-09-10``."""
        if self.is_week:
            year, week, _ = self.first.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.first.isoformat()}_{self.last.isoformat()}"

    def _midnight(self, day: date) -> datetime:
        # Local midnight; zoneinfo picks the right offset (no zone skips midnight on a DST day
        # that this policy could use without the team noticing: it is still 00:00 local).
        return datetime(day.year, day.month, day.day, tzinfo=self.zone)

    @property
    def start(self) -> datetime:
        return self._midnight(self.first)

    @property
    def end(self) -> datetime:
        """The first instant after the period (midnight after its last day), exclusive."""
        return self._midnight(self.last + timedelta(days=1))

    @property
    def start_epoch(self) -> float:
        return self.start.timestamp()

    @property
    def end_epoch(self) -> float:
        return self.end.timestamp()

    @property
    def hours(self) -> float:
        return (self.end_epoch - self.start_epoch) / 3600

    def contains(self, epoch: float | None) -> bool:
        return epoch is not None and self.start_epoch <= epoch < self.end_epoch

    def previous(self) -> Period:
        """The same number of days just before."""
        length = timedelta(days=len(self.days))
        return Period(self.first - length, self.last - length, self.zone)

    def day_of(self, epoch: float) -> date:
        return datetime.fromtimestamp(epoch, UTC).astimezone(self.zone).date()

    def clock_changes(self) -> list[str]:
        """Words for each change of the zone's UTC offset inside the period."""
        changes = []
        for day in self.days:
            before = self._midnight(day).utcoffset()
            after = self._midnight(day + timedelta(days=1)).utcoffset()
            if before is None or after is None or before == after:
                continue
            shift = (after - before).total_seconds() / 3600
            direction = "forward" if shift > 0 else "back"
            length = (
                self._midnight(day + timedelta(days=1)).timestamp()
                - self._midnight(day).timestamp()
            ) / 3600
            changes.append(
                f"clocks went {direction} {abs(shift):g} h on {day.isoformat()} "
                f"(that day had {length:g} hours)"
            )
        return changes

    def describe(self) -> dict[str, object]:
        return {
            "label": self.label,
            "kind": "week" if self.is_week else "range",
            "first_day": self.first.isoformat(),
            "last_day": self.last.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "timezone": self.zone.key,
            "days": [d.isoformat() for d in self.days],
            "hours": round(self.hours, 2),
            "clock_changes": self.clock_changes(),
        }
