"""`support-pipeline dlq ...` against moto, with real dead letters made by the processor."""

import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from support_pipeline_ops.cli import Queues, UsageError, build_parser, main, run_dlq
from support_pipeline_ops.dlq import DeadLetterQueue
from tests.support import ROOT, attributes_of, fixture


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
    rows = json.loads(text)["messages"]
    assert sorted(row["event"] for row in rows) == [
        "",
        "conversation_status_changed",
        "conversation_updated",
    ]
    assert {row["error_type"] for row in rows} == {"invalid_payload"}
    assert all(row["failed_at"] and row["receive_count"] == "1" for row in rows)
    # listing twice gives the same messages: nothing was consumed or hidden
    again = json.loads(cli("dlq", "list", "--json")[1])["messages"]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows)
    code, table = cli("dlq", "list")
    assert "ERROR_TYPE" in table and "of account 1 names no conversation id" in table


def test_a_payload_with_an_account_but_no_conversation_says_so_and_lists_the_account(dead):
    rows = json.loads(cli("dlq", "list", "--json")[1])["messages"]
    updated = next(row for row in rows if row["event"] == "conversation_updated")
    assert updated["account"] == "1" and updated["conversation"] == ""
    assert updated["error_reason"] == "conversation_updated of account 1 names no conversation id"
    header, *lines = cli("dlq", "list")[1].splitlines()
    assert "ACCOUNT" in header.split()
    line = next(line for line in lines if "conversation_updated" in line)
    assert line.split()[2] == "1"  # ID, EVENT, ACCOUNT


def test_a_payload_without_an_account_says_which_id_is_missing(pipeline):
    payload = fixture("message_created_incoming")
    del payload["account"]
    payload["conversation"].pop("account_id", None)
    payload["conversation"].pop("account", None)
    assert pipeline.post(payload)[0] == 202
    pipeline.drain()
    [letter] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(letter)["error_reason"] == "message_created names no account id"


def test_redriving_a_permanent_failure_warns_it_will_fail_again(dead, capsys):
    code, text = cli("dlq", "redrive", "--event", "conversation_updated", "--dry-run")
    assert code == 0 and "Would redrive 1 message(s)." in text
    warning = capsys.readouterr().err
    assert "1 of these failed permanently (invalid_payload)" in warning
    assert "fail again unless" in warning


def test_redrive_all_by_move_task_warns_about_permanent_failures_before_starting_it(dead, capsys):
    class MoveTaskSQS:  # AWS has StartMessageMoveTask; moto does not
        def __init__(self) -> None:
            self.warned_before: list[str] = []

        def start_message_move_task(self, **kwargs: str) -> dict[str, str]:
            self.warned_before.append(capsys.readouterr().err)
            return {"TaskHandle": "task-123"}

    def arn(url: str) -> str:
        attributes = dead.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    mover = MoveTaskSQS()
    queues = Queues(dead.queue_url, dead.dlq_url, arn(dead.queue_url), arn(dead.dlq_url), "")
    dlq = DeadLetterQueue(dead.sqs, dead.dlq_url, dead.queue_url, move_task_sqs=mover)
    args = build_parser().parse_args(["dlq", "redrive", "--all"])
    out = io.StringIO()

    assert run_dlq(args, dlq, queues, out) == 0

    assert "task-123" in out.getvalue()
    [warning] = mover.warned_before
    assert "3 in the DLQ failed permanently (invalid_payload)" in warning
    assert "fail again unless" in warning
    assert len(dead.messages(dead.dlq_url)) == 3  # the peek left them for the task


def test_the_permanent_error_types_are_the_ones_only_raised_as_permanent():
    import re

    from support_pipeline.processing.errors import PERMANENT_ERROR_TYPES

    source = "\n".join(
        path.read_text() for path in (ROOT / "layers/common/support_pipeline").rglob("*.py")
    )
    permanent = set(re.findall(r'PermanentError\(\s*"([a-z_]+)"', source)) | {"aws_rejected"}
    transient = set(re.findall(r'TransientError\(\s*"([a-z_]+)"', source))
    assert permanent - transient == PERMANENT_ERROR_TYPES


