"""Every AWS call the real handlers make is one their role in template.yaml allows.

moto does not enforce IAM, so a grant narrowed one call too far would pass every other test and
fail in AWS with AccessDenied. Here the real ingest, processor, SLA sweep, signals export,
weekly report, reconciler and health probe handlers run a delivery, a claim-checked delivery,
an escalation, a sweep, a weekly export, a report, a reconciliation and a probe (the processor,
the sweep and the reconciler reading the pause switch) against moto and a fake Chatwoot (and
the drafters make their AWS calls with their Parameters set), every botocore call is recorded
with the function that made it, and each call is checked against that function's policy
statements, resolved as CloudFormation would resolve them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import boto3
import botocore.client
import pytest

from support_pipeline.chatwoot.payload import iso as cw_iso
from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.lambda_shim import LocalContext, poll_once
from tests.support import NOW, incoming, load_handler, new_pipeline, webhook_event

# The two SAM policy templates the functions keep, as SAM expands them (policy_templates.json).
SAM_QUEUE_TEMPLATES = {
    "SQSPollerPolicy": [
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ],
    "SQSSendMessagePolicy": ["sqs:SendMessage*"],
}
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
# S3 operations whose IAM action has another name.
S3_BUCKET_ACTIONS = {"ListObjects": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket"}
S3_OBJECT_ACTIONS = {"HeadObject": "s3:GetObject"}
NO_VALUE = object()


@dataclass(frozen=True)
class Call:
    function: str
    action: str
    resource: str


@dataclass
class Recorder:
    """(function, IAM action, resource ARN) of every botocore call made while a function runs."""

    stack: cfn.Stack
    function: str | None = None
    calls: list[Call] = field(default_factory=list)

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.function is None:
            return
        for action, resource in self._authorizations(service, operation, params):
            self.calls.append(Call(self.function, action, resource))

    def _authorizations(
        self, service: str, operation: str, params: dict[str, Any]
    ) -> list[tuple[str, str]]:
        region, account = self.stack.region, self.stack.account
        if service == "dynamodb":
            if operation.startswith("Transact"):
                found = []
                for item in params["TransactItems"]:
                    ((kind, request),) = item.items()
                    table = f"arn:aws:dynamodb:{region}:{account}:table/{request['TableName']}"
                    found.append((f"dynamodb:{TRANSACT_ITEM_ACTIONS[kind]}", table))
                return found
            if operation.startswith("Batch"):
                return [
                    (f"dynamodb:{operation}", f"arn:aws:dynamodb:{region}:{account}:table/{t}")
                    for t in params["RequestItems"]
                ]
            table = f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}"
            if params.get("IndexName"):
                table += f"/index/{params['IndexName']}"
            return [(f"dynamodb:{operation}", table)]
        if service == "s3":
            if operation in S3_BUCKET_ACTIONS:
                return [(S3_BUCKET_ACTIONS[operation], f"arn:aws:s3:::{params['Bucket']}")]
            action = S3_OBJECT_ACTIONS.get(operation, f"s3:{operation}")
            return [(action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
        if service == "sqs":
            name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
            return [(f"sqs:{operation}", f"arn:aws:sqs:{region}:{account}:{name}")]
        if service == "bedrock-runtime":  # Converse is authorised as InvokeModel
            model = params["modelId"]
            if not model.startswith("arn:"):
                model = f"arn:aws:bedrock:{region}::foundation-model/{model}"
            found = [("bedrock:InvokeModel", model)]
            guardrail = (params.get("guardrailConfig") or {}).get("guardrailIdentifier")
            if guardrail:
                if not guardrail.startswith("arn:"):
                    guardrail = f"arn:aws:bedrock:{region}:{account}:guardrail/{guardrail}"
                found.append(("bedrock:ApplyGuardrail", guardrail))
            return found
        if service == "sns":
            return [(f"sns:{operation}", params["TopicArn"])]
        if service == "ssm":
            names = params.get("Names") or [params["Name"]]
            return [
                (f"ssm:{operation}", f"arn:aws:ssm:{region}:{account}:parameter{n}") for n in names
            ]
        return [(f"{service}:{operation}", "*")]

    def run(self, function: str, call: Any, *args: Any) -> Any:
        self.function = function
        try:
            return call(*args)
        finally:
            self.function = None


def resolve(stack: cfn.Stack, value: Any) -> Any:
    """CloudFormation's view of a policy fragment: conditions applied, AWS::NoValue dropped."""
    if isinstance(value, list):
        return [v for v in (resolve(stack, item) for item in value) if v is not NO_VALUE]
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, yes, no = value["Fn::If"]
        return resolve(stack, yes if stack.condition(condition) else no)
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if isinstance(value, dict) and len(value) > 1:
        return {k: resolve(stack, v) for k, v in value.items()}
    return stack.resolve(value)


