import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from support_pipeline.conversations import STATUS_POINTS_CAP, extract_facts, merge
from support_pipeline.processing.router import EventContext
from tests.support import CONVERSATION_STORY, fixture, reopened_story, status_changed

ORDERED = CONVERSATION_STORY


def facts_of(payload, key):
    return extract_facts(EventContext(event=payload["event"], payload=payload, dedupe_key=key), 0.0)


def facts(name: str):
    return facts_of(fixture(name), name)


def fold_facts(all_facts):
    record = None
    for one in all_facts:
        record = merge(record, one)
    return record


def fold(names):
    return fold_facts(facts(name) for name in names)


# resolved -> reopened -> resolved -> reopened -> resolved (see tests.support.reopened_story)
REOPENED = [facts_of(payload, f"reopened-{i}") for i, payload in enumerate(reopened_story())]


def test_in_order_the_record_tells_the_conversations_story():
    record = fold(ORDERED)
    assert record["status"] == "resolved"
    assert record["resolved_at"] == 1790475376.9969482
    assert record["reopened_count"] == 0
    assert record["created_at"] == 1790475251
    assert record["first_reply_created_at"] == 1790475334.703
    assert record["last_incoming_at"] == 1790475326.299
    assert record["last_outgoing_at"] == 1790475342.758  # the bot's public message
    assert record["last_agent_reply_at"] == 1790475334.703  # the human's; private notes excluded
    assert record["open_account"] is None  # resolved conversations leave the open index
    assert record["assignee_type"] == "AgentBot"


@settings(max_examples=60, deadline=None)
@given(st.permutations(ORDERED))
def test_any_arrival_order_gives_the_same_record(order):
    assert fold(order) == fold(ORDERED)


def test_in_order_a_reopened_conversation_counts_both_reopenings():
    record = fold_facts(REOPENED)
    assert record["status"] == "resolved"
    assert record["reopened_count"] == 2
    assert record["resolved_at"] == 1790475800.0  # where the last run of "resolved" began
    assert record["open_account"] is None


@settings(max_examples=150, deadline=None)
@given(st.permutations(REOPENED))
def test_any_arrival_order_of_a_reopened_conversation_gives_the_same_record(order):
    record = fold_facts(order)
    assert record == fold_facts(REOPENED)
    assert record["reopened_count"] == 2
    assert record["resolved_at"] == 1790475800.0


@settings(max_examples=40, deadline=None)
@given(st.permutations(REOPENED + REOPENED[3:10]))
def test_redelivered_events_change_nothing_in_any_order(order):
    assert fold_facts(order) == fold_facts(REOPENED)


def test_an_older_snapshot_never_overwrites_newer_state():
    resolved = fold(["conversation_status_changed_resolved"])
    after_stale = fold(["conversation_status_changed_resolved", "message_created_incoming"])
    assert after_stale["status"] == resolved["status"] == "resolved"
    assert after_stale["snapshot_version"] == resolved["snapshot_version"]


def test_reopening_counts_and_clears_resolved_at():
    reopened = fixture("conversation_updated")
    reopened["status"] = "open"
    reopened["updated_at"] = 1790475999.0
    record = merge(None, facts("conversation_status_changed_resolved"))
    record = merge(record, extract_facts(EventContext("conversation_updated", reopened, "k"), 0.0))
    assert record["status"] == "open"
    assert record["resolved_at"] is None
    assert record["reopened_count"] == 1
    assert record["open_account"] == "1"


def test_all_permutations_of_a_small_set_agree():
    names = [
        "message_created_incoming",
        "conversation_updated",
        "conversation_status_changed_resolved",
    ]
    results = {repr(sorted(fold(order).items())) for order in itertools.permutations(names)}
    assert len(results) == 1


# A conversation with more status observations than the record keeps: ten cycles of
# open -> resolved -> pending (reopen) -> resolved -> snoozed (reopen) -> open, then a run of
# "resolved" observations (private notes on the resolved conversation) longer than the cap.
CYCLE = ["open", "resolved", "pending", "resolved", "snoozed", "open"]
LONG_STATUSES = CYCLE * 10 + ["resolved"] * (STATUS_POINTS_CAP + 10)
LONG = [
    facts_of(status_changed(status, 1790476000.0 + 60 * i), f"long-{i}")
    for i, status in enumerate(LONG_STATUSES)
]
LONG_RESOLVED_AT = 1790476000.0 + 60 * len(CYCLE) * 10


def test_a_long_history_is_capped_and_still_counts_every_reopening():
    record = fold_facts(LONG)
    assert len(record["status_points"]) == STATUS_POINTS_CAP
    assert record["reopened_count"] == 20
    assert record["resolved_at"] == LONG_RESOLVED_AT  # began before the points the record keeps


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_beyond_the_cap_events_late_by_fewer_than_the_cap_give_the_same_record(rng):
    # Shuffle within blocks of the cap's size: no observation arrives after more than the cap's
    # number of newer ones, which is the reordering the capped record is exact for.
    order = []
    for start in range(0, len(LONG), STATUS_POINTS_CAP):
        block = LONG[start : start + STATUS_POINTS_CAP]
        rng.shuffle(block)
        order.extend(block)
    record = fold_facts(order)
    assert record == fold_facts(LONG)
    assert len(record["status_points"]) <= STATUS_POINTS_CAP