def test_show_prints_the_body_and_attributes(dead):
    rows = json.loads(cli("dlq", "list", "--json")[1])["messages"]
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
    rows = json.loads(cli("dlq", "list", "--json")[1])["messages"]
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


# ---- large DLQs, slow peeks, and messages that come back --------------------------------------


def fill(sqs, dlq_url, count):
    """``count`` dead letters shaped as the processor writes them; their ids and bodies."""
    sent = {}
    for start in range(0, count, 10):
        entries = []
        for n in range(start, min(start + 10, count)):
            original = {"event": "message_created", "conversation_id": str(n), "account_id": "1"}
            attributes = {
                "error_type": "chatwoot_unavailable",
                "error_reason": "GET /conversations answered 503 through every retry",
                "failed_at": f"2026-09-27T02:{n // 60:02d}:{n % 60:02d}Z",
                "receive_count": "5",
                "original_attributes": json.dumps(original, sort_keys=True),
                **original,
            }
            entries.append(
                {
                    "Id": str(n),
                    "MessageBody": json.dumps({"event": "message_created", "n": n}),
                    "MessageAttributes": {
                        k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                    },
                }
            )
        answer = sqs.send_message_batch(QueueUrl=dlq_url, Entries=entries)
        assert not answer.get("Failed")
        by_entry = {entry["Id"]: entry["MessageBody"] for entry in entries}
        sent.update({ok["MessageId"]: by_entry[ok["Id"]] for ok in answer["Successful"]})
    return sent


def depth(sqs, url):
    """(visible, in flight) as the queue itself counts them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def bodies(sqs, url):
    """Every body on the queue (received once with a long visibility: call at the end)."""
    found = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
    ).get("Messages", []):
        found.extend(message["Body"] for message in batch)
    return found


def run(dlq, pipeline, *argv):
    """The CLI's dlq command on a given DeadLetterQueue (main() builds its own clients)."""
    outputs = pipeline.stack.outputs()
    queues = Queues(
        outputs["EventsQueueUrl"],
        outputs["EventsDLQUrl"],
        outputs["EventsQueueArn"],
        outputs["EventsDLQArn"],
        "",
    )
    out = io.StringIO()
    code = run_dlq(build_parser().parse_args(list(argv)), dlq, queues, out)
    return code, out.getvalue()


class ShortPollingSQS:
    """The real (moto) client, except that short polls sometimes answer nothing.

    Real SQS short polling (WaitTimeSeconds=0) samples a subset of its servers and can answer
    empty while messages wait; long polling asks them all. moto always answers everything, so
    this wrapper answers every third short poll with no messages, as SQS may.
    """

    def __init__(self, sqs):
        self._sqs = sqs
        self.short_polls = 0

    def receive_message(self, **kwargs):
        if not kwargs.get("WaitTimeSeconds"):
            self.short_polls += 1
            if self.short_polls % 3 == 0:
                return {"Messages": []}
        return self._sqs.receive_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self._sqs, name)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class SlowSQS:
    """The real client on a slow network: every receive takes ``seconds`` of the fake clock."""

    def __init__(self, sqs, clock, seconds):
        self._sqs, self._clock, self._seconds = sqs, clock, seconds

    def receive_message(self, **kwargs):
        self._clock.now += self._seconds
        return self._sqs.receive_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self._sqs, name)


