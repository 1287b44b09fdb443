"""Make moto's DynamoDB writes atomic, as DynamoDB's are.

DynamoDB checks a ConditionExpression and writes the item as one atomic step. moto checks and
writes in plain Python, so two threads (two "Lambda instances" in a test, or the local stack's
threads) can both pass the same condition. That would make a concurrency test fail for a reason
AWS does not have, or worse, hide a race by luck. One lock around each write restores the
guarantee the pipeline relies on. Reads take the same lock: moto changes a stored item in place,
so a read during a write could see half of it, which DynamoDB never shows.

SQS likewise: moto picks visible messages and marks them received in two steps, so two pollers
receiving at once (the local stack runs several, as Lambda runs several batches) could both get
one message, which SQS does not do within the visibility timeout. Receives, deletes, visibility
changes and sends take one lock; a long poll waits outside it.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_SQS_LOCK = threading.RLock()
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
    _install_sqs()


_SQS_OPERATIONS = (
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def _install_sqs() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    for name in _SQS_OPERATIONS:
        original = getattr(SQSBackend, name, None)
        if original is None or getattr(original, "_atomic", False):
            continue

        @functools.wraps(original)
        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _SQS_LOCK:
                return __original(self, *args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(SQSBackend, name, atomic)

    receive = SQSBackend.receive_message
    if getattr(receive, "_atomic", False):
        return

    @functools.wraps(receive)
    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        # moto's own loop, with each attempt atomic and the waiting between attempts unlocked.
        end = unix_time() + (wait_seconds_timeout or 0)
        while True:
            with _SQS_LOCK:
                found = receive(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            left = end - unix_time()
            if found or left <= 0:
                return found
            self.get_queue(queue_name).wait_for_messages(min(1.0, left))

    receive_message._atomic = True  # type: ignore[attr-defined]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
