"""`support-pipeline conversations` as a real process against the local stack, with the exports
it prints: what a newcomer types after `make run`."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.stacks import running_stack
from tests.support import NOW, body_of, incoming, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-conversations"  # invented
CLI = Path(sys.executable).parent / "support-pipeline"


@pytest.fixture(scope="module")
def local():
    with running_stack(SECRET, sweep_every=None) as stack:
        yield stack


def cli(local, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(local.exports())
    return subprocess.run(
        [str(CLI), *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_refund_request_is_shown_escalated_with_its_dry_run_actions(local):
    payload = incoming("I want a refund, please", 501, NOW, conversation_id=51, status="open")
    body = body_of(payload)
    headers = signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id="conv-e2e")
    assert (
        requests.post(local.webhook_url, data=body, headers=headers, timeout=5).status_code == 202
    )
    local.wait_until_settled(timeout=20)

    listed = cli(local, "conversations", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["conversations"]
    assert ("1", "51", "open") in {
        (r["account_id"], r["conversation_id"], r["status"]) for r in rows
    }

    shown = cli(local, "conversations", "show", "1", "51")
    assert shown.returncode == 0, shown.stderr
    assert "Escalation: escalated" in shown.stdout and "asks_for_human" in shown.stdout
    assert "first_response" in shown.stdout and "Dry run:" in shown.stdout

    missing = cli(local, "conversations", "show", "1", "999")
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "support-pipeline: no conversation 1/999 in the table"
    )
