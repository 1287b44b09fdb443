"""Counting AWS calls: what one processed event or one sweep costs, by operation.

Counted at botocore (an event hook on every client and resource the pipeline uses), so nothing
of the code under test is mocked. Used by `make bench` and by the test that guards the budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def counting(*clients: Any, service: str = "dynamodb") -> Iterator[Counter[str]]:
    """Count ``service`` calls made through ``clients`` (boto3 clients, or resources) by
    operation name while the block runs."""
    counts: Counter[str] = Counter()

    def hook(event_name: str, **_: Any) -> None:
        counts[event_name.rsplit(".", 1)[-1]] += 1

    registered = []
    for client in clients:
        events = (client.meta.client if hasattr(client.meta, "client") else client).meta.events
        events.register(f"before-call.{service}", hook)
        registered.append(events)
    try:
        yield counts
    finally:
        for events in registered:
            events.unregister(f"before-call.{service}", hook)
