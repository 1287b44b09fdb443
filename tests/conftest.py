"""Test-wide settings: no real AWS, ever."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_METRICS_NAMESPACE="SupportPipeline",
    POWERTOOLS_SERVICE_NAME="tests",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    from support_pipeline_ops.local import moto_atomic

    moto_atomic.install()  # DynamoDB's conditional writes are atomic; moto's must be too
    with mock_aws():
        yield


@pytest.fixture
def pipeline(aws: None):
    from tests.support import new_pipeline

    return new_pipeline()


@pytest.fixture
def chatwoot():
    """A fake Chatwoot on loopback with conversation 1 of account 1, labelled by a person, and
    team 7 (the escalation team of the tests' policies; agents 1 and 3 are its members)."""
    from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot

    with FakeChatwoot() as fake:
        fake.add_team(1, 7, "Escalations", members=(1, 3))
        fake.add_conversation(1, 1, labels=["billing"])
        yield fake


@pytest.fixture
def pipeline_logs(monkeypatch: pytest.MonkeyPatch):
    """What the package's loggers print during the test, at INFO, as one growing string buffer.

    Every StreamHandler's emit is redirected here, whichever test created the handler and
    whatever stream it captured then (an earlier test's closed capsys file is the classic trap).
    """
    import io
    import logging

    from aws_lambda_powertools import Logger

    Logger(service="tests")  # the parent the package's child loggers write through
    buffer = io.StringIO()

    def emit(handler: logging.StreamHandler, record: logging.LogRecord) -> None:
        if handler.formatter is not None and "Powertools" in type(handler.formatter).__name__:
            buffer.write(handler.format(record) + "\n")

    monkeypatch.setattr(logging.StreamHandler, "emit", emit)
    # setLevel, not a bare attribute: it also clears the loggers' isEnabledFor caches
    levels = {
        name: logging.getLogger(name).level
        for name in list(logging.root.manager.loggerDict)
        if name == "tests" or name.startswith("tests.")
    }
    for name in levels:
        logging.getLogger(name).setLevel(logging.INFO)
    yield buffer
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
