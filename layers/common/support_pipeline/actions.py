"""Exactly-once effects in Chatwoot through an action ledger.

Every action has a deterministic id (the same event or sweep always derives the same id), and is
**claimed** in the ActionsTable with a conditional write before it is taken:

- the first attempt creates the item (``intent``, an owner and a lease that outlives the
  invocation); a concurrent attempt finds it held and does not act: it fails as transient and
  retries later, when it finds the action done (or the lease over);
- an attempt that fails releases its lease (keeping ``intent``); one that crashes leaves the
  lease to run out. The next attempt takes the claim over with another conditional write;
- done is written by the owner after Chatwoot answered.

A note whose POST succeeded but whose answer was lost is found before posting again: before
posting, the ledger stores the newest message id of the conversation (``search_after``); a
takeover reads every message since then (Chatwoot pages them, 100 at a time) and looks for the
note's reference line, which Chatwoot keeps because it is part of the text. Label changes are
serialised per conversation (a lock item, since Chatwoot's ``POST labels`` replaces the list);
priority and team are set operations, safe to repeat.

Without a Chatwoot base URL and token (the local stack's default) every action is recorded as
``dry_run`` with what it would have done: listed by ``support-pipeline actions list``, never
silently dropped. A dry-run entry does not block the real action once the pipeline is live.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from support_pipeline import deadline
from support_pipeline.chatwoot.client import (
    ApprovalLookup,
    ChatwootClient,
    Identity,
    NoAnswerError,
    ServerError,
)
from support_pipeline.chatwoot.payload import iso
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.store import from_dynamo, key_id, put_if, to_dynamo

logger = Logger(child=True)

INTENT, DONE, DRY_RUN = "intent", "done", "dry_run"
# A public reply never posted because a person answered the customer after the /send: final.
CANCELLED = "cancelled"
LOCK_PREFIX = "LOCK#"
LABEL_LOCK = LOCK_PREFIX + "labels"
# A claim outlives the invocation that holds it by this much: Lambda has killed it by then.
LEASE_MARGIN_SECONDS = 5.0
# A message that may have been sent (no answer, 5xx) is not looked for before this has passed:
# longer than any request Chatwoot (Rails behind its proxy, 60 s by default) still works on.
MAYBE_SENT_HOLD_SECONDS = 120.0
# Without a deadline (ops CLI, tests) a claim lasts this long.
DEFAULT_LEASE_SECONDS = 60.0
KINDS = (
    "private_note",
    "add_labels",
    "remove_labels",
    "assign_team",
    "set_priority",
    "public_reply",
)


@dataclass(frozen=True)
class Action:
    """One effect on one conversation."""

    account_id: str
    conversation_id: str
    action_id: str
    kind: str  # one of KINDS
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def conversation_key(self) -> str:
        return (
            f"{key_id(self.account_id, 'account')}#{key_id(self.conversation_id, 'conversation')}"
        )


@dataclass(frozen=True)
class Claim:
    """A held claim on an action: who holds it, and what an earlier holder left behind."""

    owner: str
    previous: dict[str, Any] | None


def lease_until(clock: Callable[[], float]) -> float:
    """When a claim taken now lapses: after the current invocation is certainly over."""
    current = deadline.current()
    if current is not None:
        return clock() + max(current.remaining(), 0.0) + LEASE_MARGIN_SECONDS
    return clock() + DEFAULT_LEASE_SECONDS


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

    def _key(self, action: Action) -> dict[str, str]:
        return {"conversation": action.conversation_key, "action_id": action.action_id}

    def get(self, action: Action) -> dict[str, Any] | None:
        item = self._table.get_item(Key=self._key(action), ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else None

    def _new_item(self, action: Action, status: str) -> dict[str, Any]:
        now = self._clock()
        return {
            **self._key(action),
            "account_id": action.account_id,
            "conversation_id": action.conversation_id,
            "kind": action.kind,
            "detail": action.detail,
            "reason": action.reason,
            "status": status,
            "created_at": iso(now),
            "expires_at": int(now + self._retention),
        }

    def record_dry_run(self, action: Action) -> bool:
        """Record what would have been done; False if it was recorded before."""
        return put_if(self._table, self._new_item(action, DRY_RUN), Attr("action_id").not_exists())

    def claim(self, action: Action) -> Claim | None:
        """Take the action: a new claim, a dry-run entry replaced, or a lapsed or released
        claim taken over. None while someone else holds it or when it is done."""
        owner = uuid.uuid4().hex
        now = self._clock()
        item = {
            **self._new_item(action, INTENT),
            "owner": owner,
            "lease_until": lease_until(self._clock),
            "attempts": 1,
        }
        if put_if(self._table, item, Attr("action_id").not_exists() | Attr("status").eq(DRY_RUN)):
            return Claim(owner, None)
        try:
            answer = self._table.update_item(
                Key=self._key(action),
                UpdateExpression="SET #owner = :owner, lease_until = :lease ADD attempts :one",
                ConditionExpression="#status = :intent AND "
                "(attribute_not_exists(lease_until) OR lease_until < :now)",
                ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
                ExpressionAttributeValues=to_dynamo(
                    {
                        ":owner": owner,
                        ":lease": item["lease_until"],
                        ":one": 1,
                        ":intent": INTENT,
                        ":now": now,
                    }
                ),
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return Claim(owner, from_dynamo(answer.get("Attributes") or {}))

    def _update_owned(self, action: Action, owner: str, expression: str, values: dict) -> bool:
        try:
            self._table.update_item(
                Key=self._key(action),
                UpdateExpression=expression,
                ConditionExpression="#owner = :me AND #status = :intent",
                ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
                ExpressionAttributeValues=to_dynamo({**values, ":me": owner, ":intent": INTENT}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def remember_search_start(self, action: Action, owner: str, message_id: int) -> bool:
        """Before posting: where a later attempt starts looking for this note."""
        return self._update_owned(
            action, owner, "SET search_after = :after", {":after": message_id}
        )

    def hold(self, action: Action, owner: str, seconds: float) -> None:
        """Keep the claim at least ``seconds`` from now (a message may still be landing)."""
        self._update_owned(
            action, owner, "SET lease_until = :until", {":until": self._clock() + seconds}
        )

    def release(self, action: Action, owner: str) -> None:
        """Give the claim back after a failed attempt, so the next one need not wait."""
        self._update_owned(action, owner, "SET lease_until = :zero", {":zero": 0})

    def record_done(
        self, action: Action, owner: str, result: dict[str, Any], status: str = DONE
    ) -> bool:
        """Mark the action done (or ``cancelled``); False if the claim was lost (the new holder
        finishes it)."""
        try:
            self._table.update_item(
                Key=self._key(action),
                UpdateExpression="SET #status = :done, done_at = :at, #result = :result "
                "REMOVE lease_until",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#result": "result",
                    "#owner": "owner",
                },
                ExpressionAttributeValues=to_dynamo(
                    {":done": status, ":at": iso(self._clock()), ":result": result, ":me": owner}
                ),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ---- per-conversation locks ------------------------------------------------------------
    def lock(self, conversation_key: str, name: str, owner: str) -> bool:
        """Hold the conversation's ``name`` lock (a lapsed one is taken over)."""
        item = {
            "conversation": conversation_key,
            "action_id": name,
            "owner": owner,
            "lease_until": lease_until(self._clock),
            "expires_at": int(self._clock() + 86400),
        }
        return put_if(
            self._table,
            item,
            Attr("action_id").not_exists() | Attr("lease_until").lt(to_dynamo(self._clock())),
        )

    def unlock(self, conversation_key: str, name: str, owner: str) -> None:
        try:
            self._table.delete_item(
                Key={"conversation": conversation_key, "action_id": name},
                ConditionExpression=Attr("owner").eq(owner),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

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
                f"{key_id(account_id, 'account')}#{key_id(conversation_id, 'conversation')}"
            )
            operation = self._table.query
        else:
            if account_id:
                kwargs["FilterExpression"] = Attr("account_id").eq(account_id)
            operation = self._table.scan
        while True:
            page = operation(**kwargs)
            items.extend(
                from_dynamo(item)
                for item in page.get("Items", [])
                if not str(item.get("action_id", "")).startswith(LOCK_PREFIX)
            )
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(items, key=lambda item: (item.get("created_at", ""), item["action_id"]))


