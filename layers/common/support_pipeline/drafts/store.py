"""Drafts, their outcomes and the approvals that let one reach the customer.

Items live in the ConversationsTable beside the conversation they belong to:

- ``sk = DRAFT#<draft id>``: the draft (customer turn, text, sources, confidence, drafter) and,
  once decided, its outcome, which is the learning signal: edit distance and ratio, time to
  decision, approver, grades, rejection reason, the conversation's CSAT. While pending it carries
  ``pending_account`` (the sparse ``PendingDrafts`` index: what awaits approval, and what
  expires); once decided it carries ``account_day``/``occurred_key`` of the decision, so the
  ``ByAccountDay`` index finds it for exports and reports without a scan.
- ``sk = APPROVAL#<draft id>``: who approved which text, when, with which command. Written
  before the public reply is sent; the REST client refuses a public message without it.

Drafts hold customer text (the point of a learning dataset); it never goes to logs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from support_pipeline.chatwoot.client import content_digest
from support_pipeline.chatwoot.payload import iso
from support_pipeline.store import (
    BY_ACCOUNT_DAY,
    account_day,
    conversation_pk,
    from_dynamo,
    put_if,
    to_dynamo,
)

DRAFT_PREFIX = "DRAFT#"
APPROVAL_PREFIX = "APPROVAL#"
TURN_PREFIX = "TURN#"
# A dry run's kept turn text (no Chatwoot to read it back from) lives this long: past the
# burst window and every retry of the draft it is for.
TURN_SECONDS = 2 * 86400
# The longest customer turn a drafter is given and a draft keeps as its question: Chatwoot
# takes messages of up to 150,000 characters; a turn past this is cut, never refused.
TURN_CHARS = 4000
PENDING_DRAFTS = "PendingDrafts"
PENDING = "pending"
APPROVED = "approved"  # approved by /send, the public reply on its way
OUTCOMES = ("sent_as_is", "edited", "replaced", "rejected", "expired", "superseded")
NO_DRAFT = "no_draft"  # nothing good enough: the conversation was labelled for a person


def draft_id_for(account_id: str, conversation_id: str, turn_message_id: str) -> str:
    """A short id agents can type (``d-4k7q2m``), the same for every attempt at one turn."""
    digest = hashlib.sha256(f"{account_id}:{conversation_id}:{turn_message_id}".encode()).digest()
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: read aloud and typed by people
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(6):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "d-" + "".join(chars)


class DraftStore:
    """Reads and writes drafts and approvals."""

    def __init__(
        self,
        dynamodb_resource: Any,
        table_name: str,
        zone: ZoneInfo,
        clock: Callable[[], float] = time.time,
        retention_days: int = 400,
    ) -> None:
        self._table = dynamodb_resource.Table(table_name)
        self._zone = zone
        self._clock = clock
        self._retention = retention_days * 86400

    @staticmethod
    def _key(account_id: str, conversation_id: str, sk: str) -> dict[str, str]:
        return {"pk": conversation_pk(account_id, conversation_id), "sk": sk}

    # ---- drafts ----------------------------------------------------------------------------
    def create(self, draft: dict[str, Any]) -> bool:
        """Store a new draft (pending, or a gap with no draft); False if it exists already."""
        now = self._clock()
        item = {
            **draft,
            **self._key(
                draft["account_id"], draft["conversation_id"], DRAFT_PREFIX + draft["draft_id"]
            ),
            "kind": "draft",
            "created_at": iso(now),
            "created_epoch": now,
            "created_key": f"{iso(now)}#{draft['draft_id']}",
            "expires_at": int(now + self._retention),
        }
        if item["status"] == PENDING:
            item["pending_account"] = draft["account_id"]
        else:  # a gap is decided at once: it belongs to its day
            item.update(self._decision_day(draft["account_id"], draft["conversation_id"], now))
            item["decided_at"] = iso(now)
            item["outcome"] = item["status"]
        return put_if(self._table, item, Attr("sk").not_exists())

    def get(self, account_id: str, conversation_id: str, draft_id: str) -> dict[str, Any] | None:
        found = self._table.get_item(
            Key=self._key(account_id, conversation_id, DRAFT_PREFIX + draft_id),
            ConsistentRead=True,
        ).get("Item")
        return from_dynamo(found) if found else None

    def of_conversation(self, account_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """Every draft of a conversation, oldest first."""
        items = self._query(
            KeyConditionExpression=Key("pk").eq(conversation_pk(account_id, conversation_id))
            & Key("sk").begins_with(DRAFT_PREFIX),
            ConsistentRead=True,
        )
        return sorted(items, key=lambda d: d.get("created_key", ""))

    def _decision_day(self, account_id: str, conversation_id: str, at: float) -> dict[str, str]:
        return {
            "account_day": account_day(account_id, at, self._zone),
            "occurred_key": f"{iso(at)}#{conversation_id}",
        }

    def decide(
        self,
        draft: dict[str, Any],
        status: str,
        fields: dict[str, Any] | None = None,
        expected: tuple[str, ...] = (PENDING,),
        command_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Move a draft from one of ``expected`` to ``status`` with a conditional write.

        Returns the draft as written, or None when it was no longer in an expected status
        (someone decided first). ``command_id`` lets the same command, retried, find its own
        decision and go on.
        """
        now = self._clock()
        values: dict[str, Any] = {
            ":status": status,
            ":decided_at": iso(now),
            ":seconds": max(0.0, now - float(draft.get("created_epoch") or now)),
            **{f":e{i}": value for i, value in enumerate(expected)},
        }
        names = {"#status": "status"}
        sets = ["#status = :status", "decided_at = :decided_at", "seconds_to_decision = :seconds"]
        if status in OUTCOMES:
            sets.append("outcome = :status")
            for name, value in self._decision_day(
                draft["account_id"], draft["conversation_id"], now
            ).items():
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = value
        for i, (name, value) in enumerate((fields or {}).items()):
            names[f"#f{i}"] = name
            sets.append(f"#f{i} = :f{i}")
            values[f":f{i}"] = value
        condition = "#status IN (" + ", ".join(f":e{i}" for i in range(len(expected))) + ")"
        if command_id is not None:
            sets.append("command_id = :command")
            values[":command"] = command_id
            condition = f"({condition}) OR command_id = :command"
        try:
            answer = self._table.update_item(
                Key=self._key(
                    draft["account_id"], draft["conversation_id"], DRAFT_PREFIX + draft["draft_id"]
                ),
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE pending_account",
                ConditionExpression=f"attribute_exists(sk) AND ({condition})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return from_dynamo(answer["Attributes"])

    def annotate(self, draft: dict[str, Any], fields: dict[str, Any]) -> None:
        """Add to a draft's learning signal (grades, CSAT) without touching its outcome."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":f{i}": value for i, value in enumerate(fields.values())}
        self._table.update_item(
            Key=self._key(
                draft["account_id"], draft["conversation_id"], DRAFT_PREFIX + draft["draft_id"]
            ),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    def answer_gap(self, gap: dict[str, Any], final_text: str, agent: str) -> bool:
        """Keep the agent's own reply to a turn that got no draft: the answer a knowledge-base
        article could have given (``signals gaps``). The first reply wins; False if the gap
        already has one. The gap's outcome and day stay as they are."""
        try:
            self._table.update_item(
                Key=self._key(
                    gap["account_id"], gap["conversation_id"], DRAFT_PREFIX + gap["draft_id"]
                ),
                UpdateExpression="SET final_text = :text, answered_by = :agent, answered_at = :at",
                ConditionExpression="attribute_exists(sk) AND #status = :gap "
                "AND attribute_not_exists(final_text)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":text": final_text,
                    ":agent": agent,
                    ":at": iso(self._clock()),
                    ":gap": NO_DRAFT,
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def pending(self, account_id: str, created_before: str | None = None) -> list[dict[str, Any]]:
        """The account's drafts that await a decision (oldest first), from the sparse index."""
        condition: Any = Key("pending_account").eq(account_id)
        if created_before is not None:
            condition = condition & Key("created_key").lt(created_before)
        return list(self._query(IndexName=PENDING_DRAFTS, KeyConditionExpression=condition))

    def decided_on(self, account_id: str, day: str) -> list[dict[str, Any]]:
        """Drafts decided (or given up: no draft) on a local ``day`` of the account."""
        return [
            item
            for item in self._query(
                IndexName=BY_ACCOUNT_DAY,
                KeyConditionExpression=Key("account_day").eq(f"{account_id}#{day}"),
                FilterExpression=Attr("kind").eq("draft"),
            )
        ]

    # ---- a dry run's turn text ------------------------------------------------------------
    def remember_turn(
        self, account_id: str, conversation_id: str, message_id: str, text: str
    ) -> None:
        """Keep a customer message's text for its draft when there is no Chatwoot to read it
        from (a dry run). The pipeline's own ``draft_due`` event carries ids only."""
        self._table.put_item(
            Item={
                **self._key(account_id, conversation_id, TURN_PREFIX + message_id),
                "kind": "turn",
                "text": text[:TURN_CHARS],
                "expires_at": int(self._clock() + TURN_SECONDS),
            }
        )

    def turn_text(self, account_id: str, conversation_id: str, message_id: str) -> str:
        found = self._table.get_item(
            Key=self._key(account_id, conversation_id, TURN_PREFIX + message_id),
            ConsistentRead=True,
        ).get("Item")
        text = (found or {}).get("text")
        return text if isinstance(text, str) else ""

    # ---- approvals -------------------------------------------------------------------------
    def record_approval(self, draft: dict[str, Any], approver_id: str, command_id: str) -> bool:
        """A person approved exactly this draft text, by this command. First writer wins; the
        same command retried finds its own approval."""
        now = self._clock()
        item = {
            **self._key(
                draft["account_id"], draft["conversation_id"], APPROVAL_PREFIX + draft["draft_id"]
            ),
            "kind": "approval",
            "draft_id": draft["draft_id"],
            "account_id": draft["account_id"],
            "conversation_id": draft["conversation_id"],
            "approver_id": approver_id,
            "command_id": command_id,
            "digest": content_digest(str(draft["text"])),
            "approved_at": iso(now),
            "expires_at": int(now + self._retention),
        }
        return put_if(
            self._table, item, Attr("sk").not_exists() | Attr("command_id").eq(command_id)
        )

    def approval(
        self, account_id: str, conversation_id: str, draft_id: str
    ) -> dict[str, Any] | None:
        found = self._table.get_item(
            Key=self._key(account_id, conversation_id, APPROVAL_PREFIX + draft_id),
            ConsistentRead=True,
        ).get("Item")
        return from_dynamo(found) if found else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                yield from_dynamo(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
