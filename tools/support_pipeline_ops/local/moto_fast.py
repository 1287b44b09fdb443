"""Take the O(everything) out of moto's hot paths, keeping what each call does.

Under load the local stack spent its time in moto, not in the pipeline, and got slower the more
it held (docs/benchmarks.md, "Local stack end to end"):

- ``TransactWriteItems`` deep-copied every table it touched, all items, to roll back a failed
  transaction: O(table) per event. Here it keeps a copy of the items the transaction names
  (DynamoDB's own unit of isolation) and puts exactly those back when the transaction fails.
- ``ReceiveMessage`` asked for the queue's retention period through ``GetQueueAttributes`` for
  every message it returned, and each such lookup recomputed every attribute of the queue,
  counting all its messages three times: O(queue) per message received. It now reads the
  attribute; ``GetQueueAttributes`` computes the queue's attributes once per call.
- Visibility and delay checks read the clock once per message; they read it once per call.
- ``DeleteMessage`` walked the queue twice per receipt handle; it walks it once.

Every patch does what moto did, on the same clock (moto's own, so frozen time still works), and
the test suite runs against the patched moto too (the e2e tests start a local stack). Installed
once per process by the local stack; idempotent. Pinned to the moto version in pyproject.toml:
each patch checks the function it replaces is moto's and leaves anything else alone.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

_INSTALLED = False


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _patch_transactions()
    _patch_sqs()
    _patch_responses()
    _patch_dispatch()
    _INSTALLED = True


# ---- DynamoDB ------------------------------------------------------------------------------
class _TablesByReference:
    """Stands in for ``copy`` inside moto's DynamoDB backend: a table is "copied" by reference
    (the transaction wrapper below keeps copies of the items instead); anything else is copied
    as before."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _patch_transactions() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    from support_pipeline_ops.local import moto_atomic

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "_item_rollback", False):
        return
    models.copy = _TablesByReference(Table)  # type: ignore[attr-defined, assignment]

    def keys_of(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
        """(table, hash, range) of every item the transaction names, as DynamoTypes."""
        found = []
        for entry in transact_items:
            try:
                _, op = next(iter(entry.items()))
                table = backend.tables.get(op.get("TableName"))
                if table is None:
                    continue
                source = op["Item"] if "Item" in op else op["Key"]
                hash_value = DynamoType(source[table.hash_key_attr])
                range_value = (
                    DynamoType(source[table.range_key_attr])
                    if table.range_key_attr is not None
                    else None
                )
            except (AttributeError, KeyError, StopIteration, TypeError, ValueError):
                continue  # moto refuses it before writing anything
            found.append((table, hash_value, range_value))
        return found

    def stored(table: Any, hash_value: Any, range_value: Any) -> Any:
        if range_value is None:
            return table.items.get(hash_value)
        return table.items.get(hash_value, {}).get(range_value)

    def put_back(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
            return
        if item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        # Under moto_atomic's lock (reentrant): the copies, the transaction and any rollback
        # are one step for every other thread.
        with moto_atomic._LOCK:
            keys = keys_of(self, transact_items)
            saved = [(t, h, r, copy.deepcopy(stored(t, h, r))) for t, h, r in keys]
            try:
                original(self, transact_items)
            except Exception:
                for table, hash_value, range_value, item in reversed(saved):
                    put_back(table, hash_value, range_value, item)
                raise

    transact_write_items._item_rollback = True  # type: ignore[attr-defined]
    transact_write_items._atomic = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


# ---- SQS -----------------------------------------------------------------------------------
def _patch_sqs() -> None:
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs import models
    from moto.sqs.models import Queue, SQSBackend

    if getattr(vars(Queue)["messages"].fget, "_fast", False):  # marked on the getter
        return

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def visible(self: Any) -> int:
        return len(messages(self))

    for name, getter in (
        ("messages", messages),
        ("approximate_number_of_messages_delayed", delayed),
        ("approximate_number_of_messages_not_visible", not_visible),
        ("approximate_number_of_messages", visible),
    ):
        getter._fast = True  # type: ignore[attr-defined, union-attr]
        setattr(Queue, name, property(getter))

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: SQS accepts it again
        for index, message in enumerate(self._messages):
            if receipt_handle == message.receipt_handle or (
                receipt_handle in message._old_receipt_handles
            ):
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                del self._messages[index]
                return
        raise models.ReceiptHandleIsInvalid()

    Queue.delete_message = delete_message  # type: ignore[method-assign]

    def retention_ok(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = retention_ok  # type: ignore[method-assign]

    original_attributes = SQSBackend.get_queue_attributes

    @functools.wraps(original_attributes)
    def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> Any:
        if not attribute_names or "All" in attribute_names:
            return original_attributes(self, queue_name, attribute_names)
        queue = self.get_queue(queue_name)
        valid = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
        invalid = next((name for name in attribute_names if name not in valid), None)
        if invalid is not None:
            return original_attributes(self, queue_name, attribute_names)  # moto's error
        everything = queue.attributes  # computed once, not twice per name asked for
        return {
            name: everything[name]
            for name in attribute_names
            if name in everything and everything[name] is not None
        }

    SQSBackend.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]


# ---- responses -----------------------------------------------------------------------------
# Successful DynamoDB answers of these operations are plain JSON already (moto turns its items
# into AttributeValue dicts first); moto's generic serializer walked them attribute by attribute
# against the service model to produce the same text. Binary attributes are left to it.
_PLAIN_DYNAMODB_OUTPUTS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "TransactGetItems",
        "Query",
        "Scan",
        "BatchWriteItem",
        "BatchGetItem",
    }
)


def _patch_responses() -> None:
    import json

    from moto.core import responses
    from moto.dynamodb.responses import DynamoResult

    if getattr(DynamoResult.execute_result, "_fast", False):
        return
    original = DynamoResult.execute_result

    @functools.wraps(original)
    def execute_result(self: Any, context: Any) -> Any:
        operation = context.operation_model
        if operation.name in _PLAIN_DYNAMODB_OUTPUTS and isinstance(self.result, dict):
            body = json.dumps(self.result)
            if '{"B": ' not in body and '"BS": ' not in body:
                version = operation.service_model.metadata.get("jsonVersion", "1.0")
                return 200, {"Content-Type": f"application/x-amz-json-{version}"}, body
        return original(self, context)

    execute_result._fast = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign]

    # Which actions a response class has: asked on every request, the same every time.
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)


# ---- dispatch ------------------------------------------------------------------------------
def _patch_dispatch() -> None:
    """Two things moto's server recomputed on every request, each the same every time:

    - which backend a request is for: moto's server asks it twice per request, and the second
      time listed moto's package directory (a ``listdir`` and a ``stat`` per entry, about
      200): about 0.3 to 1.3 ms a call on a small machine. The directory is the installed
      package; it does not change while the process runs. The list is read once.
    - the Python name of each action and queue attribute (``GetItem`` to ``get_item``), built a
      character at a time. A pure function of a short, bounded set of names: cached.
    """
    from moto import backends
    from moto.core import responses, utils
    from moto.sqs import models as sqs_models

    if getattr(backends.list_of_moto_modules, "_fast", False):
        return
    if backends.list_of_moto_modules.__module__ != "moto.backends":
        return  # not moto's function (another patch's): left alone
    snake = functools.lru_cache(maxsize=4096)(utils.camelcase_to_underscores)
    for module in (utils, responses, sqs_models):
        module.camelcase_to_underscores = snake  # type: ignore[attr-defined]
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    list_of_moto_modules._fast = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]
