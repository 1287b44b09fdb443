"""CSAT answers are stored once per survey message, the latest answer winning in any order."""

from __future__ import annotations

from typing import Any

import pytest

from support_pipeline.csat import CSAT_PREFIX
from support_pipeline.processing.router import EventContext
from support_pipeline.wiring import build_router
from tests.support import NOW, incoming, policy_with

POLICY = policy_with()


def survey(rating: Any, answered_at: float, message_id: int = 301) -> dict[str, Any]:
    """Chatwoot's message_updated for an answered CSAT survey (a template message)."""
    payload = incoming("", message_id, NOW, status="resolved")
    payload.update(event="message_updated", message_type="template", content_type="input_csat")
    payload["content_attributes"] = {
        "submitted_values": {"csat_survey_response": {"rating": rating, "feedback_message": "x"}}
    }
    payload["conversation"]["messages"][0]["updated_at"] = answered_at
    return payload


def deliver(router, payload: dict[str, Any], key: str) -> dict[str, Any]:
    return router.dispatch(EventContext("message_updated", payload, key))["results"]["csat"]


def csat_items(pipeline) -> list[dict[str, Any]]:
    table = pipeline.dynamodb.Table(pipeline.stack.physical["ConversationsTable"])
    items = table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :csat)",
        ExpressionAttributeValues={":pk": "CONV#1#1", ":csat": CSAT_PREFIX},
    )["Items"]
    return items


def test_the_latest_answer_wins_whatever_the_order_and_duplicates_count_once(pipeline):
    router = build_router(pipeline.support(policy=POLICY), clock=pipeline.clock)
    first, changed = survey(2, NOW + 100), survey(3, NOW + 900)
    assert deliver(router, changed, "k-changed") == {"csat": 3, "stored": True}
    assert deliver(router, first, "k-first") == {"csat": 2, "stored": False}  # older: ignored
    assert deliver(router, changed, "k-changed-again") == {"csat": 3, "stored": False}
    [item] = csat_items(pipeline)
    assert item["rating"] == 3 and item["kind"] == "csat" and item["message_id"] == "301"
    # Bucketed on the local day of the answer (NOW + 900 is 2026-09-26 21:31 in Bogota).
    assert item["account_day"] == "1#2026-09-26"
    day = pipeline.store().events_on_day("1", "2026-09-26")
    assert [i["rating"] for i in day if i.get("kind") == "csat"] == [3]
    assert "feedback" not in str(item)  # what the customer wrote is not kept


def test_a_new_answer_in_another_order_replaces_the_old_one(pipeline):
    router = build_router(pipeline.support(policy=POLICY), clock=pipeline.clock)
    deliver(router, survey(2, NOW + 100), "a")
    deliver(router, survey(5, NOW + 200), "b")
    [item] = csat_items(pipeline)
    assert item["rating"] == 5


def test_surveys_without_a_rating_and_other_updates_are_skipped(pipeline):
    router = build_router(pipeline.support(policy=POLICY), clock=pipeline.clock)
    unanswered = survey(None, NOW + 10)
    unanswered["content_attributes"] = {}
    edited = incoming("edited text", 302, NOW)
    edited["event"] = "message_updated"
    assert deliver(router, unanswered, "u")["skipped"] == "not a CSAT answer"
    assert deliver(router, survey(6, NOW + 10), "six")["skipped"] == "not a CSAT answer"
    assert deliver(router, survey(True, NOW + 10), "bool")["skipped"] == "not a CSAT answer"
    assert deliver(router, edited, "e")["skipped"] == "not a CSAT answer"
    assert csat_items(pipeline) == []


def test_a_csat_answer_through_the_processor_is_stored(pipeline):
    assert pipeline.post(survey(4, NOW + 50), delivery_id="csat-1")[0] == 202
    pipeline.drain(pipeline.consumer(policy=POLICY))
    [item] = csat_items(pipeline)
    assert item["rating"] == 4


NOT_RATINGS = [0, 6, -1, 10, "5", "", True, False, 4.5, 5.0, None, [5], {"rating": 5}]


@pytest.mark.parametrize("rating", NOT_RATINGS, ids=repr)
def test_only_a_whole_number_from_1_to_5_is_a_rating(pipeline, rating):
    """Issue 15, part 7: a rating of 0 was accepted with no test noticing (and 6, "5", True)."""
    support = pipeline.support(policy=POLICY)
    router = build_router(support, clock=pipeline.clock)
    decided = {
        "draft_id": "d-4k7q2m",
        "account_id": "1",
        "conversation_id": "1",
        "status": "rejected",
        "text": "Hola",
    }
    assert support.drafts.drafts.create(decided)
    results = router.dispatch(EventContext("message_updated", survey(rating, NOW + 10), "k"))
    assert results["results"]["csat"] == {"skipped": "not a CSAT answer"}
    assert results["results"]["drafts"] == {"skipped": "no rating"}
    assert csat_items(pipeline) == []
    [draft] = support.drafts.drafts.of_conversation("1", "1")
    assert "csat" not in draft
    # The bounds themselves are ratings, stored and joined to the decided draft.
    for good in (1, 5):
        answer = survey(good, NOW + 20 + good)
        results = router.dispatch(EventContext("message_updated", answer, f"good-{good}"))
        assert results["results"]["csat"] == {"csat": good, "stored": True}
        assert results["results"]["drafts"] == {"csat": good, "joined": 1}
    [item] = csat_items(pipeline)
    assert item["rating"] == 5
    [draft] = support.drafts.drafts.of_conversation("1", "1")
    assert draft["csat"] == 5
