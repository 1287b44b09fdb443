"""`support-pipeline dlq ...` against the moto server the local stack runs, over real HTTP.

In-process moto and the moto server differ: in process, an operation moto lacks raises
NotImplementedError inside the client; the server answers it with an HTTP 500 and an HTML page.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from support_pipeline_ops.cli import main
from support_pipeline_ops.dlq import DeadLetterQueue
from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.stack import free_port
from tests.integration.test_dlq_cli import bodies, depth, fill
from tests.support import ROOT

CLI = Path(sys.executable).with_name("support-pipeline")


@pytest.fixture(scope="module")
def endpoint():
    """A ThreadedMotoServer on loopback, as `make run` starts it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


@pytest.fixture
def server(endpoint):
    """The template's queues on a freshly reset server, provisioned as `make run` does."""
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    clients = {
        name: boto3.client(
            name,
            endpoint_url=endpoint,
            region_name=cfn.REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        for name in ("sqs", "dynamodb", "s3", "ssm")
    }
    stack = cfn.provision(
        cfn.load(ROOT / "template.yaml"),
        clients,
        stack_name="support-pipeline-local",
        secrets={"WebhookSecretParamName": "server-test-secret"},
    )
    # what `support-pipeline local` prints for the ops CLI (LocalStack.exports)
    exports = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": cfn.REGION,
        "EVENTS_QUEUE_URL": stack.physical["EventsQueue"],
        "EVENTS_DLQ_URL": stack.physical["EventsDLQ"],
        "PAYLOAD_BUCKET": stack.physical["PayloadBucket"],
    }
    return clients["sqs"], exports


@pytest.fixture
def queues(server, monkeypatch):
    """The empty queues, and this process's environment pointing at the server."""
    sqs, exports = server
    for name, value in exports.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return sqs, exports["EVENTS_QUEUE_URL"], exports["EVENTS_DLQ_URL"]


def test_the_moto_server_answers_start_message_move_task_with_a_bare_http_500(queues):
    sqs, queue_url, dlq_url = queues

    def arn(url):
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    with pytest.raises(ClientError) as raised:
        sqs.start_message_move_task(SourceArn=arn(dlq_url), DestinationArn=arn(queue_url))
    answer = raised.value.response
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert answer["Error"]["Code"] == "500"  # no AWS error code: an HTML page, not an AWS error
    assert "Internal Server Error" in answer["Error"]["Message"]
    # ...which the DLQ treats as "this endpoint has no move task"
    dlq = DeadLetterQueue(sqs, dlq_url, queue_url)
    assert dlq.start_move_task(arn(dlq_url), arn(queue_url)) is None


def test_redrive_all_through_main_moves_every_message_back(queues):
    sqs, queue_url, dlq_url = queues
    sent = fill(sqs, dlq_url, 100)
    out = io.StringIO()
    assert main(["dlq", "redrive", "--all"], out=out) == 0
    text = out.getvalue()
    assert "This endpoint has no StartMessageMoveTask; moving messages one by one." in text
    assert "Redrove 100 message(s)." in text
    assert depth(sqs, dlq_url) == (0, 0)
    assert sorted(bodies(sqs, queue_url)) == sorted(sent.values())


def test_dlq_list_as_a_real_command_with_the_local_stacks_exports(server, queues):
    sqs, queue_url, dlq_url = queues
    sent = fill(sqs, dlq_url, 100)
    _, exports = server
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(exports)
    done = subprocess.run(
        [str(CLI), "dlq", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "EVENT", "ACCOUNT", "CONVERSATION", "ERROR_TYPE"]
    assert {line.split()[0] for line in lines[1:]} == set(sent)  # every message, once
    assert len(lines) == 101  # the header and each message, no note

    done = subprocess.run(
        [str(CLI), "dlq", "list", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["complete"] is True and listing["listed"] == 100
    assert depth(sqs, dlq_url) == (100, 0)  # listing consumed nothing
    assert depth(sqs, queue_url) == (0, 0)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("AWS.SimpleQueueService.NonExistentQueue", 400),
        ("InternalError", 500),
    ],
)
def test_real_aws_errors_from_the_move_task_are_not_taken_for_a_missing_operation(code, status):
    sqs = boto3.client("sqs", region_name="us-east-1")
    with Stubber(sqs) as stub:
        stub.add_client_error(
            "start_message_move_task",
            service_error_code=code,
            service_message="refused",
            http_status_code=status,
        )
        dlq = DeadLetterQueue(sqs, "https://sqs.example/dlq", "https://sqs.example/q")
        with pytest.raises(ClientError) as raised:
            dlq.start_move_task("arn:aws:sqs:us-east-1:1:dlq", "arn:aws:sqs:us-east-1:1:q")
        stub.assert_no_pending_responses()
    assert raised.value.response["Error"]["Code"] == code
