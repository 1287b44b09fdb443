"""The scheduled health probe: is Chatwoot answering us, and does a delivery get all the way in?

Two checks, every ``HealthProbeRateMinutes``:

1. **Chatwoot**: an authenticated ``GET /api/v1/profile`` with the pipeline's access token, as
   the processor's own calls are made. OK is 200 with the token's user id. Records
   ``ProbeChatwootOk`` (1 or 0) and, when Chatwoot answered, ``ProbeChatwootLatency`` (ms).
   Skipped in dry run (no ``ChatwootBaseUrl``): there is no Chatwoot to ask.
2. **Webhook**: a self-test delivery (support_pipeline/selftest.py), signed with the webhook
   secret from SSM like Chatwoot signs, POSTed to the stack's own public URL (API Gateway ->
   ingest -> EventsQueue -> processor). OK is ingest's 202. Records ``ProbeWebhookOk`` and
   ``ProbeWebhookLatency``; the processor records the rest of the trip (``SelfTestRoundTrip``).

A failed check is a measurement, not an error: the function succeeds and the alarms on the
metrics page (``ProbeChatwootFailedAlarm``, ``ProbeWebhookFailedAlarm``). Logs carry the status
or the failure's kind, never the token, the secret or a body.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from aws_lambda_powertools import Logger

from support_pipeline.chatwoot.signature import parse_secrets, scoped, sign
from support_pipeline.selftest import self_test_payload

logger = Logger(child=True)

Record = Callable[[str, float, str], None]
"""(metric name, value, unit: "Count" or "Milliseconds")."""


@dataclass(frozen=True)
class ProbeSettings:
    webhook_url: str
    webhook_secret_param: str
    chatwoot_base_url: str = ""
    chatwoot_api_token_param: str = ""
    timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Any = None) -> ProbeSettings:
        import os

        from support_pipeline.config import ConfigError, SupportSettings

        env = os.environ if env is None else env
        support = SupportSettings.from_env(env)  # refuses a plain http:// Chatwoot URL
        url = str(env.get("WEBHOOK_URL", "")).strip()
        secret = str(env.get("WEBHOOK_SECRET_PARAM", "")).strip()
        if not url or not secret:
            raise ConfigError("WEBHOOK_URL and WEBHOOK_SECRET_PARAM are required")
        raw_timeout = str(env.get("PROBE_TIMEOUT_SECONDS", "") or "5")
        try:
            timeout = float(raw_timeout)
        except ValueError as error:
            raise ConfigError(
                f"PROBE_TIMEOUT_SECONDS must be a number, got {raw_timeout!r}"
            ) from error
        return cls(
            webhook_url=url,
            webhook_secret_param=secret,
            chatwoot_base_url=support.chatwoot_base_url,
            chatwoot_api_token_param=support.chatwoot_api_token_param,
            timeout_seconds=timeout,
        )


class HealthProbe:
    def __init__(
        self,
        settings: ProbeSettings,
        fetch_parameter: Callable[[str], str],
        record: Record,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self._fetch = fetch_parameter
        self._record = record
        self._session = session or requests.Session()
        self._clock = clock
        self._timer = timer

    def run(self) -> dict[str, Any]:
        result = {"chatwoot": self.check_chatwoot(), "webhook": self.check_webhook()}
        logger.info("health probe", extra=result)
        return result

    # ---- 1. Chatwoot ---------------------------------------------------------------------
    def check_chatwoot(self) -> dict[str, Any]:
        if not self.settings.chatwoot_base_url:
            return {"ok": None, "skipped": "dry run: no ChatwootBaseUrl"}
        try:
            token = self._fetch(self.settings.chatwoot_api_token_param)
        except Exception as error:
            return self._verdict(
                "Chatwoot", False, None, f"token unreadable: {type(error).__name__}"
            )
        url = f"{self.settings.chatwoot_base_url.rstrip('/')}/api/v1/profile"
        started = self._timer()
        try:
            response = self._session.get(
                url,
                headers={"api_access_token": token, "Accept": "application/json"},
                timeout=(min(3.05, self.settings.timeout_seconds), self.settings.timeout_seconds),
            )
        except requests.Timeout:
            return self._verdict("Chatwoot", False, None, "timed out")
        except requests.RequestException as error:
            return self._verdict("Chatwoot", False, None, f"no answer: {type(error).__name__}")
        latency = (self._timer() - started) * 1000.0
        status = response.status_code
        if status != 200:
            return self._verdict("Chatwoot", False, latency, f"status {status}", status=status)
        try:
            user_id = response.json().get("id")
        except (ValueError, AttributeError):
            user_id = None
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
            return self._verdict(
                "Chatwoot", False, latency, "answer without a user id", status=status
            )
        return self._verdict("Chatwoot", True, latency, "status 200", status=200)

    # ---- 2. the webhook, the whole way in --------------------------------------------------
    def check_webhook(self) -> dict[str, Any]:
        try:
            secrets = parse_secrets(self._fetch(self.settings.webhook_secret_param))
        except Exception as error:
            return self._verdict(
                "Webhook", False, None, f"secret unreadable: {type(error).__name__}"
            )
        if not secrets:
            return self._verdict("Webhook", False, None, "no webhook secret configured")
        # The first secret, as Chatwoot would sign with one of them; bound to an account, the
        # self-test names that account (ingest refuses a bound secret for any other).
        account, secret = scoped(secrets[0])
        sent_at = self._clock()
        payload = self_test_payload(sent_at, account)
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = int(sent_at)
        headers = {
            "Content-Type": "application/json",
            "X-Chatwoot-Signature": sign(secret, timestamp, body),
            "X-Chatwoot-Timestamp": str(timestamp),
            "X-Chatwoot-Delivery": f"self-test-{uuid.uuid4()}",
            "User-Agent": "support-pipeline-health-probe",
        }
        started = self._timer()
        try:
            response = self._session.post(
                self.settings.webhook_url,
                data=body,
                headers=headers,
                timeout=(min(3.05, self.settings.timeout_seconds), self.settings.timeout_seconds),
            )
        except requests.Timeout:
            return self._verdict("Webhook", False, None, "timed out")
        except requests.RequestException as error:
            return self._verdict("Webhook", False, None, f"no answer: {type(error).__name__}")
        latency = (self._timer() - started) * 1000.0
        ok = response.status_code == 202
        verdict = self._verdict(
            "Webhook",
            ok,
            latency,
            f"status {response.status_code}" + ("" if ok else f": {_reason(response)}"),
            status=response.status_code,
        )
        verdict["probe_id"] = payload["probe_id"]
        return verdict

    def _verdict(
        self, check: str, ok: bool, latency: float | None, detail: str, status: int | None = None
    ) -> dict[str, Any]:
        self._record(f"Probe{check}Ok", 1.0 if ok else 0.0, "Count")
        if latency is not None:
            self._record(f"Probe{check}Latency", round(latency, 1), "Milliseconds")
        verdict: dict[str, Any] = {"ok": ok, "detail": detail}
        if latency is not None:
            verdict["latency_ms"] = round(latency, 1)
        if status is not None:
            verdict["status"] = status
        if not ok:
            logger.warning(f"health probe: {check.lower()} check failed", extra=verdict)
        return verdict


def _reason(response: requests.Response) -> str:
    """Ingest's short refusal reason (never a secret), or nothing."""
    try:
        reason = response.json().get("reason")
    except (ValueError, AttributeError):
        return "no reason given"
    return str(reason)[:120] if reason else "no reason given"
