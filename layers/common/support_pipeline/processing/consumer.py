"""EventsQueue consumer: one SQS record in, its support work done once, or a clear failure.

Per record: open the envelope (fetching a claim-checked body), run the routed handlers, and on
failure either back off (ChangeMessageVisibility from the receive count) or move the message to
the DLQ with its reason. The batch answer lists only the records that should come back.

Exactly once does not rest on a separate idempotency record: the event's timeline item, written
in one transaction with its conversation record, is its dedupe record (a repeat is logged as a
duplicate), merges are idempotent, and every effect is claimed before it is taken (the action
ledger, escalation and SLA claims, draft decisions). A repeat therefore finds its work done;
that saves two DynamoDB writes on every event.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from support_pipeline import claimcheck, deadline, selftest
from support_pipeline.chatwoot import payload as cw
from support_pipeline.config import ProcessorSettings
from support_pipeline.messages import (
    DLQ_COPIED,
    ORIGIN_ATTRIBUTE,
    PIPELINE_EVENTS,
    PIPELINE_ORIGIN,
    original_attributes,
    to_message_attributes,
)
from support_pipeline.pause import CONSUME, NeverPaused, Paused, PauseSwitch
from support_pipeline.processing.backoff import visibility_timeout
from support_pipeline.processing.errors import (
    Failure,
    PermanentError,
    classify,
)
from support_pipeline.processing.router import EventContext, Router
from support_pipeline.telemetry import Telemetry, fault, measure

logger = Logger(child=True)


PRIOR_ATTEMPTS = "prior_attempts"


def _prior_attempts(attributes: dict[str, str]) -> int:
    raw = attributes.get(PRIOR_ATTEMPTS, "0")
    return int(raw) if raw.isdigit() else 0


def record_attributes(record: SQSRecord) -> dict[str, str]:
    """The message's string attributes as ingest set them (restored after a DLQ round trip)."""
    raw = record.raw_event.get("messageAttributes") or {}
    flat = {
        name: str(value.get("stringValue", ""))
        for name, value in raw.items()
        if isinstance(value, Mapping) and value.get("stringValue") is not None
    }
    return original_attributes(flat)