def allowed(stack: cfn.Stack, function: str) -> list[tuple[list[str], list[str]]]:
    """(action patterns, resource ARN patterns) of each statement of the function's role."""
    rules = []
    for policy in stack.template["Resources"][function]["Properties"]["Policies"]:
        ((kind, body),) = policy.items()
        if kind == "Statement":
            for statement in resolve(stack, body):  # statements under a false Fn::If go
                assert statement["Effect"] == "Allow"
                actions = statement["Action"]
                resources = resolve(stack, statement["Resource"])
                rules.append(
                    (
                        actions if isinstance(actions, list) else [actions],
                        resources if isinstance(resources, list) else [resources],
                    )
                )
        else:
            queue = resolve(stack, body["QueueName"])
            arn = f"arn:aws:sqs:{stack.region}:{stack.account}:{queue}"
            rules.append((SAM_QUEUE_TEMPLATES[kind], [arn]))
    return rules


def denied(stack: cfn.Stack, calls: list[Call]) -> list[Call]:
    rules = {f: allowed(stack, f) for f in {c.function for c in calls}}
    return [
        call
        for call in calls
        if not any(
            any(fnmatchcase(call.action, a) for a in actions)
            and any(fnmatchcase(call.resource, r) for r in resources)
            for actions, resources in rules[call.function]
        )
    ]


