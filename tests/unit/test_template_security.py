"""template.yaml grants each function only the calls it makes, keeps logs for a bounded time,
and every alarm reaches a person through a topic CloudWatch can actually publish to."""

import re
from typing import Any

import pytest
import yaml

from support_pipeline import claimcheck
from support_pipeline.telemetry import NAMESPACE
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT

TEMPLATE = cfn.load(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
FUNCTIONS = {
    name: spec["Properties"]
    for name, spec in RESOURCES.items()
    if spec["Type"] == "AWS::Serverless::Function"
}
RUNBOOKS = "docs/runbooks"

# SAM policy templates that stay: each names one queue and grants only queue-message calls.
QUEUE_POLICY_TEMPLATES = {"SQSPollerPolicy", "SQSSendMessagePolicy"}

ITEM_CALLS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
}
# What each function may do to each table (``Table/index/*`` for the indexes), read from the
# code: store.py, actions.py, drafts/store.py (sla.py and escalation.py go through them).
# ActionLedger.list's Scan belongs to the ops CLI, which runs as the operator.
EXPECTED_DYNAMODB = {
    "IngestFunction": {},
    "ProcessorFunction": {
        "ConversationsTable": ITEM_CALLS,
        "ConversationsTable/index/*": {"dynamodb:Query"},
        "ActionsTable": ITEM_CALLS,
    },
    "SlaSweepFunction": {
        "ConversationsTable": ITEM_CALLS,
        "ConversationsTable/index/*": {"dynamodb:Query"},
        "ActionsTable": ITEM_CALLS,
    },
    # signals.py: the accounts list (a Query on the table) and ByAccountDay; nothing else.
    "SignalsExportFunction": {
        "ConversationsTable": {"dynamodb:Query"},
        "ConversationsTable/index/ByAccountDay": {"dynamodb:Query"},
    },
    # support_pipeline/report/data.py reads by key only: day queries, records, timelines.
    "WeeklyReportFunction": {
        "ConversationsTable": {"dynamodb:GetItem", "dynamodb:Query"},
        "ConversationsTable/index/*": {"dynamodb:Query"},
    },
    # reconcile.py through store.py: the accounts list and a conversation's timeline (Query),
    # records and checkpoints (GetItem), a checkpoint moved (PutItem), a record's
    # reconciled_message_id (UpdateItem). No index, no delete, no transaction.
    "ReconcilerFunction": {
        "ConversationsTable": {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
        },
    },
}
# The drafters' grants, each only when its Parameter is set.
DRAFTER_PARAMETERS = {
    "DraftsBedrockModelArn": (
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    ),
    "DraftsBedrockGuardrailArn": "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123def456",
    "DraftsHttpSecretParamName": "/support-pipeline/draft-endpoint-secret",
    "DraftsKnowledgeBucket": "acme-support-knowledge",
    "DraftsKnowledgePrefix": "knowledge/",
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def stack_with(parameters: dict[str, str] | None = None) -> cfn.Stack:
    """The template with its defaults and ``parameters``, to evaluate its Conditions."""
    return cfn.Stack("test", TEMPLATE, {**cfn.parameter_defaults(TEMPLATE), **(parameters or {})})


def statements(function: str, parameters: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The function's statements as deployed with ``parameters`` (default: the defaults): a
    statement under ``Fn::If`` is there only when its condition holds."""
    stack = stack_with(parameters)
    found = []
    for policy in FUNCTIONS[function].get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                if set(statement) == {"Fn::If"}:
                    condition, yes, no = statement["Fn::If"]
                    statement = yes if stack.condition(condition) else no
                    if statement == {"Ref": "AWS::NoValue"}:
                        continue
                found.append(statement)
    return found


def resource_name(resource: Any) -> str:
    """``{"Fn::GetAtt": [T, "Arn"]}`` -> ``T``; ``{"Fn::Sub": "${T.Arn}/x"}`` -> ``T/x``."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        name, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn"
        return str(name)
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", resource["Fn::Sub"])
    if isinstance(resource, dict) and set(resource) == {"Ref"}:
        return str(resource["Ref"])
    return str(resource)


def grants(
    function: str, service: str, parameters: dict[str, str] | None = None
) -> dict[str, set[str]]:
    """Resource -> allowed actions of ``service`` for ``function``."""
    stack = stack_with(parameters)
    granted: dict[str, set[str]] = {}
    for statement in statements(function, parameters):
        assert statement["Effect"] == "Allow"
        actions = {a for a in as_list(statement["Action"]) if a.startswith(f"{service}:")}
        if not actions:
            continue
        for resource in as_list(statement["Resource"]):
            if isinstance(resource, dict) and set(resource) == {"Fn::If"}:
                condition, yes, no = resource["Fn::If"]
                resource = yes if stack.condition(condition) else no
                if resource == {"Ref": "AWS::NoValue"}:
                    continue
            granted.setdefault(resource_name(resource), set()).update(actions)
    return granted


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections(name: str) -> dict[str, str]:
    """Anchor -> text of each ``## `` section of ``docs/runbooks/<name>``."""
    path = ROOT / RUNBOOKS / name
    assert path.is_file(), f"no runbook {RUNBOOKS}/{name}"
    parts = re.split(r"^## (.+)$", path.read_text(), flags=re.MULTILINE)
    return {slug(title): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


# ---- least privilege ------------------------------------------------------------------------
def test_function_policies_are_explicit_statements_or_single_queue_templates():
    for function, props in FUNCTIONS.items():
        for policy in props.get("Policies", []):
            assert isinstance(policy, dict), f"{function}: managed policy {policy!r}"
            (kind,) = policy.keys()
            assert kind == "Statement" or kind in QUEUE_POLICY_TEMPLATES, (function, kind)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_no_function_may_scan_batch_or_use_wildcard_actions(function):
    for statement in statements(function, DRAFTER_PARAMETERS | {"SupportPolicyParamName": "/p"}):
        for action in as_list(statement["Action"]):
            assert "*" not in action, (function, action)
            assert action not in {"dynamodb:Scan", "dynamodb:PartiQLSelect"}, (function, action)
            assert not action.startswith("dynamodb:Batch"), (function, action)


@pytest.mark.parametrize("function", sorted(EXPECTED_DYNAMODB))
def test_dynamodb_grants_are_the_calls_each_function_makes(function):
    assert grants(function, "dynamodb") == EXPECTED_DYNAMODB[function]


def test_s3_access_is_only_on_the_claim_check_and_signals_prefixes():
    assert grants("ProcessorFunction", "s3") == {"PayloadBucket/payloads/*": {"s3:GetObject"}}
    assert grants("IngestFunction", "s3") == {"PayloadBucket/payloads/*": {"s3:PutObject"}}
    assert grants("SlaSweepFunction", "s3") == {}
    assert grants("SignalsExportFunction", "s3") == {"PayloadBucket/signals/*": {"s3:PutObject"}}
    # The report writes its files and presigns the link to report.html: reports/ only.
    assert grants("WeeklyReportFunction", "s3") == {
        "PayloadBucket/reports/*": {"s3:PutObject", "s3:GetObject"}
    }


def test_the_reconciler_sends_only_to_events_queue_and_reads_only_the_token_and_pause():
    parameters = DRAFTER_PARAMETERS | {"SupportPolicyParamName": "/p"}
    assert grants("ReconcilerFunction", "sqs", parameters) == {"EventsQueue": {"sqs:SendMessage"}}
    assert sorted(grants("ReconcilerFunction", "ssm", parameters)) == sorted(
        f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter${{{name}}}"
        for name in ("ChatwootApiTokenParamName", "PauseParamName")
    )
    for service in ("s3", "bedrock", "kms", "lambda"):
        assert grants("ReconcilerFunction", service, parameters) == {}
    assert [next(iter(p)) for p in FUNCTIONS["ReconcilerFunction"]["Policies"]] == ["Statement"]


def test_the_signals_export_reads_the_policy_parameter_only_when_one_is_set():
    assert grants("SignalsExportFunction", "ssm") == {}
    (resource,) = grants("SignalsExportFunction", "ssm", {"SupportPolicyParamName": "/p"})
    assert resource.endswith(":parameter${SupportPolicyParamName}")
    assert grants("SignalsExportFunction", "bedrock", DRAFTER_PARAMETERS) == {}


def test_the_drafters_get_no_grant_by_default():
    assert grants("ProcessorFunction", "bedrock") == {}
    assert not any("Drafts" in name for name in grants("ProcessorFunction", "ssm"))


def test_each_drafter_grant_comes_with_its_parameter():
    def resolved(service: str, **only: str) -> dict[str, set[str]]:
        stack = stack_with(only)
        found: dict[str, set[str]] = {}
        for statement in statements("ProcessorFunction", only):
            actions = {a for a in as_list(statement["Action"]) if a.startswith(f"{service}:")}
            if not actions or "PayloadBucket" in str(statement["Resource"]):
                continue  # (the stack here is not provisioned: no bucket name to resolve)
            for resource in as_list(statement["Resource"]):
                if isinstance(resource, dict) and set(resource) == {"Fn::If"}:
                    condition, yes, no = resource["Fn::If"]
                    resource = yes if stack.condition(condition) else no
                if resource != {"Ref": "AWS::NoValue"}:
                    for arn in as_list(stack.resolve(resource)):
                        found.setdefault(arn, set()).update(actions)
        return found

    model = DRAFTER_PARAMETERS["DraftsBedrockModelArn"]
    guardrail = DRAFTER_PARAMETERS["DraftsBedrockGuardrailArn"]
    assert resolved("bedrock", DraftsBedrockModelArn=model) == {model: {"bedrock:InvokeModel"}}
    assert resolved("bedrock", **DRAFTER_PARAMETERS) == {
        model: {"bedrock:InvokeModel"},
        guardrail: {"bedrock:ApplyGuardrail"},
    }
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude"
    assert set(resolved("bedrock", DraftsBedrockModelArn=f"{profile},{model}")) == {profile, model}
    secret = DRAFTER_PARAMETERS["DraftsHttpSecretParamName"]
    assert f"arn:aws:ssm:us-east-1:123456789012:parameter{secret}" in resolved(
        "ssm", DraftsHttpSecretParamName=secret
    )
    bucket = DRAFTER_PARAMETERS["DraftsKnowledgeBucket"]
    knowledge = {k: v for k, v in DRAFTER_PARAMETERS.items() if k.startswith("DraftsKnowledge")}
    s3 = resolved("s3", **knowledge)
    assert s3[f"arn:aws:s3:::{bucket}"] == {"s3:ListBucket"}
    assert s3[f"arn:aws:s3:::{bucket}/knowledge/*"] == {"s3:GetObject"}
    (listing,) = [
        s for s in statements("ProcessorFunction", knowledge) if s["Action"] == "s3:ListBucket"
    ]
    assert stack_with(knowledge).resolve(listing["Condition"]) == {
        "StringLike": {"s3:prefix": "knowledge/*"}
    }


def test_claim_checked_bodies_are_stored_under_the_granted_prefix():
    class Bucket:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def put_object(self, **kwargs: Any) -> None:
            self.keys.append(kwargs["Key"])

    bucket = Bucket()
    pointer = claimcheck.store(bucket, "payloads-bucket", b'{"event": "x"}')
    assert bucket.keys[0].startswith("payloads/")
    assert bucket.keys[0] in pointer


# ---- logs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_function_logs_to_its_own_group_with_a_retention(function):
    group = FUNCTIONS[function]["LoggingConfig"]["LogGroup"]
    assert set(group) == {"Ref"}
    spec = RESOURCES[group["Ref"]]
    assert spec["Type"] == "AWS::Logs::LogGroup"
    assert spec["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    others = {FUNCTIONS[f]["LoggingConfig"]["LogGroup"]["Ref"] for f in FUNCTIONS if f != function}
    assert group["Ref"] not in others


def test_every_log_group_has_a_retention_and_the_default_is_one_cloudwatch_accepts():
    groups = [s for s in RESOURCES.values() if s["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) >= len(FUNCTIONS) + 1  # the functions' and the API's access log
    assert all("RetentionInDays" in g["Properties"] for g in groups)
    retention = PARAMETERS["LogRetentionDays"]
    assert retention["Default"] in retention["AllowedValues"]


# ---- alarms that reach a person -------------------------------------------------------------
def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use():
    topic = RESOURCES["AlarmTopic"]["Properties"]
    key_ref = topic["KmsMasterKeyId"]
    assert key_ref != "alias/aws/sns" and set(key_ref) == {"Ref"}
    key = RESOURCES[key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    policy = key["Properties"]["KeyPolicy"]["Statement"]
    assert all(s["Principal"] != "*" and s["Principal"].get("AWS") != "*" for s in policy)
    cloudwatch = [
        s
        for s in policy
        if s["Effect"] == "Allow"
        and "cloudwatch.amazonaws.com" in as_list(s["Principal"].get("Service", []))
    ]
    assert len(cloudwatch) == 1
    assert set(as_list(cloudwatch[0]["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    condition = cloudwatch[0]["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert ":alarm:*" in condition["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    admin = [s for s in policy if "AWS" in s["Principal"]]
    assert admin and all(":root" in s["Principal"]["AWS"]["Fn::Sub"] for s in admin)
    aliases = [s for s in RESOURCES.values() if s["Type"] == "AWS::KMS::Alias"]
    assert [a["Properties"]["TargetKeyId"] for a in aliases] == [key_ref]


def test_the_topic_policy_lets_this_accounts_alarms_publish():
    policy = next(s for s in RESOURCES.values() if s["Type"] == "AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": "AlarmTopic"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


ALARMS = {n: s["Properties"] for n, s in RESOURCES.items() if s["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_every_alarm_notifies_the_topic_and_links_a_runbook_section_about_it(alarm):
    props = ALARMS[alarm]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    links = re.findall(re.escape(RUNBOOKS) + r"/([\w.-]+\.md)#([\w-]+)", props["AlarmDescription"])
    assert len(links) == 1, props["AlarmDescription"]
    ((name, anchor),) = links
    sections = runbook_sections(name)
    assert anchor in sections, f"{alarm} links #{anchor}, not a heading in {RUNBOOKS}/{name}"
    assert f"`{alarm}`" in sections[anchor], f"the runbook section does not name {alarm}"


def test_deliveries_refused_at_the_door_are_alarmed():
    client_errors = [
        a
        for a in ALARMS.values()
        if a.get("Namespace") == "AWS/ApiGateway" and a.get("MetricName") == "4xx"
    ]
    assert len(client_errors) == 1
    (alarm,) = client_errors
    assert alarm["Dimensions"] == [
        {"Name": "ApiId", "Value": {"Ref": "WebhookApi"}},
        {"Name": "Stage", "Value": "$default"},
    ]
    assert alarm["Threshold"] == {"Ref": "Ingest4xxAlarmThreshold"}
    assert alarm["Statistic"] == "Sum" and alarm["TreatMissingData"] == "notBreaching"

    unauthorized = ALARMS["WebhookUnauthorizedAlarm"]
    assert (unauthorized["Namespace"], unauthorized["MetricName"]) == (
        NAMESPACE,
        "WebhookUnauthorized",
    )
    assert unauthorized["Threshold"] == {"Ref": "UnauthorizedAlarmThreshold"}
    # The dimensions Powertools really emits are checked in tests/integration/test_alarm_metrics.py.


# ---- the SLA sweep: one at a time, no blind retries -----------------------------------------
def test_the_sla_sweep_runs_one_at_a_time_and_never_retries_itself():
    sweep = FUNCTIONS["SlaSweepFunction"]
    assert sweep["ReservedConcurrentExecutions"] == 1
    shortest_rate = int(PARAMETERS["SlaSweepRateMinutes"]["MinValue"]) * 60
    assert sweep["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert 60 <= sweep["EventInvokeConfig"]["MaximumEventAgeInSeconds"] < shortest_rate
    (schedule,) = [e for e in sweep["Events"].values() if e["Type"] == "Schedule"]
    retry = schedule["Properties"]["RetryPolicy"]
    assert retry["MaximumRetryAttempts"] == 0
    assert 60 <= retry["MaximumEventAgeInSeconds"] < shortest_rate


def test_the_sweep_timeout_is_a_parameter_the_function_also_reads():
    sweep = FUNCTIONS["SlaSweepFunction"]
    assert sweep["Timeout"] == {"Ref": "SlaSweepTimeoutSeconds"}
    assert sweep["Environment"]["Variables"]["SWEEP_TIMEOUT_SECONDS"] == {
        "Ref": "SlaSweepTimeoutSeconds"
    }
    timeout = PARAMETERS["SlaSweepTimeoutSeconds"]
    assert timeout["Default"] == 120 and timeout["MaxValue"] <= 900  # Lambda's limit
    assert timeout["Default"] < PARAMETERS["SlaSweepRateMinutes"]["Default"] * 60


# ---- the weekly signals export: same discipline ---------------------------------------------
def test_the_signals_export_runs_weekly_one_at_a_time_and_never_retries_itself():
    export = FUNCTIONS["SignalsExportFunction"]
    assert export["ReservedConcurrentExecutions"] == 1
    assert export["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    (schedule,) = [e for e in export["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Properties"]["Schedule"] == {"Ref": "SignalsExportSchedule"}
    assert schedule["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    parameter = PARAMETERS["SignalsExportSchedule"]
    assert parameter["Default"] == "cron(0 6 ? * MON *)"
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])
    assert export["Timeout"] == {"Ref": "SignalsExportTimeoutSeconds"}
    assert PARAMETERS["SignalsExportTimeoutSeconds"]["MaxValue"] <= 900


# ---- the reconciler: same discipline, its numbers are Parameters the code reads --------------
def test_the_reconciler_runs_on_its_schedule_one_at_a_time_and_never_retries_itself():
    reconciler = FUNCTIONS["ReconcilerFunction"]
    assert reconciler["ReservedConcurrentExecutions"] == 1
    shortest_rate = int(PARAMETERS["ReconcilerRateMinutes"]["MinValue"]) * 60
    assert reconciler["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert 60 <= reconciler["EventInvokeConfig"]["MaximumEventAgeInSeconds"] < shortest_rate
    (schedule,) = [e for e in reconciler["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Properties"]["Schedule"] == {
        "Fn::Sub": "rate(${ReconcilerRateMinutes} minutes)"
    }
    assert schedule["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert PARAMETERS["ReconcilerRateMinutes"]["Default"] == 15
    timeout = PARAMETERS["ReconcilerTimeoutSeconds"]
    assert reconciler["Timeout"] == {"Ref": "ReconcilerTimeoutSeconds"}
    assert timeout["MaxValue"] <= 900 and timeout["Default"] < shortest_rate
    env = reconciler["Environment"]["Variables"]
    assert env["RECONCILE_RATE_MINUTES"] == {"Ref": "ReconcilerRateMinutes"}
    assert env["RECONCILE_OVERLAP_SECONDS"] == {"Ref": "ReconcilerOverlapSeconds"}
    assert env["IGNORED_EVENTS"] == {"Ref": "IgnoredEvents"}  # never replays what is ignored


def test_only_claim_checked_bodies_expire_in_the_payload_bucket():
    rules = RESOURCES["PayloadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert [r["Prefix"] for r in expiring] == ["payloads/"]


# ---- https only -------------------------------------------------------------------------------
def chatwoot_url_allowed(value: str) -> bool:
    # CloudFormation matches AllowedPattern against the whole value (Java regex).
    return re.fullmatch(PARAMETERS["ChatwootBaseUrl"]["AllowedPattern"], value) is not None


@pytest.mark.parametrize(
    "url", ["", "https://chatwoot.example.com", "https://support.example.com:8443/chatwoot"]
)
def test_the_chatwoot_url_parameter_accepts_https_or_nothing(url):
    assert chatwoot_url_allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://chatwoot.example.com",
        "http://127.0.0.1:3000",
        "HTTP://chatwoot.example.com",
        "ftp://chatwoot.example.com",
        "chatwoot.example.com",
        "https://",
        "https://chat woot.example.com",
    ],
)
def test_the_chatwoot_url_parameter_refuses_plain_http_and_junk(url):
    assert not chatwoot_url_allowed(url)


# ---- the weekly report: its schedule, its topic, its reach -------------------------------------
def test_the_weekly_report_is_scheduled_monday_9_in_the_policys_zone_without_retries():
    report = FUNCTIONS["WeeklyReportFunction"]
    (event,) = report["Events"].values()
    assert event["Type"] == "ScheduleV2"  # EventBridge Scheduler: it knows time zones
    props = event["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "WeeklyReportSchedule"}
    assert props["ScheduleExpressionTimezone"] == {"Ref": "WeeklyReportTimezone"}
    assert PARAMETERS["WeeklyReportSchedule"]["Default"] == "cron(0 9 ? * MON *)"
    policy = yaml.safe_load((ROOT / "config" / "support-policy.yaml").read_text())
    assert PARAMETERS["WeeklyReportTimezone"]["Default"] == policy["timezone"]
    assert re.fullmatch(PARAMETERS["WeeklyReportSchedule"]["AllowedPattern"], "cron(0 9 ? * MON *)")
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert props["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert props["OmitName"] is True
    assert "<aws.scheduler.scheduled-time>" in props["Input"]
    assert report["ReservedConcurrentExecutions"] == 1
    assert report["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_the_weekly_report_reaches_only_its_topic_the_dlq_and_read_only_metrics():
    assert grants("WeeklyReportFunction", "sns") == {"ReportTopic": {"sns:Publish"}}
    assert grants("WeeklyReportFunction", "sqs") == {"EventsDLQ": {"sqs:GetQueueAttributes"}}
    assert grants("WeeklyReportFunction", "cloudwatch") == {
        "*": {"cloudwatch:GetMetricData", "cloudwatch:ListMetrics"}
    }
    assert RESOURCES["ReportTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    env = FUNCTIONS["WeeklyReportFunction"]["Environment"]["Variables"]
    assert env["REPORT_TOPIC_ARN"] == {"Ref": "ReportTopic"}
    assert env["REPORT_SCHEDULE_TIMEZONE"] == {"Ref": "WeeklyReportTimezone"}


def test_report_files_are_kept_by_the_buckets_lifecycle():
    rules = RESOURCES["PayloadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert expiring and all(r.get("Prefix") == "payloads/" for r in expiring)
