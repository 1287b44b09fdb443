"""The reconciler brings back deliveries Chatwoot made to nobody, exactly once.

Everything is real but Chatwoot, which is the fake (faithful to Chatwoot's finders, views and
callbacks): ingest, EventsQueue, the processor with its support handlers, DynamoDB (moto). The
fake keeps every webhook Chatwoot would have posted; a test delivers some and loses others at
the door (a wrong secret during a rotation, or never posted at all: API Gateway's 429s and
outages never reach the function), then runs the reconciler and drains the queue. Time is the
injected clock, shared by the fake and the pipeline: nothing waits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.config import ReconcilerSettings
from support_pipeline.drafts.base import DraftResult, Source
from support_pipeline.reconcile import ReconcileError, Reconciler, run_request
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from support_pipeline_ops.measure import counting
from tests.support import Pipeline, attributes_of, policy_with

POLICY = policy_with(
    **{
        "escalation.rules.unanswered_messages.enabled": False,
        "escalation.rules.vip_contact.enabled": False,
    }
)
INGEST_ATTRIBUTES = {
    "event",
    "received_at",
    "signed",
    "dedupe_key",
    "account_id",
    "conversation_id",
}
LIST = "/api/v1/accounts/{}/conversations"


class CannedDrafter:
    """Answers a shipping question; nothing else."""

    name = "knowledge"

    def __init__(self) -> None:
        self.questions: list[str] = []

    def draft(self, context: Any) -> DraftResult:
        self.questions.append(context.question)
        if "envio" in context.question.lower().replace("í", "i"):
            return DraftResult(
                "knowledge", "De 2 a 4 días hábiles.", 0.8, "es", (Source("Envíos"),)
            )
        return DraftResult("knowledge", None, 0.05, "es", ())


class World:
    """The pipeline, the fake Chatwoot on the same clock, and what the tests do to them."""

    def __init__(self, pipeline: Pipeline, fake: FakeChatwoot) -> None:
        self.pipeline = pipeline
        self.fake = fake
        self.clock = pipeline.clock
        self.client = ChatwootClient(fake.url, lambda: fake.token)
        self.drafter = CannedDrafter()
        self.deliveries = 0
        self.lost: list[dict[str, Any]] = []
        self.settings = ReconcilerSettings.from_env(
            pipeline.stack.function_environment("ReconcilerFunction")
        )

    # ---- Chatwoot's side -------------------------------------------------------------------
    def deliver(self, lose: Callable[[dict[str, Any]], bool] = lambda payload: False) -> None:
        """Post what Chatwoot sent since the last call; ``lose`` picks what never arrives."""
        for payload in self.fake.take_webhooks():
            if lose(payload):
                self.lost.append(payload)
                continue
            self.post(payload)

    def post(self, payload: dict[str, Any], secret: str | None = None) -> int:
        self.deliveries += 1
        kwargs = {"secret": secret} if secret else {}
        status, _ = self.pipeline.post(
            payload, delivery_id=f"d-{self.deliveries}", timestamp=self.clock.now, **kwargs
        )
        return status

    def lose_at_the_door(self, payload: dict[str, Any]) -> None:
        """A delivery signed with a secret the pipeline does not have yet (a rotation): 401."""
        assert self.post(payload, secret="a-new-secret-not-stored-yet") == 401
        self.lost.append(payload)

    # ---- the pipeline's side ---------------------------------------------------------------
    def consumer(self) -> Any:
        return self.pipeline.consumer(
            chatwoot=self.client, policy=POLICY, drafters=lambda inbox: self.drafter
        )

    def process(self) -> None:
        """Drain the queue, let the drafts' burst windows pass, and deliver what the pipeline
        itself did in Chatwoot (its notes and label changes come back as webhooks) until
        nothing is left."""
        for _ in range(6):
            self.pipeline.drain(self.consumer())
            self.pipeline.end_delays()
            self.pipeline.drain(self.consumer())
            if not self.fake.webhooks:
                return
            self.deliver()
        raise AssertionError("the pipeline kept acting")

    def reconciler(self, **changes: Any) -> Reconciler:
        """The reconciler with the template's numbers, on moto, the fake and the clock."""
        wiring: dict[str, Any] = {
            "store": self.pipeline.store(),
            "client": self.client,
            "sqs": self.pipeline.sqs,
            "queue_url": self.pipeline.queue_url,
            "telemetry": self.pipeline.telemetry,
            "rate_seconds": self.settings.rate_seconds,
            "overlap_seconds": self.settings.overlap_seconds,
            "ignored_events": self.settings.ignored_events,
            "clock": self.clock,
        }
        return Reconciler(**{**wiring, **changes})

    def reconcile(self, **kwargs: Any) -> dict[str, Any]:
        return self.reconciler().run(self.clock.now, **kwargs)

    def queued(self) -> list[dict[str, Any]]:
        return self.pipeline.messages(self.pipeline.queue_url)

    def seen(self, conversation: int, account: int = 1) -> Counter[str]:
        """How many ``message_created`` timeline items each message id has."""
        return Counter(
            str(item["message_id"])
            for item in self.pipeline.store().timeline(str(account), str(conversation))
            if item.get("event") == "message_created"
        )

    def record(self, conversation: int, account: int = 1) -> dict[str, Any]:
        found = self.pipeline.store().get_record(str(account), str(conversation))
        assert found is not None
        return found

    def one_question_heard(self, conversation: int, wait: float = 300) -> None:
        """Conversation ``conversation``: a customer's "hola" delivered and processed, then
        ``wait`` seconds pass."""
        self.fake.add_conversation(1, conversation)
        self.fake.add_customer_message(1, conversation, "hola")
        self.deliver()
        self.process()
        self.clock.advance(wait)

    def second_messages_lost(
        self, conversations: int, first: str, second: str, gap: float
    ) -> list[dict[str, Any]]:
        """Conversations 1..n: a first message delivered, a second one ``gap`` s later lost at
        the door; all processed, then five minutes pass. The lost messages, in order."""
        lost = []
        for conversation in range(1, conversations + 1):
            self.fake.add_conversation(1, conversation)
            self.fake.add_customer_message(1, conversation, first)
            self.deliver()
            self.clock.advance(gap)
            lost.append(self.fake.add_customer_message(1, conversation, second))
            self.deliver(lose=lambda payload: payload["event"] == "message_created")
        self.process()
        self.clock.advance(300)
        return lost

    def chatwoot_calls(self) -> list[tuple[str, str]]:
        return [
            (c.suffix, c.query.get("page") or c.query.get("after", "")) for c in self.fake.calls
        ]


