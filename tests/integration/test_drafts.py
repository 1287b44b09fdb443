"""Reply drafts end to end through the real processor, against moto and the fake Chatwoot.

The drafter here is a small honest stand-in (keyword answers with a confidence); the real
drafters have their own tests. Everything else is real: ingest, the queue with its delays, the
consumer, the draft store, the action ledger and Chatwoot over HTTP.
"""

import threading

import pytest

from support_pipeline.chatwoot.client import ChatwootClient, content_digest, reference_in
from support_pipeline.drafts.base import DraftResult, Source
from support_pipeline.drafts.store import DraftStore
from support_pipeline.sla import SlaSweep
from support_pipeline_ops.local import lambda_shim
from tests.overlap import Rendezvous
from tests.support import NOW, agent_message, incoming, policy_with

POLICY = policy_with(
    **{
        "escalation.rules.unanswered_messages.enabled": False,
        "escalation.rules.vip_contact.enabled": False,
        "drafts.quiet_after_agent_reply": "10m",
    }
)
ANSWERS = {
    "envio": ("Hola, los envíos a todo el país tardan de 2 a 4 días hábiles.", 0.82, "Envíos"),
    "shipping": ("Hi! Shipping takes 2 to 4 business days.", 0.8, "Shipping"),
    "talla": ("Las tallas de anillo van del 5 al 10; te ayudamos a medirla.", 0.7, "Tallas"),
}


class CannedDrafter:
    """Answers what it knows, with a confidence; nothing good enough otherwise."""

    name = "knowledge"

    def __init__(self):
        self.contexts = []

    def draft(self, context):
        self.contexts.append(context)
        text = context.question.lower().replace("í", "i")
        for keyword, (answer, confidence, title) in ANSWERS.items():
            if keyword in text:
                language = "en" if keyword == "shipping" else "es"
                return DraftResult("knowledge", answer, confidence, language, (Source(title),))
        return DraftResult("knowledge", None, 0.05, "es", ())


@pytest.fixture
def drafter():
    return CannedDrafter()


@pytest.fixture
def world(pipeline, chatwoot, drafter):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    class World:
        deliveries = 0

        def consumer(self, policy=POLICY):
            return pipeline.consumer(chatwoot=client, policy=policy, drafters=lambda inbox: drafter)

        def post(self, *payloads, policy=POLICY):
            """Deliver webhooks and process them; customers' messages appear in Chatwoot too."""
            for payload in payloads:
                if payload["message_type"] == "incoming":
                    chatwoot.add_customer_message(
                        1, payload["conversation"]["id"], payload["content"]
                    )
                World.deliveries += 1
                assert pipeline.post(payload, delivery_id=f"w-{World.deliveries}")[0] == 202
            pipeline.drain(self.consumer(policy))

        def burst_over(self, policy=POLICY):
            """The burst window passes: the scheduled draft events are due."""
            pipeline.end_delays()
            pipeline.drain(self.consumer(policy))

        def note(self, content, message_id, at, agent_id=3, **kwargs):
            """An agent's private note, written in Chatwoot (so it has Chatwoot's own id, after
            every message already there), and its webhook."""
            payload = agent_message(content, message_id, at, private=True, **kwargs)
            written = chatwoot.add_agent_message(
                1, payload["conversation"]["id"], content, private=True, user_id=agent_id
            )
            payload["id"] = written["id"]
            payload["sender"]["id"] = agent_id
            return payload

        def drafts(self, conversation=1):
            return pipeline.support().drafts.drafts.of_conversation("1", str(conversation))

    return World()


def draft_notes(chatwoot, conversation=1):
    return [n for n in chatwoot.notes(1, conversation) if n.startswith("Draft reply")]


def ask(text, message_id, at=NOW, conversation=1):
    return incoming(text, message_id, at, conversation, status="open")


