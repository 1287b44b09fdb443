"""The pause switch through the real consumer, router, sweep and Chatwoot client (moto and the
fake Chatwoot): nothing reaches Chatwoot while paused, nothing is lost or dead-lettered however
long the pause, and after resume every event is handled once, against the conversation as it is
then."""

from __future__ import annotations

from typing import Any

import pytest

from support_pipeline.config import SupportSettings
from support_pipeline.pause import PauseSwitch, ssm_reader
from support_pipeline.processing.consumer import PRIOR_ATTEMPTS, EventConsumer
from support_pipeline.sla import SlaSweep
from support_pipeline.wiring import build_router, chatwoot_client
from support_pipeline_ops.local import template as cfn
from tests.support import NOW, agent_message, attributes_of, incoming, policy_with

PARAMETER = "/support-pipeline/pause"
HOUR = 3600
CREATED = 1790475251  # the captured conversation's created_at
POLICY = policy_with(
    **{
        "drafts.enabled": False,
        "sla.clock_starts": "created",
        "sla.business_hours_only": {
            "first_response": False,
            "next_response": False,
            "resolution": False,
        },
        "sla.targets.none": {"first_response": "1h", "next_response": "2h", "resolution": "1d"},
    }
)


class World:
    """Ingest, the processor and the sweep wired as the functions wire them, with the pause
    switch reading the parameter on every call (PauseCacheSeconds 0)."""

    def __init__(
        self, pipeline: Any, chatwoot: Any, policy: Any = POLICY, drafter: Any = None
    ) -> None:
        self.pipeline, self.chatwoot = pipeline, chatwoot
        self.ssm = pipeline.clients["ssm"]
        self.switch = PauseSwitch(ssm_reader(self.ssm, PARAMETER), max_age=0)
        client = chatwoot_client(
            SupportSettings(chatwoot_base_url=chatwoot.url, chatwoot_api_token_param="/t"),
            lambda name: chatwoot.token,
            telemetry=pipeline.telemetry,
            pause=self.switch,
        )
        self.support = pipeline.support(
            client, policy, drafters=(lambda inbox: drafter) if drafter else None
        )
        self.consumer = EventConsumer(
            settings=pipeline.processor_settings(),
            sqs=pipeline.sqs,
            s3=pipeline.clients["s3"],
            router=build_router(self.support, clock=pipeline.clock),
            telemetry=pipeline.telemetry,
            clock=pipeline.clock,
            rng=lambda: 1.0,
            pause=self.switch,
        )

    def set(self, mode: str) -> None:
        self.ssm.put_parameter(Name=PARAMETER, Value=mode, Type="String", Overwrite=True)

    def post(self, *payloads: dict[str, Any]) -> None:
        for i, payload in enumerate(payloads):
            delivery = f"pause-{payload.get('id')}-{i}"
            status, _ = self.pipeline.post(
                payload, delivery_id=delivery, timestamp=self.pipeline.clock.now
            )
            assert status == 202

    def process(self, cycles: int = 1) -> None:
        """``cycles`` rounds of time passing (delays and backoffs end) and the queue drained."""
        for _ in range(cycles):
            self.pipeline.make_visible()
            self.pipeline.drain(self.consumer)

    def sweep(self, at: float) -> dict[str, int]:
        self.pipeline.clock.now = at
        return SlaSweep(self.support.sla, self.pipeline.telemetry, pause=self.switch).run(at)

    def waiting(self) -> list[dict[str, Any]]:
        """What is on EventsQueue, read from moto's store: a peek through ReceiveMessage would
        count as a delivery."""
        from moto.sqs.models import sqs_backends

        stack = self.pipeline.stack
        queue = sqs_backends[cfn.ACCOUNT_ID][stack.region].queues[
            stack.attributes[("EventsQueue", "QueueName")]
        ]
        return [
            {
                "attributes": {
                    name: str(value.get("string_value", value.get("StringValue", "")))
                    for name, value in message.message_attributes.items()
                },
                "receive_count": message.approximate_receive_count,
            }
            for message in queue._messages
        ]

    def dead_lettered(self) -> list[dict[str, Any]]:
        return self.pipeline.messages(self.pipeline.dlq_url)


@pytest.fixture
def world(pipeline, chatwoot):
    for conversation in (2, 3):
        chatwoot.add_conversation(1, conversation)
    return World(pipeline, chatwoot)


def records(pipeline) -> dict[str, Any]:
    store = pipeline.store()
    return {c: store.get_record("1", c) for c in ("1", "2", "3")}


