"""The conversation record and timeline: what later support features read.

Every conversation and message event updates one record per conversation and adds one timeline
item. Updates are order-insensitive: the conversation snapshot in a payload only replaces the
record's snapshot when it is newer (by the conversation's ``updated_at``), the per-message
facts combine with ``max``/``min``, and ``reopened_count`` and ``resolved_at`` are derived from
the status observations kept by version (``status_points``), so any arrival order of the same
events gives the same record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.chatwoot import payload as cw
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import (
    RECORD_SK,
    ConversationStore,
    account_day,
    conversation_pk,
    timeline_sk,
)

logger = Logger(child=True)

OPEN_STATUSES = frozenset({"open", "pending", "snoozed"})
RECORDED_EVENTS = cw.MESSAGE_EVENTS | cw.CONVERSATION_EVENTS
SNAPSHOT_FIELDS = (
    "status",
    "priority",
    "inbox_id",
    "assignee_id",
    "assignee_type",
    "team_id",
    "labels",
    "waiting_since",
    "snoozed_until",
    "contact_id",
    "channel",
    "sla_override",
)
MAX_WRITE_ATTEMPTS = 5

RESOLVED = "resolved"
KNOWN_STATUSES = frozenset({"open", "resolved", "pending", "snoozed"})
# How many status observations a record keeps. Every conversation and message payload carries
# the conversation's status and version, so a long conversation has one per event. A point is
# [version, status]: under 30 bytes in DynamoDB's item size, so 100 points stay under 3 KB of
# the 400 KB item limit (and of the record written on every event). Older points are folded into
# ``status_before`` as they leave, so counts stay exact as long as no observation arrives after
# more than 100 newer ones of the same conversation: far more reordering than SQS redelivery and
# retry backoff produce. Later than that, the observation is ignored.
STATUS_POINTS_CAP = 100
# Customer messages and human replies, newest kept: what SLA clocks and the unanswered rule
# read, so neither needs a timeline query. 200 marks: far beyond any live conversation's
# open targets; only the outcomes of very old turns (already recorded) fall off.
MARKS_CAP = 200
CUSTOMER, REPLY = "c", "r"


@dataclass(frozen=True)
class MessageFacts:
    """What a message event says about the conversation's clocks."""

    message_id: str
    message_type: str | None
    private: bool
    sender_type: str | None
    created_at: float | None

    @property
    def from_customer(self) -> bool:
        return self.message_type == "incoming"

    @property
    def public_reply(self) -> bool:
        return self.message_type == "outgoing" and not self.private

    @property
    def human_reply(self) -> bool:
        return self.public_reply and (self.sender_type or "").lower() == "user"


