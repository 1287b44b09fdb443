"""HealthProbeFunction: on a schedule, ask Chatwoot who we are and send a signed self-test
delivery through the public webhook URL; the results are metrics the probe alarms watch."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from support_pipeline.probe import HealthProbe, ProbeSettings
from support_pipeline.telemetry import NAMESPACE

logger = Logger(service="health-probe")
metrics = Metrics(namespace=NAMESPACE, service="health-probe")
_probe: HealthProbe | None = None
UNITS = {"Count": MetricUnit.Count, "Milliseconds": MetricUnit.Milliseconds}


def _record(name: str, value: float, unit: str) -> None:
    metrics.add_metric(name=name, unit=UNITS[unit], value=value)


def _fetch(name: str) -> str:
    # Short-lived cache: a rotated secret or token is probed within a minute.
    return str(parameters.get_parameter(name, decrypt=True, max_age=60))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _probe
    if _probe is None:
        _probe = HealthProbe(ProbeSettings.from_env(), _fetch, _record)
    return _probe.run()
