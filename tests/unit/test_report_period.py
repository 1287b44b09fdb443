"""Report periods: local weeks and days in the policy's zone, whatever the DST."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from support_pipeline.processing.errors import PermanentError
from support_pipeline.report.period import Period, PeriodError
from support_pipeline.report.weekly import period_of
from tests.support import policy_with

BOGOTA = ZoneInfo("America/Bogota")
MADRID = ZoneInfo("Europe/Madrid")


def local(text: str, zone: ZoneInfo) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("now", "week"),
    [
        ("2026-09-28T09:00", "2026-W39"),  # the scheduled Monday morning
        ("2026-09-28T00:00", "2026-W39"),  # Monday's first second: last week is over
        ("2026-09-27T23:59", "2026-W38"),  # Sunday night: W39 is not over yet
        ("2027-01-04T09:00", "2026-W53"),  # 2026 has 53 ISO weeks
    ],
)
def test_the_last_full_week_is_the_one_before_the_local_monday(now, week):
    assert Period.last_full_week(local(now, BOGOTA), BOGOTA).label == week


def test_a_utc_monday_that_is_still_sunday_locally_reports_the_week_before():
    # 2026-09-28 03:00 UTC is Sunday 22:00 in Bogota.
    moment = datetime.fromisoformat("2026-09-28T03:00+00:00").timestamp()
    assert Period.last_full_week(moment, BOGOTA).label == "2026-W38"


def test_iso_weeks_start_on_monday_at_local_midnight_and_dst_weeks_are_not_168_hours():
    week = Period.iso_week("2026-W13", MADRID)  # clocks go forward on Sunday 29 March
    assert (week.first, week.last) == (date(2026, 3, 23), date(2026, 3, 29))
    assert week.start.isoformat() == "2026-03-23T00:00:00+01:00"
    assert week.end.isoformat() == "2026-03-30T00:00:00+02:00"
    assert week.hours == 167
    assert week.clock_changes() == ["clocks went forward 1 h on 2026-03-29 (that day had 23 hours)"]
    assert Period.iso_week("2026-W43", MADRID).hours == 169  # back on Sunday 25 October
    assert Period.iso_week("2026-W39", BOGOTA).clock_changes() == []


def test_previous_periods_and_ranges():
    week = Period.iso_week("2026-W01", BOGOTA)
    assert week.first == date(2025, 12, 29) and week.previous().label == "2025-W52"
    days = Period.between("2026-09-01", "2026-09-10", BOGOTA)
    assert days.label == "2026-09-01_2026-09-10" and len(days.days) == 10
    assert (days.previous().first, days.previous().last) == (date(2026, 8, 22), date(2026, 8, 31))
    assert Period.between("2026-09-21", "2026-09-27", BOGOTA).label == "2026-W39"


@pytest.mark.parametrize(
    "call",
    [
        lambda: Period.iso_week("2026-39", BOGOTA),
        lambda: Period.iso_week("2026-W54", BOGOTA),
        lambda: Period.between("2026-09-10", "2026-09-01", BOGOTA),
        lambda: Period.between("2026-01-01", "2026-12-31", BOGOTA),
        lambda: Period.between("yesterday", "2026-09-01", BOGOTA),
    ],
)
def test_malformed_or_huge_periods_are_refused(call):
    with pytest.raises(PeriodError):
        call()


def test_what_an_invocation_asks_for():
    policy = policy_with()
    now = local("2026-11-27T10:00", BOGOTA)
    scheduled = {"source": "aws.scheduler", "scheduled_time": "2026-09-28T14:00:00Z"}
    assert period_of(scheduled, policy, now).label == "2026-W39"  # its schedule, not now
    assert period_of({}, policy, now).label == "2026-W47"
    assert period_of({"week": "2026-W10"}, policy, now).label == "2026-W10"
    ranged = period_of({"from": "2026-09-01", "to": "2026-09-03"}, policy, now)
    assert ranged.label == "2026-09-01_2026-09-03"
    with pytest.raises(PermanentError, match="not a week"):
        period_of({"week": "last"}, policy, now)
