"""scripts/sam_local_check.py: discovery of functions and samples, the env-vars file, the local
template and the answer checks of `make sam-local` (no Docker here)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import pytest

from support_pipeline.chatwoot.signature import sign
from support_pipeline_ops.local import template as cfn
from tests.support import ROOT

_spec = importlib.util.spec_from_file_location(
    "sam_local_check", ROOT / "scripts" / "sam_local_check.py"
)
assert _spec and _spec.loader
slc = importlib.util.module_from_spec(_spec)
sys.modules["sam_local_check"] = slc  # dataclasses look their module up
_spec.loader.exec_module(slc)

TEMPLATE = cfn.load(ROOT / "template.yaml")


def function(kind: str, name: str = "Fn") -> slc.LocalFunction:
    return slc.LocalFunction(name, name.lower(), kind, ())


def shot(main: int = 0, dlq: int = 0, items: int = 0, taken=None) -> slc.Snapshot:
    return slc.Snapshot(
        queues={"EventsQueue": main, "EventsDLQ": dlq},
        dead_letter={"EventsDLQ"},
        tables={"ConversationsTable": items},
        taken=taken or {},
    )


# ---- discovery -------------------------------------------------------------------------------


def test_every_function_of_the_template_is_found_with_its_samples_in_invocation_order():
    functions, problems = slc.discover(TEMPLATE, ROOT / "events")
    assert problems == []
    names = [f.logical_id for f in functions]
    declared = [
        name
        for name, spec in TEMPLATE["Resources"].items()
        if spec["Type"] == "AWS::Serverless::Function"
    ]
    assert sorted(names) == sorted(declared)
    kinds = [f.kind for f in functions]
    assert kinds == sorted(kinds, key=slc.KIND_ORDER.__getitem__)  # api, then sqs, then schedule
    by_name = {f.logical_id: f for f in functions}
    assert by_name["IngestFunction"].kind == "api"
    assert by_name["IngestFunction"].api_routes == (("ANY", "/webhooks/chatwoot"),)
    assert by_name["ProcessorFunction"].kind == "sqs"
    assert by_name["SlaSweepFunction"].kind == "schedule"
    assert all(f.events for f in functions)


def test_a_new_function_and_its_events_folder_are_picked_up_without_a_list(tmp_path):
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "a.json").write_text("{}")
    (tmp_path / "signals_export").mkdir()
    (tmp_path / "signals_export" / "weekly.json").write_text("{}")
    template = {
        "Resources": {
            "IngestFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "functions/ingest", "Events": {"W": {"Type": "HttpApi"}}},
            },
            "SignalsExportFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "functions/signals_export",
                    "Events": {"S": {"Type": "Schedule"}},
                },
            },
        }
    }
    functions, problems = slc.discover(template, tmp_path)
    assert problems == []
    assert [(f.logical_id, f.kind, [p.name for p in f.events]) for f in functions] == [
        ("IngestFunction", "api", ["a.json"]),
        ("SignalsExportFunction", "schedule", ["weekly.json"]),
    ]


def test_orphan_events_folders_and_functions_without_samples_are_problems(tmp_path):
    (tmp_path / "stray").mkdir()
    template = {
        "Resources": {
            "LonelyFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "functions/lonely"},
            }
        }
    }
    _, problems = slc.discover(template, tmp_path)
    assert problems == [
        "LonelyFunction has no sample event in events/lonely/",
        "events/stray/ belongs to no function of the template",
    ]


def test_the_dlq_is_the_queue_a_redrive_policy_names():
    assert slc.dead_letter_queues(TEMPLATE) == {"EventsDLQ"}


# ---- env-vars file and local template ----------------------------------------------------------


def test_env_vars_point_every_function_at_moto_and_report_what_events_env_json_lacks():
    sample = {"A": {"X": "1", "QUEUE": "http://127.0.0.1:5005/q"}}
    resolved = {"A": {"QUEUE": "http://172.17.0.1:4000/q", "Y": "2"}, "B": {"Z": "3"}}
    env, notes = slc.env_vars_file(sample, resolved, "http://172.17.0.1:4000")
    assert env == {
        "A": {
            "X": "1",
            "QUEUE": "http://172.17.0.1:4000/q",
            "Y": "2",
            "AWS_ENDPOINT_URL": "http://172.17.0.1:4000",
        },
        "B": {"Z": "3", "AWS_ENDPOINT_URL": "http://172.17.0.1:4000"},
    }
    assert notes == ["events/env.json lacks Y for A", "events/env.json has no entry for B"]


def test_the_local_template_declares_the_endpoint_variable_and_leaves_the_build_alone():
    built = json.loads(json.dumps(TEMPLATE))
    local = slc.local_template(built, timeout=180)
    assert local["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == ""
    assert local["Resources"]["IngestFunction"]["Properties"]["Timeout"] == 180
    assert "AWS_ENDPOINT_URL" not in built["Globals"]["Function"]["Environment"]["Variables"]
    untimed = slc.local_template(built)
    assert untimed["Resources"]["IngestFunction"]["Properties"]["Timeout"] == {
        "Ref": "IngestTimeoutSeconds"
    }


def test_artifact_dirs_map_functions_to_var_task_and_layers_to_opt():
    built = {
        "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "F"}},
            "L": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "L"}},
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    assert slc.artifact_dirs(built) == [("F", "/var/task"), ("L", "/opt")]


# ---- samples and posts -------------------------------------------------------------------------


def genuine(secret, headers, body):
    stamp = headers.get("x-chatwoot-timestamp", "")
    return (
        stamp.isdigit()
        and abs(int(stamp) - time.time()) < 300
        and headers.get("x-chatwoot-signature") == sign(secret, int(stamp), body)
    )


def test_samples_are_signed_afresh_and_bad_posts_are_not_genuine():
    event = json.loads((ROOT / "events" / "ingest" / "message_created.json").read_text())
    signed = slc.signed_copy(event, "s3cret")
    assert genuine("s3cret", signed["headers"], signed["body"].encode())
    assert not genuine("s3cret", event["headers"], event["body"].encode())  # the placeholder
    posts = slc.bad_posts(event, "s3cret")
    assert [name for name, *_ in posts] == [
        "bad_tampered_body",
        "bad_stale_timestamp",
        "bad_wrong_secret",
        "bad_unsigned",
        "bad_method_get",
    ]
    for name, method, headers, body in posts:
        assert method == "GET" or not genuine("s3cret", headers, body), name


def test_unsigned_samples_stay_unsigned():
    event = json.loads((ROOT / "events" / "ingest" / "rejected_unsigned.json").read_text())
    assert "x-chatwoot-signature" not in slc.signed_copy(event, "s3cret")["headers"]


# ---- answer checks -----------------------------------------------------------------------------

QUEUED = {"EventsQueue": [{"delivery_id": "d-1", "signed": "true"}]}


@pytest.mark.parametrize(
    ("status", "sample", "after", "problem"),
    [
        (202, "message_created", shot(main=1, taken=QUEUED), None),
        (202, "message_created", shot(main=0), "expected one new message on the queue, found 0"),
        (202, "message_created", shot(main=2, taken=QUEUED), "found 2"),
        (
            202,
            "message_created",
            shot(main=1, taken={"EventsQueue": [{"delivery_id": "other", "signed": "true"}]}),
            "no queued message carries delivery id d-1",
        ),
        (
            202,
            "message_created",
            shot(main=1, taken={"EventsQueue": [{"delivery_id": "d-1", "signed": "false"}]}),
            "not marked signed=true",
        ),
        (500, "message_created", shot(), "expected 202 (queued), got 500"),
        (200, "typing_on", shot(), None),
        (401, "rejected_unsigned", shot(), None),
        (400, "bad_tampered_body", shot(), None),
        (202, "rejected_unsigned", shot(main=1), "expected a 4xx, got 202"),
        (401, "bad_stale_timestamp", shot(main=1), "a refused post enqueued 1 message(s)"),
    ],
)
def test_webhook_answers(status, sample, after, problem):
    found = slc.check_http(status, sample, "d-1", shot(), after)
    assert (found is None) if problem is None else (problem in found)


def test_an_api_answer_without_status_code_is_a_failure():
    problem = slc.check_answer(function("api"), "x", {"errorType": "Boom"}, shot(), shot())
    assert "Boom" in problem


@pytest.mark.parametrize(
    ("sample", "answer", "after", "problem"),
    [
        ("conversation_batch", {"batchItemFailures": []}, shot(items=3), None),
        (
            "conversation_batch",
            {"batchItemFailures": [{"itemIdentifier": "1"}]},
            shot(items=3),
            "batch item failures",
        ),
        ("conversation_batch", {}, shot(items=3), "batch item failures: missing"),
        ("conversation_batch", {"batchItemFailures": []}, shot(items=0), "wrote nothing"),
        (
            "conversation_batch",
            {"batchItemFailures": []},
            shot(dlq=1, items=3),
            "dead-lettered from a good batch",
        ),
        (
            "poison_to_dlq",
            {"batchItemFailures": []},
            shot(
                dlq=1, taken={"EventsDLQ": [{"error_type": "PermanentError", "error_reason": "x"}]}
            ),
            None,
        ),
        ("poison_to_dlq", {"batchItemFailures": []}, shot(), "did not reach the DLQ"),
        (
            "poison_to_dlq",
            {"batchItemFailures": []},
            shot(dlq=1, taken={"EventsDLQ": [{"event": "x"}]}),
            "no error_type/error_reason",
        ),
        (
            "conversation_batch",
            {"errorType": "ImportError", "errorMessage": "no"},
            shot(),
            "ImportError",
        ),
    ],
)
def test_queue_consumer_answers(sample, answer, after, problem):
    found = slc.check_answer(function("sqs"), sample, answer, shot(), after)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    ("answer", "after", "problem"),
    [
        ({"conversations": 1, "at_risk": 1, "failed": 0}, shot(items=2), None),
        ({"conversations": 0, "failed": 0}, shot(items=2), "saw no conversation"),
        ({"conversations": 2, "failed": 1}, shot(items=2), "1 failed"),
        ({"conversations": 1, "failed": 0}, shot(items=0), "recorded no (dry-run) action"),
        # the weekly report: an empty week is fine once it is written and announced
        (
            {"period": "2026-W38", "keys": {"a": "b"}, "message_id": "m", "conversations": 0},
            shot(),
            None,
        ),
        (
            {"period": "2026-W38", "keys": {}, "conversations": 4},
            shot(),
            "not written and announced",
        ),
        ({"exported": 12}, shot(), None),  # another scheduled function: no error, nothing failed
        ({"exported": 3, "failed": 2}, shot(), "2 failed"),
        ("not an object", shot(), "not a JSON object"),
    ],
)
def test_scheduled_answers(answer, after, problem):
    found = slc.check_answer(function("schedule"), "scheduled", answer, shot(), after)
    assert (found is None) if problem is None else (problem in found)
