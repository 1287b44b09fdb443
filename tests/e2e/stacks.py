"""Local stacks for the end-to-end tests: started on free ports, stopped, environment restored."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from support_pipeline_ops.local.stack import LocalStack
from tests.support import ROOT, SHIPPED_POLICY


@contextmanager
def running_stack(secret: str, **options: Any) -> Iterator[LocalStack]:
    """A started local stack on free ports (moto's too), no scheduled sweep; stopped after, and
    the environment it exported put back as it was. ``options`` go to LocalStack."""
    saved = dict(os.environ)
    stack = LocalStack(
        template_path=ROOT / "template.yaml",
        secret=secret,
        **{"port": 0, "moto_port": 0, "sweep_every": 0, **options},
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def policy_file(
    tmp_path_factory: pytest.TempPathFactory, change: Callable[[dict[str, Any]], None]
) -> Path:
    """The shipped policy, changed by ``change(policy)``, written to a temporary file."""
    policy = yaml.safe_load(SHIPPED_POLICY.read_text())
    change(policy)
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path
