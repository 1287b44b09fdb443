"""IngestFunction: POST /webhooks/chatwoot -> EventsQueue (HTTP API payload v2)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline.ingest import IngestService, WebhookRequest
from support_pipeline.telemetry import NAMESPACE
from support_pipeline.wiring import build_ingest

logger = Logger(service="ingest")
metrics = Metrics(namespace=NAMESPACE, service="ingest")
_service: IngestService | None = None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _service
    if _service is None:
        _service = build_ingest(metrics)
    request = WebhookRequest.from_api_gateway(event)
    delivery_id = request.headers.get("x-chatwoot-delivery")
    if delivery_id:
        logger.set_correlation_id(delivery_id)
    return _service.handle(request).to_api_gateway()
