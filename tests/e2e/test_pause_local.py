"""End to end on the local stack: `support-pipeline pause | resume | status` over real HTTP.

Events come in while the pipeline is paused; Chatwoot (the fake one) hears nothing; after
`resume` every event is processed once and nothing is in the DLQ. The stack runs with
PauseCacheSeconds 0 and PausedEventDelaySeconds 1, so the test waits seconds, not minutes.
"""

import io
import json
import os
import time

import boto3
import pytest
import requests

from support_pipeline_ops.cli import main as cli_main
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from tests.e2e.stacks import policy_file, running_stack
from tests.support import NOW, body_of, incoming, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-pause-secret"  # invented


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    def no_drafts(policy):
        policy["drafts"]["enabled"] = False  # no delayed draft events to wait for here

    fake = FakeChatwoot(token="e2e-pause-token").start()
    for conversation in range(1, 6):
        fake.add_conversation(1, conversation)
    try:
        with running_stack(
            SECRET,
            chatwoot_url=fake.url,
            chatwoot_token=fake.token,
            policy_file=policy_file(tmp_path_factory, no_drafts),
            stack_name="e2e-pause",  # moto servers in one process share their state
            parameters={"PauseCacheSeconds": "0", "PausedEventDelaySeconds": "1"},
        ) as stack:
            os.environ.update(stack.exports())
            yield stack, fake
    finally:
        fake.stop()


def cli(*argv):
    out = io.StringIO()
    assert cli_main(list(argv), out=out) == 0
    return out.getvalue()


def post(stack, payload, delivery):
    body = body_of(payload)
    headers = signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id=delivery)
    answer = requests.post(stack.webhook_url, data=body, headers=headers, timeout=5)
    assert answer.status_code == 202, answer.text


def held_for_a_while(stack, batches=3, timeout=15.0):
    """Until the poller has handed the held events to the processor a few more times."""
    start, end = stack.status()["batches"], time.monotonic() + timeout
    while stack.status()["batches"] < start + batches:
        assert time.monotonic() < end, f"the poller did not come back: {stack.status()}"
        time.sleep(0.05)


def record(stack, conversation):
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(
        stack.stack.physical["ConversationsTable"]
    )
    return table.get_item(Key={"pk": f"CONV#1#{conversation}", "sk": "RECORD"}).get("Item")


def test_consume_then_resume_processes_every_event_once(setup):
    stack, fake = setup
    said = cli("pause", "consume", "--reason", "e2e: Chatwoot maintenance")
    assert "paused (consume)" in said
    post(stack, incoming("I want a refund, let me talk to a human", 5101, NOW), "p-1")
    post(stack, incoming("Hola, una pregunta", 5102, NOW + 1, conversation_id=2), "p-2")
    post(stack, incoming("Quiero hablar con una persona", 5103, NOW + 2, conversation_id=3), "p-3")
    held_for_a_while(stack)

    assert fake.calls == []
    status = json.loads(cli("status", "--json"))
    assert status["mode"] == "consume" and "e2e: Chatwoot maintenance" in status["note"]
    assert status["queues"]["EventsDLQ"] == {"waiting": 0, "in_flight": 0, "delayed": 0}
    depth = status["queues"]["EventsQueue"]
    assert depth["waiting"] + depth["in_flight"] + depth["delayed"] == 3
    assert record(stack, 1) is None  # nothing processed

    assert "running" in cli("resume")
    settled = stack.wait_until_settled(timeout=30)
    assert settled["queued"] == 0 and settled["dead_lettered"] == 0
    assert all(record(stack, c) is not None for c in (1, 2, 3))
    assert len(fake.notes(1, 1)) == 1 and len(fake.notes(1, 3)) == 1 and fake.notes(1, 2) == []
    assert json.loads(cli("status", "--json"))["mode"] == "off"


def test_actions_records_while_paused_and_acts_once_after_resume(setup):
    stack, fake = setup
    calls_before = len(fake.calls)
    cli("pause", "actions")
    post(
        stack,
        incoming("This is unacceptable, I want a refund", 5201, NOW, conversation_id=4),
        "a-1",
    )
    post(stack, incoming("Hello there", 5202, NOW + 1, conversation_id=5), "a-2")
    held_for_a_while(stack)

    assert fake.calls[calls_before:] == []  # not a single call, not even a read
    assert record(stack, 4) is not None and record(stack, 5) is not None  # both recorded
    assert stack.status()["queued"] == 1  # the escalation waits; the greeting is done

    cli("resume")
    settled = stack.wait_until_settled(timeout=30)
    assert settled["queued"] == 0 and settled["dead_lettered"] == 0
    [note] = fake.notes(1, 4)
    assert note.startswith("Escalated by the support pipeline:")
    assert fake.notes(1, 5) == []
