"""What the logs say (ids, never customer text) and the ops paths not covered elsewhere."""

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from support_pipeline_ops.cli import Queues, run_dlq
from support_pipeline_ops.dlq import DeadLetterQueue
from tests.support import ALL_FIXTURES, ROOT, fixture

CUSTOMER_TEXT = ["Ana Prueba", "15550100001", "anillo", "agent@example.test", "Aurora"]


def test_logs_carry_ids_and_outcomes_never_customer_text(pipeline, pipeline_logs):
    for name in ALL_FIXTURES:
        assert pipeline.post(fixture(name), delivery_id=f"log-{name}")[0] == 202
    poison = fixture("message_created_incoming")
    del poison["id"]
    pipeline.post(poison, delivery_id="log-poison")
    pipeline.post(b"garbage")
    pipeline.drain()
    logs = pipeline_logs.getvalue()
    assert "log-message_created_incoming" in logs  # delivery ids are there
    assert "message_created:1:1" in logs  # dedupe keys are there
    assert "event moved to the DLQ" in logs and "webhook refused" in logs
    for text in CUSTOMER_TEXT:
        assert text not in logs, text


class MoveTaskSQS:
    """An SQS endpoint that supports StartMessageMoveTask (AWS does; moto does not)."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, str]] = []

    def start_message_move_task(self, **kwargs: str) -> dict[str, str]:
        self.tasks.append(kwargs)
        return {"TaskHandle": "task-123"}

    # An empty DLQ for the peek that comes first (the permanent-failure warning).
    def get_queue_attributes(self, **kwargs: object) -> dict[str, dict[str, str]]:
        return {"Attributes": {}}

    def receive_message(self, **kwargs: object) -> dict[str, list[object]]:
        return {"Messages": []}


def test_redrive_all_uses_sqs_message_move_task_where_supported():
    sqs = MoveTaskSQS()
    queues = Queues("q-url", "dlq-url", "arn:q", "arn:dlq", "")
    args = type(
        "Args",
        (),
        {"dlq_command": "redrive", "all": True, "id": None, "event": None, "dry_run": False},
    )()
    out = io.StringIO()
    assert run_dlq(args, DeadLetterQueue(sqs, "dlq-url", "q-url"), queues, out) == 0
    assert sqs.tasks == [{"SourceArn": "arn:dlq", "DestinationArn": "arn:q"}]
    assert "task-123" in out.getvalue()


@pytest.mark.e2e
def test_the_readme_run_command_starts_prints_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    from support_pipeline_ops.local.stack import free_port

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "support_pipeline_ops.cli",
            "local",
            "--port",
            str(free_port()),
            "--moto-port",
            str(free_port()),
            "--secret",
            "run-command-secret",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    banner = "".join(lines)
    assert "Webhook URL:     http://127.0.0.1:" in banner
    assert "Webhook secret:  run-command-secret" in banner
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in banner
    assert "Report:          http://127.0.0.1:" in banner and "/_local/report" in banner
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Stopped." in rest