@pytest.fixture
def world(pipeline):
    with FakeChatwoot(clock=pipeline.clock) as fake:
        yield World(pipeline, fake)


def message_ids(fake: FakeChatwoot, conversation: int, account: int = 1) -> list[str]:
    """Chatwoot's ids of the messages it sends webhooks for (not activity messages)."""
    return [
        str(m["id"])
        for m in fake.conversation(account, conversation).messages
        if m["message_type"] != 2
    ]


def is_message(payload: dict[str, Any], message: dict[str, Any]) -> bool:
    return payload["event"] == "message_created" and payload["id"] == message["id"]


# ---- lost at the door, back through the queue ---------------------------------------------
def test_deliveries_lost_at_the_door_come_back_once_and_their_support_work_runs_once(world):
    fake, clock = world.fake, world.clock
    # Conversation 7: the customer's second message is lost between two delivered ones.
    clock.advance(0.25)
    fake.add_conversation(1, 7)
    fake.add_customer_message(1, 7, "Hola, tengo una pregunta")
    world.deliver()
    clock.advance(30)
    lost = fake.add_customer_message(1, 7, "I want a refund, let me talk to a human")
    for payload in fake.take_webhooks():
        world.lose_at_the_door(payload)
    clock.advance(30)
    fake.add_agent_message(1, 7, "Looking into it", private=True)
    world.deliver()
    # Conversation 8: nothing of it ever arrived (API Gateway throttled every delivery).
    fake.add_conversation(1, 8)
    question = fake.add_customer_message(1, 8, "¿Cuánto tarda el envío a Medellín?")
    world.deliver(lose=lambda payload: True)
    # Conversation 9: delivered, then resolved by an agent while the webhook was down.
    fake.add_conversation(1, 9)
    fake.add_customer_message(1, 9, "gracias, ya está")
    world.deliver()
    world.process()
    clock.advance(60)
    fake.set_status(1, 9, "resolved")
    world.deliver(lose=lambda payload: True)
    assert world.seen(7) == Counter({message_ids(fake, 7)[0]: 1, message_ids(fake, 7)[2]: 1})
    assert world.pipeline.store().get_record("1", "8") is None
    assert world.record(9)["status"] == "open"

    clock.advance(300)  # the next scheduled run
    totals = world.reconcile()

    assert totals["replayed"] == 4 and totals["complete"] == 1 and totals["stopped"] == {}
    replays = {attributes_of(m)["dedupe_key"]: attributes_of(m) for m in world.queued()}
    updated_8 = fake.conversation(1, 8).updated_at
    updated_9 = fake.conversation(1, 9).updated_at
    assert set(replays) == {
        f"message_created:1:{lost['id']}",
        f"message_created:1:{question['id']}",
        f"conversation_updated:1:8:{updated_8}",
        f"conversation_updated:1:9:{updated_9}",
    }
    for attributes in replays.values():
        assert set(attributes) == INGEST_ATTRIBUTES | {"reconciled"}  # seven of SQS's ten
        assert attributes["signed"] == "true" and attributes["reconciled"] == "true"
        assert attributes["account_id"] == "1"
    assert world.pipeline.telemetry.total("EventsReconciled") == 4

    world.process()

    # Every message is in its timeline once (the escalation note too); what came back says so.
    for conversation in (7, 8, 9):
        assert world.seen(conversation) == Counter(
            dict.fromkeys(message_ids(fake, conversation), 1)
        )
    [returned] = [
        item
        for item in world.pipeline.store().timeline("1", "7")
        if item.get("message_id") == str(lost["id"])
    ]
    assert returned["reconciled"] is True
    assert str(question["id"]) in world.seen(8)
    assert world.record(9)["status"] == "resolved"
    # The support work of the recovered messages ran once: one escalation, one draft.
    escalations = [
        m
        for m in fake.conversation(1, 7).messages
        if m["private"] and (m["sender"] or {}).get("id") == fake.actor_id
    ]
    assert len(escalations) == 1 and "ref: sp-" in escalations[0]["content"]
    assert len([n for n in fake.notes(1, 8) if n.startswith("Draft reply")]) == 1
    assert world.drafter.questions.count("¿Cuánto tarda el envío a Medellín?") == 1

    # Nothing is missing any more: the next run replays nothing and moves the checkpoint.
    clock.advance(900)
    again = world.reconcile()
    assert again["replayed"] == 0 and again["complete"] == 1
    checkpoint = world.pipeline.store().reconcile_checkpoint("1")
    assert checkpoint is not None
    assert checkpoint["through"] == clock.now - world.settings.overlap_seconds
    assert world.queued() == []


