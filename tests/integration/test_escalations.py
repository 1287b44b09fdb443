"""Escalation rules and exactly-once actions, against moto and a fake Chatwoot over HTTP."""

import json

import pytest

from support_pipeline.actions import ActionLedger
from support_pipeline.chatwoot.client import ChatwootClient
from tests.support import NOW, agent_message, attributes_of, incoming, policy_with, status_changed

POLICY = policy_with(**{"escalation.team_id": 7})


@pytest.fixture
def run(pipeline, chatwoot):
    """Post payloads through ingest and the processor wired to the fake Chatwoot."""
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    def post_and_process(*payloads, policy=POLICY, delivery_ids=None):
        for i, payload in enumerate(payloads):
            delivery = (delivery_ids or [None] * len(payloads))[i] or f"d-{payload.get('id')}-{i}"
            assert pipeline.post(payload, delivery_id=delivery)[0] == 202
        pipeline.drain(pipeline.consumer(chatwoot=client, policy=policy))

    return post_and_process


def notes(chatwoot):
    return chatwoot.notes(1, 1)


def escalations(pipeline):
    return [i for i in pipeline.store().timeline("1", "1") if i["kind"] == "escalation"]


def test_refund_request_in_spanish_escalates_once_and_keeps_the_persons_labels(
    pipeline, chatwoot, run
):
    run(incoming("Hola, quiero un reembolso. Esto es una estafa!", 101, NOW))
    conversation = chatwoot.conversation(1, 1)
    assert sorted(conversation.labels) == ["billing", "escalated"]
    assert conversation.priority == "urgent"
    assert conversation.team_id == 7
    [note] = notes(chatwoot)
    assert note.startswith("Escalated by the support pipeline:")
    assert '"reembolso"' in note and "negative or abusive" in note
    assert "priority set to urgent; assigned to team 7" in note
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["asks_for_human", "negative_language"]
    # the same reason again in this episode does not escalate again
    run(incoming("Sigo esperando mi reembolso", 102, NOW + 60))
    assert len(notes(chatwoot)) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I want to talk to a human please", "asks_for_human"),
        ("Can I speak to a manager", "asks_for_human"),
        ("I will file a chargeback", "asks_for_human"),
        ("Voy a poner una demanda", "asks_for_human"),
        ("Quiero cancelar mi pedido", "asks_for_human"),
        ("this is useless and unacceptable", "negative_language"),
        ("Servicio pésimo", "negative_language"),
    ],
)
def test_language_rules_fire_in_english_and_spanish(pipeline, chatwoot, run, text, reason):
    run(incoming(text, 201, NOW))
    [recorded] = escalations(pipeline)
    assert reason in recorded["reasons"]
    assert len(notes(chatwoot)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Hola, quiero preguntar por un anillo de compromiso",
        "Do you have this in rose gold?",
        "humanity is great",  # "human" only as part of another word
    ],
)
def test_ordinary_messages_do_not_escalate(pipeline, chatwoot, run, text):
    run(incoming(text, 301, NOW))
    assert escalations(pipeline) == []
    assert chatwoot.calls_to("POST", "/messages") == []
    assert chatwoot.conversation(1, 1).labels == ["billing"]


def test_vip_contact_by_custom_attribute(pipeline, chatwoot, run):
    payload = incoming("Hola", 401, NOW)
    payload["sender"]["custom_attributes"] = {"vip": True}
    run(payload)
    assert escalations(pipeline)[0]["reasons"] == ["vip_contact"]


def test_vip_contact_by_label(pipeline, chatwoot, run):
    run(incoming("Hola", 402, NOW, labels=["vip"]))
    assert escalations(pipeline)[0]["reasons"] == ["vip_contact"]


def test_vip_rule_switched_off_does_not_fire(pipeline, chatwoot, run):
    run(
        incoming("Hola", 403, NOW, labels=["vip"]),
        policy=policy_with(**{"escalation.rules.vip_contact.enabled": False}),
    )
    assert escalations(pipeline) == []