def test_consume_holds_every_event_on_the_queue_for_longer_than_any_retry_budget(
    pipeline, chatwoot, world
):
    world.set("consume")
    world.post(
        incoming("Quiero un reembolso, hablar con una persona", 101, NOW),
        incoming("Hola, una pregunta", 102, NOW + 1, conversation_id=2),
        incoming("I want to talk to a human", 103, NOW + 2, conversation_id=3),
    )
    max_receives = int(pipeline.stack.parameters["MaxReceiveCount"])
    world.process(cycles=3 * max_receives)  # far more deliveries than the queue allows

    assert chatwoot.calls == []
    assert world.dead_lettered() == []
    assert records(pipeline) == {"1": None, "2": None, "3": None}  # nothing processed
    waiting = world.waiting()
    assert len(waiting) == 3
    # every copy is fresh and remembers that no real attempt was made
    assert {m["attributes"][PRIOR_ATTEMPTS] for m in waiting} == {"0"}
    assert pipeline.telemetry.counts[("Paused", "consume")] >= 3 * max_receives * 3 - 3

    world.set("off")
    world.process(cycles=2)
    assert world.waiting() == [] and world.dead_lettered() == []
    assert all(record is not None for record in records(pipeline).values())
    assert len(chatwoot.notes(1, 1)) == 1 and len(chatwoot.notes(1, 3)) == 1
    assert chatwoot.notes(1, 2) == []
    world.process(cycles=2)  # and nothing more happens later
    assert len(chatwoot.notes(1, 1)) == 1 and len(chatwoot.notes(1, 3)) == 1


def test_actions_records_events_but_takes_no_action_until_resume(pipeline, chatwoot, world):
    world.set("actions")
    world.post(
        incoming("Quiero un reembolso, hablar con una persona", 101, NOW),
        incoming("Hola, una pregunta", 102, NOW + 1, conversation_id=2),
    )
    world.process(cycles=12)

    assert chatwoot.calls == []  # no call at all, not even a read
    assert world.dead_lettered() == []
    recorded = records(pipeline)
    assert recorded["1"]["last_incoming_at"] and recorded["2"]["last_incoming_at"]
    # The ordinary question needed nothing from Chatwoot: done. The refund request waits.
    [held] = world.waiting()
    assert held["attributes"]["event"] == "message_created"
    assert held["attributes"]["conversation_id"] == "1"
    assert pipeline.telemetry.counts[("Paused", "actions")] >= 12

    world.set("off")
    world.process(cycles=2)
    assert world.waiting() == [] and world.dead_lettered() == []
    [note] = chatwoot.notes(1, 1)
    assert note.startswith("Escalated by the support pipeline:")
    assert "escalated" in chatwoot.conversation(1, 1).labels
    assert len([i for i in pipeline.store().timeline("1", "1") if i["kind"] == "escalation"]) == 1


def test_an_event_keeps_its_real_attempts_across_a_pause(pipeline, chatwoot, world):
    chatwoot.fail("GET", "/labels", 503, times=2)
    world.post(incoming("Quiero un reembolso", 101, NOW))
    world.process(cycles=2)  # two real attempts, both failed
    [waiting] = world.waiting()
    assert waiting["receive_count"] == 2 and PRIOR_ATTEMPTS not in waiting["attributes"]

    world.set("consume")
    world.process(cycles=20)
    [held] = world.waiting()
    assert held["attributes"][PRIOR_ATTEMPTS] == "2"
    assert world.dead_lettered() == []

    world.set("off")
    chatwoot.fail("GET", "/labels", 503, times=100)  # still failing: the budget is what was left
    max_receives = int(pipeline.stack.parameters["MaxReceiveCount"])
    world.process(cycles=max_receives)
    [dead] = world.dead_lettered()
    assert attributes_of(dead)["receive_count"] == str(max_receives)
    assert pipeline.telemetry.counts[("EventRetried", "chatwoot_unavailable")] == max_receives - 1


def test_the_sweep_waits_while_paused_then_acts_on_the_conversations_as_they_are(
    pipeline, chatwoot, world
):
    pipeline.clock.now = CREATED + 10
    world.post(
        incoming("Hola, necesito ayuda", 1, CREATED + 10, status="open"),
        incoming("Hola, otra consulta", 2, CREATED + 10, conversation_id=2, status="open"),
    )
    world.process()
    world.set("actions")
    # Both conversations go at risk (0.8 h) and past due (1 h) during the pause...
    assert world.sweep(CREATED + 0.85 * HOUR)["paused"] == 1
    assert world.sweep(CREATED + 1.1 * HOUR)["paused"] == 1
    # ...and an agent answers conversation 2 meanwhile, which the pipeline records.
    pipeline.clock.now = CREATED + 1.2 * HOUR
    world.post(agent_message("Ya te ayudo", 3, CREATED + 1.2 * HOUR, conversation_id=2))
    world.process(cycles=3)
    assert chatwoot.calls == []
    assert pipeline.telemetry.counts[("Paused", "actions")] >= 2

    world.set("off")
    result = world.sweep(CREATED + 1.3 * HOUR)
    # The breach still stands and is escalated; conversation 2 gets no late warning.
    assert result["breached"] == 1 and result["at_risk"] == 0
    assert "sla-breached" in chatwoot.conversation(1, 1).labels
    assert chatwoot.notes(1, 2) == []
    world.process(cycles=2)
    assert world.waiting() == [] and world.dead_lettered() == []
    assert chatwoot.notes(1, 2) == []