def test_a_replay_of_a_delivery_still_on_its_way_is_a_duplicate_whichever_comes_first(world):
    fake, clock = world.fake, world.clock
    world.pipeline.store().register_account("1")  # the pipeline knows the account already
    clock.advance(0.375)  # Chatwoot's webhooks say when to the millisecond, its API not
    fake.add_conversation(1, 3)
    first = fake.add_customer_message(1, 3, "Hola")
    world.deliver()  # accepted and queued; the processor has not run yet
    clock.advance(300)
    replayed = world.reconcile()  # not recorded yet: replayed (the message, and the state)
    assert (replayed["messages"], replayed["states"]) == (1, 1)
    assert len(world.queued()) == 5  # created, message, waiting_since, and the two replays
    world.process()
    assert world.seen(3) == Counter({str(first["id"]): 1})
    assert world.pipeline.telemetry.total("EventDuplicate") == 2

    # The other way round: the replay is recorded first and the original (redriven from the
    # DLQ, say) arrives afterwards.
    clock.advance(60.25)
    second = fake.add_customer_message(1, 3, "¿Siguen ahí?")
    world.deliver(lose=lambda payload: is_message(payload, second))
    clock.advance(300)
    assert world.reconcile()["messages"] == 1
    world.process()
    [original] = [p for p in world.lost if is_message(p, second)]
    assert original["created_at"].endswith(".625Z")  # the replay's created_at is whole seconds
    assert world.post(original) == 202
    world.process()
    assert world.seen(3) == Counter({str(first["id"]): 1, str(second["id"]): 1})
    assert world.pipeline.telemetry.total("EventDuplicate") == 3


