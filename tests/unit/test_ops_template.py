"""Operations in template.yaml: the health probe's schedule and alarms, gradual deployment of
the published functions, the pause switch's parameter and who may read it, and a severity in
docs/runbooks/escalation.md for every alarm."""

from __future__ import annotations

import re
from typing import Any

import pytest

from support_pipeline import pause, probe
from support_pipeline.telemetry import NAMESPACE
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT
from tests.unit.test_template_security import grants, statements

TEMPLATE = cfn.load(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
FUNCTIONS = {
    name: spec["Properties"]
    for name, spec in RESOURCES.items()
    if spec["Type"] == "AWS::Serverless::Function"
}
ALARMS = {n: s["Properties"] for n, s in RESOURCES.items() if s["Type"] == "AWS::CloudWatch::Alarm"}
PROBE_ALARMS = ("ProbeWebhookFailedAlarm", "ProbeChatwootFailedAlarm", "ProbeChatwootSlowAlarm")
# CodeDeploy's predefined Lambda deployment configurations (SAM DeploymentPreference.Type).
LAMBDA_DEPLOYMENT_TYPES = re.compile(
    r"^(Canary10Percent(5|10|15|30)Minutes|Linear10PercentEvery(1|2|3|10)Minutes?|AllAtOnce)$"
)


# ---- the health probe ---------------------------------------------------------------------------
def probe_schedule() -> dict[str, Any]:
    events = FUNCTIONS["HealthProbeFunction"]["Events"]
    (schedule,) = [e["Properties"] for e in events.values() if e["Type"] == "Schedule"]
    return schedule


def test_the_probe_runs_on_the_rate_parameter_and_never_retries():
    schedule = probe_schedule()
    condition, every_minute, every_n = schedule["Schedule"]["Fn::If"]
    # rate(1 minutes) is refused by EventBridge: one minute is spelled apart.
    assert TEMPLATE["Conditions"][condition] == {
        "Fn::Equals": [{"Ref": "HealthProbeRateMinutes"}, 1]
    }
    assert every_minute == "rate(1 minute)"
    assert every_n == {"Fn::Sub": "rate(${HealthProbeRateMinutes} minutes)"}
    assert schedule["Enabled"] is True
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] == 0
    function = FUNCTIONS["HealthProbeFunction"]
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_the_probe_calls_are_bounded_by_the_timeout_parameter():
    env = FUNCTIONS["HealthProbeFunction"]["Environment"]["Variables"]
    assert env["PROBE_TIMEOUT_SECONDS"] == {"Ref": "HealthProbeCallTimeoutSeconds"}
    # Two calls, each at most the longest allowed timeout, fit in the function's timeout.
    assert (
        2 * PARAMETERS["HealthProbeCallTimeoutSeconds"]["MaxValue"]
        < FUNCTIONS["HealthProbeFunction"]["Timeout"]
    )
    assert env["WEBHOOK_URL"]["Fn::Sub"].endswith("/webhooks/chatwoot")


@pytest.mark.parametrize("alarm", PROBE_ALARMS)
def test_every_probe_window_holds_a_probe_result(alarm):
    """A window without a result counts as failed, so every allowed rate lands one in each."""
    props = ALARMS[alarm]
    for minutes in PARAMETERS["HealthProbeRateMinutes"]["AllowedValues"]:
        assert int(minutes) * 60 <= props["Period"], (alarm, minutes)
    assert props["EvaluationPeriods"] == {"Ref": "ProbeFailedPeriodsToAlarm"}
    assert props["DatapointsToAlarm"] == {"Ref": "ProbeFailedPeriodsToAlarm"}
    assert props["Namespace"] == NAMESPACE
    assert props["Dimensions"] == [{"Name": "service", "Value": "health-probe"}]


def test_probe_failures_raise_alarms_on_the_metrics_the_probe_records():
    source = (ROOT / "layers/common/support_pipeline/probe.py").read_text()
    assert 'f"Probe{check}Ok"' in source and 'f"Probe{check}Latency"' in source
    assert ALARMS["ProbeWebhookFailedAlarm"]["MetricName"] == "ProbeWebhookOk"
    assert ALARMS["ProbeChatwootFailedAlarm"]["MetricName"] == "ProbeChatwootOk"
    assert ALARMS["ProbeChatwootSlowAlarm"]["MetricName"] == "ProbeChatwootLatency"
    # A probe that did not run is a failure of the self-test; with no Chatwoot, no news.
    assert ALARMS["ProbeWebhookFailedAlarm"]["TreatMissingData"] == "breaching"
    assert ALARMS["ProbeChatwootFailedAlarm"]["TreatMissingData"] == {
        "Fn::If": ["HasChatwoot", "breaching", "notBreaching"]
    }
    assert ALARMS["ProbeChatwootSlowAlarm"]["Threshold"] == {"Ref": "ChatwootSlowThresholdMs"}
    assert probe.__name__ == "support_pipeline.probe"


# ---- gradual deployment -------------------------------------------------------------------------
PUBLISHED = {name for name, props in FUNCTIONS.items() if "AutoPublishAlias" in props}


def test_the_functions_on_the_event_path_are_published_behind_an_alias():
    # The scheduled functions deploy at once: a canary of a run every few minutes measures
    # nothing.
    assert {"IngestFunction", "ProcessorFunction"} == PUBLISHED