def test_consume_mode_holds_events_before_anything_is_read(pipeline, world):
    world.set("consume")
    world.post(incoming("Hola", 101, NOW))
    calls: list[str] = []
    original = pipeline.sqs.send_message

    def spy(**kwargs):
        calls.append(kwargs["QueueUrl"])
        assert kwargs["DelaySeconds"] == int(pipeline.stack.parameters["PausedEventDelaySeconds"])
        return original(**kwargs)

    pipeline.sqs.send_message = spy
    try:
        world.process()
    finally:
        pipeline.sqs.send_message = original
    assert calls == [pipeline.queue_url]
    assert records(pipeline)["1"] is None


# ---- an approved reply held back by a pause ---------------------------------------------------
class Drafter:
    name = "knowledge"

    def draft(self, context: Any) -> Any:
        from support_pipeline.drafts.base import DraftResult, Source

        return DraftResult(
            "knowledge", "Los envíos tardan de 2 a 4 días.", 0.9, "es", (Source("Envíos"),)
        )


DRAFTS_POLICY = policy_with(
    **{
        "escalation.rules.unanswered_messages.enabled": False,
        "escalation.rules.vip_contact.enabled": False,
    }
)


@pytest.fixture
def drafting(pipeline, chatwoot):
    world = World(pipeline, chatwoot, DRAFTS_POLICY, Drafter())
    question = incoming("¿Cuánto tarda el envío?", 301, NOW, status="open")
    chatwoot.add_customer_message(1, 1, question["content"])
    world.post(question)
    world.process(cycles=2)  # the burst is over: the draft note is posted
    [draft] = world.support.drafts.drafts.of_conversation("1", "1")
    assert draft["status"] == "pending"
    return world, draft


def send_command(chatwoot: Any, draft_id: str, at: float) -> dict[str, Any]:
    """An agent's /send note, written in Chatwoot (its id is Chatwoot's), and its webhook."""
    written = chatwoot.add_agent_message(1, 1, f"/send {draft_id}", private=True, user_id=3)
    note = agent_message(f"/send {draft_id}", written["id"], at, private=True)
    note["sender"]["id"] = 3
    return note


def test_a_send_held_by_a_pause_is_sent_once_at_resume(pipeline, chatwoot, drafting):
    world, draft = drafting
    world.set("actions")
    pipeline.clock.now = NOW + 60
    world.post(send_command(chatwoot, draft["draft_id"], NOW + 60))
    world.process(cycles=5)
    assert chatwoot.public_messages(1, 1) == []

    world.set("off")
    world.process(cycles=2)
    assert chatwoot.public_messages(1, 1) == ["Los envíos tardan de 2 a 4 días."]
    [decided] = world.support.drafts.drafts.of_conversation("1", "1")
    assert decided["status"] == "sent_as_is"


def test_a_send_held_by_a_pause_is_dropped_if_an_agent_answered_meanwhile(
    pipeline, chatwoot, drafting
):
    world, draft = drafting
    world.set("actions")
    pipeline.clock.now = NOW + 60
    world.post(send_command(chatwoot, draft["draft_id"], NOW + 60))
    world.process(cycles=2)
    # Nothing reaches the customer, so the agent answers by hand in Chatwoot.
    pipeline.clock.now = NOW + 120
    written = chatwoot.add_agent_message(1, 1, "Tarda unos 3 días, ¡saludos!", user_id=3)
    reply = agent_message("Tarda unos 3 días, ¡saludos!", written["id"], NOW + 120)
    reply["sender"]["id"] = 3
    world.post(reply)
    world.process(cycles=2)

    world.set("off")
    world.process(cycles=2)
    # The customer is not answered twice: only the agent's own reply is there.
    assert chatwoot.public_messages(1, 1) == ["Tarda unos 3 días, ¡saludos!"]
    [decided] = world.support.drafts.drafts.of_conversation("1", "1")
    assert decided["status"] == "replaced"
    assert any("was not sent" in note for note in chatwoot.notes(1, 1))
    assert world.waiting() == [] and world.dead_lettered() == []
