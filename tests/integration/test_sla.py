"""SLA clocks, the sweep and outcomes, against moto and a fake Chatwoot."""

import pytest

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.sla import SlaSweep
from tests.support import agent_message, incoming, policy_with, status_changed

HOUR = 3600
# Wall-clock targets so the arithmetic in these tests is plain; business time has its own tests.
POLICY = policy_with(
    **{
        "escalation.team_id": 7,
        "sla.clock_starts": "created",
        "sla.business_hours_only": {
            "first_response": False,
            "next_response": False,
            "resolution": False,
        },
        "sla.targets.none": {"first_response": "1h", "next_response": "2h", "resolution": "1d"},
    }
)
CREATED = 1790475251  # the captured conversation's created_at


@pytest.fixture
def world(pipeline, chatwoot):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    class World:
        def post(self, *payloads, policy=POLICY):
            for i, payload in enumerate(payloads):
                delivery = f"sla-{payload.get('id')}-{i}"
                assert (
                    pipeline.post(payload, delivery_id=delivery, timestamp=pipeline.clock.now)[0]
                    == 202
                )
            pipeline.drain(pipeline.consumer(chatwoot=client, policy=policy))

        def sweep(self, at, policy=POLICY):
            pipeline.clock.now = at
            support = pipeline.support(client, policy)
            return SlaSweep(support.sla, pipeline.telemetry).run(at)

    return World()


def timeline(pipeline, kind):
    return [i for i in pipeline.store().timeline("1", "1") if i["kind"] == kind]


def test_nobody_answers_at_risk_then_breach_each_once_across_many_sweeps(pipeline, chatwoot, world):
    world.post(incoming("Hola, necesito ayuda con mi pedido", 1, CREATED + 10, status="open"))
    assert world.sweep(CREATED + 0.5 * HOUR)["at_risk"] == 0
    assert chatwoot.notes(1, 1) == []

    assert world.sweep(CREATED + 0.85 * HOUR)["at_risk"] == 1
    assert sorted(chatwoot.conversation(1, 1).labels) == ["billing", "sla-at-risk"]
    [note] = chatwoot.notes(1, 1)
    assert note.startswith("SLA at risk: the first response is due 2026-09-26 22:14")
    assert world.sweep(CREATED + 0.9 * HOUR)["at_risk"] == 0

    result = world.sweep(CREATED + 1.1 * HOUR)
    assert result["breached"] == 1
    conversation = chatwoot.conversation(1, 1)
    assert sorted(conversation.labels) == ["billing", "escalated", "sla-breached"]
    assert conversation.priority == "urgent" and conversation.team_id == 7
    assert len(chatwoot.notes(1, 1)) == 2
    assert "SLA breached: the first response was due" in chatwoot.notes(1, 1)[1]

    for minutes in (5, 10, 15, 60):
        assert world.sweep(CREATED + 1.1 * HOUR + minutes * 60)["breached"] == 0
    assert len(chatwoot.notes(1, 1)) == 2
    assert len(chatwoot.calls_to("POST", "/toggle_priority")) == 1
    assert len(chatwoot.calls_to("POST", "/assignments")) == 1
    [breach] = timeline(pipeline, "sla_breach")
    assert (breach["target"], breach["met"], breach["priority"]) == (
        "first_response",
        False,
        "none",
    )
    [escalation] = timeline(pipeline, "escalation")
    assert escalation["reasons"] == ["sla_breach"]


def test_a_reply_before_the_sweep_clears_the_risk_and_records_the_target_met(
    pipeline, chatwoot, world
):
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    world.sweep(CREATED + 0.85 * HOUR)
    assert "sla-at-risk" in chatwoot.conversation(1, 1).labels
    world.post(agent_message("Hola, ¿en qué te ayudo?", 2, CREATED + 0.9 * HOUR, status="open"))
    assert chatwoot.conversation(1, 1).labels == ["billing"]
    [outcome] = timeline(pipeline, "sla_outcome")
    assert (outcome["target"], outcome["met"]) == ("first_response", True)
    assert outcome["measured_seconds"] == int(0.9 * HOUR)
    assert world.sweep(CREATED + 2 * HOUR)["breached"] == 0