def test_a_spanish_question_gets_one_cited_draft_note_and_nothing_public(
    pipeline, chatwoot, world, drafter
):
    world.post(ask("Hola, ¿cuánto tarda el envío a Medellín?", 101))
    assert draft_notes(chatwoot) == []  # the turn may not be over yet
    world.burst_over()
    [note] = draft_notes(chatwoot)
    [draft] = world.drafts()
    assert draft["status"] == "pending" and draft["drafter"] == "knowledge"
    assert draft["text"] == ANSWERS["envio"][0] and draft["confidence"] == 0.82
    assert draft["sources"] == [{"title": "Envíos", "ref": ""}]
    assert draft["question"] == "Hola, ¿cuánto tarda el envío a Medellín?"
    assert note.startswith(f"Draft reply {draft['draft_id']} · 82% confident · knowledge: Envíos")
    assert ANSWERS["envio"][0] in note and "/send" in note and reference_in(note)
    assert chatwoot.public_messages(1, 1) == []
    [context] = drafter.contexts
    assert [m.role for m in context.messages] == ["customer"]


def test_low_confidence_labels_the_conversation_for_a_person_and_posts_no_draft(
    pipeline, chatwoot, world
):
    world.post(ask("Quiero hablar de otra cosa", 111))
    world.burst_over()
    assert draft_notes(chatwoot) == []
    assert "needs-human" in chatwoot.conversation(1, 1).labels
    [gap] = world.drafts()
    assert gap["status"] == "no_draft" and gap["question"] == "Quiero hablar de otra cosa"
    assert gap["confidence"] == 0.05


def test_a_burst_of_messages_gets_one_draft_for_the_whole_turn(pipeline, chatwoot, world, drafter):
    world.post(
        ask("Hola", 121, NOW),
        ask("una pregunta", 122, NOW + 3),
        ask("¿hacen envío a Cali?", 123, NOW + 6),
    )
    assert pipeline.delayed() == 3
    world.burst_over()
    assert len(draft_notes(chatwoot)) == 1
    [draft] = world.drafts()
    assert draft["question"] == "Hola\nuna pregunta\n¿hacen envío a Cali?"
    assert len(drafter.contexts) == 1


def test_send_delivers_exactly_one_public_reply_even_when_delivered_twice(
    pipeline, chatwoot, world
):
    world.post(ask("¿Cuánto tarda el envío?", 131))
    world.burst_over()
    [draft] = world.drafts()
    send = world.note("/send", 132, NOW + 60)
    world.post(send, send)  # the same note delivered twice (two delivery ids)
    world.post(world.note("/send", 133, NOW + 70))  # an agent sends again
    assert chatwoot.public_messages(1, 1) == [draft["text"]]
    [sent] = world.drafts()
    assert sent["status"] == sent["outcome"] == "sent_as_is"
    assert sent["approver_id"] == "3" and sent["edit_ratio"] == 1.0
    approval = pipeline.support().drafts.drafts.approval("1", "1", draft["draft_id"])
    assert approval["digest"] == content_digest(draft["text"]) and approval["approver_id"] == "3"
    assert chatwoot.notes(1, 1)[-1].startswith(f"Draft {draft['draft_id']} was already sent")


