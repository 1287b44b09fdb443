import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from support_pipeline.conversations import extract_facts, merge
from support_pipeline.processing.router import EventContext
from tests.support import CONVERSATION_STORY, fixture

ORDERED = CONVERSATION_STORY
BOOKKEEPING = {"reopened_count"}


def facts(name: str):
    payload = fixture(name)
    return extract_facts(
        EventContext(event=payload["event"], payload=payload, dedupe_key=name), 0.0
    )


def fold(names):
    record = None
    for name in names:
        record = merge(record, facts(name))
    return {k: v for k, v in record.items() if k not in BOOKKEEPING}


def test_in_order_the_record_tells_the_conversations_story():
    record = fold(ORDERED)
    assert record["status"] == "resolved"
    assert record["resolved_at"] == 1790475376.9969482
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