def test_next_response_clock_after_each_waiting_customer_message(pipeline, chatwoot, world):
    world.post(
        incoming("Hola", 1, CREATED + 10, status="open"),
        agent_message("Hola!", 2, CREATED + 600, status="open"),
        incoming("¿Tienen envío?", 3, CREATED + 1000, status="open"),
        incoming("¿Hola?", 4, CREATED + 1200, status="open"),
    )
    assert world.sweep(CREATED + 1000 + 1.7 * HOUR)["at_risk"] == 1
    assert "next response" in chatwoot.notes(1, 1)[-1]
    assert world.sweep(CREATED + 1000 + 2.1 * HOUR)["breached"] == 1
    world.post(agent_message("Sí, enviamos", 5, CREATED + 1000 + 2.5 * HOUR, status="open"))
    outcomes = {(o["target"], o["met"]) for o in timeline(pipeline, "sla_outcome")}
    assert outcomes == {("first_response", True), ("next_response", False)}


def test_resolution_records_the_outcome_and_leaves_the_sweep(pipeline, chatwoot, world):
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    world.post(status_changed("resolved", CREATED + 2 * HOUR))
    outcomes = {(o["target"], o["met"]) for o in timeline(pipeline, "sla_outcome")}
    assert ("resolution", True) in outcomes
    assert world.sweep(CREATED + 30 * HOUR) == {
        "conversations": 0,
        "at_risk": 0,
        "breached": 0,
        "cleared": 0,
        "failed": 0,
        "gone": 0,
        "left_for_next_sweep": 0,
    }


def test_chatwoots_applied_sla_wins_over_the_policy(pipeline, chatwoot, world):
    applied = {
        "sla_first_response_time_threshold": 600.0,
        "sla_next_response_time_threshold": 1200.0,
        "sla_resolution_time_threshold": 7200.0,
        "sla_only_during_business_hours": False,
        "sla_name": "Gold",
    }
    world.post(incoming("Hola", 1, CREATED + 10, status="open", applied_sla=applied))
    assert world.sweep(CREATED + 700)["breached"] == 1
    assert "Target: 10 min of wall-clock time." in chatwoot.notes(1, 1)[-1]


def test_priority_picks_the_target(pipeline, chatwoot, world):
    world.post(incoming("Hola", 1, CREATED + 10, status="open", priority="urgent"))
    # urgent first response is 15 minutes of business time in the shipped policy
    policy = policy_with(
        **{"sla.clock_starts": "created", "sla.business_hours_only.first_response": False}
    )
    assert world.sweep(CREATED + 16 * 60, policy=policy)["breached"] == 1


def test_time_with_a_bot_in_pending_does_not_count_when_clocks_start_on_open(
    pipeline, chatwoot, world
):
    policy = policy_with(
        **{
            "sla.clock_starts": "opened",
            "sla.business_hours_only.first_response": False,
            "sla.targets.none.first_response": "1h",
        }
    )
    world.post(incoming("Hola", 1, CREATED + 10, status="pending"), policy=policy)
    assert world.sweep(CREATED + 5 * HOUR, policy=policy)["breached"] == 0  # the bot has it
    world.post(status_changed("open", CREATED + 5 * HOUR), policy=policy)
    assert world.sweep(CREATED + 5.5 * HOUR, policy=policy)["breached"] == 0
    assert world.sweep(CREATED + 6.1 * HOUR, policy=policy)["breached"] == 1


def test_snoozed_conversations_are_not_flagged_until_they_wake(pipeline, chatwoot, world):
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    world.post(status_changed("snoozed", CREATED + 60))
    assert world.sweep(CREATED + 3 * HOUR)["breached"] == 0
    world.post(status_changed("open", CREATED + 4 * HOUR))
    assert world.sweep(CREATED + 4.1 * HOUR)["breached"] == 1


def test_a_failing_chatwoot_during_the_sweep_is_retried_by_the_next_sweep(
    pipeline, chatwoot, world
):
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    chatwoot.fail("GET", "/labels", 503, times=1)
    assert world.sweep(CREATED + 1.1 * HOUR)["failed"] == 1
    assert world.sweep(CREATED + 1.2 * HOUR)["breached"] == 1
    assert len(chatwoot.notes(1, 1)) == 1


