"""Failure classes.

A *transient* failure may succeed later (throttling, timeouts, 5xx, 429, a lock held by a
concurrent delivery): the message backs off and retries. A *permanent* failure can never succeed
(a payload we cannot read, a 4xx that names the payload): the message goes to the DLQ at once.
Anything unrecognised is treated as transient, so a bounded number of retries happens before the
DLQ receives it with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

TRANSIENT_AWS_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "SlowDown",
        "TransactionConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Requests AWS will never accept as they are (a message over SQS's size limit, a value out of
# range): retrying them only delays the DLQ.
PERMANENT_AWS_CODES = frozenset(
    {
        "NoSuchKey",
        "ValidationException",
        "ItemCollectionSizeLimitExceededException",
        "InvalidParameterValue",
        "MessageTooLong",
        "InvalidMessageContents",
        "AWS.SimpleQueueService.InvalidParameterValue",
    }
)

REASON_LIMIT = 1000

# Error types the pipeline only ever gives permanent failures (a test keeps this list in step
# with the code): redriving such a message fails again unless the payload or setup changed.
PERMANENT_ERROR_TYPES = frozenset(
    {
        "invalid_payload",
        "invalid_id",
        "approval_required",
        "invalid_period",
        "claim_check",
        "chatwoot_rejected",
        "drafter_rejected",
        "drafter_bad_answer",
        "drafter_misconfigured",
        "aws_rejected",
        "forged_event",
    }
)


class PipelineError(Exception):
    """An error whose class and reason the pipeline chose. ``reason`` is safe to log."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(f"{error_type}: {reason}")
        self.error_type = error_type
        self.reason = reason


class TransientError(PipelineError):
    """May succeed if tried again later."""


class PermanentError(PipelineError):
    """Will never succeed as it is; the message belongs in the DLQ with this reason."""


@dataclass(frozen=True)
class Failure:
    """How a failed event is treated and what the DLQ says about it."""

    permanent: bool
    error_type: str
    reason: str


def classify(exc: BaseException) -> Failure:
    """Map any exception onto the pipeline's failure classes."""
    if isinstance(exc, PipelineError):
        return Failure(isinstance(exc, PermanentError), exc.error_type, exc.reason[:REASON_LIMIT])
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        operation = getattr(exc, "operation_name", "call")
        reason = f"AWS {operation} failed with {code}"
        if code in PERMANENT_AWS_CODES:
            return Failure(True, "aws_rejected", reason)
        if code in TRANSIENT_AWS_CODES or status >= 500 or status == 429:
            return Failure(False, "aws_transient", reason)
        return Failure(False, "aws_error", reason)
    if isinstance(exc, BotoCoreError):
        return Failure(False, "aws_transient", f"AWS client error {type(exc).__name__}")
    if type(exc).__name__ == "IdempotencyAlreadyInProgressError":
        return Failure(False, "in_progress", "another delivery of this event is being processed")
    # Unknown: type only, since exception text could quote customer content.
    return Failure(False, "unexpected", f"unexpected {type(exc).__name__}")
