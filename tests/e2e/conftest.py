"""End-to-end modules share a worker process: each starts a local stack whose moto server keeps
its state in the process's moto backends, which outlive the server. Each module starts from a
clean state (a second stack in one process would find the first one's tables)."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def clean_moto_state() -> Iterator[None]:
    from moto.moto_api._internal import moto_api_backend

    moto_api_backend.reset()
    yield
    moto_api_backend.reset()
