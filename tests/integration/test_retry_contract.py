"""The retry policy in docs/retry-policy.md, proven through the real processor handler.

No real waiting: after each failed attempt the test plays the clock by making hidden messages
visible again, and it reads the visibility timeouts the handler asked SQS for.
"""

import pytest

from support_pipeline.processing.backoff import backoff_ceiling
from support_pipeline.processing.errors import TransientError
from support_pipeline_ops.local.lambda_shim import LocalContext, poll_once
from tests.support import attributes_of, fixture, load_handler


@pytest.fixture
def processor(pipeline, monkeypatch):
    """The real handler module, configured by the template's environment, against moto."""
    for name, value in pipeline.stack.function_environment("ProcessorFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("processor")
    monkeypatch.setattr(app, "_consumer", None)
    app.handler(
        {"Records": []}, LocalContext(function_name="processor")
    )  # builds the consumer once
    visibility: list[int] = []
    app._consumer.get().sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: visibility.append(params["VisibilityTimeout"]),
    )
    app.visibility = visibility
    return app


def flaky(app, failures: int):
    """Make the routed work fail ``failures`` times with a transient error, then work."""
    router = app._consumer.get().router
    real = router.handlers_for("message_created")
    state = {"left": failures}

    def handler(context):
        if state["left"] > 0:
            state["left"] -= 1
            raise TransientError("chatwoot_unavailable", "Chatwoot answered 503")
        return {name: fn(context) for name, fn in real}

    router._handlers["message_created"] = [("flaky", handler)]


def attempt(pipeline, app):
    pipeline.make_visible()
    return poll_once(
        pipeline.sqs,
        pipeline.queue_url,
        pipeline.queue_arn,
        app.handler,
        context_factory=lambda: LocalContext(function_name="processor"),
    )


def template_number(pipeline, name):
    return int(pipeline.stack.parameters[name])


def test_transient_failures_back_off_exponentially_then_succeed(pipeline, processor):
    flaky(processor, failures=3)
    assert pipeline.post(fixture("message_created_incoming"))[0] == 202
    results = [attempt(pipeline, processor) for _ in range(4)]
    assert results == [(1, 1), (1, 1), (1, 1), (1, 0)]
    base = template_number(pipeline, "BackoffBaseSeconds")
    cap = template_number(pipeline, "BackoffCapSeconds")
    for n, seconds in enumerate(processor.visibility, start=1):
        ceiling = backoff_ceiling(n, base, cap)
        assert ceiling / 2 <= seconds <= ceiling, (n, seconds)
    assert processor.visibility == sorted(processor.visibility)  # never shrinks
    assert pipeline.store().get_record("1", "1")["status"] == "pending"
    assert pipeline.messages(pipeline.dlq_url) == []


def test_transient_failure_on_the_last_allowed_attempt_goes_to_the_dlq_with_its_reason(
    pipeline, processor
):
    max_receives = template_number(pipeline, "MaxReceiveCount")
    flaky(processor, failures=10**6)
    assert pipeline.post(fixture("message_created_incoming"), delivery_id="never-works")[0] == 202
    for _ in range(max_receives):
        attempt(pipeline, processor)
    assert len(processor.visibility) == max_receives - 1  # backed off every time but the last
    assert attempt(pipeline, processor) == (0, 0)  # nothing left on EventsQueue
    [dead] = pipeline.messages(pipeline.dlq_url)
    attributes = attributes_of(dead)
    assert attributes["error_type"] == "chatwoot_unavailable"
    assert attributes["error_reason"] == "Chatwoot answered 503"
    assert attributes["receive_count"] == str(max_receives)
    assert attributes["delivery_id"] == "never-works"


def test_crashing_invocations_reach_the_dlq_through_the_redrive_policy(pipeline, processor):
    """The safety net: a handler that dies (timeout, out of memory) never answers at all."""
    max_receives = template_number(pipeline, "MaxReceiveCount")
    assert pipeline.post(fixture("message_created_incoming"))[0] == 202

    def crash(event, context):
        raise MemoryError("simulated crash")

    for _ in range(max_receives):
        pipeline.make_visible()
        assert poll_once(pipeline.sqs, pipeline.queue_url, pipeline.queue_arn, crash) == (1, 1)
    pipeline.make_visible()
    assert poll_once(pipeline.sqs, pipeline.queue_url, pipeline.queue_arn, crash) == (0, 0)
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert "error_type" not in attributes_of(dead)  # SQS moved it; `dlq list` says so
    assert attributes_of(dead)["dedupe_key"] == "message_created:1:1"
