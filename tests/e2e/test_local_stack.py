"""End to end over real HTTP: the local stack (moto server, real handlers, real poller)."""

import io
import json
import os
import time

import boto3
import pytest
import requests

from support_pipeline_ops.cli import main as cli_main
from tests.e2e.stacks import running_stack
from tests.support import ALL_FIXTURES, body_of, fixture, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-local-stack"  # invented


@pytest.fixture(scope="module")
def local():
    with running_stack(SECRET, sweep_every=None) as stack:
        yield stack


def post(local, payload, **headers_kwargs):
    body = body_of(payload)
    headers = signed_headers(body, secret=SECRET, timestamp=time.time(), **headers_kwargs)
    return requests.post(local.webhook_url, data=body, headers=headers, timeout=5)


def settle(stack):
    """Until the poller has emptied EventsQueue (woken by each batch, not by a timer)."""
    return stack.wait_until_settled(timeout=20)


def test_signed_fixtures_in_garbage_out_and_every_accepted_event_accounted_for(local):
    accepted = 0
    for i, name in enumerate(ALL_FIXTURES):
        answer = post(local, fixture(name), delivery_id=f"e2e-{i}")
        assert answer.status_code == 202, answer.text
        accepted += 1
    poison = fixture("conversation_updated")
    del poison["id"]
    assert post(local, poison, delivery_id="e2e-poison").status_code == 202
    accepted += 1

    unsigned = requests.post(local.webhook_url, data=b'{"event": "message_created"}', timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["reason"] == "missing signature"
    assert post(local, b"not json").status_code == 400
    assert requests.get(local.webhook_url, timeout=5).status_code == 405
    assert (
        requests.post(local.webhook_url.replace("chatwoot", "other"), timeout=5).status_code == 404
    )

    status = settle(local)
    assert status["accepted"] == accepted
    assert status["dead_lettered"] == 1
    processed = accepted - status["dead_lettered"]
    assert processed == len(ALL_FIXTURES)

    table = local.stack.physical["ConversationsTable"]
    item = (
        boto3.resource("dynamodb", region_name="us-east-1")
        .Table(table)
        .get_item(Key={"pk": "CONV#1#1", "sk": "RECORD"})["Item"]
    )
    assert item["status"] == "resolved"

    out = io.StringIO()
    os.environ.update(local.exports())
    assert cli_main(["dlq", "list", "--json"], out=out) == 0
    [row] = json.loads(out.getvalue())["messages"]
    assert row["error_type"] == "invalid_payload" and row["event"] == "conversation_updated"


def test_duplicate_delivery_over_http_is_processed_once(local):
    payload = fixture("message_created_incoming")
    payload["id"] = 901
    payload["conversation"]["id"] = 77
    for delivery in ("dup-a", "dup-b"):
        assert post(local, payload, delivery_id=delivery).status_code == 202
    settle(local)
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(
        local.stack.physical["ConversationsTable"]
    )
    items = table.query(KeyConditionExpression=boto3.dynamodb.conditions.Key("pk").eq("CONV#1#77"))[
        "Items"
    ]
    assert len([i for i in items if i["sk"].startswith("EVENT#")]) == 1
