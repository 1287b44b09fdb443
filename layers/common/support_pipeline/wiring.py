"""Composition root: build the services from the environment with real AWS clients.

Handlers call these once per process (on first use); tests build the services directly with
moto-backed clients and fakes instead. Imports live inside each builder so that the ingest
function's cold start never loads the processor's libraries (batch, idempotency, DynamoDB).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from support_pipeline import aws
from support_pipeline.config import (
    IngestSettings,
    PauseSettings,
    ProcessorSettings,
    ReconcilerSettings,
    SignalsSettings,
    SupportSettings,
    SweepSettings,
)

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

    from support_pipeline.actions import ActionLedger, ActionRunner
    from support_pipeline.chatwoot.client import ChatwootClient, Identity
    from support_pipeline.drafts.base import Drafter
    from support_pipeline.drafts.service import DraftService, Schedule
    from support_pipeline.escalation import Escalator
    from support_pipeline.ingest import IngestService
    from support_pipeline.pause import PauseSwitch
    from support_pipeline.policy import PolicySource, SupportPolicy
    from support_pipeline.processing.consumer import EventConsumer
    from support_pipeline.processing.router import Router
    from support_pipeline.reconcile import Reconciler
    from support_pipeline.signals import WeeklySignals
    from support_pipeline.sla import SlaService, SlaSweep
    from support_pipeline.store import ConversationStore
    from support_pipeline.telemetry import Telemetry

logger = Logger(child=True)
# How long a read of the Chatwoot token (and the drafters' secrets) is trusted: a rotated token is
# picked up within this (docs/runbooks/support_webhooks.md#rotate-the-chatwoot-access-token).
SECRET_CACHE_SECONDS = 300


class PerPolicy[T]:
    """One service per process, rebuilt when the support policy in force changes."""

    def __init__(
        self,
        build: Callable[[SupportPolicy], T],
        source: PolicySource,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._build = build
        self._source = source
        self._telemetry = telemetry
        self._policy: SupportPolicy | None = None
        self._service: T | None = None

    def get(self) -> T:
        policy = self._source.current()
        if self._source.last_error:
            unreadable = self._source.last_error_kind == "unreadable"
            logger.error(
                "support policy unreadable; the previous one stays in force"
                if unreadable
                else "support policy refused; the previous one stays in force",
                extra={"error": self._source.last_error},
            )
            if self._telemetry is not None:
                self._telemetry.count("PolicyUnreadable" if unreadable else "PolicyRefused")
        if self._service is None or policy is not self._policy:
            self._service = self._build(policy)
            self._policy = policy
        return self._service


@dataclass
class SupportServices:
    """The support capabilities, wired to one store, ledger and Chatwoot client."""

    policy: SupportPolicy
    store: ConversationStore
    ledger: ActionLedger
    actions: ActionRunner
    escalator: Escalator
    sla: SlaService
    drafts: DraftService
    timeline_retention_days: int = 400


def chatwoot_client(
    settings: SupportSettings,
    fetch_parameter: Callable[[str], str] | None = None,
    telemetry: Telemetry | None = None,
    pause: PauseSwitch | None = None,
) -> ChatwootClient | None:
    """The REST client, or None (dry run) without a base URL. With ``telemetry`` every failed
    call is counted as ``ChatwootApiError`` by status; with ``pause`` every call first asks the
    pause switch (paused: :class:`~support_pipeline.pause.Paused`, no call made)."""
    if settings.dry_run:
        return None
    from support_pipeline.chatwoot.client import ChatwootClient

    if fetch_parameter is None:
        from aws_lambda_powertools.utilities import parameters

        def fetch_parameter(name: str) -> str:
            return str(parameters.get_parameter(name, decrypt=True, max_age=SECRET_CACHE_SECONDS))

    parameter = settings.chatwoot_api_token_param
    counter = telemetry
    return ChatwootClient(
        settings.chatwoot_base_url,
        lambda: fetch_parameter(parameter),
        on_error=(
            (lambda status: counter.count("ChatwootApiError", reason=status))
            if counter is not None
            else None
        ),
        gate=pause.hold if pause is not None else None,
    )


def pause_switch(settings: PauseSettings, telemetry: Telemetry | None = None) -> PauseSwitch:
    """The pause switch a function reads (always off without a parameter name)."""
    from support_pipeline.pause import NeverPaused, PauseSwitch, ssm_reader

    if not settings.parameter:
        return NeverPaused()
    return PauseSwitch(
        ssm_reader(aws.client("ssm", aws.PROCESSOR_CONFIG), settings.parameter),
        max_age=settings.cache_seconds,
        telemetry=telemetry,
        name=settings.parameter,
    )


def build_support(
    settings: SupportSettings,
    dynamodb: Any,
    conversations_table: str,
    actions_table: str,
    telemetry: Telemetry,
    client: ChatwootClient | None,
    clock: Callable[[], float] = time.time,
    policy: SupportPolicy | None = None,
    timeline_retention_days: int = 400,
    schedule: Schedule | None = None,
    drafters: Callable[[str | None], Drafter | None] | None = None,
) -> SupportServices:
    """The support capabilities. ``schedule`` puts the pipeline's own delayed events on its
    queue (the processor's); ``drafters`` picks a drafter per inbox (default: the policy's, as
    :func:`deployed_drafters` runs it: no drafts from the layer's sample articles unless
    ``settings.knowledge_samples``)."""
    from support_pipeline.actions import ActionLedger, ActionRunner
    from support_pipeline.drafts.service import DraftService
    from support_pipeline.drafts.store import DraftStore
    from support_pipeline.escalation import Escalator
    from support_pipeline.policy import load_policy
    from support_pipeline.sla import SlaService
    from support_pipeline.store import ConversationStore

    policy = policy or load_policy(settings.support_policy_param)
    store = ConversationStore(dynamodb, conversations_table)
    draft_store = DraftStore(
        dynamodb, conversations_table, policy.zone, clock, timeline_retention_days
    )
    ledger = ActionLedger(dynamodb, actions_table, clock=clock)
    own = pipeline_identity(policy, client)  # asked of Chatwoot once per process
    actions = ActionRunner(
        ledger, client, telemetry, approval_of=draft_store.approval, identity=own
    )
    escalator = Escalator(policy, store, actions, clock=clock)
    sla = SlaService(policy, store, actions, escalator, telemetry)

    def no_queue(payload: dict[str, Any], dedupe_key: str, delay: int) -> None:
        raise RuntimeError("this function has no queue to schedule events on")

    draft_policy = policy
    if drafters is None:
        draft_policy, drafters = deployed_drafters(policy, settings)
    drafts = DraftService(
        policy=draft_policy,
        store=store,
        drafts=draft_store,
        actions=actions,
        drafter_for=drafters,
        schedule=schedule or no_queue,
        telemetry=telemetry,
        own=own,
        clock=clock,
    )
    return SupportServices(
        policy, store, ledger, actions, escalator, sla, drafts, timeline_retention_days
    )


def deployed_drafters(
    policy: SupportPolicy, settings: SupportSettings
) -> tuple[SupportPolicy, Callable[[str | None], Drafter | None]]:
    """The policy as drafting runs it, and its drafters: the knowledge drafter only over a
    knowledge source of the team's own unless ``settings.knowledge_samples`` (the local stack)
    allows the layer's sample articles (drafts/registry.py, :func:`~registry.in_force`). Says
    once, in the log, what drafts are made from, or why there are none."""
    from dataclasses import replace

    from support_pipeline.drafts import registry

    state = registry.in_force(policy.drafts, settings.knowledge_samples)
    if state.off_reason:
        logger.warning(
            f"drafts off: {state.off_reason}",
            extra={
                "drafter": "knowledge",
                "off_for": list(state.off_where),
                "drafts": state.summary(),
            },
        )
    elif state.samples:
        logger.info("drafts use the sample articles of a fictional store (KNOWLEDGE_SAMPLES)")
    if state.policy is not policy.drafts:
        policy = replace(policy, drafts=state.policy)
    return policy, default_drafters(policy, settings)


def default_drafters(
    policy: SupportPolicy, settings: SupportSettings
) -> Callable[[str | None], Drafter | None]:
    """The drafters the policy names, built on first use with real AWS clients (the policy as
    :func:`deployed_drafters` gives it)."""
    from support_pipeline.drafts import registry

    def fetch(name: str) -> str:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_parameter(name, decrypt=True, max_age=SECRET_CACHE_SECONDS))

    def s3() -> Any:
        return aws.client("s3", aws.PROCESSOR_CONFIG) if policy.drafts.knowledge.s3_uri else None

    samples = settings.knowledge_samples
    return registry.DrafterRegistry(
        policy.drafts,
        {
            "knowledge": lambda drafts: registry.knowledge_drafter(drafts, s3=s3()),
            "bedrock": lambda drafts: registry.bedrock_drafter(
                drafts,
                aws.client("bedrock-runtime", aws.BEDROCK_CONFIG),
                s3=s3(),
                samples_allowed=samples,
            ),
            "http": lambda drafts: registry.http_drafter(drafts, fetch),
        },
    )


def build_router(support: SupportServices, clock: Callable[[], float] = time.time) -> Router:
    """Every support handler, by event, in order: record first, then act on the record."""
    from support_pipeline.chatwoot.payload import CONVERSATION_EVENTS
    from support_pipeline.conversations import RECORDED_EVENTS, ConversationRecorder
    from support_pipeline.drafts.service import DRAFT_EVENTS
    from support_pipeline.escalation import ESCALATION_EVENTS, EscalationRules
    from support_pipeline.processing.router import Router
    from support_pipeline.sla import SlaOutcomes

    router = Router()
    router.register(
        RECORDED_EVENTS,
        "conversation_record",
        ConversationRecorder(
            support.store,
            retention_days=support.timeline_retention_days,
            clock=clock,
            zone=support.policy.zone,
            due_fields=support.sla.due_fields,
        ),
    )
    router.register(
        {"message_created"} | CONVERSATION_EVENTS, "sla_outcomes", SlaOutcomes(support.sla, clock)
    )
    router.register(
        ESCALATION_EVENTS,
        "escalation",
        EscalationRules(
            support.policy,
            support.store,
            support.escalator,
            own=support.drafts.own,
        ),
    )
    router.register(DRAFT_EVENTS, "drafts", support.drafts)
    from support_pipeline.csat import CSAT_EVENTS, CsatRecorder

    router.register(
        CSAT_EVENTS,
        "csat",
        CsatRecorder(support.store, support.policy.zone, support.timeline_retention_days, clock),
    )
    return router


def pipeline_identity(
    policy: SupportPolicy, client: ChatwootClient | None
) -> Callable[[], Identity | None]:
    """Who the pipeline is in Chatwoot: the policy's ``actor.id`` when set, else the access
    token's own user (``GET /api/v1/profile``, asked once per process)."""
    from support_pipeline.chatwoot.client import Identity
    from support_pipeline.processing.errors import PermanentError

    if policy.actor.id:
        configured = Identity(policy.actor.type, policy.actor.id)
        return lambda: configured
    if client is None:
        return lambda: None
    live = client
    refused: list[bool] = []

    def ask() -> Identity | None:
        if refused:
            return None
        try:
            return live.identity()
        except PermanentError:
            # e.g. an agent bot's token, which has no profile: set actor.id in the policy
            logger.warning("the API token has no profile; own messages are known by ref only")
            refused.append(True)
            return None

    return ask