def test_customer_messages_in_a_row_without_a_reply(pipeline, chatwoot, run):
    run(*[incoming(f"mensaje {i}", 500 + i, NOW + i) for i in range(3)])
    assert escalations(pipeline) == []
    run(incoming("mensaje 4", 504, NOW + 4))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["unanswered_messages"]
    assert "4 customer messages in a row" in notes(chatwoot)[0]


def test_an_agent_reply_resets_the_unanswered_count(pipeline, chatwoot, run):
    run(*[incoming(f"mensaje {i}", 510 + i, NOW + i) for i in range(3)])
    run(agent_message("Hola, ya te ayudo", 520, NOW + 10))
    run(incoming("gracias", 521, NOW + 20))
    assert escalations(pipeline) == []


def test_conversation_reopened_twice_escalates(pipeline, chatwoot, run):
    t = NOW
    run(
        status_changed("resolved", t + 1),
        status_changed("open", t + 2),
        status_changed("resolved", t + 3),
    )
    assert escalations(pipeline) == []
    run(status_changed("open", t + 4))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["reopened"]


def test_manual_escalate_note_by_an_agent(pipeline, chatwoot, run):
    run(agent_message("/escalate cliente amenaza con irse", 601, NOW, private=True))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["manual"]
    [note] = notes(chatwoot)
    assert "An agent asked for escalation: cliente amenaza con irse" in note


def echo_of(message, message_id, at):
    """The webhook Chatwoot sends for a message the pipeline created through the API."""
    payload = agent_message(message["content"], message_id, at, private=message["private"])
    payload["sender"] = {"id": message["sender"]["id"], "type": "user", "name": "Support pipeline"}
    payload["content_attributes"] = message["content_attributes"]  # what Chatwoot kept: nothing
    return payload


def test_the_pipelines_own_note_echoed_back_triggers_no_call(pipeline, chatwoot, run):
    run(agent_message("/escalate el cliente amenaza con irse", 701, NOW, private=True))
    [ours] = [m for m in chatwoot.conversation(1, 1).messages if m["private"]]
    assert "/escalate" not in ours["content"] and ours["content_attributes"] == {}
    calls = len(chatwoot.calls)
    # The note quotes the agent's reason; an echo must not escalate again, nor call anything.
    ours["content"] = "/escalate " + ours["content"]
    run(echo_of(ours, 702, NOW + 1))
    assert len(chatwoot.calls) == calls
    assert len(escalations(pipeline)) == 1


def test_messages_by_the_tokens_own_user_are_recognised_without_configuration(
    pipeline, chatwoot, run
):
    mine = {
        "content": "/escalate sin referencia",
        "private": True,
        "sender": {"id": chatwoot.actor_id},
        "content_attributes": {},
    }
    run(echo_of(mine, 711, NOW))
    run(echo_of(mine, 712, NOW + 1))
    assert escalations(pipeline) == []
    assert chatwoot.calls_to("POST", "/messages") == []
    assert len([c for c in chatwoot.calls if c.path == "/api/v1/profile"]) == 1  # asked once
    # An explicit actor in the policy wins and needs no call at all.
    by_actor = incoming("reembolso", 713, NOW + 2)
    by_actor["sender"] = {"id": 42, "type": "user"}
    by_actor["message_type"] = "outgoing"
    run(by_actor, policy=policy_with(**{"actor.id": 42}))
    assert escalations(pipeline) == []


def test_duplicate_and_out_of_order_deliveries_give_one_escalation(pipeline, chatwoot, run):
    first = incoming("quiero hablar con una persona", 801, NOW)
    second = incoming("quiero hablar con una persona YA", 802, NOW + 30)
    run(second, first, first, second, delivery_ids=["a", "b", "c", "d"])
    assert len(notes(chatwoot)) == 1
    assert len(chatwoot.calls_to("POST", "/labels")) == 1


