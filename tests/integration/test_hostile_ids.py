"""Hostile and malformed ids never reach a Chatwoot URL or a DynamoDB key.

A signed payload whose conversation id is ``7/../../../2/conversations/9`` used to make the
pipeline label, prioritise and note account 2's conversation 9 (requests removes the dot
segments). Ingest refuses such payloads (tests/integration/test_ingest.py); these tests cover the
walls behind it: the processor, the REST client and the key builders.
"""

import json

import pytest

from support_pipeline.actions import Action
from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.messages import to_message_attributes
from support_pipeline.processing.errors import PermanentError
from support_pipeline.store import conversation_pk
from tests.support import NOW, SECRET, attributes_of, incoming, policy_with

POLICY = policy_with(**{"escalation.team_id": 7})
TRAVERSAL = "7/../../../2/conversations/9"
HOSTILE = [TRAVERSAL, "1#2", "01", "-1", "0", 0, -3, 1.5, True, "", " 9", "9" * 20]


@pytest.fixture
def victim(chatwoot):
    """Account 2's conversation 9: what the traversal aims at."""
    return chatwoot.add_conversation(2, 9, labels=["vip"])


def escalating_message(**changes):
    """A customer message that escalates (labels, priority, team, note) when processed."""
    payload = incoming("Quiero un reembolso, esto es una estafa", 301, NOW)
    for path, value in changes.items():
        target = payload
        *parents, last = path.split(".")
        for key in parents:
            target = target[key]
        target[last] = value
    return payload


def put_on_queue(pipeline, payload, **attributes):
    """A message on EventsQueue that did not come through ingest (redriven, or sent by hand)."""
    pipeline.sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=json.dumps(payload),
        MessageAttributes=to_message_attributes(attributes),
    )


def process(pipeline, chatwoot):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    pipeline.drain(pipeline.consumer(chatwoot=client, policy=POLICY))


def conversation_items(pipeline):
    table = pipeline.dynamodb.Table(pipeline.stack.physical["ConversationsTable"])
    return table.scan()["Items"]


def action_items(pipeline):
    table = pipeline.dynamodb.Table(pipeline.stack.physical["ActionsTable"])
    return table.scan()["Items"]


def test_a_valid_message_does_escalate_in_chatwoot(pipeline, chatwoot):
    """The control for the tests below: the same message with good ids does act."""
    put_on_queue(pipeline, escalating_message(), signed="true", event="message_created")
    process(pipeline, chatwoot)
    assert "escalated" in chatwoot.conversation(1, 1).labels
    assert pipeline.messages(pipeline.dlq_url) == []


@pytest.mark.parametrize("hostile", HOSTILE, ids=repr)
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("conversation.id", "conversation id at conversation.id"),
        ("account.id", "account id at account.id"),
        ("conversation.account.id", "account id at conversation.account.id"),
    ],
)
def test_a_queued_message_with_a_hostile_id_is_dead_lettered_untouched(
    pipeline, chatwoot, victim, path, field, hostile
):
    payload = escalating_message(**{path: hostile})
    put_on_queue(
        pipeline,
        payload,
        signed="true",
        event="message_created",
        dedupe_key="message_created:1:301",
        delivery_id="old-version-1",
    )
    process(pipeline, chatwoot)

    assert pipeline.messages(pipeline.queue_url) == []
    [dead] = pipeline.messages(pipeline.dlq_url)
    attributes = attributes_of(dead)
    assert attributes["error_type"] == "invalid_payload"
    assert attributes["error_reason"] == f"{field} is not a positive integer"
    assert attributes["receive_count"] == "1"  # permanent: not retried
    assert json.loads(dead["Body"]) == payload
    assert chatwoot.calls == []
    assert victim.labels == ["vip"] and victim.messages == [] and victim.priority is None
    assert conversation_items(pipeline) == []
    assert action_items(pipeline) == []


def test_a_message_sent_by_hand_without_attributes_is_checked_too(pipeline, chatwoot, victim):
    put_on_queue(pipeline, escalating_message(**{"conversation.id": TRAVERSAL}))
    process(pipeline, chatwoot)
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_reason"] == (
        "conversation id at conversation.id is not a positive integer"
    )
    assert chatwoot.calls == []
    assert conversation_items(pipeline) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"event": "conversation_status_changed", "id": TRAVERSAL, "account": {"id": 1}},
            "conversation id at id is not a positive integer",
        ),
        (
            {
                "event": "message_created",
                "id": "301#x",
                "account": {"id": 1},
                "conversation": {"id": 1},
            },
            "message id at id is not a positive integer",
        ),
    ],
)
def test_conversation_and_message_events_name_the_field(pipeline, chatwoot, payload, reason):
    put_on_queue(pipeline, payload, signed="true", event=payload["event"])
    process(pipeline, chatwoot)
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_reason"] == reason
    assert chatwoot.calls == []
    assert conversation_items(pipeline) == []


