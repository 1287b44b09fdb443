"""Composition root: build the services from the environment with real AWS clients.

Handlers call these once per process (on first use); tests build the services directly with
moto-backed clients and fakes instead. Imports live inside each builder so that the ingest
function's cold start never loads the processor's libraries (batch, idempotency, DynamoDB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from support_pipeline import aws
from support_pipeline.config import IngestSettings, ProcessorSettings

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

    from support_pipeline.ingest import IngestService
    from support_pipeline.processing.consumer import EventConsumer
    from support_pipeline.processing.router import Router
    from support_pipeline.store import ConversationStore


def build_router(store: ConversationStore, settings: ProcessorSettings) -> Router:
    """Every support handler, by event. Later capabilities register theirs here."""
    from support_pipeline.conversations import RECORDED_EVENTS, ConversationRecorder
    from support_pipeline.processing.router import Router

    router = Router()
    router.register(
        RECORDED_EVENTS,
        "conversation_record",
        ConversationRecorder(store, retention_days=settings.timeline_retention_days),
    )
    return router


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


def build_consumer(metrics: Metrics) -> EventConsumer:
    import boto3
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from support_pipeline.processing.consumer import EventConsumer
    from support_pipeline.store import ConversationStore
    from support_pipeline.telemetry import PowertoolsTelemetry

    settings = ProcessorSettings.from_env()
    dynamodb = boto3.session.Session().resource("dynamodb", config=aws.PROCESSOR_CONFIG)
    store = ConversationStore(dynamodb, settings.conversations_table)
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table,
        boto3_client=aws.client("dynamodb", aws.PROCESSOR_CONFIG),
    )
    return EventConsumer(
        settings=settings,
        sqs=aws.client("sqs", aws.PROCESSOR_CONFIG),
        s3=aws.client("s3", aws.PROCESSOR_CONFIG),
        router=build_router(store, settings),
        persistence=persistence,
        telemetry=PowertoolsTelemetry(metrics),
    )
