"""Make moto's DynamoDB writes atomic, as DynamoDB's are.

DynamoDB checks a ConditionExpression and writes the item as one atomic step. moto checks and
writes in plain Python, so two threads (two "Lambda instances" in a test, or the local stack's
threads) can both pass the same condition. That would make a concurrency test fail for a reason
AWS does not have, or worse, hide a race by luck. One lock around each write restores the
guarantee the pipeline relies on. Reads take the same lock: moto changes a stored item in place,
so a read during a write could see half of it, which DynamoDB never shows.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
    "get_item",
    "query",
    "scan",
)


def install() -> None:
    """Wrap the DynamoDB backend's reads and writes in one process-wide lock (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPERATIONS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None or getattr(original, "_atomic", False):
            continue

        @functools.wraps(original)
        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return __original(self, *args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)
