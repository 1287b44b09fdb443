"""`support-pipeline report` and the redrive count it reads, against moto."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from support_pipeline.report.health import HealthReader
from support_pipeline.report.period import Period
from support_pipeline_ops.cli import main
from tests.report_world import WEEK, ZONE, build_week
from tests.support import fixture


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def located(pipeline, monkeypatch):
    monkeypatch.setenv("CONVERSATIONS_TABLE", pipeline.stack.physical["ConversationsTable"])
    monkeypatch.setenv("PAYLOAD_BUCKET", pipeline.stack.physical["PayloadBucket"])
    monkeypatch.setenv("EVENTS_DLQ_URL", pipeline.dlq_url)
    monkeypatch.delenv("CHATWOOT_BASE_URL", raising=False)
    monkeypatch.delenv("SUPPORT_POLICY_PARAM", raising=False)
    return pipeline


def test_report_of_a_week_writes_the_four_files_and_prints_the_summary(located, tmp_path):
    build_week(located)
    code, text = cli("report", "--week", WEEK, "--out", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
        "report.md",
    ]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["period"]["label"] == WEEK and data["volume"]["opened"]["value"] == 4
    assert "Support report 2026-W39" in text and "Conversations opened: 4 (+3)" in text


def test_a_backfill_upload_goes_where_the_function_puts_it(located, tmp_path):
    build_week(located)
    code, text = cli("report", "--week", WEEK, "--out", str(tmp_path), "--upload")
    assert code == 0 and "stored s3://" in text
    bucket = located.stack.physical["PayloadBucket"]
    keys = sorted(
        o["Key"]
        for o in located.clients["s3"].list_objects_v2(Bucket=bucket, Prefix="reports/")["Contents"]
    )
    assert keys == [f"reports/{WEEK}/report.{ext}" for ext in ("csv", "html", "json", "md")]


def test_dates_and_their_mistakes(located, tmp_path):
    code, _ = cli("report", "--from", "2026-09-21", "--to", "2026-09-23", "--out", str(tmp_path))
    data = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and data["period"]["label"] == "2026-09-21_2026-09-23"
    assert data["period"]["days"] == ["2026-09-21", "2026-09-22", "2026-09-23"]
    assert data["previous_period"]["first_day"] == "2026-09-18"
    assert cli("report", "--from", "2026-09-21")[0] == 2
    assert cli("report", "--week", "2026-39")[0] == 2
    assert cli("report", "--week", WEEK, "--announce")[0] == 2


def test_without_a_table_it_says_what_to_do(aws, monkeypatch, capsys):
    monkeypatch.delenv("CONVERSATIONS_TABLE", raising=False)
    assert cli("report")[0] == 2
    assert "CONVERSATIONS_TABLE" in capsys.readouterr().err


def test_a_redrive_is_counted_for_the_report(pipeline, monkeypatch):
    monkeypatch.setenv("EVENTS_QUEUE_URL", pipeline.queue_url)
    monkeypatch.setenv("EVENTS_DLQ_URL", pipeline.dlq_url)
    for delivery in ("p-1", "p-2"):
        payload = fixture("conversation_updated")
        del payload["id"]
        assert pipeline.post(payload, delivery_id=delivery)[0] == 202
    pipeline.drain()
    assert cli("dlq", "redrive", "--event", "conversation_updated")[0] == 0
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    [metric] = cloudwatch.list_metrics(Namespace="SupportPipeline")["Metrics"]
    assert metric["MetricName"] == "EventRedriven"
    assert metric["Dimensions"] == [{"Name": "service", "Value": "ops"}]
    now = datetime.now(UTC)
    answer = cloudwatch.get_metric_statistics(
        Namespace="SupportPipeline",
        MetricName="EventRedriven",
        Dimensions=metric["Dimensions"],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in answer["Datapoints"]) == 2
    # Redrive counts alone do not make the functions' metrics "available" (that would show
    # zeros for everything they count).
    today = datetime.now(ZONE).date()
    period = Period(today, today, ZONE)
    health = HealthReader(cloudwatch, pipeline.sqs, pipeline.dlq_url).read(period, None)
    assert health["available"] is False


def test_a_dry_run_redrive_counts_nothing(pipeline, monkeypatch):
    monkeypatch.setenv("EVENTS_QUEUE_URL", pipeline.queue_url)
    monkeypatch.setenv("EVENTS_DLQ_URL", pipeline.dlq_url)
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="not json")
    pipeline.drain()
    assert cli("dlq", "redrive", "--all", "--dry-run")[0] == 0
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    assert cloudwatch.list_metrics(Namespace="SupportPipeline")["Metrics"] == []