def build_ingest(metrics: Metrics) -> IngestService:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    from support_pipeline.ingest import IngestService, WebhookSecrets
    from support_pipeline.telemetry import PowertoolsTelemetry

    settings = IngestSettings.from_env()
    ssm = SSMProvider(boto3_client=aws.client("ssm", aws.INGEST_CONFIG))
    secrets = WebhookSecrets(
        lambda force: str(
            ssm.get(
                settings.webhook_secret_param,
                decrypt=True,
                max_age=settings.secret_cache_seconds,
                force_fetch=force,
            )
        )
    )
    return IngestService(
        settings=settings,
        sqs=aws.client("sqs", aws.INGEST_CONFIG),
        s3=aws.client("s3", aws.INGEST_CONFIG) if settings.payload_bucket else None,
        secrets=secrets,
        telemetry=PowertoolsTelemetry(metrics),
    )


def _deployed_support(
    settings: ProcessorSettings | SweepSettings,
    telemetry: Telemetry,
    policy: SupportPolicy,
    retention_days: int = 400,
    schedule: Schedule | None = None,
    pause: PauseSwitch | None = None,
) -> SupportServices:
    """The support services against real AWS and Chatwoot, from a function's settings."""
    return build_support(
        settings.support,
        aws.resource("dynamodb", aws.PROCESSOR_CONFIG),
        settings.conversations_table,
        settings.actions_table,
        telemetry,
        chatwoot_client(settings.support, telemetry=telemetry, pause=pause),
        policy=policy,
        timeline_retention_days=retention_days,
        schedule=schedule,
    )


