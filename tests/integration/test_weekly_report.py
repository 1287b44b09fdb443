"""The scheduled WeeklyReportFunction: last week's report in the bucket, announced on SNS."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from support_pipeline_ops.local.lambda_shim import LocalContext
from tests.report_world import WEEK, build_week
from tests.support import load_handler


@pytest.fixture
def weekly(pipeline, monkeypatch):
    for name, value in pipeline.stack.function_environment("WeeklyReportFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("weekly_report")
    monkeypatch.setattr(app, "_report", None)
    sns, sqs = pipeline.clients["sns"], pipeline.sqs
    inbox = sqs.create_queue(QueueName="report-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(
        TopicArn=pipeline.stack.physical["ReportTopic"],
        Protocol="sqs",
        Endpoint=arn["QueueArn"],
    )
    return app, inbox


def test_the_monday_run_stores_last_weeks_report_and_announces_it(pipeline, weekly):
    app, inbox = weekly
    build_week(pipeline)
    event = {"source": "aws.scheduler", "scheduled_time": "2026-09-28T14:00:00Z"}
    answer = app.handler(event, LocalContext("weekly-report", timeout_seconds=300))
    assert answer["period"] == WEEK and answer["conversations"] == 4
    bucket = pipeline.stack.physical["PayloadBucket"]
    s3 = pipeline.clients["s3"]
    html = s3.get_object(Bucket=bucket, Key=f"reports/{WEEK}/report.html")
    assert html["ContentType"] == "text/html; charset=utf-8"
    data = json.loads(
        s3.get_object(Bucket=bucket, Key=f"reports/{WEEK}/report.json")["Body"].read()
    )
    assert data["volume"]["opened"]["value"] == 4

    [message] = pipeline.sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]
    note = json.loads(message["Body"])
    assert note["Subject"] == "Support report 2026-W39"
    text = note["Message"]
    assert text.startswith("Support report 2026-W39 (America/Bogota, 2026-09-21 to 2026-09-27)")
    assert "First responses within SLA: 50.0 % ⚠ goal 95 %" in text
    link = text.rsplit("Full report: ", 1)[1].strip()
    parts = urlsplit(link)
    assert parts.path.endswith(f"/reports/{WEEK}/report.html")
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4: S3 refuses SigV2 now
    assert query["X-Amz-Expires"] == ["86400"]  # ReportLinkExpirySeconds


def test_a_manual_run_names_its_week_and_a_bad_one_is_refused(pipeline, weekly):
    app, _ = weekly
    answer = app.handler({"week": "2026-W38"}, LocalContext("weekly-report", timeout_seconds=300))
    assert answer["period"] == "2026-W38" and answer["conversations"] == 0
    from support_pipeline.processing.errors import PermanentError

    with pytest.raises(PermanentError):
        app.handler({"week": "soon"}, LocalContext("weekly-report", timeout_seconds=300))
