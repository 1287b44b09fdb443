"""`support-pipeline dlq ...` against moto, with real dead letters made by the processor."""

import io
import json

import boto3
import pytest

from support_pipeline.cli import main
from tests.support import attributes_of, fixture


@pytest.fixture
def dead(pipeline, monkeypatch):
    """Three poison messages in the DLQ, made by the real processor."""
    monkeypatch.setenv("EVENTS_QUEUE_URL", pipeline.queue_url)
    monkeypatch.setenv("EVENTS_DLQ_URL", pipeline.dlq_url)
    for name, delivery in [
        ("conversation_updated", "p-1"),
        ("conversation_status_changed_resolved", "p-2"),
    ]:
        payload = fixture(name)
        del payload["id"]
        assert pipeline.post(payload, delivery_id=delivery)[0] == 202
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="not json at all")
    pipeline.drain()
    assert len(pipeline.messages(pipeline.dlq_url)) == 3
    return pipeline


def cli(*argv):
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_list_shows_each_message_with_its_reason_and_consumes_nothing(dead):
    code, text = cli("dlq", "list", "--json")
    assert code == 0
    rows = json.loads(text)
    assert sorted(row["event"] for row in rows) == [
        "",
        "conversation_status_changed",
        "conversation_updated",
    ]
    assert {row["error_type"] for row in rows} == {"invalid_payload"}
    assert all(row["failed_at"] and row["receive_count"] == "1" for row in rows)
    # listing twice gives the same messages: nothing was consumed or hidden
    assert sorted(r["id"] for r in json.loads(cli("dlq", "list", "--json")[1])) == sorted(
        r["id"] for r in rows
    )
    code, table = cli("dlq", "list")
    assert "ERROR_TYPE" in table and "names no account and conversation id" in table


def test_show_prints_the_body_and_attributes(dead):
    rows = json.loads(cli("dlq", "list", "--json")[1])
    target = next(row for row in rows if row["event"] == "conversation_updated")
    code, text = cli("dlq", "show", target["id"])
    assert code == 0
    shown = json.loads(text)
    assert shown["body"]["event"] == "conversation_updated"
    assert shown["attributes"]["delivery_id"] == "p-1"
    assert cli("dlq", "show", "no-such-id")[0] == 2


def test_redrive_by_event_moves_only_those_with_original_attributes(dead):
    code, text = cli("dlq", "redrive", "--event", "conversation_updated")
    assert code == 0 and "Redrove 1 message(s)" in text
    [back] = dead.messages(dead.queue_url)
    attributes = attributes_of(back)
    assert attributes["delivery_id"] == "p-1"
    assert attributes["signed"] == "true"
    assert "error_type" not in attributes
    assert len(dead.messages(dead.dlq_url)) == 2


def test_redrive_by_id_and_dry_run(dead):
    rows = json.loads(cli("dlq", "list", "--json")[1])
    code, text = cli("dlq", "redrive", "--id", rows[0]["id"], "--dry-run")
    assert code == 0 and "Would redrive 1" in text
    assert len(dead.messages(dead.dlq_url)) == 3 and dead.messages(dead.queue_url) == []
    code, _ = cli("dlq", "redrive", "--id", rows[0]["id"], "--id", "missing-id")
    assert code == 1
    assert len(dead.messages(dead.dlq_url)) == 2 and len(dead.messages(dead.queue_url)) == 1


def test_redrive_all_moves_everything_and_fixed_messages_then_process(dead):
    code, _text = cli("dlq", "redrive", "--all")
    assert code == 0
    assert dead.messages(dead.dlq_url) == []
    assert len(dead.messages(dead.queue_url)) == 3
    dead.drain()  # still poison: they return to the DLQ with their reason, nothing is lost
    assert len(dead.messages(dead.dlq_url)) == 3


def test_redriven_message_is_processed_once_the_cause_is_fixed(pipeline, monkeypatch):
    monkeypatch.setenv("EVENTS_QUEUE_URL", pipeline.queue_url)
    monkeypatch.setenv("EVENTS_DLQ_URL", pipeline.dlq_url)
    from support_pipeline.processing.errors import PermanentError
    from support_pipeline.processing.router import Router

    def broken(context):
        raise PermanentError("chatwoot_rejected", "token revoked")

    router = Router()
    router.register(["message_created"], "broken", broken)
    pipeline.post(fixture("message_created_incoming"))
    pipeline.drain(pipeline.consumer(router=router))
    assert cli("dlq", "redrive", "--all")[0] == 0
    pipeline.drain()  # the fixed pipeline
    assert pipeline.messages(pipeline.dlq_url) == []
    assert len(pipeline.store().timeline("1", "1")) == 1


def test_purge_needs_yes(dead):
    assert cli("dlq", "purge")[0] == 2
    assert len(dead.messages(dead.dlq_url)) == 3
    assert cli("dlq", "purge", "--yes")[0] == 0
    assert dead.messages(dead.dlq_url) == []


def test_queues_found_from_stack_outputs(pipeline, monkeypatch):
    monkeypatch.delenv("EVENTS_QUEUE_URL", raising=False)
    monkeypatch.delenv("EVENTS_DLQ_URL", raising=False)
    outputs = pipeline.stack.outputs()
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            k: {"Value": outputs[k]}
            for k in ("EventsQueueUrl", "EventsDLQUrl", "EventsQueueArn", "EventsDLQArn")
        },
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="prod-support", TemplateBody=json.dumps(template)
    )
    code, text = cli("dlq", "list", "--stack", "prod-support")
    assert (code, text) == (0, "The DLQ is empty.\n")
    assert cli("dlq", "list", "--stack", "no-such-stack")[0] == 2


def test_without_a_stack_or_env_it_says_what_to_do(aws, monkeypatch, capsys):
    monkeypatch.delenv("EVENTS_QUEUE_URL", raising=False)
    monkeypatch.delenv("EVENTS_DLQ_URL", raising=False)
    assert cli("dlq", "list")[0] == 2
    assert "--stack NAME" in capsys.readouterr().err