class ConcurrentPeekSQS:
    """The real client while another operator's `dlq list` makes messages visible again.

    Right after each receive, the other peek finishes and releases what it held, which here is
    what we just received: the next receive can hand us the same messages again. Stops a peek
    that would loop for ever.
    """

    def __init__(self, sqs, dlq_url):
        self._sqs, self._dlq_url = sqs, dlq_url
        self.receives = 0

    def receive_message(self, **kwargs):
        self.receives += 1
        assert self.receives < 100, "the peek keeps receiving the same messages"
        answer = self._sqs.receive_message(**kwargs)
        for message in answer.get("Messages", []):
            self._sqs.change_message_visibility(
                QueueUrl=self._dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return answer

    def __getattr__(self, name):
        return getattr(self._sqs, name)


def test_a_large_dlq_is_listed_completely_even_when_short_polls_come_back_empty(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 250)
    dlq = DeadLetterQueue(ShortPollingSQS(pipeline.sqs), pipeline.dlq_url, pipeline.queue_url)
    code, table = run(dlq, pipeline, "dlq", "list")
    assert code == 0 and len(table.splitlines()) == 251  # header and every message
    assert "listed" not in table  # nothing to warn about
    code, text = run(dlq, pipeline, "dlq", "list", "--json")
    assert code == 0
    listing = json.loads(text)
    ids = [row["id"] for row in listing["messages"]]
    assert len(ids) == 250 and set(ids) == set(sent)
    assert listing["complete"] is True and listing["listed"] == listing["approximate_total"] == 250
    assert depth(pipeline.sqs, pipeline.dlq_url) == (250, 0)  # nothing consumed or left hidden


def test_peeking_that_outlives_the_visibility_timeout_stops_and_says_it_is_partial(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 60)
    clock = Clock()
    slow = SlowSQS(pipeline.sqs, clock, seconds=20)  # 6 receives would take 2 minutes
    dlq = DeadLetterQueue(slow, pipeline.dlq_url, pipeline.queue_url, clock=clock)
    code, text = run(dlq, pipeline, "dlq", "list", "--json")
    assert code == 0
    listing = json.loads(text)
    ids = [row["id"] for row in listing["messages"]]
    assert 0 < len(ids) < 60 and len(set(ids)) == len(ids) and set(ids) <= set(sent)
    assert listing["complete"] is False
    assert listing["listed"] == len(ids) and listing["approximate_total"] == 60
    assert f"listed {len(ids)} of about 60 messages; " in listing["note"]
    assert depth(pipeline.sqs, pipeline.dlq_url) == (60, 0)

    code, table = run(dlq, pipeline, "dlq", "list")
    assert code == 0
    assert f"listed {len(ids)} of about 60 messages; " in table.splitlines()[-1]
    assert depth(pipeline.sqs, pipeline.dlq_url) == (60, 0)


def test_a_message_that_comes_back_during_the_peek_is_listed_once_and_ends_it(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 30)
    dlq = DeadLetterQueue(
        ConcurrentPeekSQS(pipeline.sqs, pipeline.dlq_url), pipeline.dlq_url, pipeline.queue_url
    )
    code, text = run(dlq, pipeline, "dlq", "list", "--json")
    assert code == 0
    listing = json.loads(text)
    ids = [row["id"] for row in listing["messages"]]
    assert len(set(ids)) == len(ids) and set(ids) <= set(sent)
    assert listing["complete"] is False and "came back" in listing["note"]
    assert depth(pipeline.sqs, pipeline.dlq_url) == (30, 0)


class InstantLongPollSQS:
    """The real client, with long polls answered at once while the fake clock takes the wait.

    In process, moto answers a short poll with every visible message, so a long poll that finds
    nothing at first finds nothing until someone sends: it only sleeps the wait in real time.
    """

    def __init__(self, sqs, clock):
        self._sqs, self._clock = sqs, clock

    def receive_message(self, **kwargs):
        wait = kwargs.pop("WaitTimeSeconds", 0)
        answer = self._sqs.receive_message(**kwargs, WaitTimeSeconds=0)
        if not answer.get("Messages"):
            self._clock.now += wait
        return answer

    def __getattr__(self, name):
        return getattr(self._sqs, name)


def test_messages_another_reader_holds_make_the_listing_partial_and_say_so(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 30)
    held = pipeline.sqs.receive_message(
        QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=600
    )["Messages"]
    clock = Clock()
    dlq = DeadLetterQueue(
        InstantLongPollSQS(pipeline.sqs, clock), pipeline.dlq_url, pipeline.queue_url, clock=clock
    )
    code, text = run(dlq, pipeline, "dlq", "list")
    assert code == 0
    assert len(text.splitlines()) == 22  # header, 20 messages, the note
    assert text.splitlines()[-1].startswith("listed 20 of about 30 messages; the rest stayed")
    listing = json.loads(run(dlq, pipeline, "dlq", "list", "--json")[1])
    assert {row["id"] for row in listing["messages"]} == set(sent) - {m["MessageId"] for m in held}
    assert listing["complete"] is False
    assert depth(pipeline.sqs, pipeline.dlq_url) == (20, 10)  # the other reader's 10 untouched


def test_show_says_when_it_looked_at_only_part_of_the_dlq(pipeline, capsys):
    fill(pipeline.sqs, pipeline.dlq_url, 30)
    dlq = DeadLetterQueue(
        ConcurrentPeekSQS(pipeline.sqs, pipeline.dlq_url), pipeline.dlq_url, pipeline.queue_url
    )
    with pytest.raises(UsageError, match=r"no message no-such-id among the \d+ listed of about 30"):
        run(dlq, pipeline, "dlq", "show", "no-such-id")


def test_redrive_deletes_nothing_it_could_not_send(pipeline):
    fill(pipeline.sqs, pipeline.dlq_url, 30)
    gone = pipeline.queue_url + "-deleted"  # every send fails: the queue does not exist
    dlq = DeadLetterQueue(pipeline.sqs, pipeline.dlq_url, gone)
    with pytest.raises(ClientError, match=r"NonExistentQueue|QueueDoesNotExist"):
        run(dlq, pipeline, "dlq", "redrive", "--event", "message_created")
    # all thirty are still in the DLQ, and visible at once for the next attempt
    assert depth(pipeline.sqs, pipeline.dlq_url) == (30, 0)


class LeftoverCopySQS:
    """The real client, except that the first delete leaves a copy behind.

    SQS standard queues may keep a copy of a deleted message when one of their servers is
    unavailable at the delete; the copy is received again later. Here it is visible at once.
    """

    def __init__(self, sqs, dlq_url):
        self._sqs, self._dlq_url = sqs, dlq_url
        self.left_behind = False

    def delete_message(self, **kwargs):
        if not self.left_behind:
            self.left_behind = True
            return self._sqs.change_message_visibility(
                QueueUrl=self._dlq_url, ReceiptHandle=kwargs["ReceiptHandle"], VisibilityTimeout=0
            )
        return self._sqs.delete_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self._sqs, name)


