"""The forced secret refresh at ingest is rate-limited, on an injected clock (no waiting).

A signature mismatch makes ingest re-read the secret parameter at once (a secret just added in
Chatwoot works within seconds), but at most once per FORCED_REFRESH_INTERVAL_SECONDS: a flood
of badly signed requests must not become a flood of SSM calls (issue 15, part 7).
"""

from __future__ import annotations

import json

from support_pipeline.config import IngestSettings
from support_pipeline.ingest import (
    FORCED_REFRESH_INTERVAL_SECONDS,
    IngestService,
    WebhookRequest,
    WebhookSecrets,
)
from support_pipeline.telemetry import RecordingTelemetry
from tests.support import NOW, SECRET, Clock, fixture, webhook_event

INTERVAL = FORCED_REFRESH_INTERVAL_SECONDS


class Parameter:
    """The secret parameter behind a cache: a forced fetch reads what is stored now."""

    def __init__(self, value: str) -> None:
        self.stored = value
        self.cached = value
        self.forced = 0

    def fetch(self, force: bool) -> str:
        if force:
            self.forced += 1
            self.cached = self.stored
        return self.cached


class Queue:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_message(self, **kwargs):
        self.sent.append(kwargs)
        return {"MessageId": str(len(self.sent))}


def test_a_second_forced_refresh_within_the_interval_does_not_fetch():
    clock = Clock(NOW)
    parameter = Parameter("s1")
    secrets = WebhookSecrets(parameter.fetch, clock=clock)
    assert secrets.refreshed() == ["s1"] and parameter.forced == 1
    parameter.stored = "s1,s2"
    for elapsed in (0, 1, INTERVAL / 2, INTERVAL - 0.001):
        clock.now = NOW + elapsed
        assert secrets.refreshed() is None
    assert parameter.forced == 1
    assert secrets.current() == ["s1"]  # and the cache was not touched either
    clock.now = NOW + INTERVAL  # the interval has passed: the next one fetches
    assert secrets.refreshed() == ["s1", "s2"] and parameter.forced == 2


def test_the_interval_counts_from_the_last_fetch_not_from_the_last_attempt():
    clock = Clock(NOW)
    parameter = Parameter("s1")
    secrets = WebhookSecrets(parameter.fetch, clock=clock)
    fetched_at = []
    for second in range(0, 3 * INTERVAL + 1):
        clock.now = NOW + second
        if secrets.refreshed() is not None:
            fetched_at.append(second)
    assert fetched_at == [0, INTERVAL, 2 * INTERVAL, 3 * INTERVAL]
    assert parameter.forced == 4


def test_a_flood_of_bad_signatures_costs_one_fetch_per_interval_and_a_new_secret_gets_in():
    clock = Clock(NOW)
    parameter = Parameter(SECRET)
    queue = Queue()
    service = IngestService(
        settings=IngestSettings(events_queue_url="q", webhook_secret_param="/p"),
        sqs=queue,
        secrets=WebhookSecrets(parameter.fetch, clock=clock),
        telemetry=RecordingTelemetry(),
        clock=clock,
    )

    def post(secret: str, delivery: str) -> int:
        event = webhook_event(
            json.dumps(fixture("message_created_incoming")).encode(),
            secret=secret,
            timestamp=clock.now,
            delivery_id=delivery,
        )
        return service.handle(WebhookRequest.from_api_gateway(event)).status

    for i in range(20):  # 20 forged requests in 19 seconds
        clock.now = NOW + i
        assert post("forged", f"f-{i}") == 401
    assert parameter.forced == 1
    # The operator adds Chatwoot's new secret; within the interval the cache still wins.
    parameter.stored = f"{SECRET},rotated"
    clock.now = NOW + INTERVAL - 1
    assert post("rotated", "r-1") == 401 and parameter.forced == 1
    clock.now = NOW + INTERVAL
    assert post("rotated", "r-2") == 202 and parameter.forced == 2
    assert post("rotated", "r-3") == 202 and parameter.forced == 2  # from the cache now
    assert post(SECRET, "old") == 202 and parameter.forced == 2
    assert len(queue.sent) == 3
