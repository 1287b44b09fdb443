"""Chatwoot as it really behaves, through the real client and handlers (issue: Chatwoot as it
really behaves). The fake follows Chatwoot's source, each behaviour with a comment naming the
file; these tests pin what the pipeline does about it."""

from __future__ import annotations

import pytest
import requests

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.policy import PolicyError
from tests.support import NOW, SECRET, attributes_of, fixture, policy_with


def test_toggle_priority_takes_only_chatwoots_enum_and_null(chatwoot):
    """Conversation#toggle_priority assigns to a Rails enum: "none" is a 500, null clears."""
    url = f"{chatwoot.url}/api/v1/accounts/1/conversations/1/toggle_priority"
    headers = {"api_access_token": chatwoot.token}
    assert (
        requests.post(url, json={"priority": "none"}, headers=headers, timeout=5).status_code == 500
    )
    assert (
        requests.post(url, json={"priority": "high"}, headers=headers, timeout=5).status_code == 200
    )
    assert chatwoot.conversation(1, 1).priority == "high"
    assert (
        requests.post(url, json={"priority": None}, headers=headers, timeout=5).status_code == 200
    )
    assert chatwoot.conversation(1, 1).priority is None


@pytest.mark.parametrize("clear", [None, "none"])
def test_the_client_clears_a_priority_with_null(chatwoot, clear):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    client.set_priority("1", "1", "urgent")
    client.set_priority("1", "1", clear)
    assert chatwoot.conversation(1, 1).priority is None
    [_, cleared] = chatwoot.calls_to("POST", "/toggle_priority")
    assert cleared.body == {"priority": None}


def test_a_policy_cannot_escalate_to_priority_none():
    with pytest.raises(PolicyError, match=r"escalation\.priority must be one of urgent"):
        policy_with(**{"escalation.priority": "none"})
    assert policy_with(**{"escalation.priority": None}).escalation.priority is None


# ---- automation rules' "Send webhook event" ------------------------------------------------
def automation_post(message_id, content, at, conversation_id=1, message_type=0):
    """What AutomationRules::ActionService#send_webhook_event posts for a message_created rule:
    ``conversation.webhook_data`` merged with ``event: "automation_event.message_created"``.
    The top-level ``id`` is the conversation's; the message is ``messages[0]``, the last chat
    message (integer message_type, the conversation's database id, not its display id)."""
    post = fixture("conversation_updated")
    post.pop("changed_attributes", None)
    post.update(event="automation_event.message_created", id=conversation_id, status="open")
    embedded = post["messages"][0]
    embedded.update(
        id=message_id,
        content=content,
        message_type=message_type,
        created_at=int(at),
        conversation_id=77,  # Chatwoot's database id: never the conversation's display id
        private=False,
        sender_type="Contact",
        sender={"id": 1, "name": "Ana Prueba", "type": "contact"},
    )
    post["messages"] = [embedded]
    return post


def post_unsigned(pipeline, payload):
    """Posted by URL token, as an automation rule's webhook URL carries it."""
    return pipeline.post(
        payload, service=pipeline.ingest(accept_url_token=True), headers={}, query=f"token={SECRET}"
    )


def test_automation_posts_are_keyed_by_the_message_they_carry(pipeline):
    first = automation_post(101, "Hola, ¿cuánto tarda el envío?", NOW)
    second = automation_post(102, "¿Y a Cali?", NOW + 60)
    answers = [post_unsigned(pipeline, p) for p in (first, second, second)]
    assert [status for status, _ in answers] == [202, 202, 202]
    assert [body["dedupe_key"] for _, body in answers] == [
        "unsigned:message_created:1:101",
        "unsigned:message_created:1:102",
        "unsigned:message_created:1:102",  # the same post again: a repeat
    ]
    pipeline.drain()
    timeline = pipeline.store().timeline("1", "1")
    assert sorted(i.get("message_id") for i in timeline if i.get("message_id")) == ["101", "102"]
    record = pipeline.store().get_record("1", "1")
    assert record["last_incoming_at"] == pytest.approx(NOW + 60)
    assert pipeline.messages(pipeline.dlq_url) == []
    assert pipeline.telemetry.total("EventDuplicate") == 1


def test_an_automation_post_runs_the_same_support_work_as_a_signed_message(pipeline, chatwoot):
    """The README's advice (automation rules for what webhooks cannot send) holds: a customer's
    refund demand posted by an automation rule escalates as the signed webhook would."""
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    policy = policy_with(**{"escalation.team_id": None})
    assert post_unsigned(pipeline, automation_post(301, "Quiero un reembolso ya", NOW))[0] == 202
    pipeline.drain(pipeline.consumer(chatwoot=client, policy=policy))
    assert any(n.startswith("Escalated by the support pipeline") for n in chatwoot.notes(1, 1))
    assert pipeline.messages(pipeline.dlq_url) == []


def test_an_automation_post_without_a_message_is_dead_lettered_with_its_reason(pipeline):
    post = automation_post(101, "x", NOW)
    post["messages"] = []
    assert post_unsigned(pipeline, post)[0] == 202
    pipeline.drain()
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_type"] == "invalid_payload"
