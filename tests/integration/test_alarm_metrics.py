"""Alarms on our own metrics watch what the functions really emit.

An alarm whose namespace, name or dimensions differ from the emitted metric by one character
stays in OK forever. These tests run the real ingest handler, read the CloudWatch embedded
metric format (EMF) documents Powertools prints, and compare them with the alarm in the template.
"""

import json
import time
from typing import Any

import pytest

from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.lambda_shim import LocalContext
from tests.support import ROOT, fixture, load_handler, webhook_event

TEMPLATE = cfn.load(ROOT / "template.yaml")


@pytest.fixture
def ingest(pipeline, monkeypatch):
    """The real ingest handler, configured by the template's environment, against moto."""
    for name, value in pipeline.stack.function_environment("IngestFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("ingest")
    monkeypatch.setattr(app, "_service", None)
    return app


def emitted(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines the handler printed."""
    documents = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def series(documents: list[dict[str, Any]], metric: str) -> list[tuple[str, dict[str, str]]]:
    """(namespace, dimensions) of every emission of ``metric``, as CloudWatch would store it."""
    found = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if metric not in [m["Name"] for m in directive["Metrics"]]:
                continue
            for dimension_set in directive["Dimensions"]:
                dims = {name: document[name] for name in dimension_set}
                found.append((directive["Namespace"], dims))
    return found


def alarm_series(alarm: str) -> tuple[str, str, dict[str, str]]:
    props = TEMPLATE["Resources"][alarm]["Properties"]
    dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
    return props["MetricName"], props["Namespace"], dims


def invoke(app, event) -> dict[str, Any]:
    answer: dict[str, Any] = app.handler(event, LocalContext(function_name="ingest"))
    return answer


def test_a_bad_signature_emits_exactly_the_series_the_unauthorized_alarm_watches(ingest, capsys):
    metric, namespace, dimensions = alarm_series("WebhookUnauthorizedAlarm")
    capsys.readouterr()
    answer = invoke(
        ingest,
        webhook_event(fixture("message_created_incoming"), secret="not-it", timestamp=time.time()),
    )
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["reason"] == "signature mismatch"
    assert series(emitted(capsys.readouterr().out), metric) == [(namespace, dimensions)]


def test_a_missing_signature_counts_for_the_alarm_too(ingest, capsys):
    metric, namespace, dimensions = alarm_series("WebhookUnauthorizedAlarm")
    capsys.readouterr()
    event = webhook_event(fixture("message_created_incoming"), headers={})
    assert invoke(ingest, event)["statusCode"] == 401
    assert series(emitted(capsys.readouterr().out), metric) == [(namespace, dimensions)]


@pytest.mark.parametrize("kind", ["accepted", "not json"])
def test_other_answers_do_not_count_as_unauthorized(ingest, capsys, kind):
    metric, _, _ = alarm_series("WebhookUnauthorizedAlarm")
    payload = fixture("message_created_incoming") if kind == "accepted" else b"not json"
    capsys.readouterr()
    answer = invoke(ingest, webhook_event(payload, timestamp=time.time()))
    assert answer["statusCode"] == (202 if kind == "accepted" else 400)
    documents = emitted(capsys.readouterr().out)
    assert documents, "the handler emitted no metrics at all"
    assert series(documents, metric) == []


# ---- EventDeadLettered: emitted by the processor, drawn by the dashboard, read by the report ----
@pytest.fixture
def processor(pipeline, monkeypatch):
    """The real processor handler, configured by the template's environment, against moto."""
    for name, value in pipeline.stack.function_environment("ProcessorFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("processor")
    monkeypatch.setattr(app, "_consumer", None)
    return app


def test_a_dead_lettered_event_emits_exactly_the_series_the_dashboard_and_report_read(
    pipeline, processor, capsys
):
    """Issue 15, part 7: the metric could be renamed without a test failing."""
    from support_pipeline.report.health import SERIES
    from support_pipeline.telemetry import NAMESPACE
    from support_pipeline_ops.local.lambda_shim import poll_once
    from tests.support import attributes_of
    from tests.unit.test_dashboard import METRICS

    poison = fixture("conversation_updated")
    del poison["id"]  # accepted at the door, refused by the processor: dead-lettered at once
    assert pipeline.post(poison, delivery_id="poison")[0] == 202
    capsys.readouterr()
    received = poll_once(
        pipeline.sqs,
        pipeline.queue_url,
        pipeline.queue_arn,
        processor.handler,
        context_factory=lambda: LocalContext(function_name="processor"),
    )
    assert received == (1, 0)  # answered as done: it is in the DLQ, not retried
    [dead] = pipeline.messages(pipeline.dlq_url)
    reason = attributes_of(dead)["error_type"]
    assert reason == "invalid_payload"
    documents = emitted(capsys.readouterr().out)
    # The exact name, namespace and dimensions CloudWatch stores it under.
    assert series(documents, "EventDeadLettered") == [
        (NAMESPACE, {"reason": reason, "service": "processor"})
    ]
    # The dashboard's dead-lettered line searches exactly that series...
    [drawn] = [m for m in METRICS if m["name"] == "EventDeadLettered"]
    assert drawn["search"] and drawn["namespace"] == NAMESPACE
    assert drawn["dimensions"].get("service") == "processor"
    assert sorted(drawn["schema"]) == sorted([NAMESPACE, "reason", "service"])
    # ...and the weekly report's health section reads the same name, service and reason.
    [(_, metric, service, by_reason)] = [s for s in SERIES if s[0] == "dead_lettered"]
    assert (metric, service, by_reason) == ("EventDeadLettered", "processor", True)
