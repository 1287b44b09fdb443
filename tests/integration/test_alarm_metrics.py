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
