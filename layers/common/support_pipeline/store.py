"""DynamoDB access for conversation records and their timelines.

One table, keyed for the queries the support features make:

- ``pk = CONV#<account>#<conversation>``: ``sk = RECORD`` holds the conversation record;
  ``sk = EVENT#<occurred_at>#<digest>`` holds one timeline item per accepted event.
- GSI ``ByAccountDay`` (``account_day = <account>#<YYYY-MM-DD>``, ``occurred_key``): every
  timeline item of an account on a day (the local date in the support policy's time zone), for
  daily and weekly reports without a scan.
- GSI ``OpenConversations`` (``open_account = <account>``, ``waiting_since_key``): sparse;
  only records of open, pending or snoozed conversations carry ``open_account`` (ops listings,
  the weekly report).
- GSI ``DueConversations`` (``due_account = <account>``, ``next_due``): sparse; only records
  with an SLA moment still to act on carry it, so the SLA sweep reads just what is due now.
- GSI ``PendingDrafts`` (``pending_account``, ``created_key``): drafts awaiting a decision.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from support_pipeline.chatwoot.payload import canonical_id
from support_pipeline.chatwoot.payload import iso as cw_iso
from support_pipeline.processing.errors import PermanentError, TransientError

RECORD_SK = "RECORD"
STATE_PREFIX = "STATE#"
ACCOUNTS_PK = "ACCOUNTS"
SWEEP_PK = "SWEEP"
RECONCILE_PK = "RECONCILE"
EVENT_PREFIX = "EVENT#"
BY_ACCOUNT_DAY = "ByAccountDay"
OPEN_CONVERSATIONS = "OpenConversations"
DUE_CONVERSATIONS = "DueConversations"


def key_id(value: str, name: str) -> str:
    """``value`` as a canonical positive-integer id, fit to be part of a key.

    Anything else (a ``#`` that would shift the key's parts, ``01`` that would split one
    conversation in two, an empty string) is a PermanentError, not a ValueError: it comes from a
    payload or a record made from one, can never succeed on a retry, and so goes to the DLQ at
    once with this reason instead of being retried as an unexpected error.
    """
    canonical = canonical_id(value)
    if canonical is None:
        raise PermanentError("invalid_payload", f"{name} id is not a positive integer")
    return canonical


def conversation_pk(account_id: str, conversation_id: str) -> str:
    return f"CONV#{key_id(account_id, 'account')}#{key_id(conversation_id, 'conversation')}"


def timeline_sk(occurred_at_iso: str, dedupe_key: str) -> str:
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:16]
    return f"{EVENT_PREFIX}{occurred_at_iso}#{digest}"


def account_day(account_id: str, epoch: float, zone: tzinfo = UTC) -> str:
    """The ``ByAccountDay`` key of a timeline item: ``<account>#<YYYY-MM-DD>``, the local date
    of ``epoch`` in ``zone`` (the support policy's time zone, where reports count days)."""
    return f"{account_id}#{datetime.fromtimestamp(epoch, zone).date().isoformat()}"


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB refuses floats); containers are converted deeply."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Decimals back to int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def put_if(table: Any, item: dict[str, Any], condition: Any) -> bool:
    """Put ``item`` (None values dropped) if ``condition`` holds; False when it does not."""
    try:
        table.put_item(
            Item=to_dynamo({k: v for k, v in item.items() if v is not None}),
            ConditionExpression=condition,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


class ConversationStore:
    """Reads and writes conversation records and timeline items."""

    def __init__(self, dynamodb_resource: Any, table_name: str) -> None:
        self._table = dynamodb_resource.Table(table_name)

    def get_record(self, account_id: str, conversation_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(
            Key={"pk": conversation_pk(account_id, conversation_id), "sk": RECORD_SK},
            ConsistentRead=True,
        ).get("Item")
        return from_dynamo(item) if item else None

    def put_record(self, record: dict[str, Any], expected_revision: int | None) -> bool:
        """Write ``record`` if nobody changed it since ``expected_revision``; False on a race."""
        condition = (
            Attr("pk").not_exists()
            if expected_revision is None
            else Attr("revision").eq(expected_revision)
        )
        return put_if(self._table, record, condition)

    def write_event(
        self,
        record: dict[str, Any],
        expected_revision: int | None,
        timeline_item: dict[str, Any],
        new_account: str | None = None,
    ) -> str:
        """One event's writes in one transaction: the record (if nobody changed it since
        ``expected_revision``), its timeline item (if it is not there yet: the event's dedupe
        record) and, for a first record, the account's registration.

        Returns ``written``, ``duplicate`` (the timeline item exists: this event was recorded
        before, and the record already holds it) or ``conflict`` (the record changed: read
        and merge again).
        """
        # The resource's client serializes attribute values itself: give it Python values.
        table = self._table.name

        def put(item: dict[str, Any], condition: str | None, names: dict[str, str], values: Any):
            entry: dict[str, Any] = {
                "TableName": table,
                "Item": {k: v for k, v in to_dynamo(item).items() if v is not None},
            }
            if condition:
                entry["ConditionExpression"] = condition
                entry["ExpressionAttributeNames"] = names
                if values:
                    entry["ExpressionAttributeValues"] = to_dynamo(values)
            return {"Put": entry}

        items = [
            put(
                record,
                "attribute_not_exists(#pk)" if expected_revision is None else "#rev = :rev",
                {"#pk": "pk"} if expected_revision is None else {"#rev": "revision"},
                None if expected_revision is None else {":rev": expected_revision},
            ),
            put(timeline_item, "attribute_not_exists(#sk)", {"#sk": "sk"}, None),
        ]
        if new_account is not None:
            items.append(
                put(
                    {
                        "pk": ACCOUNTS_PK,
                        "sk": f"ACCOUNT#{key_id(new_account, 'account')}",
                        "account_id": new_account,
                    },
                    None,
                    {},
                    None,
                )
            )
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return "duplicate"
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "conflict"
            if "TransactionConflict" in reasons:
                return "conflict"
            raise
        return "written"

    def mark_handled(self, pk: str, sk: str) -> None:
        """Every handler of the event finished: a repeat of it can skip them."""
        self._table.update_item(
            Key={"pk": pk, "sk": sk},
            UpdateExpression="SET handled = :yes",
            ExpressionAttributeValues={":yes": True},
        )

    def event_handled(self, pk: str, sk: str) -> bool:
        item = self._table.get_item(
            Key={"pk": pk, "sk": sk}, ConsistentRead=True, ProjectionExpression="handled"
        ).get("Item")
        return bool(item and item.get("handled"))

    def add_timeline_item(self, item: dict[str, Any]) -> bool:
        """Add one timeline item; False if it was already there (a retried write)."""
        return put_if(self._table, item, Attr("sk").not_exists())

    def register_account(self, account_id: str) -> None:
        """Remember an account, so scheduled sweeps know which open-conversation lists to read."""
        account_id = key_id(account_id, "account")
        self._table.put_item(
            Item={"pk": ACCOUNTS_PK, "sk": f"ACCOUNT#{account_id}", "account_id": account_id}
        )

    def accounts(self) -> list[str]:
        return [
            str(item["account_id"])
            for item in self._query(KeyConditionExpression=Key("pk").eq(ACCOUNTS_PK))
        ]

    def get_state(
        self, account_id: str, conversation_id: str, name: str
    ) -> tuple[dict[str, Any], int]:
        """A named piece of per-conversation state owned by one capability, and its revision."""
        item = self._table.get_item(
            Key={"pk": conversation_pk(account_id, conversation_id), "sk": STATE_PREFIX + name},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return {}, 0
        found = from_dynamo(item)
        return dict(found.get("data") or {}), int(found.get("revision") or 0)

    def put_state(
        self, account_id: str, conversation_id: str, name: str, data: dict[str, Any], revision: int
    ) -> bool:
        """Write state read at ``revision``; False if someone wrote it meanwhile."""
        condition = Attr("pk").not_exists() if revision == 0 else Attr("revision").eq(revision)
        item = {
            "pk": conversation_pk(account_id, conversation_id),
            "sk": STATE_PREFIX + name,
            "data": data,
            "revision": revision + 1,
        }
        return put_if(self._table, item, condition)

    def update_state(
        self,
        account_id: str,
        conversation_id: str,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        attempts: int = 5,
    ) -> dict[str, Any]:
        """Read, ``change`` (a copy), write back with optimistic concurrency; retry on a race."""
        for _ in range(attempts):
            state, revision = self.get_state(account_id, conversation_id, name)
            new = change(dict(state))
            if new == state or self.put_state(account_id, conversation_id, name, new, revision):
                return new
        raise TransientError("write_conflict", f"{name} state kept changing under us")

    def release_pending_draft(self, account_id: str, conversation_id: str, draft_id: str) -> bool:
        """Clear the record's ``pending_draft_id`` if it still names ``draft_id``: a draft
        decided late never clears a newer draft's mark (which superseding and an agent's own
        reply read). False when it names another draft, or none."""
        try:
            self._table.update_item(
                Key={"pk": conversation_pk(account_id, conversation_id), "sk": RECORD_SK},
                UpdateExpression="SET revision = if_not_exists(revision, :zero) + :one "
                "REMOVE pending_draft_id",
                ConditionExpression=Attr("pending_draft_id").eq(draft_id),
                ExpressionAttributeValues={":zero": 0, ":one": 1},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def set_record_fields(
        self,
        account_id: str,
        conversation_id: str,
        fields: dict[str, Any],
        expected_revision: int | None = None,
    ) -> bool:
        """Set (or, with None, remove) a few fields of an existing record. The revision moves
        on, so a recorder that read the record before writes again from a fresh read. With
        ``expected_revision``, only if nobody wrote the record since it was read at that
        revision. False when the record is gone or (with a revision) changed meanwhile."""
        sets, removes = ["revision = if_not_exists(revision, :zero) + :one"], []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":zero": 0, ":one": 1}
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :f{i}")
                values[f":f{i}"] = value
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self._table.update_item(
                Key={"pk": conversation_pk(account_id, conversation_id), "sk": RECORD_SK},
                UpdateExpression=expression,
                ConditionExpression=(
                    Attr("pk").exists()
                    if expected_revision is None
                    else Attr("revision").eq(expected_revision)
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # ---- the sweep's own items -------------------------------------------------------------
    def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        """Hold the ``name`` lease until ``until`` unless someone else holds it now."""
        return put_if(
            self._table,
            {"pk": SWEEP_PK, "sk": f"LEASE#{name}", "owner": owner, "lease_until": until},
            Attr("pk").not_exists() | Attr("lease_until").lt(to_dynamo(now)),
        )

    def release_lease(self, name: str, owner: str) -> None:
        try:
            self._table.update_item(
                Key={"pk": SWEEP_PK, "sk": f"LEASE#{name}"},
                UpdateExpression="SET lease_until = :zero",
                ConditionExpression=Attr("owner").eq(owner),
                ExpressionAttributeValues={":zero": 0},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def close_gone(self, account_id: str, conversation_id: str, now: float) -> None:
        """The conversation no longer exists in Chatwoot: mark it and take it off the open
        index (a sparse index: removing ``open_account`` removes the entry)."""
        try:
            self._table.update_item(
                Key={"pk": conversation_pk(account_id, conversation_id), "sk": RECORD_SK},
                UpdateExpression="SET #status = :deleted, gone_at = :now, "
                "revision = if_not_exists(revision, :zero) + :one "
                "REMOVE open_account, due_account, next_due",
                ConditionExpression=Attr("pk").exists(),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_dynamo(
                    {":deleted": "deleted", ":now": now, ":zero": 0, ":one": 1}
                ),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def timeline(self, account_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's timeline, oldest first."""
        return list(
            self._query(
                KeyConditionExpression=Key("pk").eq(conversation_pk(account_id, conversation_id))
                & Key("sk").begins_with(EVENT_PREFIX)
            )
        )

    def events_on_day(self, account_id: str, day: str) -> list[dict[str, Any]]:
        """Every timeline item of an account on ``day`` (``YYYY-MM-DD``), oldest first.

        ``day`` is the local date in the policy's zone: timeline items are bucketed by the
        local date of their ``occurred_at`` in the support policy's time zone.
        """
        return list(
            self._query(
                IndexName=BY_ACCOUNT_DAY,
                KeyConditionExpression=Key("account_day").eq(f"{account_id}#{day}"),
            )
        )

    def due_conversations(self, account_id: str, now: float) -> list[dict[str, Any]]:
        """Records of the account whose next SLA moment has come (the sparse due index)."""
        return list(
            self._query(
                IndexName=DUE_CONVERSATIONS,
                KeyConditionExpression=Key("due_account").eq(account_id)
                & Key("next_due").lte(to_dynamo(float(now))),
            )
        )

    def open_conversations(self, account_id: str) -> list[dict[str, Any]]:
        """Records of the account's open, pending and snoozed conversations."""
        return list(
            self._query(
                IndexName=OPEN_CONVERSATIONS,
                KeyConditionExpression=Key("open_account").eq(account_id),
            )
        )

    # ---- the reconciler's items -------------------------------------------------------------
    def reconcile_checkpoint(self, account_id: str) -> dict[str, Any] | None:
        """The account's reconcile checkpoint (``pk = RECONCILE, sk = ACCOUNT#<id>``), if any."""
        item = self._table.get_item(
            Key={"pk": RECONCILE_PK, "sk": f"ACCOUNT#{key_id(account_id, 'account')}"},
            ConsistentRead=True,
        ).get("Item")
        return from_dynamo(item) if item else None

    def move_reconcile_checkpoint(self, account_id: str, fields: dict[str, Any]) -> bool:
        """Write the checkpoint if it moves forward (``through`` grows); False otherwise (a
        concurrent run got further)."""
        item = {
            **fields,
            "pk": RECONCILE_PK,
            "sk": f"ACCOUNT#{key_id(account_id, 'account')}",
            "account_id": account_id,
        }
        return put_if(
            self._table,
            item,
            Attr("pk").not_exists() | Attr("through").lt(to_dynamo(float(fields["through"]))),
        )

    def set_reconciled_through(
        self, account_id: str, conversation_id: str, message_id: int
    ) -> None:
        """Every webhook-sendable message of the conversation up to ``message_id`` is recorded
        or replayed. Only moves forward; the revision moves on, so a recorder that read the
        record before writes again from a fresh read instead of dropping this field."""
        try:
            self._table.update_item(
                Key={"pk": conversation_pk(account_id, conversation_id), "sk": RECORD_SK},
                UpdateExpression="SET reconciled_message_id = :id, "
                "revision = if_not_exists(revision, :zero) + :one",
                ConditionExpression=Attr("pk").exists()
                & (
                    Attr("reconciled_message_id").not_exists()
                    | Attr("reconciled_message_id").lt(message_id)
                ),
                ExpressionAttributeValues={":id": message_id, ":zero": 0, ":one": 1},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def recorded_message_ids(self, account_id: str, conversation_id: str, since: float) -> set[str]:
        """Ids of the messages whose ``message_created`` the timeline holds from ``since`` on
        (whole seconds; signed or not): one query over that part of the timeline only."""
        start = f"{EVENT_PREFIX}{cw_iso(math.floor(since))}"
        found: set[str] = set()
        for item in self._query(
            KeyConditionExpression=Key("pk").eq(conversation_pk(account_id, conversation_id))
            & Key("sk").between(start, EVENT_PREFIX + "~"),
            ProjectionExpression="message_id, #event",
            ExpressionAttributeNames={"#event": "event"},
        ):
            if item.get("event") == "message_created" and item.get("message_id"):
                found.add(str(item["message_id"]))
        return found

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                yield from_dynamo(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
