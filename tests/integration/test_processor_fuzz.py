"""Odd payloads through every support handler: done, or a permanent failure with a reason.

Anything else would be treated as transient and retried for 20 minutes before the DLQ.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support_pipeline.processing.errors import PermanentError
from support_pipeline.processing.router import EventContext
from tests.support import fixture
from tests.unit.test_ingest_fuzz import JSON, KEYS

BASES = st.sampled_from(
    ["message_created_incoming", "conversation_updated", "message_created_private_note"]
)
EVENTS = st.sampled_from(
    ["message_created", "message_updated", "conversation_updated", "conversation_status_changed"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    base=BASES,
    event=EVENTS,
    top=st.dictionaries(KEYS, JSON, max_size=3),
    inner=st.dictionaries(KEYS, JSON, max_size=3),
)
def test_handlers_finish_or_fail_permanently(pipeline, base, event, top, inner):
    payload = fixture(base)
    payload.update(top)
    if isinstance(payload.get("conversation"), dict):
        payload["conversation"].update(inner)
    payload["event"] = event
    router = pipeline.consumer().router
    try:
        router.dispatch(
            EventContext(event=event, payload=payload, dedupe_key=f"fuzz:{hash(repr(payload))}")
        )
    except PermanentError as error:
        assert error.reason