def test_chatwoot_429_and_5xx_back_off_then_succeed_with_one_note(pipeline, chatwoot, run):
    chatwoot.fail("POST", "/messages", 429, times=1)
    chatwoot.fail("GET", "/labels", 503, times=1)
    run(incoming("necesito un abogado", 901, NOW))
    assert notes(chatwoot) == []  # still backing off
    hidden = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
    assert hidden == "1"  # backing off on EventsQueue
    for _ in range(4):
        pipeline.make_visible()
        pipeline.drain(
            pipeline.consumer(
                chatwoot=ChatwootClient(chatwoot.url, lambda: chatwoot.token), policy=POLICY
            )
        )
    assert len(notes(chatwoot)) == 1
    assert sorted(chatwoot.conversation(1, 1).labels) == ["billing", "escalated"]
    assert pipeline.telemetry.total("EventRetried") == 2
    assert pipeline.messages(pipeline.dlq_url) == []


def test_chatwoot_404_sends_the_event_to_the_dlq_with_a_reason(pipeline, chatwoot, run):
    run(incoming("quiero un reembolso", 1001, NOW, id=55))
    [dead] = pipeline.messages(pipeline.dlq_url)
    attributes = attributes_of(dead)
    assert attributes["error_type"] == "chatwoot_rejected"
    assert attributes["error_reason"] == "GET conversations/55/labels returned 404"


def test_crash_between_the_call_and_the_ledger_write_posts_the_note_once(
    pipeline, chatwoot, run, monkeypatch
):
    real = ActionLedger.record_done
    crashed = []

    def crash_once(self, action, owner, result, *status):
        if action.kind == "private_note" and not crashed:
            crashed.append(action.action_id)
            raise ConnectionError("DynamoDB unreachable after the note was posted")
        return real(self, action, owner, result, *status)

    monkeypatch.setattr(ActionLedger, "record_done", crash_once)
    run(incoming("quiero un reembolso", 1101, NOW))
    assert len(chatwoot.calls_to("POST", "/messages")) == 1 and crashed
    # The note's claim is kept (the note may be in Chatwoot) until its lease lapses.
    pipeline.make_visible()
    pipeline.drain(
        pipeline.consumer(
            chatwoot=ChatwootClient(chatwoot.url, lambda: chatwoot.token), policy=POLICY
        )
    )
    assert pipeline.telemetry.total("ActionContended") == 1
    pipeline.clock.advance(120)
    pipeline.make_visible()
    pipeline.drain(
        pipeline.consumer(
            chatwoot=ChatwootClient(chatwoot.url, lambda: chatwoot.token), policy=POLICY
        )
    )
    assert len(chatwoot.calls_to("POST", "/messages")) == 1  # found in Chatwoot, not posted again
    ledger = pipeline.support().ledger.list("1", "1")
    note = next(item for item in ledger if item["kind"] == "private_note")
    assert note["status"] == "done" and note["result"]["recovered"] is True


def test_without_chatwoot_every_action_is_a_listed_dry_run(pipeline):
    assert pipeline.post(incoming("quiero un reembolso", 1201, NOW))[0] == 202
    pipeline.drain(pipeline.consumer(policy=POLICY))
    items = pipeline.support().ledger.list("1", "1")
    assert {item["status"] for item in items} == {"dry_run"}
    assert sorted(item["kind"] for item in items) == [
        "add_labels",
        "assign_team",
        "private_note",
        "set_priority",
    ]
    note = next(item for item in items if item["kind"] == "private_note")
    assert note["detail"]["content"].startswith("Escalated by the support pipeline:")
    assert json.dumps(items)  # serialisable for `support-pipeline actions list --json`


