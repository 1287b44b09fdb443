"""End to end over real HTTP: the local stack serves the latest report at the URL it prints."""

from __future__ import annotations

import time

import boto3
import pytest
import requests

from support_pipeline_ops.local.stack import REPORT_PATH, LocalStack
from tests.e2e.stacks import running_stack
from tests.support import CONVERSATION_STORY, body_of, fixture, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-the-local-report"  # invented


@pytest.fixture(scope="module")
def local():
    # moto servers in one process share their state: a stack name of its own
    with running_stack(SECRET, stack_name="e2e-report") as stack:
        yield stack


def report_url(local: LocalStack, query: str = "") -> str:
    return f"http://{local.host}:{local.port}{REPORT_PATH}{query}"


def test_the_local_stack_serves_the_report_of_what_it_received(local):
    # The captured conversation happened on Saturday 26 September 2026 (Bogota): 2026-W39.
    for i, name in enumerate(CONVERSATION_STORY):
        body = body_of(fixture(name))
        headers = signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id=f"r-{i}")
        assert requests.post(local.webhook_url, data=body, headers=headers, timeout=5).ok
    local.wait_until_settled(timeout=20)

    page = requests.get(report_url(local, "?week=2026-W39"), timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Support report 2026-W39" in page.text and 'id="chart-volume"' in page.text
    data = requests.get(report_url(local, "?week=2026-W39&format=json"), timeout=30).json()
    assert data["volume"]["opened"]["value"] == 1 and data["volume"]["resolved"]["value"] == 1
    assert data["pipeline_health"]["available"] is False  # no EMF metrics here: said, not 0
    assert "not available here" in data["pipeline_health"]["note"].lower()
    # Stored where the weekly function stores it.
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = local.stack.physical["PayloadBucket"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="reports/")["Contents"]}
    assert "reports/2026-W39/report.html" in keys

    latest = requests.get(report_url(local), timeout=30)  # this week so far
    assert latest.status_code == 200 and "Support report" in latest.text
    csv_answer = requests.get(report_url(local, "?week=2026-W39&format=csv"), timeout=30)
    assert csv_answer.text.startswith("account_id,conversation_id,")
    assert requests.get(report_url(local, "?week=junk"), timeout=30).status_code == 400
    assert requests.get(report_url(local, "?format=pdf"), timeout=30).status_code == 404
