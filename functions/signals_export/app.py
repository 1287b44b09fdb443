"""SignalsExportFunction: weekly, write last week's draft outcomes and knowledge gaps to the
payload bucket (``signals/YYYY-Www.jsonl`` and ``signals/YYYY-Www-gaps.json``)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.telemetry import NAMESPACE
from support_pipeline.wiring import build_signals_export

logger = Logger(service="signals-export")
metrics = Metrics(namespace=NAMESPACE, service="signals-export")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The scheduled event's own time says which week is "last week", so a late or replayed
    # invocation exports the same week to the same keys. {"week": "2026-W39"} exports that
    # week instead (a re-run or a backfill by hand).
    now = to_epoch(event.get("time")) or time.time()
    week = event.get("week")
    if week is not None and not isinstance(week, str):
        raise ValueError("week must be a string like 2026-W39")
    answer = build_signals_export().run(now, week=week)
    metrics.add_metric(name="SignalsExported", unit=MetricUnit.Count, value=answer["lines"])
    return answer