@pytest.mark.parametrize("hostile", HOSTILE, ids=repr)
@pytest.mark.parametrize(
    "operation",
    [
        lambda client, a, c: client.add_labels(a, c, ["escalated"]),
        lambda client, a, c: client.set_priority(a, c, "urgent"),
        lambda client, a, c: client.create_private_note(a, c, "note", "action-1"),
        lambda client, a, c: client.get_conversation(a, c),
        lambda client, a, c: client.assign(a, c, team_id=7),
    ],
    ids=["labels", "priority", "note", "get", "assign"],
)
def test_the_client_refuses_hostile_ids_before_any_request(chatwoot, victim, operation, hostile):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    for account, conversation in (("1", hostile), (hostile, "1")):
        with pytest.raises(PermanentError) as refused:
            operation(client, account, conversation)
        assert refused.value.error_type == "invalid_id"
        assert "is not a positive integer" in refused.value.reason
    assert chatwoot.calls == []
    assert victim.labels == ["vip"] and victim.messages == []


def test_the_client_still_takes_canonical_ids_as_text_or_int(chatwoot):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    client.set_priority("1", "1", "high")
    client.set_priority(1, 1, "urgent")
    assert [call.path for call in chatwoot.calls] == [
        "/api/v1/accounts/1/conversations/1/toggle_priority"
    ] * 2
    assert chatwoot.conversation(1, 1).priority == "urgent"


@pytest.mark.parametrize(
    ("account", "conversation"),
    [("1", "2#EVENT"), ("1#2", "3"), ("1", TRAVERSAL), ("01", "2"), ("1", ""), ("1", "-2")],
)
def test_keys_refuse_anything_but_canonical_ids(account, conversation):
    with pytest.raises(PermanentError) as refused:
        conversation_pk(account, conversation)
    assert refused.value.error_type == "invalid_payload"
    action = Action(account, conversation, "action-1", "add_labels")
    with pytest.raises(PermanentError):
        action.conversation_key


def test_keys_of_canonical_ids_are_unchanged():
    assert conversation_pk("1", "22") == "CONV#1#22"
    assert Action("1", "22", "a", "add_labels").conversation_key == "1#22"


def test_the_store_refuses_to_register_a_hostile_account(pipeline):
    with pytest.raises(PermanentError):
        pipeline.store().register_account("1#2")
    assert conversation_items(pipeline) == []


# ---- unsigned posts cannot shadow signed events ----------------------------------------------
def escalation_notes(chatwoot):
    return [n for n in chatwoot.notes(1, 1) if n.startswith("Escalated by the support pipeline")]


@pytest.mark.parametrize("event", ["message_created", "automation_event.message_created"])
@pytest.mark.parametrize("forged_delivery", [None, "real-delivery"])
def test_a_forged_unsigned_post_does_not_shadow_the_signed_event(
    pipeline, chatwoot, event, forged_delivery
):
    real = escalating_message()
    forged = {**incoming("Gracias, todo bien", 301, NOW), "event": event}  # same message id
    service = pipeline.ingest(accept_url_token=True)
    headers = {"Content-Type": "application/json"}
    if forged_delivery:
        headers["X-Chatwoot-Delivery"] = forged_delivery
    status, forged_answer = pipeline.post(
        forged, service=service, headers=headers, query=f"token={SECRET}"
    )
    assert status == 202
    process(pipeline, chatwoot)

    status, real_answer = pipeline.post(real, service=service, delivery_id="real-delivery")
    assert status == 202
    process(pipeline, chatwoot)

    assert len(escalation_notes(chatwoot)) == 1  # the real message's work happened
    deliveries = {item.get("delivery_id") for item in pipeline.store().timeline("1", "1")}
    assert "real-delivery" in deliveries
    assert pipeline.messages(pipeline.dlq_url) == []
    assert forged_answer["dedupe_key"].startswith("unsigned:")
    assert forged_answer["dedupe_key"] != real_answer["dedupe_key"]


@pytest.mark.parametrize("dedupe_key", [None, "message_created:1:301"])
def test_a_queued_unsigned_message_gets_an_unsigned_key_in_the_processor(
    pipeline, chatwoot, dedupe_key
):
    """No dedupe_key attribute (sent by hand), or one from before unsigned keys had a namespace."""
    forged = incoming("Gracias, todo bien", 301, NOW)
    attributes = {"signed": "false", "event": "message_created"}
    if dedupe_key:
        attributes["dedupe_key"] = dedupe_key
    put_on_queue(pipeline, forged, **attributes)
    process(pipeline, chatwoot)

    assert pipeline.post(escalating_message(), delivery_id="real-delivery")[0] == 202
    process(pipeline, chatwoot)
    assert len(escalation_notes(chatwoot)) == 1
    deliveries = {item.get("delivery_id") for item in pipeline.store().timeline("1", "1")}
    assert "real-delivery" in deliveries
