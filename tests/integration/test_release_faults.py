"""Bugs the functions handle still reach the release alarms: Lambda counts no error for ingest's
500 or for an exception the processor turns into a retry, so the code counts ReleaseFault per
function version (template: IngestReleaseFaultsAlarm, ProcessorReleaseFaultsAlarm)."""

from __future__ import annotations

import json

from aws_lambda_powertools import Metrics

from support_pipeline.ingest import IngestService
from support_pipeline.telemetry import PowertoolsTelemetry, fault
from tests.support import fixture


def test_a_bug_in_ingest_answers_500_and_counts_a_release_fault(pipeline, monkeypatch):
    def broken(self, request):
        raise TypeError("a bug in the new release")

    monkeypatch.setattr(IngestService, "_handle", broken)
    status, answer = pipeline.post(fixture("message_created_incoming"))
    assert (status, answer["reason"]) == (500, "internal error; nothing was accepted")
    assert pipeline.telemetry.counts[("ReleaseFault", "ingest_internal_error")] == 1
    # a refusal of a bad request is not a fault of the release
    monkeypatch.undo()
    assert pipeline.post(b"not json")[0] == 400
    assert pipeline.telemetry.total("ReleaseFault") == 1


def test_an_unexpected_exception_in_the_processor_is_retried_and_counts_a_release_fault(
    pipeline, monkeypatch
):
    from support_pipeline.processing import consumer as consumer_module

    assert pipeline.post(fixture("message_created_incoming"))[0] == 202
    consumer = pipeline.consumer()

    def broken(self, envelope):
        raise KeyError("a bug in the new release")

    monkeypatch.setattr(consumer_module.EventConsumer, "_run", broken)
    pipeline.drain(consumer, max_batches=1)
    assert pipeline.telemetry.counts[("ReleaseFault", "unexpected_exception")] == 1
    assert pipeline.telemetry.counts[("EventRetried", "unexpected")] == 1


def test_the_fault_metric_carries_the_function_version_the_alarm_watches(monkeypatch, capsys):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "42")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "processor")
    fault(PowertoolsTelemetry(Metrics(namespace="SupportPipeline")), "unexpected_exception")
    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "SupportPipeline"
    assert sorted(directive["Dimensions"][0]) == ["service", "version"]
    assert (blob["version"], blob["service"], blob["ReleaseFault"]) == ("42", "processor", [1.0])


def test_an_event_finished_on_its_second_attempt_counts_as_processed_not_duplicate(
    pipeline, chatwoot
):
    """Recorded by a first attempt that failed after (Chatwoot answered 503): the retry does
    the rest of the work, so it is processed, not a duplicate (the report and dashboard count
    EventProcessed)."""
    from support_pipeline.chatwoot.client import ChatwootClient
    from tests.support import incoming

    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    consumer = pipeline.consumer(chatwoot=client)
    chatwoot.fail("POST", "/labels", 503)
    payload = incoming("I want a refund, let me talk to a human", 901, pipeline.clock.now)
    assert pipeline.post(payload, delivery_id="twice")[0] == 202
    pipeline.drain(consumer)
    pipeline.make_visible()  # its backoff passes
    pipeline.drain(consumer)
    counts = pipeline.telemetry.counts
    assert counts[("EventRetried", "chatwoot_unavailable")] == 1
    assert counts[("EventProcessed", None)] == 1 and counts[("EventDuplicate", None)] == 0
    # a real repeat of the finished event is a duplicate
    assert pipeline.post(payload, delivery_id="again")[0] == 202
    pipeline.drain(consumer)
    assert counts[("EventDuplicate", None)] == 1 and counts[("EventProcessed", None)] == 1