def test_edits_of_one_customer_message_do_not_count_as_more_unanswered_messages(
    pipeline, chatwoot, run
):
    run(*[incoming(f"mensaje {i}", 530 + i, NOW + i) for i in range(3)])
    for edit in range(3):
        updated = incoming(f"mensaje 0 (editado {edit})", 530, NOW)
        updated["event"] = "message_updated"
        updated["conversation"]["messages"][0]["updated_at"] = NOW + 100 + edit
        run(updated)
    assert escalations(pipeline) == []  # still three distinct messages waiting
    run(incoming("mensaje 4", 534, NOW + 200))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["unanswered_messages"]


def test_a_reason_escalates_again_in_the_next_episode_not_before(pipeline, chatwoot, run):
    run(incoming("quiero un reembolso", 1301, NOW))
    run(status_changed("resolved", NOW + 100), status_changed("open", NOW + 200))
    run(incoming("otra vez: quiero un reembolso", 1302, NOW + 300))
    assert len(escalations(pipeline)) == 2  # a new episode
    # A late delivery from before the reopening must not reopen the claims of this episode.
    run(status_changed("resolved", NOW + 150))
    run(incoming("¡mi reembolso!", 1303, NOW + 400))
    assert len(escalations(pipeline)) == 2


def test_a_customer_who_types_a_pipeline_reference_line_is_still_a_customer(
    pipeline, chatwoot, run
):
    run(incoming("quiero un reembolso\n\nref: sp-0123456789abcdef", 1311, NOW))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["asks_for_human"]


def test_an_escalation_recorded_in_dry_run_does_not_stop_the_live_one(pipeline, chatwoot, run):
    assert pipeline.post(incoming("quiero un reembolso", 1321, NOW), delivery_id="dry")[0] == 202
    pipeline.drain(pipeline.consumer(policy=POLICY))  # dry run
    run(incoming("sigo queriendo mi reembolso", 1322, NOW + 60))  # live now
    assert len(notes(chatwoot)) == 1 and len(escalations(pipeline)) == 2


OWN = "the pipeline's own user"


def escalate_note_from(sender, message_id=1201, incoming_message=False, private=True):
    """An ``/escalate`` note written by ``sender`` (None: no sender at all)."""
    text = "/escalate cliente amenaza con irse"
    if incoming_message:
        payload = incoming(text, message_id, NOW)
    else:
        payload = agent_message(text, message_id, NOW, private=private)
    if sender is None:
        payload.pop("sender", None)
    else:
        payload["sender"] = sender
    return payload


@pytest.mark.parametrize(
    ("who", "sender", "options"),
    [
        ("a contact, as a customer message", None, {"incoming_message": True}),
        ("a contact, on a private outgoing message", {"id": 9, "type": "contact"}, {}),
        ("an agent bot", {"id": 1, "type": "agent_bot", "name": "Helper bot"}, {}),
        ("an agent bot, as Chatwoot's class name", {"id": 1, "type": "AgentBot"}, {}),
        ("nobody (no sender)", None, {}),
        ("a sender that is not an object", "user", {}),
        (OWN, OWN, {}),
        ("an agent, in a public reply", {"id": 3, "type": "user"}, {"private": False}),
    ],
)
def test_escalate_is_obeyed_only_from_an_agents_private_note(
    pipeline, chatwoot, run, who, sender, options
):
    """Issue 15, part 7: only a person's private note escalates by hand."""
    if sender == OWN:
        sender = {"id": chatwoot.actor_id, "type": "user"}
    run(escalate_note_from(sender, **options))
    assert escalations(pipeline) == [], who
    assert chatwoot.calls_to("POST", "/messages") == []
    assert chatwoot.calls_to("POST", "/labels") == []
    assert chatwoot.conversation(1, 1).labels == ["billing"]
    # The same words in an agent's private note escalate: the refusal above was the sender's.
    run(escalate_note_from({"id": 3, "type": "user", "name": "Agent"}, message_id=1202))
    [recorded] = escalations(pipeline)
    assert recorded["reasons"] == ["manual"]