@dataclass(frozen=True)
class EventFacts:
    """Everything one event contributes to a conversation record."""

    account_id: str
    conversation_id: str
    event: str
    occurred_at: float
    snapshot_version: float | None
    snapshot: dict[str, Any]
    created_at: float | None
    first_reply_created_at: float | None
    message: MessageFacts | None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, int | str) and str(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sender_type(payload: cw.Payload) -> str | None:
    embedded = cw.embedded_message(payload).get("sender_type")
    if isinstance(embedded, str):
        return embedded
    sender = payload.get("sender")
    if isinstance(sender, dict):
        kind = str(sender.get("type") or "")
        return {"user": "User", "agent_bot": "AgentBot", "contact": "Contact"}.get(
            kind, "Contact" if cw.message_type(payload) == "incoming" else kind or None
        )
    return None


def extract_facts(context: EventContext, received_epoch: float) -> EventFacts:
    """Read what a payload says about its conversation; PermanentError if it names none."""
    payload = context.payload
    invalid = cw.invalid_ids(payload)
    if invalid is not None:  # the accessors say None for a malformed id: name it instead
        raise PermanentError("invalid_payload", f"{context.event}: {invalid}")
    account = cw.account_id(payload)
    conversation = cw.conversation_of(payload)
    conversation_id = cw.conversation_id(payload)
    if not account or conversation is None or not conversation_id:
        raise PermanentError("invalid_payload", missing_ids(context.event, account, conversation))
    meta = _dict(conversation.get("meta"))
    assignee = _dict(meta.get("assignee"))
    team = _dict(meta.get("team"))
    sender = _dict(meta.get("sender"))
    labels = conversation.get("labels")
    snapshot = {
        "status": conversation.get("status")
        if isinstance(conversation.get("status"), str)
        else None,
        "priority": conversation.get("priority")
        if isinstance(conversation.get("priority"), str)
        else None,
        "inbox_id": _id(conversation.get("inbox_id")),
        "assignee_id": _id(assignee.get("id")) or _id(conversation.get("assignee_id")),
        "assignee_type": meta.get("assignee_type")
        if isinstance(meta.get("assignee_type"), str)
        else None,
        "team_id": _id(team.get("id")),
        "labels": sorted(str(label) for label in labels) if isinstance(labels, list) else [],
        "waiting_since": cw.to_epoch(conversation.get("waiting_since")),
        "snoozed_until": cw.to_epoch(conversation.get("snoozed_until")),
        "contact_id": _id(sender.get("id")),
        "channel": conversation.get("channel")
        if isinstance(conversation.get("channel"), str)
        else None,
        "sla_override": applied_sla_thresholds(conversation.get("applied_sla")),
    }
    message = None
    if context.event in cw.MESSAGE_EVENTS:
        message_id = cw.message_id(payload)
        if not message_id:
            raise PermanentError("invalid_payload", f"{context.event} has no message id")
        message = MessageFacts(
            message_id=message_id,
            message_type=cw.message_type(payload),
            private=bool(payload.get("private")),
            sender_type=_sender_type(payload),
            created_at=cw.to_epoch(payload.get("created_at")),
        )
    snapshot_version = cw.to_epoch(conversation.get("updated_at"))
    occurred = (message.created_at if message else None) or snapshot_version or received_epoch
    return EventFacts(
        account_id=account,
        conversation_id=conversation_id,
        event=context.event,
        occurred_at=occurred,
        snapshot_version=snapshot_version,
        snapshot=snapshot,
        created_at=cw.to_epoch(conversation.get("created_at")),
        first_reply_created_at=cw.to_epoch(conversation.get("first_reply_created_at")),
        message=message,
    )


def missing_ids(event: str, account: str | None, conversation: Any) -> str:
    """What a payload lacks to name its conversation, said as exactly as the payload allows."""
    if not account and conversation is None:
        return f"{event} names no account id and carries no conversation"
    if not account:
        return f"{event} names no account id"
    if conversation is None:
        return f"{event} of account {account} carries no conversation"
    return f"{event} of account {account} names no conversation id"


def applied_sla_thresholds(applied: Any) -> dict[str, Any] | None:
    """Chatwoot enterprise's ``applied_sla`` thresholds, which win over the policy's targets."""
    if not isinstance(applied, dict):
        return None
    thresholds = {}
    for target in ("first_response", "next_response", "resolution"):
        value = applied.get(f"sla_{target}_time_threshold")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            thresholds[target] = int(value)
    if not thresholds:
        return None
    return {
        **thresholds,
        "business_hours_only": bool(applied.get("sla_only_during_business_hours")),
        "name": str(applied.get("sla_name") or ""),
    }


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True)
class StatusFold:
    """What a run of status points, oldest first, says: the newest version and status, how many
    times the status went from resolved to anything else, and where the last run of resolved
    began."""

    through: float | None = None
    last: str | None = None
    reopened: int = 0
    resolved_since: float | None = None

    def then(self, version: float, status: str) -> StatusFold:
        if status == RESOLVED:
            since = self.resolved_since if self.last == RESOLVED else version
            return StatusFold(version, status, self.reopened, since)
        reopened = self.reopened + (1 if self.last == RESOLVED else 0)
        return StatusFold(version, status, reopened, None)

    @classmethod
    def from_item(cls, item: Any) -> StatusFold:
        item = _dict(item)
        return cls(
            through=item.get("through"),
            last=item.get("last"),
            reopened=int(item.get("reopened") or 0),
            resolved_since=item.get("resolved_since"),
        )

    def to_item(self) -> dict[str, Any]:
        item = {
            "through": self.through,
            "last": self.last,
            "reopened": self.reopened,
            "resolved_since": self.resolved_since,
        }
        return {k: v for k, v in item.items() if v is not None}


