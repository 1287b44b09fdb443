"""Inspecting and redriving the dead-letter queue.

Listing peeks: it receives every message with a visibility timeout, then makes each visible
again at once, so nothing is consumed. A peek long-polls until it has seen as many distinct
messages as the queue counted when it began, and stops early (saying so) after consecutive
empty long polls, at a time limit well inside the peek's visibility timeout, or when a message
comes back a second time: a held message turning visible again would otherwise be received
again and again.

Selective redrive moves each chosen message as it arrives: send first, delete after, so a crash
in between can duplicate a message (harmless: processing is idempotent) but never lose one. It
deletes only what it sent, and never sends one message twice in a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from support_pipeline import claimcheck
from support_pipeline.messages import original_attributes, to_message_attributes
from support_pipeline.processing.errors import PERMANENT_ERROR_TYPES

PEEK_VISIBILITY_SECONDS = 60
# A peek stops receiving this long before the first message it holds could turn visible again.
PEEK_MARGIN_SECONDS = 15
POLL_WAIT_SECONDS = 5  # long polling: SQS asks every server, so an empty answer means empty
EMPTY_POLLS = 2  # consecutive empty long polls before a peek gives up on the rest
UNKNOWN = "unknown (moved by the queue's redrive policy: the processor crashed or timed out)"
# Error codes of endpoints that lack StartMessageMoveTask (emulators, older APIs).
_NO_MOVE_TASK_CODES = frozenset(
    {
        "UnsupportedOperation",
        "InvalidAction",
        "NotImplemented",
        "UnknownOperationException",
        "InvalidParameterValue",
        "AWS.SimpleQueueService.UnsupportedOperation",
    }
)


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

    @property
    def permanent(self) -> bool:
        """Whether it failed in a way that fails again as it is (bad payload, refused call)."""
        return self.attributes.get("error_type", "") in PERMANENT_ERROR_TYPES

    def summary(self) -> dict[str, str]:
        return {
            "id": self.message_id,
            "event": self.event,
            "account": self.attributes.get("account_id", ""),
            "conversation": self.attributes.get("conversation_id", ""),
            "error_type": self.attributes.get("error_type", "unknown"),
            "error_reason": self.attributes.get("error_reason", UNKNOWN),
            "failed_at": self.attributes.get("failed_at", ""),
            "receive_count": self.attributes.get("receive_count", self.receive_count),
        }


@dataclass(frozen=True)
class Peek:
    """What a peek saw: the messages, the queue's own count, and why it stopped early if it did."""

    letters: list[DeadLetter]
    approximate_total: int
    stopped_early: str = ""  # empty when the peek saw everything the queue counted

    @property
    def complete(self) -> bool:
        return not self.stopped_early

    def note(self) -> str:
        """One line for people; empty when the peek is complete."""
        if self.complete:
            return ""
        return (
            f"listed {len(self.letters)} of about {self.approximate_total} messages; "
            f"{self.stopped_early}"
        )


@dataclass(frozen=True)
class Redrive:
    """What a redrive moved (or would move), and the peek it was chosen from."""

    moved: list[DeadLetter]
    peek: Peek


def redriven_attributes(attributes: dict[str, str]) -> dict[str, str]:
    """The attributes ingest set, for a fresh start: a redriven event gets all its attempts."""
    restored = original_attributes(attributes)
    restored.pop("prior_attempts", None)
    return restored


