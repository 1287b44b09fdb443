"""Reading Chatwoot webhook payloads.

Payloads are flat JSON with ``event`` at the top. Message events carry the conversation under
``conversation``; conversation events *are* the conversation. Timestamps mix ISO-8601 strings,
unix integers and unix floats, and ``0`` means "not set" (``waiting_since``, ``*_last_seen_at``).
Unknown events and fields are normal: every reader here tolerates them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

AUTOMATION_PREFIX = "automation_event."

MESSAGE_EVENTS = frozenset({"message_created", "message_updated"})
CONVERSATION_EVENTS = frozenset(
    {
        "conversation_created",
        "conversation_updated",
        "conversation_status_changed",
        "conversation_opened",
        "conversation_resolved",
    }
)

# Integer message_type used inside conversation.messages[]; the top level uses the names.
MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}

Payload = dict[str, Any]


def base_event(name: str) -> str:
    """``automation_event.message_created`` -> ``message_created``; others unchanged."""
    return name[len(AUTOMATION_PREFIX) :] if name.startswith(AUTOMATION_PREFIX) else name


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch for a Chatwoot timestamp, or None when unset or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return to_epoch(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def iso(epoch: float) -> str:
    """UTC ISO-8601 with milliseconds, sortable as text."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _as_dict(value: Any) -> Payload:
    return value if isinstance(value, dict) else {}


def _as_id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def conversation_of(payload: Payload) -> Payload | None:
    """The conversation object a payload speaks about, if any."""
    event = base_event(str(payload.get("event", "")))
    if event in CONVERSATION_EVENTS:
        return payload
    for key in ("conversation", "current_conversation"):
        conversation = payload.get(key)
        if isinstance(conversation, dict):
            return conversation
    return None


def account_id(payload: Payload) -> str | None:
    """The Chatwoot account id, as text."""
    found = _as_id(_as_dict(payload.get("account")).get("id"))
    if found:
        return found
    found = _as_id(payload.get("account_id"))
    if found:
        return found
    conversation = conversation_of(payload) or {}
    return _as_id(_as_dict(conversation.get("account")).get("id")) or _as_id(
        conversation.get("account_id")
    )


def conversation_id(payload: Payload) -> str | None:
    """The conversation's (per-account display) id, as text."""
    conversation = conversation_of(payload)
    if conversation is None:
        return None
    return _as_id(conversation.get("id")) or _as_id(conversation.get("display_id"))


def message_id(payload: Payload) -> str | None:
    """The message id of a message event."""
    if base_event(str(payload.get("event", ""))) not in MESSAGE_EVENTS:
        return None
    return _as_id(payload.get("id"))


def embedded_message(payload: Payload) -> Payload:
    """The message's entry in ``conversation.messages[]``, which carries ``updated_at``."""
    wanted = payload.get("id")
    messages = _as_dict(payload.get("conversation")).get("messages")
    for entry in messages if isinstance(messages, list) else []:
        if isinstance(entry, dict) and entry.get("id") == wanted:
            return entry
    return {}


def message_type(payload: Payload) -> str | None:
    """``incoming``/``outgoing``/``activity``/``template`` whichever way it is spelled."""
    raw = payload.get("message_type")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return MESSAGE_TYPES.get(raw)
    if isinstance(raw, str):
        return raw
    return None


def message_version(payload: Payload) -> str:
    """What distinguishes two ``message_updated`` deliveries of one message.

    The message's own ``updated_at`` where Chatwoot sends it, else a digest of what can change
    (content, attributes, status), so a later CSAT answer or edit is never taken for a duplicate.
    """
    for candidate in (payload.get("updated_at"), embedded_message(payload).get("updated_at")):
        if candidate not in (None, ""):
            return str(candidate)
    material = repr(
        (
            payload.get("content"),
            sorted(_as_dict(payload.get("content_attributes")).items(), key=lambda kv: kv[0]),
            payload.get("status"),
        )
    )
    return "h" + hashlib.sha256(material.encode()).hexdigest()[:16]


def dedupe_key(payload: Payload, delivery_id: str | None, body: bytes) -> str:
    """A key that is equal for deliveries of the same change, and different otherwise.

    Semantic where the payload allows it (Chatwoot may send one change twice under two delivery
    ids, and an automation rule may post the same event again), else the delivery id, else a
    digest of the body.
    """
    event = base_event(str(payload.get("event", "")))
    account = account_id(payload) or "-"
    if event == "message_created" and message_id(payload):
        return f"{event}:{account}:{message_id(payload)}"
    if event == "message_updated" and message_id(payload):
        return f"{event}:{account}:{message_id(payload)}:{message_version(payload)}"
    if event in CONVERSATION_EVENTS:
        conversation = conversation_id(payload)
        updated = payload.get("updated_at")
        if conversation and updated not in (None, ""):
            return f"{event}:{account}:{conversation}:{updated}"
    if delivery_id:
        return f"delivery:{delivery_id}"
    return "sha256:" + hashlib.sha256(body).hexdigest()
