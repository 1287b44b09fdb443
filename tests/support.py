"""Shared test helpers: fixtures on disk, signed webhook events, moto-backed services."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SSMProvider

from support_pipeline.chatwoot.signature import sign
from support_pipeline.config import IngestSettings, ProcessorSettings
from support_pipeline.drafts.service import sqs_schedule
from support_pipeline.ingest import IngestService, WebhookRequest, WebhookSecrets
from support_pipeline.processing.consumer import EventConsumer
from support_pipeline.processing.router import Router
from support_pipeline.store import ConversationStore
from support_pipeline.telemetry import RecordingTelemetry
from support_pipeline.wiring import SupportServices, build_router, build_support
from support_pipeline_ops.local import lambda_shim
from support_pipeline_ops.local import template as cfn

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"
SECRET = "test-webhook-secret-0123456789"  # invented for tests; never a real secret
NOW = 1790475400.0  # a few seconds after the fixtures' last event (2026-09-27T02:16:40Z)

ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json"))
# The captured conversation, in the order Chatwoot sent it.
CONVERSATION_STORY = [
    "message_created_incoming",
    "message_created_incoming_attachment",
    "message_created_outgoing_agent",
    "message_created_private_note",
    "conversation_updated",
    "message_created_outgoing_agent_bot",
    "conversation_status_changed_resolved",
]


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of a captured Chatwoot payload."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def body_of(payload: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def signed_headers(
    body: bytes, secret: str = SECRET, timestamp: float = NOW, delivery_id: str | None = "d-1"
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Chatwoot-Signature": sign(secret, int(timestamp), body),
        "X-Chatwoot-Timestamp": str(int(timestamp)),
    }
    if delivery_id:
        headers["X-Chatwoot-Delivery"] = delivery_id
    return headers


def webhook_event(
    payload: dict[str, Any] | str | bytes,
    *,
    secret: str = SECRET,
    timestamp: float = NOW,
    delivery_id: str | None = "d-1",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    query: str = "",
) -> dict[str, Any]:
    """An HTTP API v2 event for a signed delivery, as API Gateway hands it to the ingest."""
    body = body_of(payload)
    all_headers = (
        signed_headers(body, secret, timestamp, delivery_id) if headers is None else headers
    )
    return lambda_shim.http_api_event(method, "/webhooks/chatwoot", all_headers, body, query)


class Clock:
    """An injected clock that tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Pipeline:
    """The moto-backed stack with the real services wired to it."""

    stack: cfn.Stack
    clients: dict[str, Any]
    dynamodb: Any
    clock: Clock = field(default_factory=Clock)
    telemetry: RecordingTelemetry = field(default_factory=RecordingTelemetry)
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def sqs(self) -> Any:
        return self.clients["sqs"]

    @property
    def queue_url(self) -> str:
        return self.stack.physical["EventsQueue"]

    @property
    def dlq_url(self) -> str:
        return self.stack.physical["EventsDLQ"]

    @property
    def queue_arn(self) -> str:
        return self.stack.attributes[("EventsQueue", "Arn")]

    def ingest_settings(self, **changes: Any) -> IngestSettings:
        settings = IngestSettings.from_env(self.stack.function_environment("IngestFunction"))
        return IngestSettings(**{**settings.__dict__, **changes})

    def processor_settings(self, **changes: Any) -> ProcessorSettings:
        settings = ProcessorSettings.from_env(self.stack.function_environment("ProcessorFunction"))
        return ProcessorSettings(**{**settings.__dict__, **changes})

    def ingest(self, **changes: Any) -> IngestService:
        settings = self.ingest_settings(**changes)
        ssm = SSMProvider(boto3_client=self.clients["ssm"])
        secrets = WebhookSecrets(
            lambda force: str(
                ssm.get(settings.webhook_secret_param, decrypt=True, max_age=300, force_fetch=force)
            ),
            clock=self.clock,
        )
        return IngestService(
            settings=settings,
            sqs=self.sqs,
            s3=self.clients["s3"],
            secrets=secrets,
            telemetry=self.telemetry,
            clock=self.clock,
        )

    def post(
        self, payload: Any, service: IngestService | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        event = webhook_event(payload, **kwargs)
        response = (service or self.ingest()).handle(WebhookRequest.from_api_gateway(event))
        return response.status, response.body

    def store(self) -> ConversationStore:
        return ConversationStore(self.dynamodb, self.stack.physical["ConversationsTable"])

    def support(
        self, chatwoot: Any = None, policy: Any = None, drafters: Any = None
    ) -> SupportServices:
        """Support capabilities on moto; ``chatwoot`` a ChatwootClient, or None for dry runs;
        ``drafters`` picks a drafter per inbox (default: none, so no drafts)."""
        settings = self.processor_settings()
        return build_support(
            settings.support,
            self.dynamodb,
            settings.conversations_table,
            settings.actions_table,
            self.telemetry,
            chatwoot,
            clock=self.clock,
            policy=policy,
            schedule=sqs_schedule(self.sqs, self.queue_url, self.clock),
            drafters=drafters or (lambda inbox: None),
        )

    def consumer(
        self,
        router: Router | None = None,
        rng: Any = lambda: 1.0,
        chatwoot: Any = None,
        policy: Any = None,
        drafters: Any = None,
        **changes: Any,
    ) -> EventConsumer:
        settings = self.processor_settings(**changes)
        return EventConsumer(
            settings=settings,
            sqs=self.sqs,
            s3=self.clients["s3"],
            router=router
            or build_router(self.support(chatwoot, policy, drafters), clock=self.clock),
            telemetry=self.telemetry,
            clock=self.clock,
            rng=rng,
        )

    def drain(self, consumer: EventConsumer | None = None, max_batches: int = 50) -> int:
        """Run visible messages through the consumer as Lambda's SQS poller would."""
        consumer = consumer or self.consumer()
        total = 0
        for _ in range(max_batches):
            received, _failed = lambda_shim.poll_once(
                self.sqs, self.queue_url, self.queue_arn, consumer.handle_batch
            )
            if received == 0:
                break
            total += received
        return total

    def messages(self, queue_url: str) -> list[dict[str, Any]]:
        """Every visible message (left visible again afterwards)."""
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(20):
            batch = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                seen[message["MessageId"]] = message
        for message in seen.values():
            self.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return list(seen.values())

    def make_visible(self) -> None:
        """Time passes: whatever is hidden on EventsQueue becomes visible again, and delayed
        messages (the pipeline's own scheduled events) are due."""
        for message in self._in_flight():
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message, VisibilityTimeout=0
            )
        self.end_delays()

    def end_delays(self) -> int:
        """The SQS delays of EventsQueue's messages run out now (the clock moved on)."""
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[cfn.ACCOUNT_ID][self.stack.region]
        queue = backend.queues[self.stack.attributes[("EventsQueue", "QueueName")]]
        delayed = [m for m in queue._messages if m.delayed]
        for message in delayed:
            message.delayed_until = 0.0
        return len(delayed)

    def delayed(self) -> int:
        """How many messages on EventsQueue wait for their delay to pass."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesDelayed"])

    def _in_flight(self) -> list[str]:
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[cfn.ACCOUNT_ID][self.stack.region]
        queue = backend.queues[self.stack.attributes[("EventsQueue", "QueueName")]]
        handles = []
        for message in queue._messages:
            if not message.visible and message.receipt_handle:
                handles.append(message.receipt_handle)
        return handles


def attributes_of(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in (message.get("MessageAttributes") or {}).items()}


def load_handler(function: str) -> Any:
    """Import functions/<function>/app.py under a unique module name."""
    name = f"{function}_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def new_pipeline(overrides: dict[str, str] | None = None, secret: str = SECRET) -> Pipeline:
    """Provision the template's resources in the active moto mock."""
    clients = {
        name: boto3.client(name, region_name="us-east-1")
        for name in ("sqs", "dynamodb", "s3", "ssm", "sns")
    }
    stack = cfn.provision(
        cfn.load(ROOT / "template.yaml"),
        clients,
        stack_name="test",
        overrides=overrides,
        secrets={"WebhookSecretParamName": secret},
    )
    return Pipeline(
        stack=stack,
        clients=clients,
        dynamodb=boto3.resource("dynamodb", region_name="us-east-1"),
        overrides=dict(overrides or {}),
    )