def test_redrive_never_sends_a_message_twice_when_a_copy_comes_back(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 30)
    sqs = LeftoverCopySQS(pipeline.sqs, pipeline.dlq_url)
    dlq = DeadLetterQueue(sqs, pipeline.dlq_url, pipeline.queue_url)
    code, text = run(dlq, pipeline, "dlq", "redrive", "--event", "message_created")
    assert sqs.left_behind
    assert code == 0 and "Redrove 30 message(s)" in text
    assert sorted(bodies(pipeline.sqs, pipeline.queue_url)) == sorted(sent.values())  # once each
    assert depth(pipeline.sqs, pipeline.dlq_url) == (0, 0)  # the copy is gone too


def test_redrive_of_a_large_dlq_moves_every_message_once(pipeline):
    sent = fill(pipeline.sqs, pipeline.dlq_url, 100)
    dlq = DeadLetterQueue(ShortPollingSQS(pipeline.sqs), pipeline.dlq_url, pipeline.queue_url)
    code, text = run(dlq, pipeline, "dlq", "redrive", "--event", "message_created")
    assert code == 0 and "Redrove 100 message(s)" in text
    assert sorted(bodies(pipeline.sqs, pipeline.queue_url)) == sorted(sent.values())
    assert depth(pipeline.sqs, pipeline.dlq_url) == (0, 0)


def test_a_partial_redrive_says_so_and_leaves_the_rest_in_the_dlq(pipeline):
    fill(pipeline.sqs, pipeline.dlq_url, 100)
    clock = Clock()
    dlq = DeadLetterQueue(
        SlowSQS(pipeline.sqs, clock, seconds=20), pipeline.dlq_url, pipeline.queue_url, clock=clock
    )
    code, text = run(dlq, pipeline, "dlq", "redrive", "--event", "message_created")
    assert code == 1
    moved = len(bodies(pipeline.sqs, pipeline.queue_url))
    assert 0 < moved < 100
    assert f"Redrove {moved} message(s)" in text and "of about 100 messages; " in text
    assert "run it again" in text
    assert depth(pipeline.sqs, pipeline.dlq_url) == (100 - moved, 0)