@pytest.mark.parametrize("function", sorted(PUBLISHED))
def test_a_published_function_deploys_gradually_and_rolls_back_on_its_errors(function):
    props = FUNCTIONS[function]
    assert props["AutoPublishAlias"] == "live"
    # The logic lives in the layer: without this a layer-only change would publish nothing.
    assert props["AutoPublishAliasAllProperties"] is True
    preference = props["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentType"}
    crash_ref, fault_ref = preference["Alarms"]
    # The bugs the function handles (ingest's 503, an exception the processor retries): Lambda
    # counts no error for them, so the code counts ReleaseFault per version (telemetry.fault).
    faults = ALARMS[fault_ref["Ref"]]
    service = {"IngestFunction": "ingest", "ProcessorFunction": "processor"}[function]
    assert (faults["Namespace"], faults["MetricName"]) == ("SupportPipeline", "ReleaseFault")
    assert {d["Name"]: d["Value"] for d in faults["Dimensions"]} == {
        "service": service,
        "version": {"Fn::GetAtt": [function, "Version.Version"]},
    }
    assert faults["Threshold"] == 1 and faults["TreatMissingData"] == "notBreaching"
    assert "docs/runbooks/outage.md#a-bad-release" in faults["AlarmDescription"]
    assert FUNCTIONS[function]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == service
    alarm = ALARMS[crash_ref["Ref"]]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert dimensions["FunctionName"] == {"Ref": function}
    assert dimensions["Resource"] == {"Fn::Sub": f"${{{function}}}:live"}
    # Only the version being released: a fault of the old one must not roll back its fix.
    assert dimensions["ExecutedVersion"] == {"Fn::GetAtt": [function, "Version.Version"]}
    assert alarm["Threshold"] == 1 and alarm["TreatMissingData"] == "notBreaching"
    assert "docs/runbooks/outage.md#a-bad-release" in alarm["AlarmDescription"]


def test_the_deployment_type_is_a_canary_or_linear_parameter():
    parameter = PARAMETERS["DeploymentType"]
    assert re.match(r"^(Canary|Linear)", parameter["Default"])
    assert parameter["Default"] in parameter["AllowedValues"]
    for value in parameter["AllowedValues"]:
        assert LAMBDA_DEPLOYMENT_TYPES.match(value), value


# ---- the pause switch ---------------------------------------------------------------------------
def test_the_pause_parameter_is_the_one_the_code_and_cli_default_to():
    parameter = PARAMETERS["PauseParamName"]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == pause.DEFAULT_PARAMETER
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])
    # The stack never creates it: `support-pipeline pause | resume` writes it.
    assert not any(s["Type"] == "AWS::SSM::Parameter" for s in RESOURCES.values())
    assert TEMPLATE["Outputs"]["PauseParamName"]["Value"] == {"Ref": "PauseParamName"}


PAUSE_READERS = {
    name
    for name, props in FUNCTIONS.items()
    if "PAUSE_PARAM" in props.get("Environment", {}).get("Variables", {})
}


def test_the_processor_the_sweep_and_the_reconciler_read_the_pause_switch():
    assert {"ProcessorFunction", "SlaSweepFunction", "ReconcilerFunction"} == PAUSE_READERS
    for function in PAUSE_READERS:
        env = FUNCTIONS[function]["Environment"]["Variables"]
        assert env["PAUSE_PARAM"] == {"Ref": "PauseParamName"}
        assert env["PAUSE_CACHE_SECONDS"] == {"Ref": "PauseCacheSeconds"}
    processor = FUNCTIONS["ProcessorFunction"]["Environment"]["Variables"]
    assert processor["PAUSED_EVENT_DELAY_SECONDS"] == {"Ref": "PausedEventDelaySeconds"}
    # A paused copy is an SQS delay: at most 900 s.
    assert PARAMETERS["PausedEventDelaySeconds"]["MaxValue"] <= 900


PAUSE_ARN = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${PauseParamName}"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_only_the_readers_may_read_the_pause_parameter_and_only_it(function):
    pause_statements = [
        s for s in statements(function) if "PauseParamName" in str(s.get("Resource"))
    ]
    if function not in PAUSE_READERS:
        assert pause_statements == []
        assert PAUSE_ARN not in grants(function, "ssm")
        return
    (statement,) = pause_statements
    assert statement["Action"] == "ssm:GetParameter"
    assert statement["Resource"] == {"Fn::Sub": PAUSE_ARN}
    assert grants(function, "ssm")[PAUSE_ARN] == {"ssm:GetParameter"}


# ---- every alarm has a severity -----------------------------------------------------------------
def severity_rows() -> dict[str, str]:
    """SEVn -> its row in the severity table of docs/runbooks/escalation.md."""
    text = (ROOT / "docs/runbooks/escalation.md").read_text()
    section = text.split("### Severities", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| (SEV\d) \|(.*)$", section, re.MULTILINE))


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_every_alarm_has_one_severity_in_the_escalation_runbook(alarm):
    rows = severity_rows()
    assert set(rows) == {"SEV1", "SEV2", "SEV3"}
    placed = [severity for severity, row in rows.items() if f"`{alarm}`" in row]
    assert len(placed) == 1, f"{alarm} is in {placed or 'no severity'} in escalation.md"


def test_the_severity_table_names_only_real_alarms():
    named = {n for row in severity_rows().values() for n in re.findall(r"`(\w+Alarm)`", row)}
    assert named == set(ALARMS)
