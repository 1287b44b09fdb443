"""CSAT answers: one item per survey message, so the weekly report can count them.

Chatwoot sends a customer's satisfaction answer as ``message_updated`` of the survey message
(``content_type: input_csat``) with the rating 1-5 in
``content_attributes.submitted_values.csat_survey_response.rating``. The customer may change
the answer, and deliveries can come twice or out of order, so the item is keyed by the survey
message (``sk = CSAT#<message id>``) and a delivery replaces it only when its version (the
message's ``updated_at``) is newer: one answer per survey, the latest one, whatever the order.

The item carries ``account_day`` of the answer (the local date in the policy's zone), so the
``ByAccountDay`` index finds it for the report without a scan. No feedback text is kept: like
the timeline, these items hold ids and facts, never what the customer wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from boto3.dynamodb.conditions import Attr

from support_pipeline.chatwoot import payload as cw
from support_pipeline.processing.errors import PermanentError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import (
    ConversationStore,
    account_day,
    conversation_pk,
    key_id,
    put_if,
    to_dynamo,
)

CSAT_PREFIX = "CSAT#"
CSAT_EVENTS = frozenset({"message_updated"})


def csat_rating(payload: cw.Payload) -> int | None:
    """The 1-5 rating of a CSAT answer, or None for anything else."""
    if payload.get("content_type") != "input_csat":
        return None
    attributes = payload.get("content_attributes")
    submitted = attributes.get("submitted_values") if isinstance(attributes, dict) else None
    response = submitted.get("csat_survey_response") if isinstance(submitted, dict) else None
    rating = response.get("rating") if isinstance(response, dict) else None
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        return None
    return rating


def answer_version(payload: cw.Payload) -> float | None:
    """When the answer was given: the survey message's ``updated_at``."""
    for candidate in (payload.get("updated_at"), cw.embedded_message(payload).get("updated_at")):
        epoch = cw.to_epoch(candidate)
        if epoch is not None:
            return epoch
    return None


@dataclass
class CsatRecorder:
    """Route handler: keep the latest CSAT answer of each survey message."""

    store: ConversationStore
    zone: tzinfo = UTC
    retention_days: int = 400
    clock: Callable[[], float] = time.time

    def __call__(self, context: EventContext) -> dict[str, Any]:
        payload = context.payload
        rating = csat_rating(payload)
        if rating is None:
            return {"skipped": "not a CSAT answer"}
        if invalid := cw.invalid_ids(payload):
            raise PermanentError("invalid_payload", f"{context.event}: {invalid}")
        account, conversation = cw.account_id(payload), cw.conversation_id(payload)
        message = cw.message_id(payload)
        if not account or not conversation or not message:
            raise PermanentError("invalid_payload", "a CSAT answer names no conversation")
        received = cw.to_epoch(context.received_at) or self.clock()
        version = answer_version(payload) or received
        at = cw.iso(version)
        item = {
            "pk": conversation_pk(account, conversation),
            "sk": CSAT_PREFIX + key_id(message, "message"),
            "kind": "csat",
            "rating": rating,
            "version": version,
            "answered_at": at,
            "account_id": account,
            "conversation_id": conversation,
            "message_id": message,
            "account_day": account_day(account, version, self.zone),
            "occurred_key": f"{at}#{conversation}",
            "expires_at": int(self.clock() + self.retention_days * 86400),
        }
        # Newer answers replace older ones; a duplicate or an older delivery changes nothing.
        stored = put_if(
            self.store._table,  # CSAT items live beside the conversation's record
            item,
            Attr("sk").not_exists() | Attr("version").lt(to_dynamo(version)),
        )
        return {"csat": rating, "stored": stored}