class ActionRunner:
    """Takes actions in Chatwoot once each, or records them as dry runs."""

    def __init__(
        self,
        ledger: ActionLedger,
        client: ChatwootClient | None,
        telemetry: Any,
        sleep: Callable[[float], None] = time.sleep,
        lock_wait_seconds: float = 2.0,
        approval_of: ApprovalLookup | None = None,
        identity: Callable[[], Identity | None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.telemetry = telemetry
        self.approval_of: ApprovalLookup = approval_of or (lambda account, conv, draft: None)
        # Who the pipeline is in Chatwoot (the policy's actor, else the token's own user).
        self.identity: Callable[[], Identity | None] = identity or (lambda: None)
        self._sleep = sleep
        self._lock_wait = lock_wait_seconds

    @property
    def dry_run(self) -> bool:
        return self.client is None

    def run(self, action: Action) -> str:
        """Perform ``action`` unless it already happened; returns what happened.

        Raises a transient ``action_in_progress`` failure while another worker holds the action:
        the caller's event retries later and then finds it done.
        """
        if action.kind not in KINDS:
            raise ValueError(f"unknown action kind {action.kind!r}")
        existing = self.ledger.get(action)
        if existing and existing.get("status") == DONE:
            return "already_done"
        if existing and existing.get("status") == CANCELLED:
            return CANCELLED
        if (
            self.client is not None
            and action.kind == "public_reply"
            and existing
            and existing.get("status") == DRY_RUN
        ):
            # Approved while the pipeline ran without Chatwoot: its draft note was never shown
            # in Chatwoot, so that approval cannot send anything now (a redrive after going live).
            raise PermanentError(
                "approval_required",
                f"{action.action_id} was approved in a dry run; its note was never in Chatwoot",
            )
        if self.client is None:
            if existing is None and self.ledger.record_dry_run(action):
                self.telemetry.count("ActionDryRun", reason=action.kind)
                logger.info("action recorded as dry run", extra=_fields(action))
                return DRY_RUN
            return "already_done"
        claim = self.ledger.claim(action)
        if claim is None:
            now = self.ledger.get(action)
            if now and now.get("status") == DONE:
                return "already_done"
            if now and now.get("status") == CANCELLED:
                return CANCELLED
            self.telemetry.count("ActionContended", reason=action.kind)
            raise TransientError(
                "action_in_progress", f"{action.kind} {action.action_id} is held by another worker"
            )
        progress: dict[str, bool] = {"posting": False}
        try:
            outcome, result = self._take(self.client, action, claim, progress)
        except (NoAnswerError, ServerError):
            # No answer, or a 5xx (a proxy's 502/504 too): the message may be in Chatwoot, or
            # still being written there. Hold the claim long enough for any request Chatwoot
            # still works on to finish, so nobody looks for the message before it can be seen.
            if progress["posting"]:
                self.ledger.hold(action, claim.owner, MAYBE_SENT_HOLD_SECONDS)
            else:
                self.ledger.release(action, claim.owner)
            raise
        except BaseException:
            self.ledger.release(action, claim.owner)
            raise
        final = CANCELLED if outcome == CANCELLED else DONE
        if not self.ledger.record_done(action, claim.owner, result, final):
            logger.warning("action claim lost before done was recorded", extra=_fields(action))
        if outcome == CANCELLED:
            self.telemetry.count("ActionCancelled", action.kind)
            logger.info("reply not sent: a person answered after /send", extra=_fields(action))
            return outcome
        self.telemetry.count("ActionTaken" if outcome == DONE else "ActionRecovered", action.kind)
        logger.info(
            "action taken" if outcome == DONE else "action found already done in Chatwoot",
            extra=_fields(action),
        )
        return outcome

    def _take(
        self, client: ChatwootClient, action: Action, claim: Claim, progress: dict[str, bool]
    ) -> tuple[str, dict[str, Any]]:
        account, conversation, detail = action.account_id, action.conversation_id, action.detail
        if action.kind == "public_reply":
            return self._reply(client, action, claim, progress)
        if action.kind == "private_note":
            previous = claim.previous or {}
            start = previous.get("search_after")
            if start is not None:
                # An earlier attempt got as far as posting: did Chatwoot keep it?
                found = client.find_note(account, conversation, action.action_id, int(start))
                if found is not None:
                    return "recovered", {"message_id": found.get("id"), "recovered": True}
            else:
                start = client.latest_message_id(account, conversation)
                if not self.ledger.remember_search_start(action, claim.owner, start):
                    raise TransientError("action_in_progress", "message claim lost before posting")
            progress["posting"] = True
            created = client.create_private_note(
                account, conversation, detail["content"], action.action_id
            )
            return DONE, {"message_id": created.get("id")}
        if action.kind in ("add_labels", "remove_labels"):
            return DONE, {"labels": self._change_labels(client, action)}
        if action.kind == "assign_team":
            team = client.assign(account, conversation, team_id=int(detail["team_id"]))
            if not isinstance(team, dict):
                # AssignmentsController#set_team answers null when the account has no such team
                # (deleted since it was checked): Chatwoot has set the team to nil by then.
                self.telemetry.count("EscalationTeamMissing")
                logger.warning(
                    "team not found at assignment; Chatwoot cleared the team", extra=_fields(action)
                )
                return DONE, {"team_id": None}
            return DONE, {"team_id": team.get("id")}
        client.set_priority(account, conversation, detail["priority"])
        return DONE, {}

    def _reply(
        self, client: ChatwootClient, action: Action, claim: Claim, progress: dict[str, bool]
    ) -> tuple[str, dict[str, Any]]:
        """A public reply, under its claim, decided from Chatwoot itself on every attempt: the
        messages after the approving /send hold either this reply (an earlier attempt's answer
        was lost: found, not sent again), or a person's own public reply (the agent answered
        the customer: cancelled, nothing sent), or neither (sent now)."""
        account, conversation, detail = action.account_id, action.conversation_id, action.detail
        after = int(detail["after_message_id"])
        found, person = client.reply_or_answer(
            account, conversation, detail["content"], after, me=self.identity()
        )
        if found:
            # The same text may be another approval's reply (two turns, one canned answer):
            # only a message no other reply of this conversation recorded as its own is ours.
            taken = {
                str((entry.get("result") or {}).get("message_id"))
                for entry in self.ledger.list(account, conversation)
                if entry.get("kind") == "public_reply" and entry["action_id"] != action.action_id
            }
            ours = next((m for m in found if str(m.get("id")) not in taken), None)
            if ours is not None:
                return "recovered", {"message_id": ours.get("id"), "recovered": True}
        if person is not None:
            return CANCELLED, {"answered_by_message_id": person.get("id")}
        note = int(detail.get("note_message_id") or 0)
        if note and note < after:
            customer = client.customer_wrote_between(account, conversation, note, after)
            if customer is not None:
                return CANCELLED, {"overtaken_by_message_id": customer.get("id")}
        if (claim.previous or {}).get("search_after") is None and not (
            self.ledger.remember_search_start(action, claim.owner, after)
        ):
            raise TransientError("action_in_progress", "message claim lost before posting")
        progress["posting"] = True
        created = client.create_public_reply(
            account, conversation, detail["content"], detail["draft_id"], self.approval_of
        )
        return DONE, {"message_id": created.get("id")}

    def _change_labels(self, client: ChatwootClient, action: Action) -> list[str]:
        """Read-merge-write under the conversation's label lock: no writer drops another's."""
        owner = uuid.uuid4().hex
        waited = 0.0
        while not self.ledger.lock(action.conversation_key, LABEL_LOCK, owner):
            if waited >= self._lock_wait:
                raise TransientError(
                    "label_lock", f"labels of conversation {action.conversation_id} are busy"
                )
            self._sleep(0.1)
            waited += 0.1
        try:
            labels = action.detail["labels"]
            if action.kind == "add_labels":
                return client.add_labels(action.account_id, action.conversation_id, labels)
            return client.remove_labels(action.account_id, action.conversation_id, labels)
        finally:
            self.ledger.unlock(action.conversation_key, LABEL_LOCK, owner)


def _fields(action: Action) -> dict[str, Any]:
    return {
        "action_id": action.action_id,
        "kind": action.kind,
        "account_id": action.account_id,
        "conversation_id": action.conversation_id,
    }