# ---- Chatwoot's rate limits and failures ---------------------------------------------------
def test_a_429_stops_the_run_where_it_is_and_the_next_run_finishes(world):
    fake, clock = world.fake, world.clock
    lost = world.second_messages_lost(5, "primero", "segundo", gap=10)
    fake.fail("GET", "/messages", 429, after=2)  # the third conversation's read is throttled

    stopped = world.reconcile()

    assert stopped["stopped"] == {"1": "chatwoot_throttled"} and stopped["complete"] == 0
    assert stopped["messages"] == 2
    # The checkpoint stays where this first run started: the next run covers the same window.
    assert world.pipeline.store().reconcile_checkpoint("1")["through"] == clock.now - 900
    assert fake.calls[-1].status == 429  # nothing more was asked after Chatwoot said 429
    assert world.pipeline.telemetry.counts[("ReconcileIncomplete", "chatwoot_throttled")] == 1

    clock.advance(900)
    finished = world.reconcile()

    assert finished["complete"] == 1 and finished["messages"] == 3  # the two are not sent again
    assert world.pipeline.store().reconcile_checkpoint("1")["through"] == clock.now - 120
    world.process()
    for conversation, message in enumerate(lost, start=1):
        assert world.seen(conversation)[str(message["id"])] == 1
    assert world.pipeline.telemetry.total("EventDuplicate") == 0


def test_a_chatwoot_error_stops_one_account_and_the_others_go_on(world):
    fake, clock = world.fake, world.clock
    for account in (1, 2):
        fake.add_conversation(account, 1)
        fake.add_customer_message(account, 1, "hola")
    world.deliver(lose=lambda payload: payload["account"]["id"] == 2 and "id" in payload)
    world.process()
    clock.advance(300)
    # Account 2's records exist only through the lost message's account registration...
    world.pipeline.store().register_account("2")
    fake.fail("GET", LIST.format(1), 502)

    totals = world.reconcile()

    assert totals["stopped"] == {"1": "chatwoot_unavailable"}
    assert totals["complete"] == 1 and totals["messages"] == 1
    assert world.pipeline.store().reconcile_checkpoint("1")["through"] == clock.now - 900
    assert world.pipeline.store().reconcile_checkpoint("2")["through"] == clock.now - 120


def test_a_conversation_deleted_since_it_was_listed_is_skipped_and_the_run_goes_on(world):
    fake, clock = world.fake, world.clock
    for conversation in (1, 2):
        fake.add_conversation(1, conversation)
        fake.add_customer_message(1, conversation, "hola")
        clock.advance(1)
    world.deliver(lose=lambda payload: payload["event"] == "message_created")
    world.process()
    clock.advance(300)
    fake.fail("GET", "/messages", 404)  # Chatwoot's own 404 for the first one listed (2)

    totals = world.reconcile()

    assert totals["complete"] == 1 and totals["messages"] == 1
    assert [q for q in world.queued() if attributes_of(q)["conversation_id"] == "2"] == []


