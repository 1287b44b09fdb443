"""Pipeline health for the report: the functions' own counts from CloudWatch, and the DLQ now.

The functions emit EMF metrics (namespace ``SupportPipeline``, dimension ``service``, plus
``reason`` for counts with one; see telemetry.py). The reasons are found with ListMetrics (the
metrics that had data in the last two weeks), then every series is summed over the period with
GetMetricData. Where CloudWatch holds no metric of the namespace at all (the local stack, moto,
a stack that received nothing for two weeks) the report says the numbers are not available
rather than showing zeros.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from support_pipeline.report.period import Period
from support_pipeline.report.stats import compared
from support_pipeline.telemetry import NAMESPACE

# (report name, metric name, service, has a reason dimension)
SERIES = (
    ("webhooks_accepted", "WebhookAccepted", "ingest", False),
    ("webhooks_rejected", "WebhookRejected", "ingest", True),
    ("processed", "EventProcessed", "processor", False),
    ("retried", "EventRetried", "processor", True),
    ("dead_lettered", "EventDeadLettered", "processor", True),
    ("redriven", "EventRedriven", "ops", False),
    ("reconciled", "EventsReconciled", "reconciler", False),
)
LOWER_IS_BETTER = ("webhooks_rejected", "retried", "dead_lettered")
REDRIVEN_METRIC = "EventRedriven"
OPS_SERVICE = "ops"
MAX_QUERIES = 500  # GetMetricData's limit per call
FINE_PERIOD_DAYS = 63  # CloudWatch keeps 5-minute data this long, then 1-hour data


@dataclass(frozen=True)
class Series:
    name: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def reason(self) -> str | None:
        return dict(self.dimensions).get("reason")


class HealthReader:
    """Reads the pipeline's counts and the DLQ depth; never raises for what it cannot read."""

    def __init__(
        self,
        cloudwatch: Any,
        sqs: Any,
        dlq_url: str,
        namespace: str = NAMESPACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cloudwatch = cloudwatch
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.namespace = namespace
        self.clock = clock

    def read(self, period: Period, previous: Period | None) -> dict[str, Any]:
        section: dict[str, Any] = {"dlq_depth_now": self._dlq_depth()}
        try:
            series = self._series()
        except (ClientError, BotoCoreError) as failure:
            return {
                **section,
                "available": False,
                "note": f"Not available: CloudWatch could not be read ({_why(failure)}).",
            }
        if not any(s.metric != REDRIVEN_METRIC for s in series):
            # Only the ops CLI's redrive counts (it puts them itself): the functions emit none.
            return {
                **section,
                "available": False,
                "note": "Not available here: CloudWatch holds no SupportPipeline metrics at this "
                "endpoint (the local stack and moto have no EMF metrics, and a stack that "
                "received nothing for two weeks has none listed).",
            }
        try:
            now = self._sums(series, period)
            then = self._sums(series, previous) if previous is not None else None
        except (ClientError, BotoCoreError) as failure:
            return {
                **section,
                "available": False,
                "note": f"Not available: CloudWatch could not be read ({_why(failure)}).",
            }
        section.update(available=True, note=self._resolution_note(period))
        for name, _metric, _service, with_reason in SERIES:
            mine = [s for s in series if s.name == name]
            total_now = sum(now.get(s, 0.0) for s in mine)
            total_then = None if then is None else sum(then.get(s, 0.0) for s in mine)
            entry = compared(
                int(total_now),
                None if total_then is None else int(total_then),
                unit="count",
                better="lower" if name in LOWER_IS_BETTER else "higher",
            )
            if with_reason:
                reasons = sorted({s.reason or "unknown" for s in mine})
                entry["by_reason"] = [
                    {
                        "reason": reason,
                        **compared(
                            int(sum(now.get(s, 0.0) for s in mine if s.reason == reason)),
                            None
                            if then is None
                            else int(sum(then.get(s, 0.0) for s in mine if s.reason == reason)),
                            unit="count",
                            better="lower",
                        ),
                    }
                    for reason in reasons
                ]
                entry["by_reason"] = [r for r in entry["by_reason"] if r["value"] or r["previous"]]
            section[name] = entry
        return section

    # ---- reading ---------------------------------------------------------------------------
    def _dlq_depth(self) -> int | None:
        if not self.dlq_url or self.sqs is None:
            return None
        try:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.dlq_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
        except (ClientError, BotoCoreError):
            return None
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def _series(self) -> list[Series]:
        """Every series the report sums, as ListMetrics names them."""
        wanted = {metric: (name, service, reason) for name, metric, service, reason in SERIES}
        found: list[Series] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Namespace": self.namespace}
            if token:
                request["NextToken"] = token
            page = self.cloudwatch.list_metrics(**request)
            for metric in page.get("Metrics", []):
                spec = wanted.get(metric.get("MetricName"))
                if spec is None:
                    continue
                name, service, with_reason = spec
                dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                expected = {"reason", "service"} if with_reason else {"service"}
                if set(dimensions) != expected or dimensions["service"] != service:
                    continue  # another dimension set of the same numbers: not counted twice
                found.append(Series(name, metric["MetricName"], tuple(sorted(dimensions.items()))))
            token = page.get("NextToken")
            if not token:
                break
        listed = {s.metric for s in found}
        emitted = any(s.metric != REDRIVEN_METRIC for s in found)
        # Once the functions emit at all, a series without a reason that had no data lately
        # is a zero.
        for name, metric, service, with_reason in SERIES:
            if not with_reason and metric not in listed and emitted:
                found.append(Series(name, metric, (("service", service),)))
        return sorted(set(found), key=lambda s: (s.name, s.dimensions))

    def _granularity(self, period: Period) -> int:
        age_days = (self.clock() - period.start_epoch) / 86400
        return 300 if age_days < FINE_PERIOD_DAYS else 3600

    def _resolution_note(self, period: Period) -> str:
        if self._granularity(period) == 300:
            return "Counts from CloudWatch (5-minute data)."
        return (
            "Counts from CloudWatch's hourly data (the period is older than 63 days); in a time "
            "zone whose offset is not whole hours the days' edges are approximate."
        )

    def _sums(self, series: list[Series], period: Period) -> dict[Series, float]:
        granularity = self._granularity(period)
        start = datetime.fromtimestamp(period.start_epoch, UTC)
        end = datetime.fromtimestamp(period.end_epoch, UTC)
        totals: dict[Series, float] = {}
        for offset in range(0, len(series), MAX_QUERIES):
            chunk = series[offset : offset + MAX_QUERIES]
            ids = {f"m{offset + i}": s for i, s in enumerate(chunk)}
            queries = [
                {
                    "Id": query_id,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": self.namespace,
                            "MetricName": s.metric,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions],
                        },
                        "Period": granularity,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
                for query_id, s in ids.items()
            ]
            token: str | None = None
            while True:
                request: dict[str, Any] = {
                    "MetricDataQueries": queries,
                    "StartTime": start,
                    "EndTime": end,
                    "ScanBy": "TimestampAscending",
                }
                if token:
                    request["NextToken"] = token
                answer = self.cloudwatch.get_metric_data(**request)
                for result in answer.get("MetricDataResults", []):
                    s = ids.get(result.get("Id"))
                    if s is None:
                        continue
                    for stamp, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=False
                    ):
                        moment = stamp.timestamp() if isinstance(stamp, datetime) else stamp
                        if period.start_epoch <= float(moment) < period.end_epoch:
                            totals[s] = totals.get(s, 0.0) + float(value)
                token = answer.get("NextToken")
                if not token:
                    break
        return totals


def _why(failure: Exception) -> str:
    if isinstance(failure, ClientError):
        return str(failure.response.get("Error", {}).get("Code", "error"))
    return type(failure).__name__


def put_redriven(cloudwatch: Any, count: int, namespace: str = NAMESPACE) -> None:
    """Count events moved back from the DLQ (the ops CLI's redrive), for the weekly report."""
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": REDRIVEN_METRIC,
                "Dimensions": [{"Name": "service", "Value": OPS_SERVICE}],
                "Value": float(count),
                "Unit": "Count",
            }
        ],
    )
