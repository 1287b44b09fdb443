"""Ingest -> EventsQueue -> processor -> conversation record, against moto."""

import functools
import json
import random

import pytest
from moto import mock_aws

from support_pipeline.processing.errors import PermanentError
from support_pipeline.processing.router import Router
from support_pipeline.wiring import build_router
from tests.support import (
    ALL_FIXTURES,
    CONVERSATION_STORY,
    attributes_of,
    fixture,
    incoming,
    new_pipeline,
    policy_with,
    reopened_story,
    status_changed,
)

CONVERSATION_FIXTURES = [name for name in ALL_FIXTURES if name != "webwidget_triggered"]


def queue_depth(pipeline, url):
    attrs = pipeline.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.parametrize("name", CONVERSATION_FIXTURES)
def test_each_fixture_ends_in_the_conversation_record_and_timeline(pipeline, name):
    payload = fixture(name)
    assert pipeline.post(payload)[0] == 202
    assert pipeline.drain() == 1
    record = pipeline.store().get_record("1", "1")
    assert record["status"] == payload.get("status", payload.get("conversation", {}).get("status"))
    assert record["inbox_id"] == "1"
    [item] = [i for i in pipeline.store().timeline("1", "1") if i["kind"] == "event"]
    assert item["event"] == payload["event"]
    assert "content" not in json.dumps(item)  # the timeline keeps ids, not customer text
    assert queue_depth(pipeline, pipeline.queue_url) == 0
    assert queue_depth(pipeline, pipeline.dlq_url) == 0


def test_whole_conversation_builds_the_record(pipeline):
    for name in CONVERSATION_STORY:
        assert pipeline.post(fixture(name))[0] == 202
    pipeline.drain()
    record = pipeline.store().get_record("1", "1")
    assert record["status"] == "resolved"
    assert record["first_reply_created_at"] == pytest.approx(1790475334.703)
    assert record["last_incoming_at"] == pytest.approx(1790475326.299)
    assert record["resolved_at"] == pytest.approx(1790475376.9969482)
    assert len(pipeline.store().timeline("1", "1")) == 7
    # 02:14-02:16Z on the 27th is the evening of the 26th in the policy's zone (America/Bogota)
    day = pipeline.store().events_on_day("1", "2026-09-26")
    assert len(day) == 7
    assert pipeline.store().open_conversations("1") == []


def test_open_conversations_index_lists_only_open_ones(pipeline):
    assert pipeline.post(fixture("message_created_incoming"))[0] == 202
    pipeline.drain()
    [open_one] = pipeline.store().open_conversations("1")
    assert open_one["conversation_id"] == "1" and open_one["status"] == "pending"


def test_duplicate_deliveries_are_processed_once(pipeline):
    payload = fixture("message_created_incoming")
    for delivery in ("d-1", "d-2", "d-1"):
        assert pipeline.post(payload, delivery_id=delivery)[0] == 202
    calls = []
    router = build_router(pipeline.support(), clock=pipeline.clock)
    router.register(["message_created"], "count", lambda context: calls.append(context.dedupe_key))
    assert pipeline.drain(pipeline.consumer(router=router)) == 3
    assert calls == ["message_created:1:1"]  # the handlers after the recorder ran once
    assert pipeline.telemetry.total("EventDuplicate") == 2
    assert queue_depth(pipeline, pipeline.queue_url) == 0


def test_a_repeat_of_an_event_whose_handlers_did_not_finish_runs_them_again(pipeline):
    payload = fixture("message_created_incoming")
    calls = []

    def fails_once(context):
        calls.append(context.dedupe_key)
        if len(calls) == 1:
            raise ConnectionError("the handler died after the record was written")

    router = build_router(pipeline.support(), clock=pipeline.clock)
    router.register(["message_created"], "flaky", fails_once)
    assert pipeline.post(payload, delivery_id="d-1")[0] == 202
    pipeline.drain(pipeline.consumer(router=router))
    pipeline.make_visible()
    pipeline.drain(pipeline.consumer(router=router))
    assert len(calls) == 2 and len(pipeline.store().timeline("1", "1")) == 1


def test_sqs_redelivery_of_a_processed_message_does_no_work(pipeline):
    assert pipeline.post(fixture("message_created_incoming"))[0] == 202
    [message] = pipeline.messages(pipeline.queue_url)
    pipeline.drain()
    pipeline.sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=message["Body"],
        MessageAttributes=message["MessageAttributes"],
    )
    pipeline.drain()
    assert len(pipeline.store().timeline("1", "1")) == 1
    assert pipeline.store().get_record("1", "1")["revision"] == 1


def record_after(payloads):
    """The conversation record once ``payloads`` arrived in this order, each processed before
    the next is posted, on a fresh moto stack."""
    with mock_aws():
        pipeline = new_pipeline()
        consumer = pipeline.consumer()
        for payload in payloads:
            assert pipeline.post(payload)[0] == 202
            pipeline.drain(consumer)
        assert queue_depth(pipeline, pipeline.dlq_url) == 0
        record = pipeline.store().get_record("1", "1")
        # What the pipeline did (escalations, drafts, SLA labels) follows the order the events
        # came in, like a person reading them would; the conversation's facts must not.
        return {k: v for k, v in record.items() if k not in (*ACTION_MARKS, "revision")}


ACTION_MARKS = ("escalated_episode", "pending_draft_id", "sla_at_risk")
IN_ORDER = reopened_story()


@functools.cache
def in_order_record():
    return record_after(IN_ORDER)


def shuffled(seed):
    order = list(IN_ORDER)
    random.Random(seed).shuffle(order)
    assert order != IN_ORDER
    return order


