"""With nothing configured, every ops verb that needs AWS names the missing setting in one line
and exits non-zero: real processes, a clean environment, no AWS configuration files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "support-pipeline"

VERBS = [
    (["dlq", "list"], "EVENTS_QUEUE_URL and EVENTS_DLQ_URL"),
    (["dlq", "show", "m-1"], "EVENTS_QUEUE_URL and EVENTS_DLQ_URL"),
    (["dlq", "redrive", "--all", "--dry-run"], "EVENTS_QUEUE_URL and EVENTS_DLQ_URL"),
    (["dlq", "purge", "--yes"], "EVENTS_QUEUE_URL and EVENTS_DLQ_URL"),
    (["actions", "list"], "ACTIONS_TABLE"),
    (["conversations", "list"], "CONVERSATIONS_TABLE and ACTIONS_TABLE"),
    (["conversations", "show", "1", "1"], "CONVERSATIONS_TABLE and ACTIONS_TABLE"),
    (["signals", "gaps"], "CONVERSATIONS_TABLE"),
    (["drafts", "list"], "CONVERSATIONS_TABLE"),
    (["report", "--week", "2026-W39"], "CONVERSATIONS_TABLE"),
    (["reconcile"], "CONVERSATIONS_TABLE and EVENTS_QUEUE_URL"),
    (["pause", "--reason", "INC-1"], "PAUSE_PARAM"),
    (["resume"], "PAUSE_PARAM"),
    (["status"], "PAUSE_PARAM"),
]


def run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.aws/config to find a region in
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        **env,
    }
    return subprocess.run(
        [str(CLI), *argv], env=clean, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("argv", "variables"), VERBS, ids=[" ".join(v[0]) for v in VERBS])
def test_with_nothing_configured_the_missing_settings_are_named_in_one_line(
    argv, variables, tmp_path
):
    done = run(argv, tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "You must specify a region" not in line and "Traceback" not in line
    assert "AWS_REGION or --region" in line
    assert "--stack NAME or SUPPORT_PIPELINE_STACK" in line and variables in line


def test_a_region_alone_leaves_only_the_pipeline_missing(tmp_path):
    done = run(["dlq", "list"], tmp_path, AWS_REGION="eu-west-1")
    assert done.returncode == 2
    assert "AWS_REGION" not in done.stderr and "--stack NAME" in done.stderr


def test_a_stack_alone_leaves_only_the_region_missing(tmp_path):
    done = run(["actions", "list"], tmp_path, SUPPORT_PIPELINE_STACK="support-pipeline")
    assert done.returncode == 2
    assert "AWS_REGION or --region" in done.stderr and "--stack" not in done.stderr


def test_pause_with_a_region_but_no_stack_or_parameter_refuses_to_write_the_default(tmp_path):
    done = run(["pause", "consume"], tmp_path, AWS_REGION="eu-west-1")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "--stack NAME or SUPPORT_PIPELINE_STACK" in line and "PAUSE_PARAM" in line
    assert "AWS said" not in line and "AWS_REGION" not in line


def test_verbs_without_aws_need_no_settings(tmp_path):
    done = run(["policy", "validate"], tmp_path)
    assert done.returncode == 0, done.stderr
