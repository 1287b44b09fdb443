"""End to end over real HTTP: the local stack (moto server, real handlers, real poller)."""

import io
import json
import os
import time

import boto3
import pytest
import requests
from boto3.dynamodb.conditions import Key

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
    """Chatwoot may send one message twice with two delivery ids: the second delivery is
    accepted, and changes nothing the first one stored (record, timeline, actions taken)."""
    payload = fixture("message_created_incoming")
    payload["id"] = 901
    payload["content"] = "quiero un reembolso"  # escalates: actions to take (dry runs here)
    payload["conversation"]["id"] = 77
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    conversations = dynamodb.Table(local.stack.physical["ConversationsTable"])
    actions = dynamodb.Table(local.stack.physical["ActionsTable"])

    def stored():
        """Everything kept about conversation 77: its items, and the actions taken on it."""
        items = conversations.query(
            KeyConditionExpression=Key("pk").eq("CONV#1#77"), ConsistentRead=True
        )["Items"]
        taken = actions.query(
            KeyConditionExpression=Key("conversation").eq("1#77"), ConsistentRead=True
        )["Items"]
        return items, taken

    assert post(local, payload, delivery_id="dup-a").status_code == 202
    settle(local)
    items, taken = stored()
    [event] = [i for i in items if i["sk"].startswith("EVENT#") and i["kind"] == "event"]
    assert event["delivery_id"] == "dup-a" and event["handled"] is True
    [escalation] = [i for i in items if i.get("kind") == "escalation"]
    assert escalation["reasons"] == ["asks_for_human"]
    assert {a["status"] for a in taken} == {"dry_run"} and len(taken) == 3  # labels, priority, note

    assert post(local, payload, delivery_id="dup-b").status_code == 202
    settle(local)
    # Processed once: no second timeline item, no record write (its revision stays), no
    # action taken or even renewed, not a byte different.
    assert stored() == (items, taken)
