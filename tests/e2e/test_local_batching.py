"""The batching window of the local event source, end to end over real HTTP."""

import math
import time

import pytest
import requests

from tests.e2e.stacks import running_stack
from tests.support import body_of, fixture, signed_headers

pytestmark = pytest.mark.e2e
SECRET = "e2e-secret-for-the-batching-window"  # invented


def test_the_batching_window_gathers_webhooks_into_one_batch_as_lambda_does():
    """MaximumBatchingWindowInSeconds (the template's ProcessorBatchingWindowSeconds, 3 s here):
    the window begins when the previous invocation completes, and the event source keeps
    receiving until the batch (10) is full or the window ends. One poller here, so no other
    execution environment takes a share."""

    def post_one(stack, number: int) -> None:
        payload = {**fixture("message_created_incoming"), "id": 7100 + number}
        body = body_of(payload)
        headers = signed_headers(
            body, secret=SECRET, timestamp=time.time(), delivery_id=f"window-{number}"
        )
        assert requests.post(stack.webhook_url, data=body, headers=headers, timeout=5).ok

    window = 3
    parameters = {"ProcessorBatchingWindowSeconds": str(window)}
    with running_stack(SECRET, pollers=1, parameters=parameters) as stack:
        post_one(stack, 0)  # the poller is up and polling once this one is processed
        before = stack.wait_until_settled(timeout=30)["processor"]
        started = time.monotonic()
        for number in range(1, 7):
            post_one(stack, number)
        posted_in = time.monotonic() - started
        after = stack.wait_until_settled(timeout=20)["processor"]
        assert after["records"] - before["records"] == 6
        batches = after["batches"] - before["batches"]
        if posted_in < window - 1:  # all six inside the window after the first: one invocation
            assert batches == 1, (posted_in, after)
        else:  # a slow machine: still one invocation per window, not one per webhook
            assert batches <= math.ceil(posted_in / window) + 1, (posted_in, after)
