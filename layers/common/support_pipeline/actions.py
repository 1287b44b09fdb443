"""Exactly-once effects in Chatwoot through an action ledger.

Every action has a deterministic id (the same event or sweep always derives the same id). The
ledger records *intent* before the call and *done* after it. A retry that finds intent without
done asks Chatwoot first: a message carries its action id in ``content_attributes``, so a note
posted just before a crash is found and not posted again. Label, priority, team and status
changes are set operations, so repeating one is harmless.

Without a Chatwoot base URL and token (the local stack's default) every action is recorded as
``dry_run`` with what it would have done: listed by ``support-pipeline actions list``, never
silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, Key

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.chatwoot.payload import iso
from support_pipeline.store import from_dynamo, key_id, put_if, to_dynamo
from support_pipeline.telemetry import Telemetry

logger = Logger(child=True)

INTENT, DONE, DRY_RUN = "intent", "done", "dry_run"


@dataclass(frozen=True)
class Action:
    """One effect on one conversation."""

    account_id: str
    conversation_id: str
    action_id: str
    kind: str  # private_note | add_labels | remove_labels | assign_team | set_priority | set_status
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def conversation_key(self) -> str:
        return (
            f"{key_id(self.account_id, 'account')}#{key_id(self.conversation_id, 'conversation')}"
        )


class ActionLedger:
    """The ActionsTable: ``conversation = <account>#<conversation>``, ``action_id``."""

    def __init__(
        self,
        dynamodb_resource: Any,
        table_name: str,
        clock: Callable[[], float] = time.time,
        retention_days: int = 90,
    ) -> None:
        self._table = dynamodb_resource.Table(table_name)
        self._clock = clock
        self._retention = retention_days * 86400

    def get(self, action: Action) -> dict[str, Any] | None:
        item = self._table.get_item(
            Key={"conversation": action.conversation_key, "action_id": action.action_id},
            ConsistentRead=True,
        ).get("Item")
        return from_dynamo(item) if item else None

    def _put_new(self, action: Action, status: str) -> bool:
        now = self._clock()
        item = {
            "conversation": action.conversation_key,
            "action_id": action.action_id,
            "account_id": action.account_id,
            "conversation_id": action.conversation_id,
            "kind": action.kind,
            "detail": action.detail,
            "reason": action.reason,
            "status": status,
            "created_at": iso(now),
            "expires_at": int(now + self._retention),
        }
        return put_if(self._table, item, Attr("action_id").not_exists())

    def record_intent(self, action: Action) -> bool:
        return self._put_new(action, INTENT)

    def record_dry_run(self, action: Action) -> bool:
        return self._put_new(action, DRY_RUN)

    def record_done(self, action: Action, result: dict[str, Any]) -> None:
        self._table.update_item(
            Key={"conversation": action.conversation_key, "action_id": action.action_id},
            UpdateExpression="SET #s = :done, done_at = :at, #r = :result",
            ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues=to_dynamo(
                {":done": DONE, ":at": iso(self._clock()), ":result": result}
            ),
        )

    def list(
        self, account_id: str | None = None, conversation_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Actions of one conversation (a query), or of all (a scan: an ops listing)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        if conversation_id:
            if not account_id:
                raise ValueError("a conversation id needs its account id")
            kwargs["KeyConditionExpression"] = Key("conversation").eq(
                f"{account_id}#{conversation_id}"
            )
            operation = self._table.query
        else:
            if account_id:
                kwargs["FilterExpression"] = Attr("account_id").eq(account_id)
            operation = self._table.scan
        while True:
            page = operation(**kwargs)
            items.extend(from_dynamo(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda item: (item.get("created_at", ""), item["action_id"]))


class ActionRunner:
    """Takes actions in Chatwoot once each, or records them as dry runs."""

    def __init__(
        self, ledger: ActionLedger, client: ChatwootClient | None, telemetry: Telemetry
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.telemetry = telemetry

    @property
    def dry_run(self) -> bool:
        return self.client is None

    def run(self, action: Action) -> str:
        """Perform ``action`` unless it already happened; returns what happened."""
        existing = self.ledger.get(action)
        if existing and existing.get("status") in (DONE, DRY_RUN):
            return "already_done"
        if self.client is None:
            self.ledger.record_dry_run(action)
            self.telemetry.count("ActionDryRun", reason=action.kind)
            logger.info("action recorded as dry run", extra=_fields(action))
            return DRY_RUN
        if existing is not None and action.kind == "private_note":
            found = self.client.find_action_message(
                action.account_id, action.conversation_id, action.action_id
            )
            if found is not None:
                self.ledger.record_done(action, {"message_id": found.get("id"), "recovered": True})
                logger.info("action found already done in Chatwoot", extra=_fields(action))
                return "recovered"
        if existing is None:
            self.ledger.record_intent(action)
        result = self._execute(self.client, action)
        self.ledger.record_done(action, result)
        self.telemetry.count("ActionTaken", reason=action.kind)
        logger.info("action taken", extra=_fields(action))
        return DONE

    @staticmethod
    def _execute(client: ChatwootClient, action: Action) -> dict[str, Any]:
        account, conversation, detail = action.account_id, action.conversation_id, action.detail
        if action.kind == "private_note":
            created = client.create_private_note(
                account, conversation, detail["content"], action.action_id
            )
            return {"message_id": created.get("id")}
        if action.kind == "add_labels":
            return {"labels": client.add_labels(account, conversation, detail["labels"])}
        if action.kind == "remove_labels":
            return {"labels": client.remove_labels(account, conversation, detail["labels"])}
        if action.kind == "assign_team":
            client.assign(account, conversation, team_id=int(detail["team_id"]))
            return {}
        if action.kind == "set_priority":
            client.set_priority(account, conversation, detail["priority"])
            return {}
        if action.kind == "set_status":
            client.set_status(account, conversation, detail["status"])
            return {}
        raise ValueError(f"unknown action kind {action.kind!r}")


def _fields(action: Action) -> dict[str, Any]:
    return {
        "action_id": action.action_id,
        "kind": action.kind,
        "account_id": action.account_id,
        "conversation_id": action.conversation_id,
    }
