"""The world the approval state machine drives, and the five rules it checks.

Chatwoot is the fake (faithful to Chatwoot, never kinder), and it holds the truth: every message
with its id, sender, private flag and time. People act in it (a customer writes, an agent writes
a note or a reply), and Chatwoot's webhooks for what they did go into ``in_flight``: delivered
now, late, twice or never, as the machine chooses. Everything else is real and in process:
ingest (with unsigned ``?token=`` posts accepted, so a forged post can get in), EventsQueue and
the consumer on moto, the draft service, the action ledger, the reconciler, the pause switch.
Time is the injected clock, shared by the fake and the pipeline; nothing sleeps.

The rules (the invariant), checked against the fake's messages after every step: every public
message the pipeline's own user posted

1. is, verbatim, the draft text shown in one of the pipeline's draft notes for that draft that
   was in the conversation before the approving ``/send`` (Chatwoot's message id order);
2. was approved by a ``/send`` private note written by an agent user (not a contact, an agent
   bot or the pipeline's own user), which reached the pipeline by a signed delivery (or the
   reconciler's replay, read from Chatwoot with the pipeline's token) before the reply, and
   which the agent had not deleted when it was approved;
3. is posted at most once per approval (never more replies with a text than approvals bound to
   that text: drafts may share a canned text);
4. is not posted when a person answered the customer after the ``/send`` was written, judged
   from Chatwoot's messages;
5. is not posted for a draft that was superseded, expired or rejected when the ``/send`` was
   written: its stored status then, a customer message in Chatwoot between its note and the
   ``/send`` (whatever became of that message's webhook), or older than the policy's
   ``expire_after``.

The approving ``/send`` of a public message is the stored approval of a draft whose text it is
(``APPROVAL#<draft>``: its ``command_id`` is the ``/send`` message's id), one not spent on an
earlier reply.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from support_pipeline.chatwoot.client import content_digest
from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.config import SupportSettings
from support_pipeline.drafts import commands
from support_pipeline.drafts.base import DraftResult, Source
from support_pipeline.drafts.store import DraftStore
from support_pipeline.ingest import WebhookRequest
from support_pipeline.pause import PauseSwitch, ssm_reader
from support_pipeline.processing.consumer import EventConsumer
from support_pipeline.reconcile import ReconcileError, Reconciler
from support_pipeline.sla import SlaSweep
from support_pipeline.wiring import build_router, chatwoot_client
from support_pipeline_ops.local import lambda_shim
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from tests.support import ROOT, SECRET, Pipeline, agent_message, policy_with, webhook_event

ACCOUNT, CONVERSATION = 1, 1
A, C = str(ACCOUNT), str(CONVERSATION)
AGENTS = (1, 3)  # agent users of the account (the fixtures' agent is user 1)
BOT_ID = 77
PAUSE_PARAMETER = "/support-pipeline/pause"
INCOMING, OUTGOING = 0, 1
DRAFT_NOTE = re.compile(r"^Draft reply (d-[2-9a-hjkmnp-z]{6})\b")
REFUSED_STATUSES = ("superseded", "expired", "rejected")

_RULES = {
    f"escalation.rules.{name}.enabled": False
    for name in (
        "sla_breach",
        "asks_for_human",
        "negative_language",
        "vip_contact",
        "reopened",
        "unanswered_messages",
    )
}
POLICY = policy_with(
    **_RULES,
    **{"drafts.quiet_after_agent_reply": "1s", "drafts.skip_escalated": False},
)

# What drafts say: a different wording on every call, in several languages, some in paragraphs.
WORDINGS = (
    "Hola, los envíos tardan de {n} a {m} días hábiles.",
    "Hi! Shipping takes {n} to {m} business days.",
    "こんにちは。配送には{n}〜{m}営業日かかります。",
    "مرحبا، يستغرق الشحن من {n} إلى {m} أيام عمل.",
    "Bonjour,\n\nla livraison prend {n} à {m} jours ouvrés.\n\nMerci !",
)

CANNED = "Hola, los envíos tardan de 2 a 4 días hábiles."


class ChangingDrafter:
    """A confident drafter that words its answer differently on every call (a counter in the
    text), so a note that shows one call's text and a reply that sends another's differ; or,
    ``canned``, gives one fixed answer every other call (as a knowledge base does for the same
    question), so two drafts, and two approvals, share a text."""

    name = "knowledge"

    def __init__(self) -> None:
        self.calls = 0
        self.canned = False  # every other call gives the same canned answer
        self._lock = threading.Lock()

    def draft(self, context: Any) -> DraftResult:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.canned and n % 2 == 0:
            return DraftResult("knowledge", CANNED, 0.9, "es", (Source("Envíos"),))
        text = WORDINGS[n % len(WORDINGS)].format(n=n, m=n + 2) + f" [{n}]"
        return DraftResult("knowledge", text, 0.9, "es", (Source("Envíos"),))


@functools.cache
def _template() -> dict[str, Any]:
    from support_pipeline_ops.local import template as cfn

    return cfn.load(ROOT / "template.yaml")


def new_pipeline() -> Pipeline:
    """tests.support.new_pipeline with the template read once per process (every example
    provisions its own moto account from it)."""
    import boto3

    from support_pipeline_ops.local import template as cfn

    clients = {
        name: boto3.client(name, region_name="us-east-1")
        for name in ("sqs", "dynamodb", "s3", "ssm", "sns")
    }
    stack = cfn.provision(
        copy.deepcopy(_template()),
        clients,
        stack_name="test",
        secrets={"WebhookSecretParamName": SECRET},
    )
    return Pipeline(
        stack=stack, clients=clients, dynamodb=boto3.resource("dynamodb", region_name="us-east-1")
    )


@dataclass
class Delivery:
    """One webhook Chatwoot made: posted now, later, twice, or never."""

    number: int
    payload: dict[str, Any]
    delivery_id: str

    def describe(self) -> str:
        event = self.payload.get("event")
        if event == "message_created":
            return f"#{self.number} message_created {self.payload.get('id')}"
        return f"#{self.number} {event}"


class RecordingSqs:
    """The reconciler's SQS client: what it replays is seen (and sent on)."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.bodies: list[str] = []

    def send_message(self, **kwargs: Any) -> Any:
        self.bodies.append(kwargs["MessageBody"])
        return self._sqs.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


