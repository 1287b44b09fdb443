from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support_pipeline.business_time import BusinessCalendar, WallClock

NINE_TO_FIVE = {d: ((9 * 60, 17 * 60),) for d in range(5)}  # Monday-Friday


def at(zone: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(zone)).timestamp()


def local(zone: str, epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        ((2026, 11, 25, 10, 0), 3600, (2026, 11, 25, 11, 0)),  # inside a window
        ((2026, 11, 25, 16, 30), 3600, (2026, 11, 26, 9, 30)),  # across the night
        ((2026, 11, 27, 16, 0), 2 * 3600, (2026, 11, 30, 10, 0)),  # across the weekend
        ((2026, 11, 28, 12, 0), 60, (2026, 11, 30, 9, 1)),  # starting on a Saturday
        ((2026, 11, 25, 7, 0), 8 * 3600, (2026, 11, 25, 17, 0)),  # before opening, a whole day
    ],
)
def test_worked_cases_new_york(start, seconds, expected):
    calendar = BusinessCalendar(ZoneInfo("America/New_York"), NINE_TO_FIVE)
    due = calendar.add(at("America/New_York", *start), seconds)
    assert local("America/New_York", due) == datetime(*expected)


def test_holidays_are_skipped():
    calendar = BusinessCalendar(
        ZoneInfo("America/New_York"), NINE_TO_FIVE, frozenset({date(2026, 11, 26)})
    )
    due = calendar.add(at("America/New_York", 2026, 11, 25, 16, 0), 2 * 3600)
    assert local("America/New_York", due) == datetime(2026, 11, 27, 10, 0)


def test_dst_spring_forward_keeps_local_opening_times():
    # 2027-03-14: New York moves from EST (-5) to EDT (-4) overnight Saturday->Sunday.
    calendar = BusinessCalendar(ZoneInfo("America/New_York"), NINE_TO_FIVE)
    friday_4pm = at("America/New_York", 2027, 3, 12, 16, 0)
    due = calendar.add(friday_4pm, 2 * 3600)
    assert local("America/New_York", due) == datetime(2027, 3, 15, 10, 0)
    # 2 business hours, though the wall clock moved 66 hours minus the lost hour
    assert due - friday_4pm == (66 - 1) * 3600


def test_dst_inside_a_24h_window_counts_real_elapsed_seconds():
    always = {d: ((0, 1440),) for d in range(7)}
    calendar = BusinessCalendar(ZoneInfo("Europe/Berlin"), always)
    start = at("Europe/Berlin", 2026, 10, 24, 12, 0)  # Berlin falls back on 2026-10-25
    end = at("Europe/Berlin", 2026, 10, 25, 12, 0)
    assert calendar.elapsed(start, end) == 25 * 3600 == end - start


def test_time_zones_shift_the_windows():
    tokyo = BusinessCalendar(ZoneInfo("Asia/Tokyo"), NINE_TO_FIVE)
    # 2026-11-25 01:00 UTC is 10:00 in Tokyo: open
    start = datetime(2026, 11, 25, 1, 0, tzinfo=UTC).timestamp()
    assert tokyo.add(start, 600) == start + 600


def test_elapsed_before_start_is_zero():
    calendar = BusinessCalendar(ZoneInfo("UTC"), NINE_TO_FIVE)
    assert calendar.elapsed(100.0, 50.0) == 0.0
    assert WallClock().elapsed(100.0, 50.0) == 0.0


ZONES = st.sampled_from(
    ["America/Bogota", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]
)
STARTS = st.floats(min_value=1_767_225_600, max_value=1_830_297_600)  # 2026-2027
DURATIONS = st.floats(min_value=0, max_value=30 * 86400)
HOLIDAYS = st.frozensets(
    st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)), max_size=20
)


def calendar_for(zone: str, holidays: frozenset[date]) -> BusinessCalendar:
    weekly = {
        0: ((8 * 60, 12 * 60), (13 * 60, 18 * 60)),
        1: ((8 * 60, 18 * 60),),
        2: ((0, 1440),),
        3: ((8 * 60, 18 * 60),),
        4: ((8 * 60, 18 * 60),),
        5: ((9 * 60, 13 * 60),),
    }
    return BusinessCalendar(ZoneInfo(zone), weekly, holidays)


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, start=STARTS, seconds=DURATIONS, holidays=HOLIDAYS)
def test_elapsed_undoes_add(zone, start, seconds, holidays):
    calendar = calendar_for(zone, holidays)
    due = calendar.add(start, seconds)
    assert due >= start
    assert calendar.elapsed(start, due) == pytest.approx(seconds, abs=1e-3)


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, a=STARTS, b=DURATIONS, c=DURATIONS, holidays=HOLIDAYS)
def test_elapsed_is_additive_and_never_more_than_wall_time(zone, a, b, c, holidays):
    calendar = calendar_for(zone, holidays)
    middle, end = a + b, a + b + c
    total = calendar.elapsed(a, end)
    assert total == pytest.approx(
        calendar.elapsed(a, middle) + calendar.elapsed(middle, end), abs=1e-3
    )
    assert 0 <= total <= end - a + 1e-6


@settings(max_examples=100, deadline=None)
@given(zone=ZONES, start=STARTS, s1=DURATIONS, s2=DURATIONS)
def test_add_is_monotonic(zone, start, s1, s2):
    calendar = calendar_for(zone, frozenset())
    low, high = sorted((s1, s2))
    assert calendar.add(start, low) <= calendar.add(start, high)