@dataclass
class EventConsumer:
    """Processes SQS batches from EventsQueue."""

    settings: ProcessorSettings
    sqs: Any
    router: Router
    telemetry: Telemetry
    s3: Any = None
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random
    pause: PauseSwitch = field(default_factory=NeverPaused)

    def handle_batch(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The Lambda answer: ``{"batchItemFailures": [...]}``.

        Records are started only while enough of the invocation is left
        (``settings.record_start_seconds``); the rest are answered as failures at once and come
        back promptly, instead of the whole batch timing out and returning with no backoff.
        """
        if not event.get("Records"):
            return {"batchItemFailures": []}
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        with deadline.running_until(deadline.from_lambda_context(context, self.clock)):
            return dict(
                process_partial_response(
                    event=event,
                    record_handler=self.process_record,
                    processor=processor,
                    context=context,
                )
            )

    def process_record(self, record: SQSRecord) -> None:
        """Do one record's work, or decide its retry or dead-lettering (then raise to retry)."""
        attributes = record_attributes(record)
        # Deliveries that were real attempts: this copy's, plus those of the copies it replaced
        # when the processor had no time to start it (a deferral uses no attempt).
        receive_count = int(record.attributes.approximate_receive_count or 1) + _prior_attempts(
            attributes
        )
        mode = self.pause.mode()
        if mode == CONSUME:
            self._hold(record, attributes, receive_count, Paused(mode))
            return
        left = deadline.remaining()
        if left is not None and left < self.settings.record_start_seconds:
            self._defer(record, attributes, receive_count, left)
            return
        try:
            envelope = self._open(record, attributes)
            if selftest.is_self_test(envelope["raw_event"]):
                self._acknowledge_self_test(record, envelope)
                return
            result = self._run(envelope)
        except Paused as paused:
            # Paused in "actions" mode as a handler reached for Chatwoot: whatever the event
            # recorded stays; it comes back after the pause and finishes (the claims keep every
            # effect once).
            self._hold(record, attributes, receive_count, paused)
            return
        except Exception as exc:
            failure = classify(exc)
            if failure.error_type == "unexpected":
                fault(self.telemetry, "unexpected_exception")
            if failure.permanent or receive_count >= self.settings.max_receive_count:
                self._dead_letter(record, attributes, failure, receive_count)
                return
            self._back_off(record, attributes, failure, receive_count)
            raise
        duplicate = bool(result.get("duplicate"))
        self.telemetry.count("EventDuplicate" if duplicate else "EventProcessed")
        if not result.get("handled"):
            self.telemetry.count("EventUnrouted")
        logger.info(
            "duplicate event: its work was already done" if duplicate else "event processed",
            extra={
                "message_id": record.message_id,
                "event": envelope["event"],
                "dedupe_key": envelope["dedupe_key"],
                "handled": result.get("handled"),
                "duplicate": duplicate,
                "recorded_before": result.get("recorded_before", False),
                "receive_count": receive_count,
            },
        )

    def _open(self, record: SQSRecord, attributes: dict[str, str]) -> dict[str, Any]:
        body = record.body or ""
        if attributes.get(claimcheck.LOCATION_ATTRIBUTE) == claimcheck.S3_LOCATION:
            if self.s3 is None:
                raise PermanentError("claim_check", "claim-checked body but no S3 client")
            try:
                body = claimcheck.load(self.s3, body).decode("utf-8")
            except claimcheck.ClaimCheckError as exc:
                raise PermanentError("claim_check", str(exc)) from exc
        try:
            payload = json.loads(body)
        except ValueError:
            raise PermanentError("invalid_payload", "body is not JSON") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("event"), str)
            or not payload["event"].strip()
        ):
            raise PermanentError("invalid_payload", "body is not a JSON object with an event")
        payload = cw.from_automation(payload)
        # Ingest refuses malformed ids, but a message can reach the queue without it (redriven
        # from an older version, sent by hand): one check here covers every handler, before any
        # Chatwoot call or DynamoDB write.
        invalid = cw.invalid_ids(payload)
        if invalid is not None:
            raise PermanentError("invalid_payload", invalid)
        # The pipeline's own events (``draft_due``) come only from its own role, marked so;
        # ingest never marks a webhook so. One that claims the name otherwise never runs.
        if (
            cw.base_event(payload["event"]) in PIPELINE_EVENTS
            and attributes.get(ORIGIN_ATTRIBUTE) != PIPELINE_ORIGIN
        ):
            raise PermanentError(
                "forged_event", f"{payload['event'][:64]} is the pipeline's own event name"
            )
        # Only a message ingest marked as signed is trusted as signed. An unsigned one's key is
        # kept in the unsigned namespace, whether recomputed here or set by an older ingest.
        signed = attributes.get("signed") == "true"
        dedupe_key = attributes.get("dedupe_key") or cw.dedupe_key(
            payload, attributes.get("delivery_id"), body.encode("utf-8"), signed=signed
        )
        if not signed:
            dedupe_key = cw.unsigned_key(dedupe_key)
        return {
            "dedupe_key": dedupe_key,
            "event": cw.base_event(payload["event"]),
            "raw_event": payload["event"],
            "payload": payload,
            "delivery_id": attributes.get("delivery_id") or None,
            "received_at": attributes.get("received_at") or None,
            "attributes": attributes,
        }

    def _run(self, envelope: dict[str, Any]) -> dict[str, Any]:
        context = EventContext(
            event=envelope["event"],
            payload=envelope["payload"],
            dedupe_key=envelope["dedupe_key"],
            delivery_id=envelope["delivery_id"],
            received_at=envelope["received_at"],
            raw_event=envelope["raw_event"],
            attributes=envelope["attributes"],
        )
        result = self.router.dispatch(context)
        handled = context.shared.get("on_handled")
        if callable(handled):
            handled()
        # A duplicate is an event whose work was all done before (the handled mark): one
        # recorded by an earlier attempt that did not finish (a retry, a pause) is finished now
        # and counts as processed.
        return {
            **result,
            "duplicate": bool(context.shared.get("skip")),
            "recorded_before": bool(context.shared.get("duplicate")),
        }

    def _defer(
        self, record: SQSRecord, attributes: dict[str, str], receive_count: int, left: float
    ) -> None:
        """Not started for lack of time: a fresh copy goes back on the queue at once and this
        one is answered as done, so the deferral costs no attempt (a visibility change would
        count as a receive, and enough of them would dead-letter an event never tried)."""
        self.telemetry.count("EventDeferred")
        logger.info(
            "event not started; too little time left in the invocation",
            extra={
                "message_id": record.message_id,
                "dedupe_key": attributes.get("dedupe_key"),
                "seconds_left": round(max(left, 0.0), 2),
                "attempts": receive_count - 1,
            },
        )
        self._requeue(record, attributes, receive_count)

    def _hold(
        self, record: SQSRecord, attributes: dict[str, str], receive_count: int, paused: Paused
    ) -> None:
        """Paused: the event goes back on the queue as a fresh copy, delayed, and this one is
        answered as done. As for a deferral no attempt is used, so no pause is ever long enough
        to dead-letter an event, and each copy starts its retention afresh."""
        delay = self.settings.pause.paused_delay_seconds
        self.telemetry.count("Paused", reason=paused.mode)
        logger.info(
            "event held back: the pipeline is paused",
            extra={
                "message_id": record.message_id,
                "event": attributes.get("event"),
                "dedupe_key": attributes.get("dedupe_key"),
                "mode": paused.mode,
                "attempts": receive_count - 1,
                "back_in_seconds": delay,
            },
        )
        self._requeue(record, attributes, receive_count, delay)

    def _requeue(
        self, record: SQSRecord, attributes: dict[str, str], receive_count: int, delay: int = 0
    ) -> None:
        """A fresh copy of the record on EventsQueue that remembers the real attempts so far.
        If this send fails the exception propagates: the record itself stays on the queue."""
        self.sqs.send_message(
            QueueUrl=self.settings.events_queue_url,
            MessageBody=record.body,
            MessageAttributes=to_message_attributes(
                {**attributes, PRIOR_ATTEMPTS: str(receive_count - 1)}
            ),
            DelaySeconds=max(0, min(900, int(delay))),
        )

    def _acknowledge_self_test(self, record: SQSRecord, envelope: dict[str, Any]) -> None:
        """The health probe's delivery made it through ingest and the queue: count it and how
        long it took; no handler runs, nothing is written."""
        round_trip = selftest.round_trip_ms(envelope["payload"], self.clock())
        self.telemetry.count("SelfTestReceived")
        if round_trip is not None:
            measure(self.telemetry, "SelfTestRoundTrip", round_trip)
        logger.info(
            "self-test delivery acknowledged",
            extra={
                "message_id": record.message_id,
                "probe_id": str(envelope["payload"].get("probe_id", ""))[:64],
                "signed": envelope["attributes"].get("signed") == "true",
                "round_trip_ms": round_trip,
            },
        )

    def _back_off(
        self, record: SQSRecord, attributes: dict[str, str], failure: Failure, receive_count: int
    ) -> None:
        delay = visibility_timeout(
            receive_count,
            self.settings.backoff_base_seconds,
            self.settings.backoff_cap_seconds,
            self.rng,
            self.settings.backoff_scale,
        )
        self.telemetry.count("EventRetried", reason=failure.error_type)
        logger.warning(
            "event failed; will retry",
            extra={
                **_failure_fields(record, attributes, failure, receive_count),
                "retry_in_seconds": delay,
            },
        )
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.events_queue_url,
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=delay,
            )
        except Exception:
            # The queue's own visibility timeout then decides when it returns.
            logger.exception(
                "could not set backoff visibility", extra={"message_id": record.message_id}
            )

    def _dead_letter(
        self, record: SQSRecord, attributes: dict[str, str], failure: Failure, receive_count: int
    ) -> None:
        dlq_attributes = {
            "error_type": failure.error_type,
            "error_reason": failure.reason,
            "failed_at": cw.iso(self.clock()),
            "receive_count": str(receive_count),
            "original_attributes": json.dumps(attributes, sort_keys=True),
            **{name: attributes[name] for name in DLQ_COPIED if attributes.get(name)},
        }
        # If this send fails the exception propagates: the record stays on EventsQueue.
        self.sqs.send_message(
            QueueUrl=self.settings.events_dlq_url,
            MessageBody=record.body,
            MessageAttributes=to_message_attributes(dlq_attributes),
        )
        self.telemetry.count("EventDeadLettered", reason=failure.error_type)
        logger.error(
            "event moved to the DLQ",
            extra={
                **_failure_fields(record, attributes, failure, receive_count),
                "permanent": failure.permanent,
            },
        )


def _failure_fields(
    record: SQSRecord, attributes: dict[str, str], failure: Failure, receive_count: int
) -> dict[str, Any]:
    """What a failure log line says: ids and the reason, never the payload."""
    return {
        "message_id": record.message_id,
        "event": attributes.get("event"),
        "dedupe_key": attributes.get("dedupe_key"),
        "error_type": failure.error_type,
        "error_reason": failure.reason,
        "receive_count": receive_count,
    }
