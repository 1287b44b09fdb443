"""The health probe against the fake Chatwoot and a webhook endpoint that runs the real ingest
over HTTP, the self-test's way through the processor, and the metrics its alarms watch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support_pipeline.ingest import WebhookRequest
from support_pipeline.probe import HealthProbe, ProbeSettings
from support_pipeline.selftest import SELF_TEST_EVENT
from support_pipeline_ops.local import lambda_shim
from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.lambda_shim import LocalContext
from support_pipeline_ops.local.stack import free_port
from tests.integration.test_alarm_metrics import emitted, series
from tests.support import NOW, ROOT, SECRET, load_handler

TEMPLATE = cfn.load(ROOT / "template.yaml")


class Endpoint:
    """The public webhook URL: each POST goes to ``answer`` as an HTTP API v2 event."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = lambda_shim.http_api_event(
                    "POST", self.path, dict(self.headers.items()), body
                )
                endpoint.requests.append(event)
                status, payload = endpoint.answer(event)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/chatwoot"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(pipeline) -> Iterator[Endpoint]:
    """The real ingest service (moto-backed, the pipeline's clock) behind an HTTP endpoint."""
    service = pipeline.ingest()

    def answer(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = service.handle(WebhookRequest.from_api_gateway(event))
        return response.status, response.body

    endpoint = Endpoint(answer)
    yield endpoint
    endpoint.stop()


class Metrics(list):
    def __call__(self, name: str, value: float, unit: str) -> None:
        self.append((name, value, unit))

    def values(self, name: str) -> list[float]:
        return [value for metric, value, _ in self if metric == name]


def probe(pipeline, webhook_url, chatwoot=None, parameters=None, token=None):
    parameters = parameters or {}
    stored = {
        "/support-pipeline/webhook-secret": SECRET,
        "/support-pipeline/chatwoot-api-token": token or (chatwoot.token if chatwoot else ""),
        **parameters,
    }
    metrics = Metrics()
    settings = ProbeSettings(
        webhook_url=webhook_url,
        webhook_secret_param="/support-pipeline/webhook-secret",
        chatwoot_base_url=chatwoot.url if chatwoot else "",
        chatwoot_api_token_param="/support-pipeline/chatwoot-api-token",
        timeout_seconds=2.0,
    )
    return HealthProbe(settings, stored.__getitem__, metrics, clock=pipeline.clock), metrics


def test_a_healthy_pipeline_passes_both_checks_and_the_self_test_goes_the_whole_way(
    pipeline, chatwoot, webhook
):
    health, metrics = probe(pipeline, webhook.url, chatwoot)
    result = health.run()

    assert result["chatwoot"]["ok"] is True and result["chatwoot"]["status"] == 200
    assert result["webhook"]["ok"] is True and result["webhook"]["status"] == 202
    assert metrics.values("ProbeChatwootOk") == [1.0] and metrics.values("ProbeWebhookOk") == [1.0]
    assert len(metrics.values("ProbeChatwootLatency")) == 1
    assert len(metrics.values("ProbeWebhookLatency")) == 1
    [call] = chatwoot.calls
    assert (call.method, call.path) == ("GET", "/api/v1/profile")
    # Ingest took it as the self-test it is: queued, not counted as a Chatwoot event.
    assert pipeline.telemetry.total("WebhookSelfTest") == 1
    assert pipeline.telemetry.total("WebhookAccepted") == 0

    pipeline.clock.advance(1.5)  # the processor picks it up 1.5 s after the probe sent it
    assert pipeline.drain() == 1
    assert pipeline.telemetry.total("SelfTestReceived") == 1
    assert pipeline.telemetry.measures["SelfTestRoundTrip"] == [1500.0]
    assert pipeline.telemetry.total("EventProcessed") == 0
    # No handler ran: nothing written, nothing asked of Chatwoot, nothing left on the queues.
    table = pipeline.dynamodb.Table(pipeline.stack.physical["ConversationsTable"])
    assert table.scan()["Items"] == []
    assert len(chatwoot.calls) == 1
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.messages(pipeline.dlq_url) == []


def test_the_self_test_is_signed_like_a_chatwoot_delivery(pipeline, webhook):
    health, _ = probe(pipeline, webhook.url)
    health.check_webhook()
    [event] = webhook.requests
    headers = event["headers"]
    assert headers["x-chatwoot-delivery"].startswith("self-test-")
    assert headers["x-chatwoot-signature"].startswith("sha256=")
    body = json.loads(event["body"])
    assert body["event"] == SELF_TEST_EVENT and body["sent_at"] == NOW
    assert "account" not in body


def test_a_secret_bound_to_an_account_signs_a_self_test_of_that_account(pipeline, webhook):
    pipeline.clients["ssm"].put_parameter(
        Name="/support-pipeline/webhook-secret",
        Value=f"7:{SECRET}",
        Type="SecureString",
        Overwrite=True,
    )
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    health, _ = probe(
        pipeline, webhook.url, parameters={"/support-pipeline/webhook-secret": f"7:{SECRET}"}
    )
    assert health.check_webhook()["ok"] is True
    assert json.loads(webhook.requests[0]["body"])["account"] == {"id": 7}


def test_a_webhook_that_refuses_the_self_test_fails_the_check_with_its_reason(pipeline, webhook):
    health, metrics = probe(
        pipeline, webhook.url, parameters={"/support-pipeline/webhook-secret": "not-the-secret"}
    )
    result = health.check_webhook()
    assert result["ok"] is False
    assert result["detail"] == "status 401: signature mismatch"
    assert metrics.values("ProbeWebhookOk") == [0.0]
    assert pipeline.messages(pipeline.queue_url) == []


def test_chatwoot_failures_are_measurements_not_errors(pipeline, chatwoot, webhook):
    health, metrics = probe(pipeline, webhook.url, chatwoot, token="revoked-token")
    result = health.check_chatwoot()
    assert (result["ok"], result["detail"], result["status"]) == (False, "status 401", 401)
    assert metrics.values("ProbeChatwootOk") == [0.0]
    assert len(metrics.values("ProbeChatwootLatency")) == 1  # an answer, however bad, is timed
    chatwoot.proxy_error(502)
    health, metrics = probe(pipeline, webhook.url, chatwoot)
    assert health.check_chatwoot()["detail"] == "status 502"

    class Nobody:
        url = f"http://127.0.0.1:{free_port()}"
        token = "t"

    health, metrics = probe(pipeline, webhook.url, Nobody())
    result = health.check_chatwoot()
    assert result["ok"] is False and result["detail"].startswith("no answer")
    assert metrics.values("ProbeChatwootOk") == [0.0]
    assert metrics.values("ProbeChatwootLatency") == []  # no answer, no latency


def test_in_dry_run_there_is_no_chatwoot_to_probe(pipeline, webhook):
    health, metrics = probe(pipeline, webhook.url)
    assert health.run()["chatwoot"] == {"ok": None, "skipped": "dry run: no ChatwootBaseUrl"}
    assert metrics.values("ProbeChatwootOk") == []


def test_the_handler_emits_exactly_the_series_the_probe_alarms_watch(
    pipeline, chatwoot, webhook, monkeypatch, capsys
):
    """The real function, configured by the template, its metrics read from the EMF it prints."""
    pipeline.clock.now = time.time()  # the handler signs with the real time
    pipeline.stack.physical.setdefault("WebhookApi", "local-api")
    environment = pipeline.stack.function_environment("HealthProbeFunction")
    assert environment["WEBHOOK_URL"] == (
        "https://local-api.execute-api.us-east-1.amazonaws.com/webhooks/chatwoot"
    )
    for name, value in {
        **environment,
        "WEBHOOK_URL": webhook.url,
        "CHATWOOT_BASE_URL": chatwoot.url,
        "CHATWOOT_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    pipeline.clients["ssm"].put_parameter(
        Name=environment["CHATWOOT_API_TOKEN_PARAM"],
        Value=chatwoot.token,
        Type="SecureString",
        Overwrite=True,
    )
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    app = load_handler("health_probe")
    monkeypatch.setattr(app, "_probe", None)
    capsys.readouterr()
    answer = app.handler({"source": "aws.events"}, LocalContext("health-probe"))
    assert answer["chatwoot"]["ok"] is True and answer["webhook"]["ok"] is True
    documents = emitted(capsys.readouterr().out)
    for alarm in ("ProbeWebhookFailedAlarm", "ProbeChatwootFailedAlarm", "ProbeChatwootSlowAlarm"):
        props = TEMPLATE["Resources"][alarm]["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        assert series(documents, props["MetricName"]) == [(props["Namespace"], dimensions)]
