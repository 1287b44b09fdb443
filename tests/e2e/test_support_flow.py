"""End to end: a customer waits, nobody answers, the SLA sweep (injected clock) acts in Chatwoot.

The local stack runs the real handlers on moto; a fake Chatwoot on loopback receives the calls.
"""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import boto3
import pytest
import requests

from support_pipeline.chatwoot.client import reference
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from tests.e2e.stacks import policy_file, running_stack
from tests.support import (
    agent_message,
    body_of,
    incoming,
    signed_headers,
)

pytestmark = pytest.mark.e2e
SECRET = "e2e-support-secret"  # invented
BOGOTA = ZoneInfo("America/Bogota")


def bogota(*parts):
    return datetime(*parts, tzinfo=BOGOTA).timestamp()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    def for_the_story(policy):
        policy["escalation"]["team_id"] = 7
        policy["drafts"]["burst_window"] = "1s"  # a real delay on the local stack's queue
        policy["drafts"]["inboxes"] = {"1": "off"}  # the SLA story's inbox; drafts tried on 2

    fake = FakeChatwoot(token="e2e-chatwoot-token").start()
    fake.add_team(1, 7, "Escalations", members=(1, 3))  # the policy's escalation team
    try:
        with running_stack(
            SECRET,
            chatwoot_url=fake.url,
            chatwoot_token=fake.token,
            policy_file=policy_file(tmp_path_factory, for_the_story),
            stack_name="e2e-support",  # moto servers in one process share their state
        ) as stack:
            yield stack, fake
    finally:
        fake.stop()


def sweep(stack, at):
    answer = requests.post(f"http://127.0.0.1:{stack.port}/_local/sweep?now={at}", timeout=10)
    assert answer.status_code == 200
    return answer.json()


def settle(stack):
    """Until the poller has emptied EventsQueue (woken by each batch, not by a timer)."""
    return stack.wait_until_settled(timeout=20)


def writes(fake):
    return [
        (c.method, c.suffix, c.body) for c in fake.calls if c.method == "POST" and c.status < 400
    ]


def test_unanswered_customer_is_flagged_at_risk_then_breached_and_escalated(setup):
    stack, fake = setup
    fake.add_conversation(1, 3003, labels=["billing"])
    # Saturday 21:14 in Bogota, after hours: a 4 h business-time first response is due Monday 12:00.
    created = bogota(2026, 9, 26, 21, 14)
    payload = incoming(
        "Hola, ¿me ayudan con mi pedido?",
        9001,
        created + 5,
        conversation_id=3003,
        status="open",
        created_at=created,
    )
    body = body_of(payload)
    answer = requests.post(
        stack.webhook_url,
        data=body,
        timeout=5,
        headers=signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id="e2e-sla"),
    )
    assert answer.status_code == 202
    settle(stack)
    assert writes(fake) == []  # an ordinary question: nothing to do yet

    assert sweep(stack, bogota(2026, 9, 28, 10, 0))["at_risk"] == 0  # 2 business hours in
    result = sweep(stack, bogota(2026, 9, 28, 11, 30))  # past 80 % of 4 h
    assert result["at_risk"] == 1
    assert writes(fake) == [
        ("POST", "/labels", {"labels": ["billing", "sla-at-risk"]}),
        (
            "POST",
            "/messages",
            {
                "content": "SLA at risk: the first response is due 2026-09-28 12:00 "
                "(America/Bogota). Target: 4 h of business time.\n\nref: "
                + reference("sla-at-risk:1:3003:first_response@1790475240/note"),
                "message_type": "outgoing",
                "private": True,
            },
        ),
    ]

    result = sweep(stack, bogota(2026, 9, 28, 12, 5))
    assert (result["breached"], result["cleared"]) == (1, 1)
    later = writes(fake)[2:]
    assert [(m, s) for m, s, _ in later] == [
        ("POST", "/labels"),
        ("POST", "/toggle_priority"),
        ("POST", "/assignments"),
        ("POST", "/messages"),
        ("POST", "/labels"),
    ]
    assert later[1][2] == {"priority": "urgent"}
    assert later[2][2] == {"team_id": 7}
    assert later[3][2]["content"].startswith(
        "Escalated by the support pipeline:\n- SLA breached: the first response"
    )
    conversation = fake.conversation(1, 3003)
    assert sorted(conversation.labels) == ["billing", "escalated", "sla-breached"]

    for minutes in (10, 20, 60):
        sweep(stack, bogota(2026, 9, 28, 12, 5) + minutes * 60)
    assert len(writes(fake)) == 7  # nothing more, however often the sweep runs


def post_webhook(stack, payload, delivery_id):
    body = body_of(payload)
    answer = requests.post(
        stack.webhook_url,
        data=body,
        timeout=5,
        headers=signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id=delivery_id),
    )
    assert answer.status_code == 202, answer.text


def test_customer_question_gets_a_draft_an_agent_sends_it_and_the_customer_gets_one_reply(setup):
    stack, fake = setup
    fake.add_conversation(1, 4004)
    question = "Hola, ¿cuánto tarda el envío de un anillo?"
    fake.add_customer_message(1, 4004, question)
    payload = incoming(question, 9101, time.time(), conversation_id=4004, status="open")
    payload["conversation"]["inbox_id"] = 2
    post_webhook(stack, payload, "e2e-draft-question")
    settle(stack)  # the message, then its draft a burst window later
    [note] = [n for n in fake.notes(1, 4004) if n.startswith("Draft reply d-")]
    draft_id = note.split()[2]
    assert "knowledge:" in note and "/send" in note
    assert fake.public_messages(1, 4004) == []

    # The agent writes /send in Chatwoot: the note has Chatwoot's id, after the draft note.
    written = fake.add_agent_message(1, 4004, "/send", private=True, user_id=3)
    send = agent_message("/send", written["id"], time.time(), private=True, conversation_id=4004)
    send["sender"]["id"] = 3
    for delivery in ("e2e-send", "e2e-send-again"):  # Chatwoot delivers the command twice
        post_webhook(stack, send, delivery)
    settle(stack)
    [reply] = fake.public_messages(1, 4004)
    assert reply in note  # exactly the text the agent saw and approved
    from support_pipeline.drafts.store import DraftStore
    from support_pipeline.policy import load_default_policy

    store = DraftStore(
        boto3.resource("dynamodb"),
        stack.stack.physical["ConversationsTable"],
        load_default_policy().zone,
    )
    draft = store.get("1", "4004", draft_id)
    assert (draft["status"], draft["approver_id"], draft["final_text"]) == (
        "sent_as_is",
        "3",
        reply,
    )
