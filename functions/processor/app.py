"""ProcessorFunction: EventsQueue batches -> support handlers, with partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline.processing.consumer import EventConsumer
from support_pipeline.telemetry import NAMESPACE
from support_pipeline.wiring import PerPolicy, build_consumer

logger = Logger(service="processor")
metrics = Metrics(namespace=NAMESPACE, service="processor")
_consumer: PerPolicy[EventConsumer] | None = None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _consumer
    if _consumer is None:
        _consumer = build_consumer(metrics)
    return _consumer.get().handle_batch(event, context)