def test_two_workers_racing_on_send_give_one_public_reply(pipeline, chatwoot, world, monkeypatch):
    world.post(ask("¿Cuánto tarda el envío?", 141))
    world.burst_over()
    [draft] = world.drafts()
    for message_id in (142, 143):  # two agents type /send at the same moment
        note = world.note("/send", message_id, NOW + 60)
        assert pipeline.post(note, delivery_id=f"s{message_id}")[0] == 202
    # Both workers have read the draft as pending and are about to claim its approval (the
    # conditional write the race is about): neither writes until both are there.
    inside = Rendezvous(2)
    monkeypatch.setattr(DraftStore, "record_approval", inside.before(DraftStore.record_approval))
    start = threading.Barrier(2)

    def worker():
        consumer = world.consumer()
        start.wait(timeout=10)
        lambda_shim.poll_once(
            pipeline.sqs, pipeline.queue_url, pipeline.queue_arn, consumer.handle_batch, 1
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    inside.assert_overlapped()
    for _ in range(4):
        pipeline.clock.advance(300)
        pipeline.make_visible()
        pipeline.drain(world.consumer())
    assert chatwoot.public_messages(1, 1) == [draft["text"]]
    [sent] = world.drafts()
    assert sent["status"] == "sent_as_is"
    approval = pipeline.support().drafts.drafts.approval("1", "1", draft["draft_id"])
    assert approval["command_id"] == sent["command_id"]  # one approval, the winner's
    assert pipeline.telemetry.counts[("DraftDecided", "sent_as_is")] == 1
    [already] = [n for n in chatwoot.notes(1, 1) if "was already" in n]  # the loser is told
    assert already.startswith(f"Draft {draft['draft_id']} was already")
    assert pipeline.messages(pipeline.dlq_url) == []


def test_reject_grade_and_malformed_commands(pipeline, chatwoot, world):
    world.post(ask("¿Qué tallas de anillo tienen?", 151))
    world.burst_over()
    [draft] = world.drafts()
    world.post(world.note("/grade tone=5 accuracy=4", 152, NOW + 10))
    assert chatwoot.notes(1, 1)[-1].startswith("/grade needs policy (1 to 5)")
    world.post(world.note("/grade tone=6 accuracy=4 policy=5", 153, NOW + 11))
    assert chatwoot.notes(1, 1)[-1].startswith("tone must be a whole number from 1 to 5.")
    world.post(world.note("/send d-zzzzzz", 154, NOW + 12))
    assert chatwoot.notes(1, 1)[-1].startswith("There is no draft d-zzzzzz in this conversation.")
    world.post(world.note("/reject habla de otra talla", 155, NOW + 20))
    world.post(
        world.note(f"/grade {draft['draft_id']} tone=4 accuracy=2 policy=5 inexacto", 156, NOW + 30)
    )
    [decided] = world.drafts()
    assert decided["status"] == "rejected" and decided["rejection_reason"] == "habla de otra talla"
    assert decided["grades"] == {"tone": 4, "accuracy": 2, "policy": 5}
    assert decided["grade_comment"] == "inexacto" and decided["graded_by"] == "3"
    world.post(world.note("/send", 157, NOW + 40))
    assert chatwoot.notes(1, 1)[-1].startswith(f"Draft {draft['draft_id']} was already rejected")
    assert chatwoot.public_messages(1, 1) == []


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("Hola, los envíos a todo el país tardan de 3 a 5 días hábiles.", "edited"),
        ("Te llamo ahora mismo para revisarlo.", "replaced"),
    ],
)
def test_an_agents_own_reply_decides_the_draft_by_similarity(
    pipeline, chatwoot, world, reply, outcome
):
    world.post(ask("¿Cuánto tarda el envío?", 161))
    world.burst_over()
    world.post(agent_message(reply, 162, NOW + 120, status="open"))
    [draft] = world.drafts()
    assert draft["status"] == draft["outcome"] == outcome
    assert draft["final_text"] == reply
    if outcome == "edited":
        assert (draft["edit_distance"], draft["edit_ratio"]) == (2, 0.875)  # 2 of 16 words changed
    else:
        assert draft["edit_ratio"] < 0.6
    assert chatwoot.public_messages(1, 1) == []  # the agent's reply went through Chatwoot itself


def test_a_newer_customer_message_supersedes_the_pending_draft(pipeline, chatwoot, world):
    world.post(ask("¿Cuánto tarda el envío?", 171))
    world.burst_over()
    world.post(ask("¿y qué tallas tienen?", 172, NOW + 300))
    first, *_ = world.drafts()
    assert first["status"] == "superseded"
    world.burst_over()
    assert [d["status"] for d in world.drafts()] == ["superseded", "pending"]
    assert len(draft_notes(chatwoot)) == 2


def test_an_undecided_draft_expires_on_the_sweep(pipeline, chatwoot, world):
    world.post(ask("¿Cuánto tarda el envío?", 181))
    world.burst_over()
    support = pipeline.support(ChatwootClient(chatwoot.url, lambda: chatwoot.token), POLICY)
    sweep = SlaSweep(support.sla, pipeline.telemetry, clock=pipeline.clock, drafts=support.drafts)
    assert sweep.run(NOW + 3600)["drafts_expired"] == 0
    pipeline.clock.advance(24 * 3600 + 1)
    assert sweep.run(NOW + 24 * 3600 + 1)["drafts_expired"] == 1
    [draft] = world.drafts()
    assert draft["status"] == "expired" and draft["seconds_to_decision"] >= 86400


