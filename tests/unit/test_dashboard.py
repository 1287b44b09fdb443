"""The ops dashboard in template.yaml shows what issue 8 asks for, from metrics the code emits.

The dashboard body is JSON inside a ``Fn::Sub`` string: the test substitutes every ``${...}``
with a stand-in, parses it, and looks for each metric by namespace and name (a plain metric row
or a ``SEARCH`` expression), never by counting widgets.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from support_pipeline.telemetry import NAMESPACE
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT

TEMPLATE = cfn.load(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
(DASHBOARD,) = [
    s["Properties"] for s in RESOURCES.values() if s["Type"] == "AWS::CloudWatch::Dashboard"
]
SUBSTITUTION = re.compile(r"\$\{([\w:]+)(?:\.([\w.]+))?\}")
CODE = "\n".join(p.read_text() for p in (ROOT / "layers/common/support_pipeline").rglob("*.py"))


def references() -> list[tuple[str, str | None]]:
    return SUBSTITUTION.findall(DASHBOARD["DashboardBody"]["Fn::Sub"])


def stand_in(match: re.Match[str]) -> str:
    """A number Parameter (written unquoted in the JSON) becomes its Default, anything else
    ``<Name>``."""
    name = match.group(1)
    if PARAMETERS.get(name, {}).get("Type") == "Number":
        return str(PARAMETERS[name]["Default"])
    return f"<{name}>"


def body() -> dict[str, Any]:
    """The dashboard body as CloudFormation would render it with the defaults, except that
    ``${Name}`` / ``${Name.Attr}`` of a resource reads ``<Name>``."""
    text = SUBSTITUTION.sub(stand_in, DASHBOARD["DashboardBody"]["Fn::Sub"])
    parsed: dict[str, Any] = json.loads(text)
    return parsed


WIDGETS = body()["widgets"]


def metrics() -> list[dict[str, Any]]:
    """Every metric the dashboard draws: namespace, name, dimensions, stat, widget title."""
    found = []
    for widget in WIDGETS:
        props = widget["properties"]
        for row in props.get("metrics", []):
            options = row[-1] if row and isinstance(row[-1], dict) else {}
            values = [v for v in row if not isinstance(v, dict)]
            if values:
                namespace, name, *dims = values
                found.append(
                    {
                        "namespace": namespace,
                        "name": name,
                        "dimensions": dict(zip(dims[::2], dims[1::2], strict=True)),
                        "stat": options.get("stat", props.get("stat")),
                        "title": props["title"],
                        "search": False,
                    }
                )
            elif "expression" in options and "SEARCH(" in options["expression"]:
                expression = options["expression"]
                namespace = re.search(r"\{([^,}]+)", expression)
                name = re.search(r'MetricName=\\?"(\w+)\\?"', expression)
                assert namespace and name, expression
                found.append(
                    {
                        "namespace": namespace.group(1),
                        "name": name.group(1),
                        "dimensions": dict(re.findall(r'(\w+)=\\?"([^"\\]+)\\?"', expression)),
                        "schema": re.search(r"\{([^}]+)\}", expression).group(1).split(","),  # type: ignore[union-attr]
                        "stat": None,
                        "title": props["title"],
                        "search": True,
                    }
                )
    return found


METRICS = metrics()


def drawn(namespace: str, name: str, **dimensions: str) -> list[dict[str, Any]]:
    return [
        m
        for m in METRICS
        if m["namespace"] == namespace
        and m["name"] == name
        and all(m["dimensions"].get(k) == v for k, v in dimensions.items())
    ]


# ---- what issue 8 lists -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "namespace", "name", "dimensions"),
    [
        ("webhooks accepted", NAMESPACE, "WebhookAccepted", {"service": "ingest"}),
        ("webhooks rejected", NAMESPACE, "WebhookRejected", {"service": "ingest"}),
        ("webhooks refused for their signature", NAMESPACE, "WebhookUnauthorized", {}),
        ("API answers 4xx", "AWS/ApiGateway", "4xx", {"ApiId": "<WebhookApi>"}),
        (
            "queue depth",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": "<EventsQueue>"},
        ),
        (
            "age of the oldest message",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            {"QueueName": "<EventsQueue>"},
        ),
        (
            "DLQ depth",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": "<EventsDLQ>"},
        ),
        ("processor errors", "AWS/Lambda", "Errors", {"FunctionName": "<ProcessorFunction>"}),
        ("processor durations", "AWS/Lambda", "Duration", {"FunctionName": "<ProcessorFunction>"}),
        ("drafts created", NAMESPACE, "DraftPosted", {}),
        ("drafts decided", NAMESPACE, "DraftDecided", {}),
        ("SLA breaches", NAMESPACE, "SlaBreached", {}),
        ("the pause switch", NAMESPACE, "Paused", {}),
        ("the probe's Chatwoot check", NAMESPACE, "ProbeChatwootOk", {"service": "health-probe"}),
        (
            "the probe's self-test delivery",
            NAMESPACE,
            "ProbeWebhookOk",
            {"service": "health-probe"},
        ),
        (
            "dead-lettered events by reason",
            NAMESPACE,
            "EventDeadLettered",
            {"service": "processor"},
        ),
    ],
)
def test_the_dashboard_draws(what, namespace, name, dimensions):
    assert drawn(namespace, name, **dimensions), f"no widget draws {what} ({namespace} {name})"


def test_ingest_latency_is_drawn_at_p50_p95_and_p99():
    latency = drawn("AWS/ApiGateway", "Latency", ApiId="<WebhookApi>")
    assert {m["stat"] for m in latency} >= {"p50", "p95", "p99"}


def test_chatwoot_api_errors_are_drawn_by_status():
    (errors,) = drawn(NAMESPACE, "ChatwootApiError")
    # A SEARCH over the reason dimension: one line per HTTP status (or timeout, no_answer).
    assert errors["search"] and "reason" in errors["schema"]


def test_every_alarm_is_on_the_dashboard():
    alarms = {n for n, s in RESOURCES.items() if s["Type"] == "AWS::CloudWatch::Alarm"}
    (widget,) = [w for w in WIDGETS if w["type"] == "alarm"]
    assert set(widget["properties"]["alarms"]) == {f"<{name}>" for name in alarms}


# ---- from metrics the code emits, under the names and dimensions it uses ----------------------
@pytest.mark.parametrize(
    "name", sorted({m["name"] for m in METRICS if m["namespace"] == NAMESPACE})
)
def test_each_pipeline_metric_on_the_dashboard_is_emitted_by_the_code(name):
    # A literal name, or an f-string such as f"Probe{check}Ok" with a literal check ("Chatwoot").
    built = any(
        name.startswith(prefix)
        and name.endswith(suffix)
        and f'"{name[len(prefix) : len(name) - len(suffix)]}"' in CODE
        for prefix, suffix in re.findall(r'f"(\w*)\{\w+\}(\w*)"', CODE)
    )
    assert f'"{name}"' in CODE or built, f"nothing in support_pipeline emits {name}"


def test_service_dimensions_are_the_functions_service_names():
    services = {
        spec["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for spec in RESOURCES.values()
        if spec["Type"] == "AWS::Serverless::Function"
    }
    used = {m["dimensions"]["service"] for m in METRICS if "service" in m["dimensions"]}
    assert used and used <= services


def test_threshold_lines_are_the_alarms_thresholds():
    lines = [
        line
        for widget in WIDGETS
        for line in widget["properties"].get("annotations", {}).get("horizontal", [])
    ]
    # Chatwoot's 5 s delivery budget, which IngestTimeoutSeconds may not exceed.
    (budget,) = [line for line in lines if line["label"] == "Chatwoot gives up"]
    assert budget["value"] == PARAMETERS["IngestTimeoutSeconds"]["MaxValue"] * 1000
    alarmed = [line for line in lines if line["label"] in RESOURCES]
    assert {line["label"] for line in alarmed} >= {"QueueAgeAlarm", "DlqFloodAlarm"}
    for line in alarmed:
        alarm = RESOURCES[line["label"]]["Properties"]
        threshold = alarm["Threshold"]
        if isinstance(threshold, dict):
            threshold = PARAMETERS[threshold["Ref"]]["Default"]
        assert line["value"] == threshold, line["label"]


def test_every_substitution_names_a_resource_a_parameter_or_a_pseudo_parameter():
    for name, _attribute in references():
        assert name in RESOURCES or name in PARAMETERS or name.startswith("AWS::"), name


def test_the_dashboard_names_the_runbooks_and_the_pause_verbs():
    (text,) = [w["properties"]["markdown"] for w in WIDGETS if w["type"] == "text"]
    for runbook in ("outage.md", "escalation.md", "support_webhooks.md"):
        assert f"docs/runbooks/{runbook}" in text and (ROOT / "docs/runbooks" / runbook).is_file()
    assert "support-pipeline pause" in text and "support-pipeline resume" in text


def test_the_stack_outputs_the_dashboard_url():
    url = TEMPLATE["Outputs"]["OpsDashboardUrl"]["Value"]
    assert "${OpsDashboard}" in url["Fn::Sub"]