def observe_status(
    points: list[list[Any]], before: StatusFold, version: float | None, status: str | None
) -> tuple[list[list[Any]], StatusFold]:
    """The status points (sorted by version, one per version, at most ``STATUS_POINTS_CAP``)
    and the fold of the points that left them, after one more observation.

    Order-insensitive: the points are the newest versions seen, and the fold takes the oldest
    ones in version order as they leave, as long as no observation comes after more than
    ``STATUS_POINTS_CAP`` newer ones (it is then ignored).
    """
    if version is None or status is None:
        return points, before
    if before.through is not None and version <= before.through:
        return points, before  # already folded, or later than the points still kept
    status = status if status in KNOWN_STATUSES else "other"
    by_version = {v: s for v, s in points}
    # One snapshot seen twice says the same; should two ever disagree, pick one regardless of
    # arrival order.
    by_version[version] = max(status, by_version.get(version, status))
    ordered = sorted(by_version.items())
    while len(ordered) > STATUS_POINTS_CAP:
        before = before.then(*ordered.pop(0))
    return [[v, s] for v, s in ordered], before


def add_mark(marks: Any, at: float, kind: str, message_id: str) -> list[list[Any]]:
    """``marks`` with one more ``[epoch, kind, message id]``: one per message (an edit is the
    same message), sorted by time, the newest ``MARKS_CAP`` kept. Order-insensitive."""
    by_message: dict[tuple[str, str], list[Any]] = {
        (str(m[1]), str(m[2])): [float(m[0]), str(m[1]), str(m[2])] for m in marks or []
    }
    key = (kind, str(message_id))
    if key in by_message:
        by_message[key][0] = min(float(by_message[key][0]), float(at))
    else:
        by_message[key] = [float(at), kind, str(message_id)]
    ordered = sorted(by_message.values(), key=lambda m: (float(m[0]), str(m[1]), str(m[2])))
    return ordered[-MARKS_CAP:]


def merge(record: dict[str, Any] | None, facts: EventFacts) -> dict[str, Any]:
    """The record after ``facts``: a pure function, order-insensitive for the same events."""
    merged: dict[str, Any] = dict(record or {})
    merged.setdefault("account_id", facts.account_id)
    merged.setdefault("conversation_id", facts.conversation_id)

    current_version = merged.get("snapshot_version")
    if facts.snapshot_version is not None and (
        current_version is None or facts.snapshot_version > current_version
    ):
        for name in SNAPSHOT_FIELDS:
            merged[name] = facts.snapshot[name]
        merged["snapshot_version"] = facts.snapshot_version
    elif current_version is None and facts.snapshot_version is None:
        # No version anywhere: fill gaps only, never overwrite.
        for name in SNAPSHOT_FIELDS:
            if merged.get(name) is None:
                merged[name] = facts.snapshot[name]

    points, before = observe_status(
        list(merged.get("status_points") or []),
        StatusFold.from_item(merged.get("status_before")),
        facts.snapshot_version,
        facts.snapshot["status"],
    )
    merged["status_points"] = points
    merged["status_before"] = before.to_item() or None
    history = before
    for version, status in points:
        history = history.then(version, status)
    merged["reopened_count"] = history.reopened
    merged["resolved_at"] = history.resolved_since if history.last == RESOLVED else None

    if facts.snapshot["status"] == "open" and facts.snapshot_version is not None:
        merged["first_open_at"] = _min(merged.get("first_open_at"), facts.snapshot_version)
    if facts.snapshot["status"] == "pending":
        merged["seen_pending"] = True
    merged["created_at"] = _min(merged.get("created_at"), facts.created_at)
    merged["first_reply_created_at"] = _min(
        merged.get("first_reply_created_at"), facts.first_reply_created_at
    )
    message = facts.message
    if message is not None and message.created_at is not None:
        if message.from_customer:
            merged["last_incoming_at"] = _max(merged.get("last_incoming_at"), message.created_at)
        if message.public_reply:
            merged["last_outgoing_at"] = _max(merged.get("last_outgoing_at"), message.created_at)
        if message.human_reply:
            merged["last_agent_reply_at"] = _max(
                merged.get("last_agent_reply_at"), message.created_at
            )
            merged["first_reply_created_at"] = _min(
                merged.get("first_reply_created_at"), message.created_at
            )
        if message.from_customer and not message.private:
            merged["message_marks"] = add_mark(
                merged.get("message_marks"), message.created_at, CUSTOMER, message.message_id
            )
        elif message.human_reply:
            merged["message_marks"] = add_mark(
                merged.get("message_marks"), message.created_at, REPLY, message.message_id
            )
    merged["last_event_at"] = _max(merged.get("last_event_at"), facts.occurred_at)

    status = merged.get("status")
    merged["open_account"] = facts.account_id if status in OPEN_STATUSES else None
    merged["waiting_since_key"] = merged.get("waiting_since") or 0
    return merged