def build_consumer(metrics: Metrics) -> PerPolicy[EventConsumer]:
    """The processor's consumer, rebuilt when the support policy changes."""
    from support_pipeline.processing.consumer import EventConsumer
    from support_pipeline.telemetry import PowertoolsTelemetry

    settings = ProcessorSettings.from_env()
    telemetry = PowertoolsTelemetry(metrics)
    sqs = aws.client("sqs", aws.PROCESSOR_CONFIG)
    s3 = aws.client("s3", aws.PROCESSOR_CONFIG)

    from support_pipeline.drafts.service import sqs_schedule

    schedule = sqs_schedule(sqs, settings.events_queue_url)
    pause = pause_switch(settings.pause, telemetry)  # one per process: its cache outlives policies

    def build(policy: SupportPolicy) -> EventConsumer:
        support = _deployed_support(
            settings, telemetry, policy, settings.timeline_retention_days, schedule, pause
        )
        return EventConsumer(
            settings=settings,
            sqs=sqs,
            s3=s3,
            router=build_router(support),
            telemetry=telemetry,
            pause=pause,
        )

    from support_pipeline.policy import PolicySource

    return PerPolicy(build, PolicySource(settings.support.support_policy_param), telemetry)


def build_sweep(metrics: Metrics) -> PerPolicy[SlaSweep]:
    """The SLA sweep, rebuilt when the support policy changes."""
    from support_pipeline.sla import SlaSweep
    from support_pipeline.telemetry import PowertoolsTelemetry

    settings = SweepSettings.from_env()
    telemetry = PowertoolsTelemetry(metrics)
    pause = pause_switch(settings.pause, telemetry)

    def build(policy: SupportPolicy) -> SlaSweep:
        support = _deployed_support(settings, telemetry, policy, pause=pause)
        return SlaSweep(support.sla, telemetry, drafts=support.drafts, pause=pause)

    from support_pipeline.policy import PolicySource

    return PerPolicy(build, PolicySource(settings.support.support_policy_param), telemetry)


