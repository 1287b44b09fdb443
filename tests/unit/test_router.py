from support_pipeline.conversations import RECORDED_EVENTS
from support_pipeline.processing.router import EventContext, Router
from support_pipeline.wiring import build_router
from tests.support import policy_with


def context(event: str) -> EventContext:
    return EventContext(event=event, payload={"event": event}, dedupe_key=f"k:{event}")


def test_handlers_run_in_registration_order_and_results_are_named():
    calls = []
    router = Router()
    router.register(["message_created"], "first", lambda c: calls.append("first") or 1)
    router.register(
        ["message_created", "conversation_updated"], "second", lambda c: calls.append("second") or 2
    )
    result = router.dispatch(context("message_created"))
    assert calls == ["first", "second"]
    assert result == {
        "event": "message_created",
        "handled": True,
        "results": {"first": 1, "second": 2},
    }


def test_unknown_event_is_not_handled_and_not_an_error():
    result = Router().dispatch(context("contact_merged"))
    assert result == {"event": "contact_merged", "handled": False, "results": {}}


def test_conversation_record_handles_every_conversation_and_message_event():
    support = type(
        "Support",
        (),
        {
            "store": None,
            "sla": type("Sla", (), {"due_fields": staticmethod(lambda record: {})})(),
            "policy": policy_with(),  # the recorder buckets days in the policy's zone
            "escalator": None,
            "actions": type("Actions", (), {"client": None})(),  # dry run
            "drafts": type("Drafts", (), {"own": staticmethod(lambda: None)})(),
            "timeline_retention_days": 1,
        },
    )()
    router = build_router(support)  # type: ignore[arg-type]
    assert router.events >= RECORDED_EVENTS
    assert "webwidget_triggered" not in router.events
    assert [name for name, _ in router.handlers_for("message_created")] == [
        "conversation_record",
        "sla_outcomes",
        "escalation",
        "drafts",
    ]
