"""ReconcilerFunction: on a schedule, find the Chatwoot events whose delivery never reached the
pipeline and replay them through EventsQueue (marked ``reconciled``)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline import deadline
from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.reconcile import Reconciler, run_request
from support_pipeline.telemetry import NAMESPACE
from support_pipeline.wiring import build_reconciler

logger = Logger(service="reconciler")
metrics = Metrics(namespace=NAMESPACE, service="reconciler")
_reconciler: Reconciler | None = None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _reconciler
    if _reconciler is None:
        _reconciler = build_reconciler(metrics)
    # The scheduled event's own time is "now", as for the SLA sweep; a run by hand may name
    # accounts and how far back to look: {"accounts": ["1"], "since": "2026-09-27T00:00:00Z"}.
    now = to_epoch(event.get("time")) or time.time()
    accounts, since = run_request(event)
    with deadline.running_until(deadline.from_lambda_context(context)):
        return _reconciler.run(now, accounts=accounts, since=since)