def test_with_the_breach_rule_off_a_breach_is_labelled_and_noted_but_not_escalated(
    pipeline, chatwoot, world
):
    policy = policy_with(
        **{
            "escalation.team_id": 7,
            "escalation.rules.sla_breach.enabled": False,
            "sla.clock_starts": "created",
            "sla.business_hours_only.first_response": False,
            "sla.targets.none.first_response": "1h",
        }
    )
    world.post(incoming("Hola", 1, CREATED + 10, status="open"), policy=policy)
    assert world.sweep(CREATED + 1.1 * HOUR, policy=policy)["breached"] == 1
    conversation = chatwoot.conversation(1, 1)
    assert sorted(conversation.labels) == ["billing", "sla-breached"]
    assert conversation.priority is None and conversation.team_id is None
    assert chatwoot.notes(1, 1)[0].startswith("SLA breached: the first response was due")
    assert timeline(pipeline, "escalation") == []


def test_one_broken_conversation_does_not_stop_the_sweep_for_the_others(
    pipeline, chatwoot, world, monkeypatch
):
    chatwoot.add_conversation(1, 2)
    world.post(
        incoming("Hola", 1, CREATED + 10, status="open"),
        incoming("Hola", 2, CREATED + 10, conversation_id=2, status="open"),
    )
    from support_pipeline.store import ConversationStore

    real = ConversationStore.get_state

    def broken_for_one(self, account_id, conversation_id, name):
        if conversation_id == "1":
            raise RuntimeError("corrupt item")
        return real(self, account_id, conversation_id, name)

    monkeypatch.setattr(ConversationStore, "get_state", broken_for_one)
    result = world.sweep(CREATED + 1.1 * HOUR)
    assert (result["failed"], result["breached"]) == (1, 1)
    assert chatwoot.notes(1, 2) and not chatwoot.notes(1, 1)


@pytest.mark.parametrize(("late_by", "met"), [(-1, True), (0, True), (1, False)])
def test_a_reply_at_the_due_moment_records_the_target_met_and_a_second_later_missed(
    pipeline, chatwoot, world, late_by, met
):
    """docs/support-policy.md: an answer at or before the due moment is in time."""
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    due = CREATED + HOUR  # first response: 1 h of wall-clock time from creation
    world.post(agent_message("Hola, ¿en qué te ayudo?", 2, due + late_by, status="open"))
    [outcome] = timeline(pipeline, "sla_outcome")
    assert (outcome["target"], outcome["met"]) == ("first_response", met)
    assert outcome["measured_seconds"] == HOUR + late_by
    assert pipeline.telemetry.total("SlaMet" if met else "SlaMissed") == 1


def test_the_sweep_flags_an_unanswered_target_from_its_due_moment_on(pipeline, chatwoot, world):
    world.post(incoming("Hola", 1, CREATED + 10, status="open"))
    due = CREATED + HOUR
    assert world.sweep(due - 1)["breached"] == 0
    assert world.sweep(due)["breached"] == 1
    [breach] = timeline(pipeline, "sla_breach")
    assert (breach["target"], breach["met"]) == ("first_response", False)


def test_a_conversation_deleted_in_chatwoot_leaves_the_sweep_for_good_after_one_404(
    pipeline, chatwoot, world
):
    """Chatwoot deletes conversations (Conversations::DeleteService): every later call on one is
    404. The sweep confirms it once (the conversation itself, while the API answers for the
    token) and takes it off the due index, so later due moments cost no call at all."""
    world.post(incoming("Hola, necesito ayuda con mi pedido", 1, CREATED + 10, status="open"))
    chatwoot.delete_conversation(1, 1)
    before = len(chatwoot.calls)
    result = world.sweep(CREATED + 0.85 * HOUR)  # at risk: the sweep reaches for Chatwoot
    assert result["gone"] == 1 and result["failed"] == 0
    calls = [(c.method, c.suffix) for c in chatwoot.calls[before:]]
    assert ("GET", "/labels") in calls and ("GET", "") in calls
    record = pipeline.store().get_record("1", "1")
    assert record["status"] == "deleted" and "next_due" not in record
    assert pipeline.telemetry.total("ConversationGone") == 1

    before = len(chatwoot.calls)
    for at in (1.1 * HOUR, 3 * HOUR, 25 * HOUR):  # the breach and later due moments
        assert world.sweep(CREATED + at)["conversations"] == 0
    assert chatwoot.calls[before:] == []