@pytest.mark.parametrize(
    "order",
    [shuffled(seed) for seed in (1, 2, 3)] + [IN_ORDER[::-1]],
    ids=["seed-1", "seed-2", "seed-3", "reversed"],
)
def test_out_of_order_events_end_in_the_right_state(order):
    expected = in_order_record()
    assert expected["status"] == "resolved"
    assert expected["reopened_count"] == 2
    assert expected["resolved_at"] == 1790475800
    assert record_after(order) == expected


def test_timeline_days_are_local_days_in_the_policys_zone(pipeline):
    # 2026-09-27T02:16:16Z is 21:16 on 2026-09-26 in America/Bogota (UTC-5), the shipped zone.
    assert pipeline.post(fixture("conversation_status_changed_resolved"))[0] == 202
    pipeline.drain()
    store = pipeline.store()
    timeline = store.timeline("1", "1")
    assert {item["kind"] for item in timeline} == {"event", "sla_outcome"}
    on_the_26th = sorted(store.events_on_day("1", "2026-09-26"), key=lambda item: item["sk"])
    assert on_the_26th == timeline
    assert store.events_on_day("1", "2026-09-27") == []


def test_timeline_days_follow_daylight_saving_time_in_the_policys_zone(pipeline):
    # Europe/Madrid leaves summer time on 2026-10-25 at 03:00 CEST (01:00Z): 22:30Z on the 24th
    # is 00:30 on the 25th (UTC+2), 22:30Z on the 25th is 23:30 that day (UTC+1), and 23:30Z on
    # the 25th is 00:30 on the 26th.
    consumer = pipeline.consumer(policy=policy_with(timezone="Europe/Madrid"))
    for payload in (
        incoming("I want a refund", 11, 1792881000.0),  # 2026-10-24T22:30Z, and escalated
        status_changed("open", 1792967400.0),  # 2026-10-25T22:30Z
        status_changed("pending", 1792971000.0),  # 2026-10-25T23:30Z
    ):
        assert pipeline.post(payload)[0] == 202
        pipeline.drain(consumer)
    store = pipeline.store()

    def on(day):
        return sorted((item["kind"], item["occurred_at"]) for item in store.events_on_day("1", day))

    assert on("2026-10-24") == []
    assert on("2026-10-25") == [
        ("escalation", "2026-10-24T22:30:00.000Z"),
        ("event", "2026-10-24T22:30:00.000Z"),
        ("event", "2026-10-25T22:30:00.000Z"),
    ]
    assert on("2026-10-26") == [("event", "2026-10-25T23:30:00.000Z")]


def test_unknown_events_are_acknowledged_and_counted(pipeline):
    assert pipeline.post(fixture("webwidget_triggered"))[0] == 202
    assert pipeline.post({"event": "contact_created", "id": 4, "account": {"id": 1}})[0] == 202
    pipeline.drain()
    assert queue_depth(pipeline, pipeline.queue_url) == 0
    assert queue_depth(pipeline, pipeline.dlq_url) == 0
    assert pipeline.telemetry.total("EventUnrouted") == 2


def test_poison_message_goes_to_the_dlq_at_once_with_its_reason(pipeline):
    payload = fixture("conversation_updated")
    del payload["id"]  # a conversation event that names no conversation can never succeed
    assert pipeline.post(payload, delivery_id="poison-1")[0] == 202
    pipeline.drain()
    assert queue_depth(pipeline, pipeline.queue_url) == 0
    [dead] = pipeline.messages(pipeline.dlq_url)
    attributes = attributes_of(dead)
    assert attributes["error_type"] == "invalid_payload"
    assert (
        attributes["error_reason"] == "conversation_updated of account 1 names no conversation id"
    )
    assert attributes["receive_count"] == "1"  # not retried
    assert attributes["event"] == "conversation_updated"
    assert attributes["delivery_id"] == "poison-1"
    assert json.loads(attributes["original_attributes"])["signed"] == "true"
    assert json.loads(dead["Body"]) == payload


def test_message_that_is_not_json_goes_to_the_dlq(pipeline):
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="definitely not json")
    pipeline.drain()
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_type"] == "invalid_payload"
    assert dead["Body"] == "definitely not json"


def test_claim_checked_payload_is_processed_from_the_bucket(pipeline):
    payload = fixture("message_created_incoming")
    payload["content"] = "y" * 300_000
    assert pipeline.post(payload)[0] == 202
    pipeline.drain()
    assert pipeline.store().get_record("1", "1")["last_incoming_at"] == pytest.approx(1790475262.88)


def test_claim_checked_payload_that_vanished_is_dead_lettered(pipeline):
    payload = fixture("message_created_incoming")
    payload["content"] = "z" * 300_000
    assert pipeline.post(payload)[0] == 202
    [message] = pipeline.messages(pipeline.queue_url)
    pointer = json.loads(message["Body"])["claim_check"]
    pipeline.clients["s3"].delete_object(Bucket=pointer["bucket"], Key=pointer["key"])
    pipeline.drain()
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_type"] == "aws_rejected"
    assert "NoSuchKey" in attributes_of(dead)["error_reason"]


def test_handler_permanent_error_is_dead_lettered_and_the_batch_goes_on(pipeline):
    def refuse(context):
        if context.payload["id"] == 2:
            raise PermanentError("chatwoot_rejected", "POST messages returned 404")

    router = Router()
    router.register(["message_created"], "refuse", refuse)
    for name in CONVERSATION_STORY:
        pipeline.post(fixture(name))
    pipeline.drain(pipeline.consumer(router=router))
    assert queue_depth(pipeline, pipeline.queue_url) == 0
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["dedupe_key"] == "message_created:1:2"
    assert attributes_of(dead)["error_reason"] == "POST messages returned 404"