# ---- support actions (issue: SLA, escalations) ------------------------------------------------
SHIPPED_POLICY = ROOT / "config" / "support-policy.yaml"


def policy_with(**changes: Any) -> Any:
    """The shipped policy with dotted-path changes, e.g. ``{"escalation.team_id": 7}``."""
    import yaml

    from support_pipeline.policy import parse_policy

    data = yaml.safe_load(SHIPPED_POLICY.read_text())
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.replace("__", ".").split(".")
        for key in parents:
            target = target[key]
        target[last] = value
    return parse_policy(data, "test policy")


def incoming(
    content: str, message_id: int, at: float, conversation_id: int = 1, **conversation: Any
) -> dict[str, Any]:
    """A customer message, built from the captured incoming message."""
    payload = fixture("message_created_incoming")
    payload["id"] = message_id
    payload["content"] = content
    payload["created_at"] = at
    conv = payload["conversation"]
    conv["id"] = conversation_id
    conv["messages"][0].update(id=message_id, content=content, created_at=int(at), updated_at=at)
    conv["updated_at"] = at + 0.5
    conv.update(conversation)
    return payload


def agent_message(
    content: str,
    message_id: int,
    at: float,
    private: bool = False,
    conversation_id: int = 1,
    **conversation: Any,
) -> dict[str, Any]:
    """An agent's public reply or private note, built from the captured ones."""
    payload = fixture(
        "message_created_private_note" if private else "message_created_outgoing_agent"
    )
    payload["id"] = message_id
    payload["content"] = content
    payload["created_at"] = at
    conv = payload["conversation"]
    conv["id"] = conversation_id
    conv["updated_at"] = at + 0.5
    if not private:
        conv["first_reply_created_at"] = conv.get("first_reply_created_at") or at
    conv.update(conversation)
    return payload