@pytest.fixture
def deployed(aws, chatwoot, monkeypatch):
    """moto provisioned from the template, the real handlers, and a call recorder."""
    pipeline = new_pipeline({"ChatwootBaseUrl": chatwoot.url})
    pipeline.clients["ssm"].put_parameter(
        Name=pipeline.stack.parameters["ChatwootApiTokenParamName"],
        Value=chatwoot.token,
        Type="SecureString",
        Overwrite=True,
    )
    recorder = Recorder(pipeline.stack)
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recorder.record(client.meta.service_model.service_name, operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    monkeypatch.setenv("CHATWOOT_ALLOW_HTTP", "true")  # the fake Chatwoot speaks http
    # Powertools caches parameters per process; earlier tests may have cached other values.
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    pipeline.stack.physical.setdefault("WebhookApi", "local-api")  # the probe's URL names it
    apps = {}
    for function, directory, cached in (
        ("IngestFunction", "ingest", "_service"),
        ("ProcessorFunction", "processor", "_consumer"),
        ("SlaSweepFunction", "sla_sweep", "_sweep"),
        ("SignalsExportFunction", "signals_export", None),
        ("WeeklyReportFunction", "weekly_report", "_report"),
        ("ReconcilerFunction", "reconciler", "_reconciler"),
        ("HealthProbeFunction", "health_probe", "_probe"),
    ):
        for name, value in pipeline.stack.function_environment(function).items():
            monkeypatch.setenv(name, value)
        app = load_handler(directory)
        if cached:
            monkeypatch.setattr(app, cached, None)
        apps[function] = app
    return pipeline, recorder, apps


def test_every_call_the_handlers_make_is_granted_to_their_role(deployed, chatwoot, monkeypatch):
    from aws_lambda_powertools.utilities import parameters

    pipeline, recorder, apps = deployed
    chatwoot.add_conversation(1, 2)
    threshold = int(pipeline.stack.parameters["ClaimCheckThresholdBytes"])

    def deliver(payload: dict[str, Any], delivery_id: str) -> None:
        event = webhook_event(payload, timestamp=time.time(), delivery_id=delivery_id)
        answer = recorder.run(
            "IngestFunction", apps["IngestFunction"].handler, event, LocalContext("ingest")
        )
        assert answer["statusCode"] == 202, answer

    deliver(incoming("I want a refund, let me talk to a human", 501, NOW), "lp-1")
    waiting = incoming("x" * (threshold + 1024), 502, NOW + 1, conversation_id=2, status="open")
    deliver(waiting, "lp-2")  # claim-checked; nobody answers it

    def process() -> int:
        """Poll EventsQueue into the processor until nothing is visible; the failures."""
        failures = 0
        while True:
            received, failed = recorder.run(
                "ProcessorFunction",
                poll_once,
                pipeline.sqs,
                pipeline.queue_url,
                pipeline.queue_arn,
                apps["ProcessorFunction"].handler,
            )
            failures += failed
            if not received:
                return failures

    assert process() == 0
    # Chatwoot fails once: the event backs off (its handlers run again on the redelivery).
    chatwoot.add_conversation(1, 3)
    chatwoot.fail("POST", "/labels", 503)
    deliver(incoming("refund please, I want a human", 503, NOW + 2, conversation_id=3), "lp-3")
    assert process() == 1
    pipeline.make_visible()
    assert process() == 0
    # A conversation Chatwoot does not know: dead-lettered at once with its reason.
    deliver(incoming("refund please, I want a human", 504, NOW + 3, conversation_id=4), "lp-4")
    assert process() == 0
    assert len(pipeline.messages(pipeline.dlq_url)) == 1

    at = datetime.fromtimestamp(NOW + 10 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    swept = recorder.run(
        "SlaSweepFunction",
        apps["SlaSweepFunction"].handler,
        {"time": at, "source": "aws.events", "detail-type": "Scheduled Event"},
        LocalContext("sla-sweep"),
    )
    assert swept["breached"] >= 1 and swept["failed"] == 0

    exported = recorder.run(
        "SignalsExportFunction",
        apps["SignalsExportFunction"].handler,
        {"time": at, "source": "aws.events", "detail-type": "Scheduled Event"},
        LocalContext("signals-export"),
    )
    assert exported["keys"] == [
        f"signals/{exported['week']}.jsonl",
        f"signals/{exported['week']}-gaps.json",
    ]
    # The weekly report of that week, with a metric in CloudWatch to read.
    pipeline_metric = boto3.client("cloudwatch", region_name=pipeline.stack.region)
    pipeline_metric.put_metric_data(
        Namespace="SupportPipeline",
        MetricData=[
            {
                "MetricName": "WebhookAccepted",
                "Dimensions": [{"Name": "service", "Value": "ingest"}],
                "Value": 2,
                "Timestamp": datetime.fromtimestamp(NOW, UTC),
            }
        ],
    )
    scheduled = datetime.fromtimestamp(NOW + 3 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    parameters.clear_caches()  # its own process reads the token itself
    published = recorder.run(
        "WeeklyReportFunction",
        apps["WeeklyReportFunction"].handler,
        {"source": "aws.scheduler", "scheduled_time": scheduled},
        LocalContext("weekly-report", timeout_seconds=300),
    )
    assert published["period"] == "2026-W39" and published["message_id"]
    # The link in the announcement is signed by the role: a GET of the report as the role.
    bucket = pipeline.stack.physical["PayloadBucket"]
    recorder.calls.append(
        Call(
            "WeeklyReportFunction",
            "s3:GetObject",
            f"arn:aws:s3:::{bucket}/{published['keys']['report.html']}",
        )
    )

    # Chatwoot holds the pipeline's own notes, whose webhooks this test never delivered: the
    # reconciler finds them missing and replays them.
    latest = max(c.last_activity_at for c in chatwoot.conversations.values())
    parameters.clear_caches()  # its own process in AWS: it reads the token itself
    reconciled = recorder.run(
        "ReconcilerFunction",
        apps["ReconcilerFunction"].handler,
        {"time": cw_iso(latest + 600), "source": "aws.events", "detail-type": "Scheduled Event"},
        LocalContext("reconciler", timeout_seconds=300),
    )
    assert reconciled["messages"] >= 1 and reconciled["complete"] == 1
    # The health probe: its Chatwoot call and its self-test (to a stand-in for the public URL:
    # what ingest does with it is ingest's own calls, checked above).
    with SelfTestEndpoint() as endpoint:
        monkeypatch.setenv("WEBHOOK_URL", endpoint.url)
        monkeypatch.setenv(
            "WEBHOOK_SECRET_PARAM", pipeline.stack.parameters["WebhookSecretParamName"]
        )
        parameters.clear_caches()
        probed = recorder.run(
            "HealthProbeFunction",
            apps["HealthProbeFunction"].handler,
            {"source": "aws.events", "detail-type": "Scheduled Event"},
            LocalContext("health-probe"),
        )
    assert probed["chatwoot"]["ok"] is True and probed["webhook"]["ok"] is True

    assert denied(pipeline.stack, recorder.calls) == []

    # The run took the paths the narrowed grants are about.
    made = {(c.function, c.action, c.resource.rsplit(":", 1)[-1]) for c in recorder.calls}
    tables = pipeline.stack.physical
    bucket = tables["PayloadBucket"]
    expected = {
        ("IngestFunction", "s3:PutObject"),
        ("IngestFunction", "ssm:GetParameter"),
        ("ProcessorFunction", "s3:GetObject"),
        ("ProcessorFunction", "dynamodb:PutItem"),
        ("ProcessorFunction", "dynamodb:DeleteItem"),
        ("ProcessorFunction", "sqs:ChangeMessageVisibility"),
        ("ProcessorFunction", "sqs:SendMessage"),
        ("ProcessorFunction", "ssm:GetParameter"),
        ("SlaSweepFunction", "dynamodb:Query"),
        ("SlaSweepFunction", "dynamodb:PutItem"),
        ("SignalsExportFunction", "dynamodb:Query"),
        ("SignalsExportFunction", "s3:PutObject"),
        ("WeeklyReportFunction", "dynamodb:Query"),
        ("WeeklyReportFunction", "dynamodb:GetItem"),
        ("WeeklyReportFunction", "s3:PutObject"),
        ("WeeklyReportFunction", "sns:Publish"),
        ("WeeklyReportFunction", "cloudwatch:ListMetrics"),
        ("WeeklyReportFunction", "cloudwatch:GetMetricData"),
        ("WeeklyReportFunction", "sqs:GetQueueAttributes"),
        ("WeeklyReportFunction", "ssm:GetParameter"),
        ("ReconcilerFunction", "dynamodb:Query"),
        ("ReconcilerFunction", "dynamodb:GetItem"),
        ("ReconcilerFunction", "dynamodb:PutItem"),
        ("ReconcilerFunction", "dynamodb:UpdateItem"),
        ("ReconcilerFunction", "sqs:SendMessage"),
        ("ReconcilerFunction", "ssm:GetParameter"),
        ("HealthProbeFunction", "ssm:GetParameter"),
    }
    assert expected <= {(f, a) for f, a, _ in made}
    pause = "parameter" + pipeline.stack.parameters["PauseParamName"]
    assert {f for f, a, r in made if a == "ssm:GetParameter" and r == pause} == {
        "ProcessorFunction",
        "SlaSweepFunction",
        "ReconcilerFunction",
    }
    assert {r for f, a, r in made if f == "HealthProbeFunction"} == {
        "parameter" + pipeline.stack.parameters["WebhookSecretParamName"],
        "parameter" + pipeline.stack.parameters["ChatwootApiTokenParamName"],
    }
    assert any(
        f == "ProcessorFunction" and a == "s3:GetObject" and r.startswith(f"{bucket}/payloads/")
        for f, a, r in made
    )
    assert any(
        f == "SlaSweepFunction" and r.endswith("/index/DueConversations") for f, _, r in made
    )
    assert any(
        f == "SignalsExportFunction" and r.endswith("/index/ByAccountDay") for f, _, r in made
    )
    assert {r for f, a, r in made if a == "s3:PutObject" and f == "SignalsExportFunction"} == {
        f"{bucket}/{key}" for key in exported["keys"]
    }
    assert any(
        f == "WeeklyReportFunction" and r.endswith("/index/ByAccountDay") for f, _, r in made
    )
    assert not any(f == "WeeklyReportFunction" and a == "dynamodb:Scan" for f, a, _ in made)
    assert {r for f, a, r in made if f == "ReconcilerFunction" and a == "sqs:SendMessage"} == {
        pipeline.stack.attributes[("EventsQueue", "QueueName")]
    }
    ledger = f"table/{tables['ActionsTable']}"
    assert any(f == "ProcessorFunction" and r == ledger for f, _, r in made)
    assert any(f == "SlaSweepFunction" and r == ledger for f, _, r in made)


class SelfTestEndpoint:
    """Answers 202 to any POST, as the public webhook URL answers the probe's self-test."""

    def __enter__(self) -> SelfTestEndpoint:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/chatwoot"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_call_outside_the_grants_is_reported(deployed):
    pipeline, recorder, _ = deployed
    table = pipeline.stack.physical["ActionsTable"]
    recorder.function = "SlaSweepFunction"
    pipeline.clients["dynamodb"].scan(TableName=table)
    pipeline.clients["s3"].list_objects_v2(Bucket=pipeline.stack.physical["PayloadBucket"])
    recorder.function = None
    assert [c.action for c in denied(pipeline.stack, recorder.calls)] == [
        "dynamodb:Scan",
        "s3:ListBucket",
    ]


MODEL_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
GUARDRAIL_ARN = "arn:aws:bedrock:us-east-1:123456789012:guardrail/gr7x2k9q4mzt"


def test_the_drafters_calls_are_granted_once_their_parameters_are_set(aws, monkeypatch):
    """The knowledge drafter reading articles from S3, the bedrock drafter's Converse with a
    guardrail, and the http drafter's secret, as the processor with the drafters' Parameters."""
    from aws_lambda_powertools.utilities import parameters
    from botocore.stub import Stubber

    from support_pipeline.drafts.base import BedrockSettings, DraftContext, KnowledgeSettings
    from support_pipeline.drafts.bedrock import BedrockDrafter
    from support_pipeline.drafts.knowledge import KnowledgeDrafter
    from tests.support import ROOT

    secret_param = "/support-pipeline/draft-endpoint-secret"
    pipeline = new_pipeline(
        {
            "DraftsBedrockModelArn": MODEL_ARN,
            "DraftsBedrockGuardrailArn": GUARDRAIL_ARN,
            "DraftsHttpSecretParamName": secret_param,
            "DraftsKnowledgeBucket": "acme-support-knowledge",
            "DraftsKnowledgePrefix": "kb/",
        }
    )
    s3 = pipeline.clients["s3"]
    s3.create_bucket(Bucket="acme-support-knowledge")
    for path in sorted((ROOT / "layers/common/support_pipeline/knowledge/es").glob("*.md")):
        s3.put_object(
            Bucket="acme-support-knowledge", Key=f"kb/es/{path.name}", Body=path.read_bytes()
        )
    pipeline.clients["ssm"].put_parameter(
        Name=secret_param, Value="endpoint-secret", Type="SecureString"
    )
    recorder = Recorder(pipeline.stack)
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recorder.record(client.meta.service_model.service_name, operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    context = DraftContext("1", "7", "¿Cuánto tarda el envío a Medellín?", language="es")

    knowledge = KnowledgeDrafter(KnowledgeSettings(s3_uri="s3://acme-support-knowledge/kb/"), s3=s3)
    result = recorder.run("ProcessorFunction", knowledge.draft, context)
    assert result.text and result.sources

    bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
    settings = BedrockSettings(
        model_id=MODEL_ARN, guardrail_id=GUARDRAIL_ARN, guardrail_version="1"
    )
    with Stubber(bedrock) as stub:
        stub.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "2 a 4 días."}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                "metrics": {"latencyMs": 10},
            },
        )
        drafted = recorder.run(
            "ProcessorFunction",
            BedrockDrafter(settings, bedrock, knowledge.retrieve).draft,
            context,
        )
    assert drafted.text == "2 a 4 días."

    parameters.clear_caches()
    secret = recorder.run(  # as the wiring's http drafter reads its signing secret
        "ProcessorFunction",
        lambda: parameters.get_parameter(secret_param, decrypt=True, max_age=300),
    )
    assert secret == "endpoint-secret"

    actions = {c.action for c in recorder.calls}
    assert {
        "s3:ListBucket",
        "s3:GetObject",
        "bedrock:InvokeModel",
        "bedrock:ApplyGuardrail",
    } <= actions
    assert "ssm:GetParameter" in actions
    assert denied(pipeline.stack, recorder.calls) == []
    # ...and none of it without the Parameters.
    defaults = dataclasses.replace(
        pipeline.stack, parameters=cfn.parameter_defaults(pipeline.stack.template)
    )
    assert len(denied(defaults, recorder.calls)) == len(recorder.calls)
