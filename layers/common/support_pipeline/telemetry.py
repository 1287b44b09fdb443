"""Counting outcomes as CloudWatch metrics (EMF) through Powertools.

The package counts through this small seam so that tests can read the counts back and the
handlers decide where metrics are flushed.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Protocol

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "SupportPipeline"


class Telemetry(Protocol):
    """Where the package reports what happened."""

    def count(self, name: str, reason: str | None = None, value: int = 1) -> None:
        """Add ``value`` to metric ``name`` (with a ``reason`` dimension when given)."""


def measure(telemetry: object, name: str, milliseconds: float) -> None:
    """Record a duration in milliseconds, where the telemetry can (``measure``): a helper rather
    than a method of :class:`Telemetry`, so counting-only implementations stay valid."""
    record = getattr(telemetry, "measure", None)
    if callable(record):
        record(name, milliseconds)


RELEASE_FAULT = "ReleaseFault"


def fault(telemetry: object, kind: str) -> None:
    """A bug of ours that the function handled (ingest's 500, an unexpected exception the
    processor retries): Lambda counts no error for it, so the release alarms would not see it.
    Counted as ``ReleaseFault`` per function version (``version`` and ``service`` dimensions),
    which the release alarms watch for the version being deployed."""
    record = getattr(telemetry, "fault", None)
    if callable(record):
        record(kind)


class PowertoolsTelemetry:
    """Counts become EMF metrics; a metric with a reason is flushed on its own dimension."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, name: str, reason: str | None = None, value: int = 1) -> None:
        if reason is None:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            return
        with single_metric(
            name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="reason", value=reason)

    def measure(self, name: str, milliseconds: float) -> None:
        self._metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=milliseconds)

    def fault(self, kind: str) -> None:
        with single_metric(
            name=RELEASE_FAULT, unit=MetricUnit.Count, value=1, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(
                name="version", value=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            )


class RecordingTelemetry:
    """Keeps counts in memory: used by tests and by the local stack's summary."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str | None]] = Counter()
        self.measures: dict[str, list[float]] = {}

    def count(self, name: str, reason: str | None = None, value: int = 1) -> None:
        self.counts[(name, reason)] += value

    def measure(self, name: str, milliseconds: float) -> None:
        self.measures.setdefault(name, []).append(milliseconds)

    def fault(self, kind: str) -> None:
        self.counts[(RELEASE_FAULT, kind)] += 1

    def total(self, name: str) -> int:
        """All counts of ``name`` whatever their reason."""
        return sum(v for (n, _), v in self.counts.items() if n == name)