@dataclass
class ConversationRecorder:
    """Route handler: keep the conversation record and add the event to its timeline.

    ``zone`` is the support policy's time zone: timeline items are bucketed by local date in it.
    """

    store: ConversationStore
    retention_days: int = 400
    clock: Callable[[], float] = time.time
    zone: tzinfo = UTC
    # The record's fields for the SLA sweep's due index (``SlaService.due_fields``).
    due_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __call__(self, context: EventContext) -> dict[str, Any]:
        """Merge the event into its record and timeline: one read and one transactional write.

        The merged record is shared with the handlers that follow (``context.shared``), so
        they need no read of their own; a ``duplicate`` is an event recorded before.
        """
        received = cw.to_epoch(context.received_at) or self.clock()
        facts = extract_facts(context, received)
        expires_at = int(self.clock() + self.retention_days * 86400)
        occurred_iso = cw.iso(facts.occurred_at)
        item = {
            "pk": conversation_pk(facts.account_id, facts.conversation_id),
            # Whole seconds in the key: a message's webhook says when it was created to the
            # millisecond, Chatwoot's API (what the reconciler replays from) to the second, and
            # both copies of one event must land on the same dedupe record.
            "sk": timeline_sk(cw.iso(math.floor(facts.occurred_at)), context.dedupe_key),
            "kind": "event",
            "event": context.event,
            "occurred_at": occurred_iso,
            "dedupe_key": context.dedupe_key,
            "delivery_id": context.delivery_id,
            "received_at": context.received_at,
            # Replayed by the reconciler: Chatwoot's delivery of it was lost.
            "reconciled": True if context.attributes.get("reconciled") == "true" else None,
            "account_id": facts.account_id,
            "conversation_id": facts.conversation_id,
            "message_id": facts.message.message_id if facts.message else None,
            "message_type": facts.message.message_type if facts.message else None,
            "private": facts.message.private if facts.message else None,
            "sender_type": facts.message.sender_type if facts.message else None,
            "status": facts.snapshot["status"],
            "priority": facts.snapshot["priority"],
            "team_id": facts.snapshot["team_id"],
            "account_day": account_day(facts.account_id, facts.occurred_at, self.zone),
            "occurred_key": f"{occurred_iso}#{facts.conversation_id}",
            "expires_at": expires_at,
        }
        for _ in range(MAX_WRITE_ATTEMPTS):
            current = self.store.get_record(facts.account_id, facts.conversation_id)
            revision = None if current is None else int(current.get("revision") or 0)
            record = merge(current, facts)
            if self.due_fields is not None:
                record.update(self.due_fields(record))
            record.update(
                pk=conversation_pk(facts.account_id, facts.conversation_id),
                sk=RECORD_SK,
                revision=(revision or 0) + 1,
                expires_at=expires_at,
            )
            outcome = self.store.write_event(
                record, revision, item, new_account=facts.account_id if current is None else None
            )
            if outcome == "conflict":
                logger.debug("conversation record changed concurrently; retrying")
                continue
            duplicate = outcome == "duplicate"
            context.shared["record"] = current if duplicate and current else record
            context.shared["duplicate"] = duplicate
            if duplicate and self.store.event_handled(item["pk"], item["sk"]):
                # Recorded and fully handled before: the handlers after this one have nothing
                # to do (a crash before they finished leaves the mark off, and they run again).
                context.shared["skip"] = True
            else:
                context.shared["on_handled"] = lambda: self.store.mark_handled(
                    item["pk"], item["sk"]
                )
            return {
                "conversation": facts.conversation_id,
                "timeline_added": not duplicate,
                "duplicate": duplicate,
            }
        raise TransientError("write_conflict", "conversation record kept changing under us")
