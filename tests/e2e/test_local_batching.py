"""The batching window of the local event source, end to end over real HTTP."""

import math
import time

import pytest
import requests

from tests.e2e.stacks import running_stack
from tests.support import body_of, fixture, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-the-batching-window"  # invented


def test_a_quiet_webhook_goes_at_once_and_webhooks_after_an_invocation_are_gathered():
    """MaximumBatchingWindowInSeconds (the template's ProcessorBatchingWindowSeconds, 5 s here)
    as AWS documents it for SQS: the window begins when the previous invocation completes, and
    the event source keeps receiving until the batch (10) is full or the window ends. So a
    webhook after a quiet spell is invoked at once, and the ones that follow an invocation are
    gathered. One poller here, so no other execution environment takes a share."""

    def post_one(stack, number: int) -> None:
        payload = {**fixture("message_created_incoming"), "id": 7100 + number}
        body = body_of(payload)
        headers = signed_headers(
            body, secret=SECRET, timestamp=time.time(), delivery_id=f"window-{number}"
        )
        assert requests.post(stack.webhook_url, data=body, headers=headers, timeout=5).ok

    def records(stack) -> int:
        return int(stack.status()["processor"]["records"])

    def wait_for_records(stack, count: int, timeout: float = 30) -> float:
        started, end = time.monotonic(), time.monotonic() + timeout
        while records(stack) < count:
            assert time.monotonic() < end, stack.status()
            time.sleep(0.05)
        return time.monotonic() - started

    window = 5
    parameters = {"ProcessorBatchingWindowSeconds": str(window)}
    with running_stack(SECRET, pollers=1, parameters=parameters) as stack:
        post_one(stack, 0)  # the poller is up and polling once this one is processed
        wait_for_records(stack, 1, timeout=60)
        time.sleep(window + 0.5)  # the window after that invocation ends: a quiet spell

        post_one(stack, 1)
        took = wait_for_records(stack, 2)
        assert took < window - 1, took  # invoked at once, not held for a window

        # That invocation began a window: what comes now is gathered.
        before = stack.status()["processor"]
        started = time.monotonic()
        for number in range(2, 8):
            post_one(stack, number)
        posted_in = time.monotonic() - started
        wait_for_records(stack, 8)
        after = stack.wait_until_settled(timeout=20)["processor"]
        assert after["records"] - before["records"] == 6
        batches = after["batches"] - before["batches"]
        if posted_in < window / 2:  # all six inside the window: one invocation
            assert batches == 1, (posted_in, after)
        else:  # a slow machine: still one invocation per window, not one per webhook
            assert batches <= math.ceil(posted_in / window) + 1, (posted_in, after)