@dataclass
class World:
    """One example's Chatwoot, pipeline and what reached the pipeline how."""

    in_flight: list[Delivery] = field(default_factory=list)
    late: list[Delivery] = field(default_factory=list)  # held back while other things happen
    delivered: list[Delivery] = field(default_factory=list)
    lost: list[Delivery] = field(default_factory=list)
    # message id -> the newest message id in Chatwoot when a trusted (signed, or reconciled)
    # delivery of that message reached ingest: a reply newer than that may rest on it.
    trusted: dict[int, int] = field(default_factory=dict)
    # /send-like message id -> each draft's stored status at the moment it was written
    status_at_send: dict[int, dict[str, str]] = field(default_factory=dict)
    checked: set[int] = field(default_factory=set)
    spent: set[str] = field(default_factory=set)  # drafts whose approval justified a reply
    # message id -> what the person wrote (a deleted message's content is replaced), and
    # when it was deleted (the injected clock)
    written: dict[int, str] = field(default_factory=dict)
    deleted_at: dict[int, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        from moto import mock_aws

        from support_pipeline_ops.local import moto_atomic

        moto_atomic.install()
        self._mock = mock_aws()
        self._mock.start()
        self._numbers = itertools.count(1)
        self.last_taken: list[Delivery] = []
        self._forged = itertools.count(1)
        try:
            self.pipeline = new_pipeline()
            self.clock = self.pipeline.clock
            self.fake = FakeChatwoot(clock=self.clock).start()
            self.fake.add_conversation(ACCOUNT, CONVERSATION)
            self.ssm = self.pipeline.clients["ssm"]
            self.switch = PauseSwitch(ssm_reader(self.ssm, PAUSE_PARAMETER), max_age=0)
            self.drafter = ChangingDrafter()
            self.ingest = self.pipeline.ingest(accept_url_token=True)
            self.settings = self.pipeline.processor_settings()
            self.worker = self._consumer()
            self.twin = self._consumer()
            self.store = DraftStore(
                self.pipeline.dynamodb,
                self.settings.conversations_table,
                POLICY.zone,
                self.clock,
            )
            self.take_webhooks()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        fake = getattr(self, "fake", None)
        if fake is not None:
            # The server's shutdown waits for its poll interval: let it, off the test's time.
            threading.Thread(target=fake.stop, name="fake-chatwoot-stop", daemon=True).start()
        self._mock.stop()

    # ---- wiring ----------------------------------------------------------------------------
    def _client(self) -> Any:
        return chatwoot_client(
            SupportSettings(chatwoot_base_url=self.fake.url, chatwoot_api_token_param="/token"),
            lambda name: self.fake.token,
            telemetry=self.pipeline.telemetry,
            pause=self.switch,
        )

    def _consumer(self) -> EventConsumer:
        """A processor instance (a Lambda process) with its own Chatwoot client."""
        support = self.pipeline.support(self._client(), POLICY, drafters=lambda inbox: self.drafter)
        return EventConsumer(
            settings=self.settings,
            sqs=self.pipeline.sqs,
            s3=self.pipeline.clients["s3"],
            router=build_router(support, clock=self.clock),
            telemetry=self.pipeline.telemetry,
            clock=self.clock,
            rng=lambda: 1.0,
            pause=self.switch,
        )

    # ---- Chatwoot's side: people act, webhooks leave --------------------------------------
    def take_webhooks(self) -> list[Delivery]:
        """Chatwoot sends the webhooks of what just happened: they are in flight."""
        taken = []
        for payload in self.fake.take_webhooks():
            number = next(self._numbers)
            taken.append(Delivery(number, payload, f"dlv-{number:04d}"))
        self.in_flight += taken
        self.last_taken = taken
        return taken

    def delay(self, deliveries: list[Delivery]) -> None:
        """These webhooks arrive late: after whatever the next steps do."""
        for delivery in deliveries:
            if delivery in self.in_flight:
                self.in_flight.remove(delivery)
                self.late.append(delivery)
                self.log.append(f"late {delivery.describe()}")

    def messages(self) -> list[dict[str, Any]]:
        return sorted(self.fake.conversation(ACCOUNT, CONVERSATION).messages, key=lambda m: m["id"])

    def newest_id(self) -> int:
        return max((m["id"] for m in self.messages()), default=0)

    def _acted(self, message: dict[str, Any]) -> dict[str, Any]:
        self.written[message["id"]] = str(message.get("content") or "")
        if commands.parse(str(message.get("content") or "")) is not None:
            self.status_at_send[message["id"]] = self.draft_statuses()
        self.take_webhooks()
        return message

    def customer_writes(self, text: str) -> dict[str, Any]:
        self.clock.advance(1)
        return self._acted(self.fake.add_customer_message(ACCOUNT, CONVERSATION, text))

    def agent_writes(self, text: str, agent: int, private: bool) -> dict[str, Any]:
        self.clock.advance(1)
        return self._acted(
            self.fake.add_agent_message(ACCOUNT, CONVERSATION, text, private=private, user_id=agent)
        )

    def agent_deletes(self, message_id: int) -> None:
        """An agent deletes a message in the dashboard (Chatwoot keeps it, emptied)."""
        self.clock.advance(1)
        self.fake.delete_message(ACCOUNT, CONVERSATION, message_id)
        self.deleted_at[message_id] = self.clock.now
        self.log.append(f"deleted message {message_id}")

    def bot_writes(self, text: str, private: bool) -> dict[str, Any]:
        self.clock.advance(1)
        return self._acted(
            self.fake.add_bot_message(ACCOUNT, CONVERSATION, text, private=private, bot_id=BOT_ID)
        )

    def shown_drafts(self) -> list[tuple[str, str]]:
        """(draft id, note text) of every draft note in the conversation, oldest first."""
        shown = []
        for message in self.messages():
            found = DRAFT_NOTE.match(str(message.get("content") or ""))
            if found and message.get("private") and self._ours(message):
                shown.append((found.group(1), str(message["content"])))
        return shown

    def draft_statuses(self) -> dict[str, str]:
        return {str(d["draft_id"]): str(d.get("status")) for d in self.store.of_conversation(A, C)}

    def _ours(self, message: dict[str, Any]) -> bool:
        sender = message.get("sender") or {}
        return sender.get("type") == "user" and sender.get("id") == self.fake.actor_id

    # ---- deliveries ------------------------------------------------------------------------
    def post(self, delivery: Delivery, delivery_id: str | None = None) -> int:
        """A signed delivery of ``delivery`` (Chatwoot signs each attempt when it sends it)."""
        event = webhook_event(
            delivery.payload,
            delivery_id=delivery_id or delivery.delivery_id,
            timestamp=self.clock.now,
        )
        status = self.ingest.handle(WebhookRequest.from_api_gateway(event)).status
        if status == 202 and delivery.payload.get("event") == "message_created":
            self._trust(delivery.payload.get("id"))
        self.log.append(f"posted {delivery.describe()} -> {status}")
        return status

    def _trust(self, message_id: Any) -> None:
        if isinstance(message_id, int) and message_id not in self.trusted:
            self.trusted[message_id] = self.newest_id()

    def post_unsigned(self, payload: dict[str, Any]) -> int:
        """A ``?token=`` post (the opt-in unsigned path): no signature, no delivery id."""
        event = webhook_event(payload, headers={}, query=f"token={SECRET}")
        status = self.ingest.handle(WebhookRequest.from_api_gateway(event)).status
        self.log.append(f"unsigned post of {payload.get('event')} {payload.get('id')} -> {status}")
        return status

    def forged_send(self, content: str, message_id: int | None) -> dict[str, Any]:
        """A ``/send`` note as a forger writes it: an agent's private note, never in Chatwoot
        (``message_id`` None: an id Chatwoot never gave), or a copy of a real one."""
        number = next(self._forged)
        forged_id = message_id or 9_000_000 + number
        payload = agent_message(
            content, forged_id, self.clock.now, private=True, conversation_id=CONVERSATION
        )
        payload["sender"] = {"id": AGENTS[-1], "name": "Agent", "type": "user"}
        payload["account"] = {"id": ACCOUNT, "name": "Example Store"}
        return payload

    def lose_all(self, deliveries: list[Delivery]) -> None:
        """These webhooks never arrive (only the reconciler can bring them back)."""
        for delivery in deliveries:
            if delivery in self.in_flight:
                self.in_flight.remove(delivery)
                self.lost.append(delivery)
                self.log.append(f"lost {delivery.describe()}")

    def deliver(self, index: int) -> None:
        if self.in_flight:
            delivery = self.in_flight.pop(index % len(self.in_flight))
            self.post(delivery)
            self.delivered.append(delivery)

    def deliver_these(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if delivery in self.in_flight:
                self.in_flight.remove(delivery)
                self.post(delivery)
                self.delivered.append(delivery)

    def deliver_all(self) -> None:
        while self.in_flight:
            self.deliver(0)

    def deliver_late(self) -> None:
        """The late webhooks arrive, in the order they were sent."""
        self.in_flight = self.late + self.in_flight
        self.late = []
        self.deliver_all()

    def redeliver(self, index: int, same_id: bool) -> None:
        if self.delivered:
            delivery = self.delivered[index % len(self.delivered)]
            again = delivery.delivery_id if same_id else f"{delivery.delivery_id}-again"
            self.post(delivery, again)

    def lose(self, index: int) -> None:
        if self.in_flight:
            delivery = self.in_flight.pop(index % len(self.in_flight))
            self.lost.append(delivery)
            self.log.append(f"lost {delivery.describe()}")

    # ---- the pipeline's side ---------------------------------------------------------------
    def process(self) -> None:
        """The event source polls until the queue has nothing visible."""
        self.pipeline.drain(self.worker, max_batches=20)
        self.take_webhooks()

    def time_passes(self, seconds: float) -> None:
        """Time passes: delays and backoffs end, leases and holds run out."""
        self.clock.advance(seconds)
        self.pipeline.make_visible()

    def settle(self, retries: bool = False, rounds: int = 5) -> None:
        """Everything in flight is delivered, bursts end, the queue is drained; again, for
        what the pipeline itself did (its notes come back as webhooks). ``retries``: time
        passes too (two minutes a round), so backoffs, leases and holds run out and every
        retry is made."""
        for _ in range(rounds):
            self.deliver_all()
            self.process()
            self.pipeline.end_delays()
            self.process()
            if retries and self.queued():
                self.time_passes(121)
                self.process()
            if not self.in_flight and not (retries and self.queued()):
                return

    def queued(self) -> int:
        """Messages on EventsQueue, visible, hidden or delayed (read from moto's store: a
        ReceiveMessage would count as a delivery)."""
        from moto.sqs.models import sqs_backends

        from support_pipeline_ops.local import template as cfn

        stack = self.pipeline.stack
        queue = sqs_backends[cfn.ACCOUNT_ID][stack.region].queues[
            stack.attributes[("EventsQueue", "QueueName")]
        ]
        return len(queue._messages)

    def two_workers(self, same_record: bool) -> None:
        """Two processor instances at once, started together by a barrier: on the same record
        (SQS delivers at least once), or on the next two records (Lambda runs batches in
        parallel: two events of one conversation at the same moment)."""
        sqs = self.pipeline.sqs
        received = sqs.receive_message(
            QueueUrl=self.pipeline.queue_url,
            MaxNumberOfMessages=1 if same_record else 2,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return
        batches = [received[:1], received[:1]] if same_record else [[m] for m in received]
        start = threading.Barrier(len(batches))
        answers: list[Any] = [None] * len(batches)

        def work(index: int, consumer: EventConsumer) -> None:
            event = lambda_shim.sqs_event(batches[index], self.pipeline.queue_arn)
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=10)
            try:
                answers[index] = consumer.handle_batch(event, lambda_shim.LocalContext())
            except Exception as error:  # a crash: the record comes back
                answers[index] = error

        workers = (self.worker, self.twin)
        threads = [threading.Thread(target=work, args=(i, workers[i])) for i in range(len(batches))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        failed = [
            not isinstance(answer, dict) or bool(answer.get("batchItemFailures"))
            for answer in answers
        ]
        # A record is deleted once every worker that had it is done (a failed one comes back).
        done = [not any(failed)] if same_record else [not f for f in failed]
        for batch, finished in zip(batches, done, strict=False):
            if finished:
                with contextlib.suppress(Exception):
                    sqs.delete_message(
                        QueueUrl=self.pipeline.queue_url, ReceiptHandle=batch[0]["ReceiptHandle"]
                    )
        outcomes = ["a retry" if f else "done" for f in failed]
        what = "the same record" if same_record else f"{len(batches)} records"
        self.log.append(f"two workers on {what}: {', '.join(outcomes)}")
        self.take_webhooks()

    def reconcile(self) -> None:
        """The scheduled reconciler, once the overlap has passed: what Chatwoot has that the
        pipeline never recorded comes back through the queue."""
        self.clock.advance(121)
        recorder = RecordingSqs(self.pipeline.sqs)
        reconciler = Reconciler(
            store=self.pipeline.store(),
            client=self._client(),
            sqs=recorder,
            queue_url=self.pipeline.queue_url,
            telemetry=self.pipeline.telemetry,
            clock=self.clock,
            pause=self.switch,
        )
        with contextlib.suppress(ReconcileError):
            reconciler.run(self.clock.now)
        for body in recorder.bodies:
            payload = json.loads(body)
            if payload.get("event") == "message_created":
                self._trust(payload.get("id"))
        self.log.append(f"reconciler replayed {len(recorder.bodies)}")

    def sweep(self) -> None:
        support = self.pipeline.support(self._client(), POLICY, drafters=lambda i: self.drafter)
        with contextlib.suppress(Exception):  # a failed sweep runs again on its schedule
            SlaSweep(
                support.sla, self.pipeline.telemetry, drafts=support.drafts, pause=self.switch
            ).run(self.clock.now)
        self.take_webhooks()

    def pause(self, mode: str) -> None:
        self.ssm.put_parameter(Name=PAUSE_PARAMETER, Value=mode, Type="String", Overwrite=True)

    def reached(self) -> list[str]:
        """What this example got as far as (the search's statistics)."""
        messages = self.messages()
        public = [
            m
            for m in messages
            if m["message_type"] == OUTGOING and not m.get("private") and self._ours(m)
        ]
        return [
            f"steps: {min(self.steps // 10 * 10, 50)}+",
            f"draft notes: {min(len(self.shown_drafts()), 3)}",
            f"public replies sent: {min(len(public), 3)}",
            f"drafts decided: {sorted(set(self.draft_statuses().values()))}",
        ]

    # ---- the five rules --------------------------------------------------------------------
    def violations(self) -> list[str]:
        """Every breach of the five rules Chatwoot shows now (each reply is judged once: what
        decides it is older than the reply)."""
        messages = self.messages()
        ours_public = [
            m
            for m in messages
            if m["message_type"] == OUTGOING and not m.get("private") and self._ours(m)
        ]
        if not ours_public:
            return []
        drafts = self.store.of_conversation(A, C)
        approvals = {
            str(d["draft_id"]): self.store.approval(A, C, str(d["draft_id"]))
            for d in drafts
            if d.get("text")
        }
        found: list[str] = []
        # Rule 3: no more replies with a text than approvals bound to that text (drafts may
        # share a text: a canned answer is one approval per draft, each sent once).
        replies: dict[str, list[int]] = {}
        for reply in ours_public:
            replies.setdefault(content_digest(str(reply["content"])), []).append(reply["id"])
        bound = [a.get("digest") for a in approvals.values() if a]
        for digest, ids in replies.items():
            if len(ids) > max(1, bound.count(digest)):
                found.append(
                    f"rule 3: the same reply was posted {len(ids)} times ({ids}) for "
                    f"{bound.count(digest)} approval(s) of its text"
                )
        by_id = {m["id"]: m for m in messages}
        for reply in ours_public:
            if reply["id"] not in self.checked:
                self.checked.add(reply["id"])
                found += self._judge(reply, messages, by_id, drafts, approvals)
        return found

    def _judge(
        self,
        reply: dict[str, Any],
        messages: list[dict[str, Any]],
        by_id: dict[int, dict[str, Any]],
        drafts: list[dict[str, Any]],
        approvals: dict[str, dict[str, Any] | None],
    ) -> list[str]:
        """Rules 1, 2, 4 and 5 for one reply: some approval of a draft with its text, not yet
        spent on an earlier reply, must justify it."""
        text = str(reply["content"])
        name = f"public message {reply['id']}"
        candidates = [d for d in drafts if d.get("text") == text]
        if not candidates:
            return [f"rule 1: {name} is the text of no stored draft"]
        approved = [d for d in candidates if approvals.get(str(d["draft_id"]))]
        if not approved:
            return [f"rule 2: {name} (draft {candidates[0]['draft_id']}) has no stored approval"]
        verdicts = []
        for draft in approved:
            approval = approvals[str(draft["draft_id"])]
            assert approval is not None
            if str(draft["draft_id"]) in self.spent:
                continue
            found = self._justifies(reply, name, text, messages, by_id, draft, approval)
            if not found:
                self.spent.add(str(draft["draft_id"]))
                return []
            verdicts.append(found)
        if not verdicts:
            return [f"rule 3: {name}: every approval of its text was spent on an earlier reply"]
        return verdicts[0]

    def _justifies(
        self,
        reply: dict[str, Any],
        name: str,
        text: str,
        messages: list[dict[str, Any]],
        by_id: dict[int, dict[str, Any]],
        draft: dict[str, Any],
        approval: dict[str, Any],
    ) -> list[str]:
        """What keeps this draft's approval from justifying the reply (nothing: it does)."""
        draft_id = str(draft["draft_id"])
        found: list[str] = []
        if approval.get("digest") != content_digest(text):
            found.append(f"rule 1: {name} is not the text the approval of {draft_id} is bound to")
        command = str(approval.get("command_id") or "")
        send = by_id.get(int(command)) if command.isdigit() else None
        if send is None:
            return [
                *found,
                f"rule 2: {name} (draft {draft_id}) was approved by {command!r}, "
                "which is no message in Chatwoot",
            ]
        sender = send.get("sender") or {}
        written = self.written.get(send["id"], str(send.get("content") or ""))
        parsed = commands.parse(written)
        if parsed is None or parsed.name != "/send" or parsed.error:
            found.append(f"rule 2: {name} was approved by message {send['id']}, not a /send")
        if not (send.get("private") and send["message_type"] == OUTGOING):
            found.append(f"rule 2: {name} was approved by message {send['id']}, not a private note")
        if sender.get("type") != "user" or sender.get("id") == self.fake.actor_id:
            found.append(
                f"rule 2: {name} was approved by message {send['id']} from "
                f"{sender.get('type')} {sender.get('id')}, not an agent user"
            )
        trusted_at = self.trusted.get(send["id"])
        if trusted_at is None or trusted_at >= reply["id"]:
            found.append(
                f"rule 2: {name} was approved by /send {send['id']}, which reached the pipeline "
                "by no signed delivery (nor the reconciler) before the reply"
            )
        deleted_at = self.deleted_at.get(send["id"])
        approved_at = to_epoch(approval.get("approved_at"))
        if deleted_at is not None and approved_at is not None and deleted_at <= approved_at:
            found.append(
                f"rule 2: {name} was approved by /send {send['id']} after the agent deleted it"
            )
        if parsed is not None and parsed.draft_id and parsed.draft_id != draft_id:
            found.append(f"rule 1: {name} is draft {draft_id}, /send {send['id']} named another")
        shown = [
            m
            for m in messages
            if m["id"] < send["id"]
            and m.get("private")
            and self._ours(m)
            and _note_of(m) == draft_id
            and _shows(str(m["content"]), text)
        ]
        if not shown:
            found.append(
                f"rule 1: {name} (draft {draft_id}) was not shown verbatim in a draft note "
                f"before /send {send['id']}"
            )
        answered = [
            m["id"]
            for m in messages
            if send["id"] < m["id"] < reply["id"]
            and m["message_type"] == OUTGOING
            and not m.get("private")
            and (m.get("sender") or {}).get("type") == "user"
            and not self._ours(m)
        ]
        if answered:
            found.append(
                f"rule 4: {name} was posted after a person answered the customer "
                f"(message {answered[0]}) following /send {send['id']}"
            )
        if shown:
            followed = [
                m["id"]
                for m in messages
                if shown[-1]["id"] < m["id"] < send["id"]
                and m["message_type"] == INCOMING
                and not m.get("private")
            ]
            if followed:
                found.append(
                    f"rule 5: {name}: draft {draft_id} was superseded in Chatwoot (the customer "
                    f"wrote {followed[0]} after its note) before /send {send['id']}"
                )
        status = self.status_at_send.get(send["id"], {}).get(draft_id)
        if status in REFUSED_STATUSES:
            found.append(f"rule 5: {name}: draft {draft_id} was {status} when /send was written")
        age = float(send["created_at"]) - float(draft.get("created_epoch") or 0)
        if age > POLICY.drafts.expire_after + 1:
            found.append(
                f"rule 5: {name}: draft {draft_id} was {int(age)} s old when /send was written "
                f"(expired after {int(POLICY.drafts.expire_after)} s)"
            )
        return found

    def transcript(self) -> str:
        """The conversation as Chatwoot holds it, for a failure report."""
        lines = []
        for m in self.messages():
            sender = m.get("sender") or {}
            who = "pipeline" if self._ours(m) else f"{sender.get('type')}:{sender.get('id')}"
            kind = {0: "in", 1: "out", 2: "activity", 3: "template"}[m["message_type"]]
            if kind == "activity":
                continue
            private = " note" if m.get("private") else ""
            content = str(m.get("content") or "").replace("\n", " / ")
            lines.append(f"  {m['id']} t={m['created_at']} {kind}{private} {who}: {content[:110]}")
        return "\n".join(lines)


def _note_of(message: dict[str, Any]) -> str | None:
    """The draft id a draft note is for."""
    found = DRAFT_NOTE.match(str(message.get("content") or ""))
    return found.group(1) if found else None


def _shows(note: str, text: str) -> bool:
    """The note shows ``text`` as a whole block (not as part of a longer text)."""
    return f"\n{text}\n" in f"\n{note}\n"