def build_signals_export(
    settings: SignalsSettings | None = None,
    dynamodb: Any = None,
    s3: Any = None,
    policy: SupportPolicy | None = None,
) -> WeeklySignals:
    """The weekly signals export: drafts from the ConversationsTable to the payload bucket,
    weeks counted in the support policy's time zone. Built per invocation (it runs weekly);
    tests pass moto-backed clients and a policy."""
    from support_pipeline.drafts.store import DraftStore
    from support_pipeline.policy import load_policy
    from support_pipeline.signals import WeeklySignals
    from support_pipeline.store import ConversationStore

    settings = settings or SignalsSettings.from_env()
    policy = policy or load_policy(settings.support_policy_param)
    dynamodb = dynamodb or aws.resource("dynamodb", aws.PROCESSOR_CONFIG)
    return WeeklySignals(
        store=ConversationStore(dynamodb, settings.conversations_table),
        drafts=DraftStore(dynamodb, settings.conversations_table, policy.zone),
        s3=s3 or aws.client("s3", aws.PROCESSOR_CONFIG),
        bucket=settings.payload_bucket,
        zone=policy.zone,
        zone_name=policy.timezone,
    )


def build_reconciler(metrics: Metrics, settings: ReconcilerSettings | None = None) -> Reconciler:
    """The reconciler: Chatwoot's API against the records, replays onto EventsQueue. Needs no
    support policy (it only compares and replays; the processor does the support work)."""
    from support_pipeline.reconcile import Reconciler
    from support_pipeline.store import ConversationStore
    from support_pipeline.telemetry import PowertoolsTelemetry

    settings = settings or ReconcilerSettings.from_env()
    telemetry = PowertoolsTelemetry(metrics)
    return Reconciler(
        store=ConversationStore(
            aws.resource("dynamodb", aws.PROCESSOR_CONFIG), settings.conversations_table
        ),
        client=chatwoot_client(settings.support),
        sqs=aws.client("sqs", aws.PROCESSOR_CONFIG),
        queue_url=settings.events_queue_url,
        telemetry=telemetry,
        rate_seconds=settings.rate_seconds,
        overlap_seconds=settings.overlap_seconds,
        ignored_events=settings.ignored_events,
        pause=pause_switch(settings.pause, telemetry),
    )