def test_a_token_chatwoot_refuses_fails_the_run_so_its_alarm_fires(world):
    fake, clock = world.fake, world.clock
    world.one_question_heard(1)
    world.client = ChatwootClient(fake.url, lambda: "a-revoked-token")
    with pytest.raises(ReconcileError, match="account 1: chatwoot_rejected"):
        world.reconcile()
    assert world.pipeline.store().reconcile_checkpoint("1")["through"] == clock.now - 900


# ---- scale ---------------------------------------------------------------------------------
def test_more_than_25_conversations_are_read_page_by_page(world):
    fake, clock = world.fake, world.clock
    for conversation in range(1, 31):
        fake.add_conversation(1, conversation)
        fake.add_customer_message(1, conversation, "hola")
        clock.advance(1)
    world.deliver(lose=lambda payload: payload["event"] == "message_created")
    world.process()
    clock.advance(300)

    totals = world.reconcile()

    assert totals["messages"] == 30 and totals["conversations"] == 30
    pages = [c.query["page"] for c in fake.calls if c.suffix == LIST.format(1)]
    assert pages == ["1", "2"]  # 25 and 5; meta.all_count says there is no third
    world.process()
    for conversation in range(1, 31):
        assert list(world.seen(conversation).values()) == [1]


def test_more_than_100_missed_messages_of_one_conversation_come_back_page_by_page(world):
    fake, clock = world.fake, world.clock
    world.one_question_heard(4)
    world.reconcile()  # verified up to the first message
    seen_up_to = world.record(4)["reconciled_message_id"]
    lost = []
    for n in range(130):
        lost.append(fake.add_agent_message(1, 4, f"nota {n}", private=True))
    world.deliver(lose=lambda payload: True)
    clock.advance(300)
    fake.calls.clear()

    totals = world.reconcile()

    assert totals["messages"] == 130
    afters = [c.query["after"] for c in fake.calls if c.suffix == "/messages"]
    assert afters == [str(seen_up_to), str(lost[99]["id"])]  # 100, then 30
    world.process()
    seen = world.seen(4)
    assert all(seen[str(m["id"])] == 1 for m in lost) and len(seen) == 131


def test_an_account_with_nothing_missing_costs_the_same_few_calls_whatever_its_size(world):
    fake, clock = world.fake, world.clock
    sizes = {1: 5, 2: 40}
    for account, size in sizes.items():
        for conversation in range(1, size + 1):
            fake.add_conversation(account, conversation)
            fake.add_customer_message(account, conversation, "hola")
    world.deliver()
    world.process()
    clock.advance(300)
    first = world.reconcile()  # the first check of each conversation reads its messages
    assert first["replayed"] == 0 and first["conversations"] == 45

    # A quarter of an hour with no activity.
    clock.advance(900)
    fake.calls.clear()
    with counting(world.pipeline.clients["dynamodb"], world.pipeline.dynamodb) as calls:
        quiet = world.reconcile()
    assert quiet["replayed"] == 0 and quiet["conversations"] == 0
    assert world.chatwoot_calls() == [(LIST.format(1), "1"), (LIST.format(2), "1")]
    # the accounts, each account's checkpoint read and moved: 1 + 2 x 2
    assert dict(calls) == {"Query": 1, "GetItem": 2, "PutItem": 2}

    # Three conversations of each account had delivered activity: a record read each, one
    # messages read each, one timeline query each; nothing replayed.
    for account in sizes:
        for conversation in (1, 2, 3):
            fake.add_customer_message(account, conversation, "otra cosa")
    world.deliver()
    world.process()
    clock.advance(300)
    fake.calls.clear()
    with counting(world.pipeline.clients["dynamodb"], world.pipeline.dynamodb) as calls:
        busy = world.reconcile()
    assert busy["replayed"] == 0 and busy["conversations"] == 6
    for account in sizes:
        made = [s for s, _ in world.chatwoot_calls() if s in (LIST.format(account), "/messages")]
        assert made.count(LIST.format(account)) == 1
    assert [s for s, _ in world.chatwoot_calls()].count("/messages") == 6
    assert dict(calls) == {"Query": 1 + 6, "GetItem": 2 + 6, "PutItem": 2, "UpdateItem": 6}


