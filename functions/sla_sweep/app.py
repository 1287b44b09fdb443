"""SlaSweepFunction: on a schedule, flag at-risk and breached SLA targets of open conversations."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline import deadline
from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.sla import SlaSweep
from support_pipeline.telemetry import NAMESPACE
from support_pipeline.wiring import PerPolicy, build_sweep

logger = Logger(service="sla-sweep")
metrics = Metrics(namespace=NAMESPACE, service="sla-sweep")
_sweep: PerPolicy[SlaSweep] | None = None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    global _sweep
    if _sweep is None:
        _sweep = build_sweep(metrics)
    # The scheduled event's own time is "now": a late or replayed invocation judges SLAs as of
    # its schedule, and tests drive the clock through the event.
    now = to_epoch(event.get("time")) or time.time()
    with deadline.running_until(deadline.from_lambda_context(context)):
        return _sweep.get().run(now)
