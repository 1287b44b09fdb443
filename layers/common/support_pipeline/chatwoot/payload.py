"""Reading Chatwoot webhook payloads.

Payloads are flat JSON with ``event`` at the top. Message events carry the conversation under
``conversation``; conversation events *are* the conversation. Timestamps mix ISO-8601 strings,
unix integers and unix floats, and ``0`` means "not set" (``waiting_since``, ``*_last_seen_at``).
Unknown events and fields are normal: every reader here tolerates them.

Ids go into Chatwoot URLs and DynamoDB keys, so they are read strictly: an id is a positive
integer (:func:`canonical_id`), the accessors return its canonical text or None, and
:func:`invalid_ids` names the first id that is present but malformed, for ingest to refuse and
the processor to dead-letter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
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

# Canonical decimal text of a positive integer: no sign, space, leading zero, fraction, exponent
# or non-ASCII digit, at most 19 digits (Chatwoot's ids are bigints). Used with fullmatch.
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")
_ID_LIMIT = 10**19
UNSIGNED_PREFIX = "unsigned:"


def base_event(name: str) -> str:
    """``automation_event.message_created`` -> ``message_created``; others unchanged."""
    return name[len(AUTOMATION_PREFIX) :] if name.startswith(AUTOMATION_PREFIX) else name


def from_automation(payload: Payload) -> Payload:
    """An automation rule's "Send webhook event" post of a message event, as a message event.

    AutomationRules::ActionService#send_webhook_event posts ``conversation.webhook_data``
    merged with ``event: "automation_event.<rule event>"``: for a ``message_created`` or
    ``message_updated`` rule the body is the **conversation** (its top-level ``id`` is the
    conversation's display id) and the message is ``messages[0]``, the conversation's last
    chat message (integer ``message_type``, no private notes or activity). Read as it is, the
    conversation id would pass for a message id and every later post of the conversation would
    look like a repeat. This returns the message event that post stands for: the message at the
    top, the conversation under ``conversation``; anything else is returned unchanged.
    """
    event = str(payload.get("event", ""))
    if not event.startswith(AUTOMATION_PREFIX) or base_event(event) not in MESSAGE_EVENTS:
        return payload
    if isinstance(payload.get("conversation"), dict):
        return payload  # already a message event's shape
    messages = payload.get("messages")
    message = messages[0] if isinstance(messages, list) and messages else None
    if not isinstance(message, dict):
        return payload  # no message to read: the processor dead-letters it by its ids
    conversation = {k: v for k, v in payload.items() if k != "event"}
    kind = message.get("message_type")
    if isinstance(kind, int) and not isinstance(kind, bool):
        kind = MESSAGE_TYPES.get(kind)
    account = payload.get("account")
    if not isinstance(account, dict):
        account = {"id": payload.get("account_id", message.get("account_id"))}
    return {
        **{k: v for k, v in message.items() if k not in ("conversation", "conversation_id")},
        "event": event,
        "message_type": kind,
        "account": account,
        "inbox": {"id": payload.get("inbox_id")},
        "conversation": conversation,
    }


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


def canonical_id(value: Any) -> str | None:
    """A Chatwoot id as canonical decimal text, or None if ``value`` is not one.

    An id is a positive integer: a JSON integer (not a boolean), or the same number written as
    canonical decimal text (``"7"``, never ``"07"``, ``"+7"``, ``" 7"``, ``"7.0"`` or ``"7/.."``).
    Only this text ever reaches a URL path or a key, so nothing can be smuggled through an id.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < _ID_LIMIT else None
    if isinstance(value, str) and _CANONICAL_ID.fullmatch(value):
        return value
    return None


def _field(container: Any, key: str) -> Any:
    """``container[key]`` if ``container`` is an object; None (absent) otherwise."""
    return container.get(key) if isinstance(container, dict) else None


def _conversation_at(payload: Payload) -> tuple[str, Payload] | None:
    """The conversation object a payload speaks about, with the path prefix it sits at."""
    event = base_event(str(payload.get("event", "")))
    if event in CONVERSATION_EVENTS:
        return "", payload
    for key in ("conversation", "current_conversation"):
        conversation = payload.get(key)
        if isinstance(conversation, dict):
            return f"{key}.", conversation
    return None


def _account_fields(payload: Payload) -> Iterator[tuple[str, Any]]:
    """Where a payload may name its account, in the order the accessor reads them."""
    yield "account.id", _field(payload.get("account"), "id")
    yield "account_id", payload.get("account_id")
    found = _conversation_at(payload)
    if found is not None and found[0]:  # a conversation event's fields are the ones above
        prefix, conversation = found
        yield f"{prefix}account.id", _field(conversation.get("account"), "id")
        yield f"{prefix}account_id", conversation.get("account_id")


def _conversation_fields(payload: Payload) -> Iterator[tuple[str, Any]]:
    found = _conversation_at(payload)
    if found is not None:
        prefix, conversation = found
        yield f"{prefix}id", conversation.get("id")
        yield f"{prefix}display_id", conversation.get("display_id")


def _message_fields(payload: Payload) -> Iterator[tuple[str, Any]]:
    if base_event(str(payload.get("event", ""))) in MESSAGE_EVENTS:
        yield "id", payload.get("id")


def _first_present(fields: Iterator[tuple[str, Any]]) -> str | None:
    """The first field that is present decides: its canonical id, or None if it is malformed.

    A malformed id never falls through to another field, so what an accessor returns is always
    what :func:`invalid_ids` checked.
    """
    for _path, value in fields:
        if value is not None:
            return canonical_id(value)
    return None


def invalid_ids(payload: Payload) -> str | None:
    """A reason naming the first id that is present but not a positive integer, else None.

    Present means the field exists with a value other than JSON ``null``; an absent id is fine
    (``webwidget_triggered`` and ``contact_created`` name no conversation). Checked: the account
    (``account.id``, ``account_id``, and the conversation's ``account.id``/``account_id``), the
    conversation (``id`` and ``display_id`` of the conversation object, which for conversation
    events is the payload itself) and, for message events, the message ``id``. Other fields and
    other events' ``id`` are not ids the pipeline uses, and are left alone.
    """
    for kind, fields in (
        ("account", _account_fields(payload)),
        ("conversation", _conversation_fields(payload)),
        ("message", _message_fields(payload)),
    ):
        for path, value in fields:
            if value is not None and canonical_id(value) is None:
                return f"{kind} id at {path} is not a positive integer"
    return None


def conversation_of(payload: Payload) -> Payload | None:
    """The conversation object a payload speaks about, if any."""
    found = _conversation_at(payload)
    return found[1] if found is not None else None


def account_id(payload: Payload) -> str | None:
    """The Chatwoot account id as canonical text; None when absent or malformed."""
    return _first_present(_account_fields(payload))


def conversation_id(payload: Payload) -> str | None:
    """The conversation's (per-account display) id as canonical text; None if absent/malformed."""
    return _first_present(_conversation_fields(payload))


def message_id(payload: Payload) -> str | None:
    """The message id of a message event as canonical text; None if absent or malformed."""
    return _first_present(_message_fields(payload))


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


def dedupe_key(payload: Payload, delivery_id: str | None, body: bytes, *, signed: bool) -> str:
    """A key that is equal for deliveries of the same change, and different otherwise.

    Semantic where the payload allows it (Chatwoot may send one change twice under two delivery
    ids, and an automation rule may post the same event again), else the delivery id, else a
    digest of the body.

    A post that was not signed (accepted by URL token) gets its key in a namespace of its own
    (``unsigned:...``): its body is not authenticated, so it must never be able to claim the key
    of a signed event and make the real delivery look like a duplicate. ``signed`` has no
    default so that every caller says which it has.
    """
    key = _semantic_key(payload, delivery_id, body)
    return key if signed else unsigned_key(key)


def unsigned_key(key: str) -> str:
    """``key`` in the unsigned namespace (unchanged if it is there already)."""
    return key if key.startswith(UNSIGNED_PREFIX) else UNSIGNED_PREFIX + key


def _semantic_key(payload: Payload, delivery_id: str | None, body: bytes) -> str:
    event = base_event(str(payload.get("event", "")))
    account = account_id(payload) or "-"
    message = message_id(payload)
    if event == "message_created" and message:
        return f"{event}:{account}:{message}"
    if event == "message_updated" and message:
        return f"{event}:{account}:{message}:{message_version(payload)}"
    if event in CONVERSATION_EVENTS:
        conversation = conversation_id(payload)
        updated = payload.get("updated_at")
        if conversation and updated not in (None, ""):
            return f"{event}:{account}:{conversation}:{updated}"
    if delivery_id:
        return f"delivery:{delivery_id}"
    return "sha256:" + hashlib.sha256(body).hexdigest()
