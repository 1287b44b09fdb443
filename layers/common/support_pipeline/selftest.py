"""The health probe's self-test delivery: a signed event that goes the whole way in.

The probe (support_pipeline/probe.py) POSTs it to the public webhook URL like a Chatwoot
delivery. Ingest verifies and enqueues it (answering 202, counted as ``WebhookSelfTest`` and not
as an accepted Chatwoot event); the processor acknowledges it without any handler, DynamoDB
write or Chatwoot call, counts ``SelfTestReceived`` and measures ``SelfTestRoundTrip`` (from the
probe's ``sent_at`` to the processor, in milliseconds).
"""

from __future__ import annotations

import uuid
from typing import Any

SELF_TEST_EVENT = "support_pipeline.self_test"
# A round trip longer than this is not a measurement (a redrive, a clock far off): not recorded.
MAX_ROUND_TRIP_SECONDS = 86400.0


def self_test_payload(sent_at: float, account_id: str | None = None) -> dict[str, Any]:
    """The body the probe signs and posts. It names an account only when the secret that signs
    it is bound to one (ingest refuses a bound secret for any other account)."""
    payload: dict[str, Any] = {
        "event": SELF_TEST_EVENT,
        "probe_id": uuid.uuid4().hex,
        "sent_at": round(sent_at, 3),
    }
    if account_id:
        payload["account"] = {"id": int(account_id)}
    return payload


def is_self_test(event: Any) -> bool:
    return event == SELF_TEST_EVENT


def round_trip_ms(payload: dict[str, Any], now: float) -> float | None:
    """Milliseconds from the probe's send to ``now``, or None when it cannot be told."""
    sent = payload.get("sent_at")
    if isinstance(sent, bool) or not isinstance(sent, int | float):
        return None
    elapsed = now - float(sent)
    if elapsed < 0 or elapsed > MAX_ROUND_TRIP_SECONDS:
        return None
    return round(elapsed * 1000.0, 1)