# ---- what is not missing -------------------------------------------------------------------
def test_changes_chatwoot_sends_no_webhook_for_are_not_replayed(world):
    fake, clock = world.fake, world.clock
    world.one_question_heard(5, wait=60)
    # The pipeline's own label change: an activity message (no webhook) and conversation_updated.
    world.client.add_labels("1", "5", ["billing"])
    world.deliver()
    world.process()
    clock.advance(60)
    # An attribute outside Conversation#list_of_keys changed: updated_at moved, no webhook.
    fake.conversation(1, 5).updated_at = clock.now
    clock.advance(300)

    totals = world.reconcile()

    assert totals["replayed"] == 0
    assert any(m["message_type"] == 2 for m in fake.conversation(1, 5).messages)


def test_what_is_younger_than_the_overlap_waits_for_its_webhook_until_the_next_run(world):
    fake, clock = world.fake, world.clock
    world.pipeline.store().register_account("1")
    fake.add_conversation(1, 6)
    fake.add_customer_message(1, 6, "hola")
    world.deliver(lose=lambda payload: True)
    clock.advance(30)  # its webhook may still be on the way

    young = world.reconcile()

    assert young["replayed"] == 0 and young["deferred"] == 1
    clock.advance(900)
    assert world.reconcile()["messages"] == 1


def test_ignored_events_are_not_replayed(world):
    fake, clock = world.fake, world.clock
    fake.add_conversation(1, 2)
    fake.add_customer_message(1, 2, "hola")
    world.deliver(lose=lambda payload: payload["event"] == "message_created")
    world.process()
    clock.advance(300)
    ignoring = world.reconciler(ignored_events=frozenset({"message_created"}))
    assert ignoring.run(clock.now)["replayed"] == 0
    assert world.queued() == []


def test_a_run_by_hand_names_accounts_and_how_far_back_to_look():
    assert run_request({"time": "2026-09-27T02:30:00Z", "account": "123456789012"}) == (None, None)
    assert run_request({"accounts": [1, "2"], "since": "2026-09-27T00:00:00Z"}) == (
        ["1", "2"],
        1790467200.0,
    )
    for bad in ({"accounts": "1"}, {"accounts": ["7/../2"]}, {"accounts": []}, {"since": "x"}):
        with pytest.raises(ValueError):
            run_request(bad)


def test_without_chatwoot_the_reconciler_does_nothing(world):
    quiet = world.reconciler(client=None).run(world.clock.now)
    assert quiet == {"skipped": "dry run", "replayed": 0}


def test_a_run_about_to_outlive_its_invocation_stops_in_time_and_the_next_run_finishes(world):
    from support_pipeline import deadline

    clock = world.clock
    lost = world.second_messages_lost(8, "hola", "¿hola?", gap=5)
    ticks = iter(range(0, 10_000, 4))  # every look at the time costs 4 s of the invocation

    with deadline.running_until(deadline.Deadline(60, lambda: float(next(ticks)))):
        cut = world.reconcile()

    assert cut["stopped"] == {"1": "deadline"} and 0 < cut["messages"] < 8
    clock.advance(900)
    assert world.reconcile()["messages"] == 8 - cut["messages"]
    world.process()
    for conversation, message in enumerate(lost, start=1):
        assert world.seen(conversation)[str(message["id"])] == 1


@pytest.fixture
def handler(world, monkeypatch):
    """The real handler, configured by the template's environment, against the fake."""
    from aws_lambda_powertools.utilities import parameters

    from tests.support import load_handler

    environment = world.pipeline.stack.function_environment("ReconcilerFunction")
    environment["CHATWOOT_BASE_URL"] = world.fake.url
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHATWOOT_ALLOW_HTTP", "true")  # the fake speaks http
    world.pipeline.clients["ssm"].put_parameter(
        Name=environment["CHATWOOT_API_TOKEN_PARAM"],
        Value=world.fake.token,
        Type="SecureString",
        Overwrite=True,
    )
    parameters.clear_caches()
    app = load_handler("reconciler")
    monkeypatch.setattr(app, "_reconciler", None)
    return app