def status_changed(
    status: str, at: float, conversation_id: int = 1, **fields: Any
) -> dict[str, Any]:
    """A status change, built from the captured one (no first reply unless given)."""
    payload = fixture("conversation_status_changed_resolved")
    payload.update(status=status, updated_at=at, id=conversation_id, first_reply_created_at=None)
    payload.update(fields)
    return payload


def reopened_story() -> list[dict[str, Any]]:
    """The captured conversation, then reopened and resolved twice more, in version order.

    resolved (captured) -> the customer writes again (reopen 1) -> an agent answers -> resolved
    -> an agent reopens (reopen 2) -> resolved at 1790475800 -> a private note on the resolved
    conversation. Two reopenings; the last resolution began at 1790475800.
    """
    return [fixture(name) for name in CONVERSATION_STORY] + [
        incoming("It stopped working again", 101, 1790475500.0, status="open"),
        agent_message("Fixed, please try now", 102, 1790475560.0, status="open"),
        status_changed("resolved", 1790475600.0),
        status_changed("open", 1790475700.0),
        status_changed("resolved", 1790475800.0),
        agent_message("Follow-up done", 103, 1790475850.0, private=True, status="resolved"),
    ]


def support_mix(conversations: int, start: float = NOW) -> list[dict[str, Any]]:
    """The realistic mix the call budget is stated for (issue: cost and scale): per
    conversation three customer messages, two agent replies and one resolution, in order."""
    payloads: list[dict[str, Any]] = []
    for conversation in range(1, conversations + 1):
        at = start + conversation * 1000
        first = conversation * 100
        payloads += [
            incoming("Hola, ¿cuánto tarda el envío?", first + 1, at, conversation, status="open"),
            agent_message(
                "Hola, 3 días hábiles",
                first + 2,
                at + 60,
                conversation_id=conversation,
                status="open",
            ),
            incoming("¿y a Cali?", first + 3, at + 120, conversation, status="open"),
            agent_message(
                "También", first + 4, at + 180, conversation_id=conversation, status="open"
            ),
            incoming("gracias", first + 5, at + 240, conversation, status="open"),
            status_changed("resolved", at + 300, conversation_id=conversation),
        ]
    return payloads
