"""The webhook endpoint: authenticate, validate, pick a dedupe key, enqueue, answer fast.

Chatwoot gives a delivery 5 seconds and never retries an account webhook, so this answers from
what it has: what fails authentication, size or JSON parsing gets a specific 4xx and is never
enqueued; our own faults get 500 (the one status besides 429 that Chatwoot retries, for agent-bot
deliveries: lib/webhooks/trigger.rb); a 2xx means the raw body is in the queue (or, when large,
in the payload bucket behind a pointer).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from support_pipeline import claimcheck
from support_pipeline.chatwoot import payload as cw
from support_pipeline.chatwoot.signature import (
    Credential,
    SignatureError,
    SignedDelivery,
    parse_secrets,
    token_matches,
    verify,
)
from support_pipeline.config import IngestSettings
from support_pipeline.messages import PIPELINE_EVENTS, to_message_attributes
from support_pipeline.selftest import is_self_test
from support_pipeline.telemetry import Telemetry, fault

logger = Logger(child=True)

Clock = Callable[[], float]
SecretFetcher = Callable[[bool], str]
"""Returns the raw secret parameter; ``True`` asks to bypass the cache."""

# A forced re-read of the secret parameter after a mismatch lets a newly added secret work at
# once, at most this often, so a flood of bad signatures cannot hammer SSM.
FORCED_REFRESH_INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class Response:
    """An HTTP answer in the API Gateway v2 shape."""

    status: int
    body: dict[str, Any]

    def to_api_gateway(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"content-type": "application/json"},
            "body": json.dumps(self.body),
        }


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP API v2 event the endpoint reads."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    raw_body: str
    base64_encoded: bool
    source_ip: str | None = None

    @classmethod
    def from_api_gateway(cls, event: Mapping[str, Any]) -> WebhookRequest:
        http = (event.get("requestContext") or {}).get("http") or {}
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        return cls(
            method=str(http.get("method") or event.get("httpMethod") or "").upper(),
            headers=headers,
            query=dict(event.get("queryStringParameters") or {}),
            raw_body=event.get("body") or "",
            base64_encoded=bool(event.get("isBase64Encoded")),
            source_ip=http.get("sourceIp"),
        )


class WebhookSecrets:
    """The configured secrets, cached, with a rate-limited forced refresh."""

    def __init__(self, fetch: SecretFetcher, clock: Clock = time.time) -> None:
        self._fetch = fetch
        self._clock = clock
        self._last_forced = float("-inf")

    def current(self) -> list[str]:
        return parse_secrets(self._fetch(False))

    def refreshed(self) -> list[str] | None:
        """Fresh secrets, or None if a forced refresh happened too recently."""
        now = self._clock()
        if now - self._last_forced < FORCED_REFRESH_INTERVAL_SECONDS:
            return None
        self._last_forced = now
        return parse_secrets(self._fetch(True))


@dataclass
class IngestService:
    """Turns one webhook request into one answer (and at most one queued message)."""

    settings: IngestSettings
    sqs: Any
    secrets: WebhookSecrets
    telemetry: Telemetry
    s3: Any = None
    clock: Clock = field(default=time.time)

    def handle(self, request: WebhookRequest) -> Response:
        try:
            response = self._handle(request)
        except Exception:
            # A bug of ours must still not look like Chatwoot's fault, nor crash into a bare 500.
            logger.exception("ingest failed unexpectedly")
            fault(self.telemetry, "ingest_internal_error")
            response = _refuse(500, "internal error; nothing was accepted")
        if response.status >= 400:
            reason = str(response.body.get("reason", "unknown"))
            if response.status == 401:  # one dimensionless series for WebhookUnauthorizedAlarm
                self.telemetry.count("WebhookUnauthorized")
            self.telemetry.count(
                "WebhookRejected" if response.status < 500 else "EnqueueFailed", reason=reason
            )
            logger.warning(
                "webhook refused",
                extra={
                    "status": response.status,
                    "reason": reason,
                    "delivery_id": request.headers.get("x-chatwoot-delivery"),
                    "source_ip": request.source_ip,
                },
            )
        return response

    def _handle(self, request: WebhookRequest) -> Response:
        if request.method != "POST":
            return _refuse(405, "method not allowed; POST the Chatwoot webhook here")
        # Cheap guard before decoding: base64 grows a body by 4/3.
        if len(request.raw_body) > self.settings.max_body_bytes * 4 // 3 + 4:
            return _refuse(413, "body too large")
        body = _decode_body(request)
        if body is None:
            return _refuse(400, "body is not valid base64")
        if len(body) > self.settings.max_body_bytes:
            return _refuse(413, "body too large")

        try:
            secrets = self.secrets.current()
        except Exception:
            logger.exception("webhook secret parameter unreadable")
            return _refuse(500, "webhook secrets unavailable")
        if not secrets:
            logger.error("webhook secret parameter is empty")
            return _refuse(500, "no webhook secret configured")

        signature = request.headers.get("x-chatwoot-signature")
        if signature is None:
            if not self.settings.accept_url_token:
                return _refuse(401, "missing signature")
            credential = token_matches(request.query.get("token"), secrets)
            if credential is None:
                return _refuse(401, "missing signature and invalid token")
            signed = False
        else:
            verified = self._verify(request, body, secrets)
            if isinstance(verified, str):
                return _refuse(401, verified)
            credential = verified
            signed = True

        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _refuse(400, "body is not UTF-8")
        except ValueError:
            return _refuse(400, "body is not JSON")
        unreadable = (
            "body is not a JSON object"
            if not isinstance(payload, dict)
            else "event is missing"
            if not isinstance(payload.get("event"), str) or not payload["event"].strip()
            else None
        )
        if unreadable is not None and not signed:
            return _refuse(400, unreadable)
        if unreadable is not None:
            # Signed JSON that is not the shape we know: taken in (Chatwoot never retries a
            # refusal); the processor dead-letters it with its reason, to redrive after a fix.
            self.telemetry.count("WebhookDrifted")
            logger.warning("signed webhook of an unknown shape taken in", extra={"why": unreadable})
            payload = {}
        event = payload.get("event") if isinstance(payload.get("event"), str) else ""
        payload = cw.from_automation(payload)  # an automation post is keyed by its message

        if not signed and cw.base_event(event) in PIPELINE_EVENTS:
            # No integrity and replayable: an unsigned post never carries the pipeline's own
            # events (a signed one that names one is dead-lettered by the processor).
            return _refuse(401, "an unsigned post cannot carry the pipeline's own events")
        delivery_id = request.headers.get("x-chatwoot-delivery") or None
        if cw.base_event(event) in self.settings.ignored_events:
            self.telemetry.count("WebhookIgnored")
            logger.info("webhook ignored", extra={"event": event, "delivery_id": delivery_id})
            return Response(200, {"status": "ignored", "event": event})
        # Ids go into Chatwoot URLs and DynamoDB keys downstream. A signed delivery with a
        # malformed one is still taken in: Chatwoot changes its payloads between versions and
        # never retries a refusal, so the processor dead-letters it with the field named (no id
        # of it reaches a URL or a key), to be inspected and redriven after a fix. An unsigned
        # post has no integrity: refused here. Checked after the ignored events, which are
        # dropped by name with nothing of theirs read.
        invalid = cw.invalid_ids(payload)
        if invalid is not None and not signed:
            return _refuse(400, invalid)
        if invalid is not None:
            self.telemetry.count("WebhookDrifted")
            logger.warning(
                "signed webhook with a malformed id taken in; the processor dead-letters it",
                extra={"event": event[:64], "why": invalid},
            )
        # A secret bound to an account (``<account>:<secret>``) signs for that account only:
        # an admin who can read one account's webhook secret cannot act on another account.
        if not credential.allows(cw.account_id(payload)):
            return _refuse(401, "the secret that signed this is not valid for its account")

        attributes = {
            "event": event[:256],
            "delivery_id": (delivery_id or "")[:256],
            "received_at": cw.iso(self.clock()),
            "signed": "true" if signed else "false",
            **_describe(payload, delivery_id, body, signed),
        }
        dedupe_key = attributes["dedupe_key"]
        try:
            self._enqueue(body, attributes)
        except (ClientError, BotoCoreError) as exc:
            logger.error(
                "enqueue failed",
                extra={
                    "delivery_id": delivery_id,
                    "dedupe_key": dedupe_key,
                    "error": type(exc).__name__,
                },
            )
            return _refuse(500, "queue unavailable; nothing was accepted")
        # The health probe's self-test is no Chatwoot event: kept out of the accepted count
        # (the report's volume) and counted on its own.
        self.telemetry.count("WebhookSelfTest" if is_self_test(event) else "WebhookAccepted")
        logger.info(
            "webhook queued",
            extra={k: v for k, v in attributes.items() if k != "received_at"},
        )
        return Response(202, {"status": "queued", "dedupe_key": dedupe_key})

    def _verify(self, request: WebhookRequest, body: bytes, secrets: list[str]) -> str | Credential:
        """The refusal reason, or what the matching secret may sign for."""
        delivery = SignedDelivery(
            signature_header=request.headers.get("x-chatwoot-signature"),
            timestamp_header=request.headers.get("x-chatwoot-timestamp"),
            body=body,
        )
        tolerance = self.settings.signature_tolerance_seconds
        try:
            return verify(delivery, secrets, self.clock(), tolerance)
        except SignatureError as error:
            if error.reason != "signature mismatch":
                return error.reason
        try:
            fresh = self.secrets.refreshed()
        except Exception:
            logger.exception("webhook secret refresh failed")
            fresh = None
        if fresh:
            try:
                return verify(delivery, fresh, self.clock(), tolerance)
            except SignatureError as error:
                return error.reason
        return "signature mismatch"

    def _enqueue(self, body: bytes, attributes: dict[str, str]) -> None:
        if len(body) <= self.settings.claim_check_threshold_bytes:
            try:
                self._send(body.decode("utf-8"), attributes)
                return
            except ClientError as exc:
                # Valid JSON can still hold characters SQS refuses (U+FFFE...): park it in S3.
                if exc.response.get("Error", {}).get("Code") != "InvalidMessageContents":
                    raise
        self._send_claim_check(body, attributes)

    def _send_claim_check(self, body: bytes, attributes: dict[str, str]) -> None:
        if not self.settings.payload_bucket or self.s3 is None:
            raise ClientError(
                {"Error": {"Code": "NoPayloadBucket", "Message": "payload bucket not configured"}},
                "PutObject",
            )
        pointer = claimcheck.store(
            self.s3, self.settings.payload_bucket, body, datetime.fromtimestamp(self.clock(), UTC)
        )
        self.telemetry.count("PayloadClaimChecked")
        self._send(pointer, {**attributes, claimcheck.LOCATION_ATTRIBUTE: claimcheck.S3_LOCATION})

    def _send(self, message_body: str, attributes: dict[str, str]) -> None:
        self.sqs.send_message(
            QueueUrl=self.settings.events_queue_url,
            MessageBody=message_body,
            MessageAttributes=to_message_attributes(attributes),
        )


def _describe(
    payload: cw.Payload, delivery_id: str | None, body: bytes, signed: bool
) -> dict[str, str]:
    """Dedupe key and ids; a payload too odd to read still gets a key (never a refusal).

    An unsigned post's key is in its own namespace, so it can never shadow a signed event.
    """
    try:
        return {
            "dedupe_key": cw.dedupe_key(payload, delivery_id, body, signed=signed)[:512],
            "account_id": (cw.account_id(payload) or "")[:64],
            "conversation_id": (cw.conversation_id(payload) or "")[:64],
        }
    except Exception:
        logger.exception("payload ids unreadable; falling back to a body digest")
        return {
            "dedupe_key": cw.dedupe_key({}, delivery_id, body, signed=signed),
            "account_id": "",
            "conversation_id": "",
        }


def _decode_body(request: WebhookRequest) -> bytes | None:
    if not request.base64_encoded:
        return request.raw_body.encode("utf-8")
    try:
        return base64.b64decode(request.raw_body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _refuse(status: int, reason: str) -> Response:
    return Response(status, {"status": "rejected" if status < 500 else "error", "reason": reason})
