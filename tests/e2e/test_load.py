"""`support-pipeline load` against a real started local stack, and when there is none."""

import io
import json

import pytest

from support_pipeline_ops.cli import main as cli_main
from support_pipeline_ops.local.stack import free_port
from tests.e2e.stacks import running_stack
from tests.support import FIXTURES

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-the-load-command"  # invented


@pytest.fixture(scope="module")
def local():
    # moto servers in one process share their state: a stack name of its own
    with running_stack(SECRET, stack_name="e2e-load") as stack:
        yield stack


def load(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli_main(["load", "--fixtures", str(FIXTURES), *args], out=out)
    return code, out.getvalue()


def test_every_accepted_webhook_is_processed_or_dead_lettered(local):
    code, text = load(
        "--events", "200", "--concurrency", "4", "--url", local.webhook_url,
        "--secret", SECRET, "--json",
    )  # fmt: skip
    assert code == 0, text
    summary = json.loads(text[text.index("{\n") :])
    assert summary["answers"] == {"202": 200}
    assert summary["accepted"] == 200
    assert summary["accepted"] == summary["processed"] + summary["dead_lettered"]
    assert summary["processed"] == 200 and summary["settled"]
    assert summary["pipeline_events"] > 0  # the waiting questions' drafts came due and ran
    assert "OK: every accepted webhook was processed or dead-lettered." in text
    # not a TTY: progress comes as whole lines, never carriage returns
    assert "\r" not in text and "settled: posted 200/200" in text

    status = local.status()
    assert status["queued"] == 0 and status["dead_lettered_webhooks"] == 0

    # a second run against the same stack uses fresh ids: nothing is swallowed as a duplicate
    code, text = load("--events", "30", "--url", local.webhook_url, "--secret", SECRET)
    assert code == 0, text
    assert "accepted 30 = processed 30 + dead-lettered 0" in text


def test_a_wrong_secret_is_reported_as_posts_not_accepted(local):
    code, text = load("--events", "5", "--url", local.webhook_url, "--secret", "not-the-secret")
    assert code == 1
    assert "MISMATCH: 5 post(s) were not accepted" in text
    assert "'401': 5" in text


def test_no_stack_running_is_one_clear_line_and_a_non_zero_exit(capsys):
    port = free_port()
    code, text = load("--events", "10", "--url", f"http://127.0.0.1:{port}/webhooks/chatwoot",
                      "--secret", SECRET)  # fmt: skip
    assert code == 2 and text == ""
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"support-pipeline: no local stack answers at http://127.0.0.1:{port}")
    assert "make run" in error


def test_no_secret_is_refused_before_anything_is_posted(capsys, monkeypatch):
    monkeypatch.delenv("CHATWOOT_WEBHOOK_SECRET", raising=False)
    code, _ = load("--events", "10")
    assert code == 2
    assert "--secret or $CHATWOOT_WEBHOOK_SECRET" in capsys.readouterr().err
