"""Composition root: build the services from the environment with real AWS clients.

Handlers call these once per process (on first use, keeping module import light); tests build
the services directly with moto-backed clients and fakes instead.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SSMProvider

from support_pipeline import aws
from support_pipeline.config import IngestSettings, ProcessorSettings
from support_pipeline.conversations import RECORDED_EVENTS, ConversationRecorder
from support_pipeline.ingest import IngestService, WebhookSecrets
from support_pipeline.processing.consumer import EventConsumer
from support_pipeline.processing.router import Router
from support_pipeline.store import ConversationStore
from support_pipeline.telemetry import PowertoolsTelemetry


def build_router(store: ConversationStore, settings: ProcessorSettings) -> Router:
    """Every support handler, by event. Later capabilities register theirs here."""
    router = Router()
    router.register(
        RECORDED_EVENTS,
        "conversation_record",
        ConversationRecorder(store, retention_days=settings.timeline_retention_days),
    )
    return router


def build_ingest(metrics: Metrics) -> IngestService:
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