class DeadLetterQueue:
    """Operations on EventsDLQ (and moving back to EventsQueue)."""

    def __init__(
        self,
        sqs: Any,
        dlq_url: str,
        queue_url: str,
        s3: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        move_task_sqs: Any = None,
    ) -> None:
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.queue_url = queue_url
        self.s3 = s3
        self.clock = clock
        self.move_task_sqs = move_task_sqs or sqs

    def depth(self) -> int:
        """About how many messages the DLQ holds now (visible and in flight)."""
        return self._count()

    def _count(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    @staticmethod
    def _letter(message: dict[str, Any]) -> DeadLetter:
        attributes = {
            k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()
        }
        return DeadLetter(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message["Body"],
            attributes=attributes,
            receive_count=message.get("Attributes", {}).get("ApproximateReceiveCount", ""),
        )

    def _peek(
        self, held: dict[str, DeadLetter], take: Callable[[DeadLetter], bool] | None = None
    ) -> Peek:
        """Receive every message once, hiding each in ``held`` unless ``take`` moves it.

        ``held`` maps message ids to the newest receipt; the caller releases it in a ``finally``.
        ``take(letter)`` is called once per distinct message as it arrives; True means it sent
        the message on and deleted it here.
        """
        expected = self._count()
        seen: dict[str, DeadLetter] = {}
        taken: set[str] = set()
        deadline = self.clock() + PEEK_VISIBILITY_SECONDS - PEEK_MARGIN_SECONDS
        empty_polls = polls = 0
        stopped = ""
        # Stop at the queue's own count: past it, a redrive could meet the very messages it just
        # sent, dead-lettered again by the processor (new ids). An empty count gets one look.
        while len(seen) < expected or polls == 0:
            remaining = deadline - self.clock()
            if remaining <= 0:
                stopped = (
                    f"stopped after {PEEK_VISIBILITY_SECONDS - PEEK_MARGIN_SECONDS} s, before "
                    "the first messages it hid could turn visible again"
                )
                break
            wait = min(POLL_WAIT_SECONDS, int(remaining)) if len(seen) < expected else 0
            polls += 1
            batch = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=PEEK_VISIBILITY_SECONDS,
                WaitTimeSeconds=wait,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                if len(seen) >= expected:
                    break
                empty_polls += 1
                if empty_polls >= EMPTY_POLLS:
                    stopped = (
                        f"the rest stayed out of reach through {EMPTY_POLLS} long polls "
                        "(another reader holds them, or the count is out of date)"
                    )
                    break
                continue
            empty_polls = 0
            came_back = False
            fresh: list[DeadLetter] = []
            for message in batch:  # hold the whole batch first: a failed send releases it all
                letter = self._letter(message)
                if letter.message_id in taken:
                    # A copy of a message already sent on (SQS may keep one past a delete):
                    # delete it, never send it twice.
                    self.sqs.delete_message(
                        QueueUrl=self.dlq_url, ReceiptHandle=letter.receipt_handle
                    )
                elif letter.message_id in seen:
                    # Its peek visibility ran out: keep the newest receipt, count it once, stop.
                    held[letter.message_id] = letter
                    came_back = True
                else:
                    seen[letter.message_id] = letter
                    held[letter.message_id] = letter
                    fresh.append(letter)
            for letter in fresh:
                if take is not None and take(letter):
                    taken.add(letter.message_id)
                    del held[letter.message_id]
            if came_back:
                stopped = "a message came back a second time (its peek visibility ran out)"
                break
        letters = sorted(seen.values(), key=lambda letter: letter.attributes.get("failed_at", ""))
        return Peek(letters, expected, stopped)

    def _release(self, letters: Iterable[DeadLetter]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for i, letter in enumerate(letters)
        ]
        for start in range(0, len(entries), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.dlq_url, Entries=entries[start : start + 10]
            )

    def peek(self) -> Peek:
        """Every message in the DLQ (or as many as a peek could see), left in place and visible."""
        held: dict[str, DeadLetter] = {}
        try:
            return self._peek(held)
        finally:
            self._release(held.values())

    def show(self, message_id: str) -> tuple[dict[str, Any] | None, Peek]:
        """One message in full: body (fetched from the bucket if claim-checked) and attributes;
        None if the peek did not see it. With the peek, which says whether it saw everything.
        """
        held: dict[str, DeadLetter] = {}
        try:
            peek = self._peek(held)
            letter = next((item for item in peek.letters if item.message_id == message_id), None)
            if letter is None:
                return None, peek
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
            }, peek
        finally:
            self._release(held.values())

    def redrive(
        self,
        select: Callable[[DeadLetter], bool],
        dry_run: bool = False,
    ) -> Redrive:
        """Move the selected messages back to EventsQueue with their original attributes."""
        moved: list[DeadLetter] = []

        def take(letter: DeadLetter) -> bool:
            if not select(letter):
                return False
            if dry_run:
                moved.append(letter)
                return False
            self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=letter.body,
                MessageAttributes=to_message_attributes(redriven_attributes(letter.attributes)),
            )
            # Sent: it counts as moved even if the delete below fails (a harmless duplicate).
            moved.append(letter)
            self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=letter.receipt_handle)
            return True

        held: dict[str, DeadLetter] = {}
        try:
            peek = self._peek(held, take)
        finally:
            self._release(held.values())
        return Redrive(moved, peek)

    def start_move_task(self, dlq_arn: str, queue_arn: str) -> str | None:
        """Redrive everything with SQS's own StartMessageMoveTask; None if the endpoint lacks it.

        AWS refusals (AccessDenied, throttling, its own 500 InternalError) are raised.
        """
        try:
            answer = self.move_task_sqs.start_message_move_task(
                SourceArn=dlq_arn, DestinationArn=queue_arn
            )
        except ClientError as exc:
            if _lacks_move_task(exc):
                return None
            raise
        except NotImplementedError:  # moto in process
            return None
        handle: str = answer["TaskHandle"]
        return handle

    def purge(self) -> None:
        self.sqs.purge_queue(QueueUrl=self.dlq_url)


def _lacks_move_task(exc: ClientError) -> bool:
    """Does this error say the endpoint has no StartMessageMoveTask (rather than refuse it)?

    The moto server (the local stack) answers an operation it lacks with HTTP 500 and an HTML
    page, which botocore reports with the bare status as its code ("500"). AWS's own errors,
    500 included, carry an error code (``InternalError``...), and are not swallowed here.
    """
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _NO_MOVE_TASK_CODES or status in (404, 501):
        return True
    return status == 500 and code == "500"
