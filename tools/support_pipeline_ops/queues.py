"""How many messages an SQS queue holds, by state (one GetQueueAttributes call)."""

from __future__ import annotations

from typing import Any, NamedTuple

DEPTH_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class QueueDepth(NamedTuple):
    waiting: int  # visible, ready to receive
    in_flight: int  # received, not deleted, not visible yet
    delayed: int  # sent with a delay that has not passed

    @property
    def total(self) -> int:
        """Everything the queue still holds (delayed messages are work to do too)."""
        return self.waiting + self.in_flight + self.delayed


def queue_depth(sqs: Any, url: str) -> QueueDepth:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=DEPTH_ATTRIBUTES)[
        "Attributes"
    ]
    return QueueDepth(*(int(attributes.get(name, 0)) for name in DEPTH_ATTRIBUTES))