def test_csat_joins_the_signal_of_decided_drafts(pipeline, chatwoot, world):
    world.post(ask("¿Cuánto tarda el envío?", 191))
    world.burst_over()
    world.post(world.note("/send", 192, NOW + 60))
    survey = incoming("", 193, NOW + 600, status="resolved")
    survey.update(event="message_updated", message_type="template", content_type="input_csat")
    survey["content_attributes"] = {
        "submitted_values": {"csat_survey_response": {"rating": 4, "feedback_message": "bien"}}
    }
    survey["conversation"]["messages"][0]["updated_at"] = NOW + 601
    assert pipeline.post(survey, delivery_id="csat")[0] == 202
    pipeline.drain(world.consumer())
    [draft] = world.drafts()
    assert draft["csat"] == 4


def test_the_pipelines_own_draft_note_and_sent_reply_echoed_back_trigger_nothing(
    pipeline, chatwoot, world
):
    world.post(ask("¿Cuánto tarda el envío?", 201))
    world.burst_over()
    world.post(world.note("/send", 202, NOW + 60))
    calls = len(chatwoot.calls)
    ours = [
        m for m in chatwoot.conversation(1, 1).messages if m["sender"]["id"] == chatwoot.actor_id
    ]
    for i, message in enumerate(ours):
        echo = agent_message(message["content"], 300 + i, NOW + 70 + i, private=message["private"])
        echo["sender"] = {"id": chatwoot.actor_id, "type": "user"}
        assert pipeline.post(echo, delivery_id=f"echo-{i}")[0] == 202
    pipeline.drain(world.consumer())
    world.burst_over()
    assert len(chatwoot.calls) == calls
    assert [d["status"] for d in world.drafts()] == ["sent_as_is"]


def test_no_draft_while_an_agent_is_talking_or_on_escalated_conversations(
    pipeline, chatwoot, world
):
    world.post(agent_message("Hola, soy Ana", 211, NOW, status="open"))
    world.post(ask("¿Cuánto tarda el envío?", 212, NOW + 60))
    world.burst_over()
    assert world.drafts() == []
    world.post(ask("quiero un reembolso del envío", 213, NOW + 3600, conversation=1))
    world.burst_over()
    assert world.drafts() == []  # the refund request escalated it: a person is on it


def test_every_public_message_sent_had_a_matching_stored_approval(pipeline, chatwoot, world):
    world.post(ask("¿Cuánto tarda el envío?", 221))
    world.burst_over()
    world.post(world.note("/send", 222, NOW + 60))
    world.post(ask("¿qué tallas tienen?", 223, NOW + 120))
    world.burst_over()
    world.post(world.note("/reject no", 224, NOW + 130))
    store = pipeline.support().drafts.drafts
    public = [c for c in chatwoot.calls_to("POST", "/messages") if c.body["private"] is False]
    assert public
    for call in public:
        approvals = [
            store.approval("1", "1", d["draft_id"]) for d in world.drafts() if d.get("text")
        ]
        assert content_digest(call.body["content"]) in {a["digest"] for a in approvals if a}


def test_without_chatwoot_drafts_and_sends_are_listed_dry_runs(pipeline, drafter):
    consumer = pipeline.consumer(policy=POLICY, drafters=lambda inbox: drafter)
    assert pipeline.post(ask("¿Cuánto tarda el envío?", 231))[0] == 202
    pipeline.drain(consumer)
    pipeline.end_delays()
    pipeline.drain(consumer)
    store = DraftStore(
        pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], POLICY.zone
    )
    [draft] = store.of_conversation("1", "1")
    assert draft["status"] == "pending"
    [note] = [a for a in pipeline.support().ledger.list("1", "1") if a["kind"] == "private_note"]
    assert note["status"] == "dry_run" and draft["draft_id"] in note["detail"]["content"]