def one_delivery_lost(world) -> dict:
    """Conversation 1 of account 1: a first message delivered and processed, then a second
    one whose delivery is dropped at the door. Returns the lost message."""
    world.fake.add_conversation(1, 1)
    world.fake.add_customer_message(1, 1, "hola")
    world.deliver()
    world.process()
    lost = world.fake.add_customer_message(1, 1, "¿hola?")
    world.deliver(lose=lambda payload: True)
    return lost


def test_the_handler_replays_as_of_its_schedule_and_emits_events_reconciled(world, handler, capsys):
    from support_pipeline.chatwoot import payload as cw
    from support_pipeline_ops.local.lambda_shim import LocalContext
    from tests.integration.test_alarm_metrics import emitted, series

    clock = world.clock
    lost = one_delivery_lost(world)
    capsys.readouterr()
    scheduled = {"time": cw.iso(clock.now + 300), "source": "aws.events"}

    answer = handler.handler(scheduled, LocalContext("reconciler", timeout_seconds=300))

    assert answer["messages"] == 1 and answer["complete"] == 1
    [replay] = [attributes_of(m) for m in world.queued() if attributes_of(m).get("reconciled")]
    assert replay["dedupe_key"] == f"message_created:1:{lost['id']}"
    assert series(emitted(capsys.readouterr().out), "EventsReconciled") == [
        ("SupportPipeline", {"service": "reconciler"})
    ]
    with pytest.raises(ValueError, match="accounts"):
        handler.handler({"accounts": "1"}, LocalContext("reconciler"))


def test_support_pipeline_reconcile_replays_by_hand_from_a_moment_it_is_given(world, monkeypatch):
    import io

    from support_pipeline_ops import reconcile_cli
    from support_pipeline_ops.cli import main

    fake, clock = world.fake, world.clock
    lost = one_delivery_lost(world)
    clock.advance(3 * 86400)  # three days later: beyond one period, so the operator says since
    monkeypatch.setattr(reconcile_cli, "clock", clock)
    stack = world.pipeline.stack
    monkeypatch.setenv("CONVERSATIONS_TABLE", stack.physical["ConversationsTable"])
    monkeypatch.setenv("EVENTS_QUEUE_URL", world.pipeline.queue_url)
    monkeypatch.setenv("CHATWOOT_API_TOKEN", fake.token)
    out = io.StringIO()

    code = main(["reconcile", "--account", "1", "--since", "4d", "--chatwoot-url", fake.url], out)

    assert code == 0, out.getvalue()
    assert "replayed 1 message(s)" in out.getvalue()
    [replay] = [attributes_of(m) for m in world.queued() if attributes_of(m).get("reconciled")]
    assert replay["dedupe_key"] == f"message_created:1:{lost['id']}"
    assert main(["reconcile", "--chatwoot-url", "http://chatwoot.example.com"], out) == 2
    assert main(["reconcile", "--since", "yesterday", "--chatwoot-url", fake.url], out) == 2


def test_while_paused_the_reconciler_replays_nothing_and_the_next_run_covers_the_pause(world):
    """A paused pipeline leaves events on EventsQueue past the overlap: replaying them would
    double the queue and count them as recovered. The reconciler waits; its checkpoint stays."""
    from support_pipeline.pause import PauseSwitch

    lost = world.second_messages_lost(2, "hola", "¿sigue ahí?", gap=5)
    mode = ["consume"]
    paused = world.reconciler(pause=PauseSwitch(lambda: mode[0], max_age=0))
    calls = len(world.fake.calls)
    assert paused.run(world.clock.now) == {"skipped": "paused", "replayed": 0}
    assert len(world.fake.calls) == calls  # Chatwoot spared
    assert world.pipeline.messages(world.pipeline.queue_url) == []
    mode[0] = "off"
    totals = paused.run(world.clock.now)
    assert totals["messages"] == len(lost)  # the lost ones come back after the pause
