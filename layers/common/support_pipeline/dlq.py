"""Inspecting and redriving the dead-letter queue.

Listing peeks: it receives every message with a short visibility timeout, then makes each
visible again at once, so nothing is consumed. Selective redrive sends first and deletes after,
so a crash in between can duplicate a message (harmless: processing is idempotent) but never
lose one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from support_pipeline import claimcheck
from support_pipeline.messages import original_attributes, to_message_attributes

PEEK_VISIBILITY_SECONDS = 30
UNKNOWN = "unknown (moved by the queue's redrive policy: the processor crashed or timed out)"


@dataclass(frozen=True)
class DeadLetter:
    """One message waiting in the DLQ."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    receive_count: str

    @property
    def event(self) -> str:
        return self.attributes.get("event", "")

    def summary(self) -> dict[str, str]:
        return {
            "id": self.message_id,
            "event": self.event,
            "conversation": self.attributes.get("conversation_id", ""),
            "error_type": self.attributes.get("error_type", "unknown"),
            "error_reason": self.attributes.get("error_reason", UNKNOWN),
            "failed_at": self.attributes.get("failed_at", ""),
            "receive_count": self.attributes.get("receive_count", self.receive_count),
        }


class DeadLetterQueue:
    """Operations on EventsDLQ (and moving back to EventsQueue)."""

    def __init__(self, sqs: Any, dlq_url: str, queue_url: str, s3: Any = None) -> None:
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.queue_url = queue_url
        self.s3 = s3

    def _receive_all(self) -> list[DeadLetter]:
        seen: dict[str, DeadLetter] = {}
        empty_polls = 0
        while empty_polls < 2:
            batch = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                empty_polls += 1
                continue
            for message in batch:
                attributes = {
                    k: v.get("StringValue", "")
                    for k, v in (message.get("MessageAttributes") or {}).items()
                }
                seen[message["MessageId"]] = DeadLetter(
                    message_id=message["MessageId"],
                    receipt_handle=message["ReceiptHandle"],
                    body=message["Body"],
                    attributes=attributes,
                    receive_count=message.get("Attributes", {}).get("ApproximateReceiveCount", ""),
                )
        return list(seen.values())

    def _release(self, letters: Iterable[DeadLetter]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for i, letter in enumerate(letters)
        ]
        for start in range(0, len(entries), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.dlq_url, Entries=entries[start : start + 10]
            )

    def entries(self) -> list[DeadLetter]:
        """Every message in the DLQ, left in place and visible."""
        letters = self._receive_all()
        self._release(letters)
        return sorted(letters, key=lambda letter: letter.attributes.get("failed_at", ""))

    def show(self, message_id: str) -> dict[str, Any] | None:
        """One message in full: body (fetched from the bucket if claim-checked) and attributes."""
        letters = self._receive_all()
        try:
            letter = next((item for item in letters if item.message_id == message_id), None)
            if letter is None:
                return None
            body_text = letter.body
            if (
                original_attributes(letter.attributes).get(claimcheck.LOCATION_ATTRIBUTE) == "s3"
                and self.s3
            ):
                body_text = claimcheck.load(self.s3, letter.body).decode("utf-8", "replace")
            try:
                body: Any = json.loads(body_text)
            except ValueError:
                body = body_text
            return {
                "id": letter.message_id,
                "summary": letter.summary(),
                "attributes": letter.attributes,
                "body": body,
            }
        finally:
            self._release(letters)

    def redrive(
        self,
        select: Callable[[DeadLetter], bool],
        dry_run: bool = False,
    ) -> list[DeadLetter]:
        """Move the selected messages back to EventsQueue with their original attributes."""
        letters = self._receive_all()
        chosen = [letter for letter in letters if select(letter)]
        try:
            if dry_run:
                return chosen
            for letter in chosen:
                self.sqs.send_message(
                    QueueUrl=self.queue_url,
                    MessageBody=letter.body,
                    MessageAttributes=to_message_attributes(original_attributes(letter.attributes)),
                )
                self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=letter.receipt_handle)
            return chosen
        finally:
            self._release(letter for letter in letters if dry_run or letter not in chosen)

    def start_move_task(self, dlq_arn: str, queue_arn: str) -> str | None:
        """Redrive everything with SQS's own StartMessageMoveTask; None if the endpoint lacks it."""
        try:
            answer = self.sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=queue_arn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {
                "UnsupportedOperation",
                "InvalidAction",
                "NotImplemented",
                "UnknownOperationException",
                "InvalidParameterValue",
                "AWS.SimpleQueueService.UnsupportedOperation",
            } or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (404, 501):
                return None
            raise
        except NotImplementedError:
            return None
        handle: str = answer["TaskHandle"]
        return handle

    def purge(self) -> None:
        self.sqs.purge_queue(QueueUrl=self.dlq_url)
