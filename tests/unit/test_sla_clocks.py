"""SLA clocks from a record and timeline: worked cases in business and wall-clock time."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from support_pipeline.business_time import BusinessCalendar
from support_pipeline.chatwoot.payload import iso
from support_pipeline.sla import compute_clocks, marks_from_timeline, thresholds
from tests.support import policy_with

BOGOTA = ZoneInfo("America/Bogota")
POLICY = policy_with()  # shipped: first response 4 h business time for priority none
CALENDAR = BusinessCalendar.from_policy(POLICY)


def bogota(*parts):
    return datetime(*parts, tzinfo=BOGOTA).timestamp()


def local(epoch):
    return datetime.fromtimestamp(epoch, BOGOTA).replace(tzinfo=None)


def message(kind, at, sender="Contact", private=False):
    return {
        "kind": "event",
        "message_type": kind,
        "occurred_at": iso(at),
        "sender_type": sender,
        "private": private,
    }


def record(**fields):
    base = {"account_id": "1", "conversation_id": "1", "status": "open", "priority": None}
    return {**base, **fields}


def by_target(clocks):
    return {c.target: c for c in clocks}


def test_friday_evening_message_is_due_monday_in_business_time():
    created = bogota(2026, 11, 27, 17, 30)  # Friday, 30 minutes before closing
    clocks = by_target(compute_clocks(record(created_at=created), [], POLICY, CALENDAR))
    first = clocks["first_response"]
    # 30 min Friday + 4 h Saturday (09-13) = 4.5 h > 4 h: due Saturday 12:30
    assert local(first.due_at) == datetime(2026, 11, 28, 12, 30)
    assert first.business_only and first.met_at is None
    # resolution is wall-clock in the shipped policy: 3 days later to the minute
    assert local(clocks["resolution"].due_at) == datetime(2026, 11, 30, 17, 30)


def test_holiday_pushes_the_due_date():
    created = bogota(2026, 12, 7, 16, 0)  # Monday; Tuesday 2026-12-08 is a holiday
    first = by_target(compute_clocks(record(created_at=created), [], POLICY, CALENDAR))[
        "first_response"
    ]
    assert local(first.due_at) == datetime(2026, 12, 9, 10, 0)


def test_met_and_missed_targets():
    created = bogota(2026, 11, 25, 9, 0)
    replied = bogota(2026, 11, 25, 10, 0)
    timeline = [
        message("incoming", created),
        message("outgoing", replied, sender="User"),
        message("incoming", bogota(2026, 11, 25, 11, 0)),
        message(
            "outgoing", bogota(2026, 11, 25, 11, 30), sender="User", private=True
        ),  # a note is no reply
        message("outgoing", bogota(2026, 11, 25, 11, 40), sender="AgentBot"),  # a bot is no reply
        message("outgoing", bogota(2026, 11, 26, 9, 30), sender="User"),
    ]
    clocks = compute_clocks(
        record(created_at=created, first_reply_created_at=replied),
        marks_from_timeline(timeline),
        POLICY,
        CALENDAR,
    )
    first = by_target(clocks)["first_response"]
    assert first.state(replied) == "met"
    [next_response] = [c for c in clocks if c.target == "next_response"]
    # 8 h business from Wed 11:00: Wed 11-18 (7 h) + Thu 08-09 -> due Thu 09:00; replied 09:30
    assert local(next_response.due_at) == datetime(2026, 11, 26, 9, 0)
    assert next_response.state(0) == "missed"


def test_priority_and_applied_sla_choose_the_thresholds():
    assert thresholds(record(priority="urgent"), POLICY)[0]["first_response"] == 900
    applied = {"first_response": 600, "resolution": 7200, "business_hours_only": False}
    seconds, business = thresholds(record(sla_override=applied), POLICY)
    assert seconds == {"first_response": 600, "resolution": 7200}
    assert business == {"first_response": False, "next_response": False, "resolution": False}


def test_pending_with_a_bot_starts_the_clock_when_opened():
    created = bogota(2026, 11, 25, 9, 0)
    opened = bogota(2026, 11, 25, 15, 0)
    still_bot = record(created_at=created, seen_pending=True, status="pending")
    assert compute_clocks(still_bot, [], POLICY, CALENDAR) == []
    handed_over = record(created_at=created, seen_pending=True, first_open_at=opened)
    first = by_target(compute_clocks(handed_over, [], POLICY, CALENDAR))["first_response"]
    assert first.started_at == opened
    assert local(first.due_at) == datetime(2026, 11, 26, 9, 0)  # 15-18 (3 h) + Thu 08-09


@pytest.mark.parametrize(
    ("now_offset", "state"),
    [(0, "running"), (0.79, "running"), (0.8, "at_risk"), (1.0, "breached")],
)
def test_states_along_a_wall_clock_target(now_offset, state):
    policy = policy_with(
        **{"sla.business_hours_only.first_response": False, "sla.targets.none.first_response": "1h"}
    )
    created = bogota(2026, 11, 25, 9, 0)
    first = by_target(compute_clocks(record(created_at=created), [], policy, CALENDAR))[
        "first_response"
    ]
    assert first.state(created + now_offset * 3600) == state


def wall_clock_first_response(replied_at=None):
    """A 1 h wall-clock first-response target started at 09:00 (replied at ``replied_at``)."""
    policy = policy_with(
        **{"sla.business_hours_only.first_response": False, "sla.targets.none.first_response": "1h"}
    )
    created = bogota(2026, 11, 25, 9, 0)
    fields = {"created_at": created}
    if replied_at is not None:
        fields["first_reply_created_at"] = created + replied_at
    clocks = compute_clocks(record(**fields), [], policy, CALENDAR)
    first = by_target(clocks)["first_response"]
    assert first.due_at == created + 3600
    return first


@pytest.mark.parametrize(
    ("replied_after", "state"),
    [(3599, "met"), (3600, "met"), (3600.5, "missed"), (3601, "missed")],
)
def test_a_reply_exactly_at_the_due_moment_is_in_time_and_a_second_later_is_late(
    replied_after, state
):
    """docs/support-policy.md: met by an answer at or before the due moment (as Chatwoot)."""
    first = wall_clock_first_response(replied_after)
    assert first.state(first.due_at + 86400) == state  # whenever it is asked
    assert first.in_time is (state == "met")


@pytest.mark.parametrize(("now", "state"), [(-1, "at_risk"), (0, "breached"), (1, "breached")])
def test_an_unanswered_target_is_breached_from_its_due_moment_on(now, state):
    first = wall_clock_first_response()
    assert first.in_time is None
    assert first.state(first.due_at + now) == state
