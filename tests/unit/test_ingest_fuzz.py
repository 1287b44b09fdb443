"""Any signed JSON object with an event is accepted with a usable key, or refused with 400 for a
malformed id: never a crash or a 5xx, and never a queued id that is not a positive integer."""

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support_pipeline.config import IngestSettings
from support_pipeline.ingest import IngestService, WebhookRequest, WebhookSecrets
from support_pipeline.telemetry import RecordingTelemetry
from tests.support import NOW, SECRET, webhook_event

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "id",
        "account",
        "account_id",
        "conversation",
        "current_conversation",
        "messages",
        "updated_at",
        "created_at",
        "message_type",
        "content_attributes",
        "meta",
        "status",
    ]
)
EVENTS = st.sampled_from(
    [
        "message_created",
        "message_updated",
        "conversation_updated",
        "conversation_status_changed",
        "automation_event.message_created",
        "contact_created",
        "x" * 300,
    ]
)


CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


class Queue:
    def __init__(self):
        self.sent = []

    def send_message(self, **kwargs):
        self.sent.append(kwargs)
        return {"MessageId": "1"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS, fields=st.dictionaries(KEYS, JSON, max_size=6))
def test_odd_payloads_are_queued_with_a_key(event, fields):
    queue = Queue()
    service = IngestService(
        settings=IngestSettings(events_queue_url="q", webhook_secret_param="/p"),
        sqs=queue,
        secrets=WebhookSecrets(lambda force: SECRET, clock=lambda: NOW),
        telemetry=RecordingTelemetry(),
        clock=lambda: NOW,
    )
    payload = {**fields, "event": event}
    response = service.handle(
        WebhookRequest.from_api_gateway(webhook_event(json.dumps(payload).encode()))
    )
    # Signed: taken in whatever its ids (the processor dead-letters malformed ones).
    assert response.status == 202, response.body
    [sent] = queue.sent
    attributes = {k: v["StringValue"] for k, v in sent["MessageAttributes"].items()}
    assert attributes["dedupe_key"] and len(attributes["dedupe_key"]) <= 512
    assert all(0 < len(v) <= 512 for v in attributes.values())
    for name in ("account_id", "conversation_id"):
        assert CANONICAL_ID.fullmatch(attributes.get(name, "1")), attributes
