"""Claim check: bodies too large for one SQS message wait in the payload bucket.

The queue message then carries a small JSON pointer as its body and the message attribute
``body_location=s3``; the processor (and `dlq show`) fetch the original bytes back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

LOCATION_ATTRIBUTE = "body_location"
S3_LOCATION = "s3"


class ClaimCheckError(Exception):
    """The pointer is malformed or the stored payload is gone or altered."""


def store(s3: Any, bucket: str, body: bytes, now: datetime | None = None) -> str:
    """Put ``body`` in ``bucket`` and return the pointer message body."""
    when = now or datetime.now(UTC)
    key = f"payloads/{when:%Y/%m/%d}/{uuid.uuid4()}.json"
    digest = hashlib.sha256(body).hexdigest()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return json.dumps(
        {"claim_check": {"bucket": bucket, "key": key, "bytes": len(body), "sha256": digest}}
    )


def load(s3: Any, pointer_body: str) -> bytes:
    """Fetch and verify the payload a pointer names."""
    try:
        pointer = json.loads(pointer_body)["claim_check"]
        bucket, key, digest = pointer["bucket"], pointer["key"], pointer["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClaimCheckError("malformed claim-check pointer") from exc
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if hashlib.sha256(body).hexdigest() != digest:
        raise ClaimCheckError(f"claim-check payload s3://{bucket}/{key} does not match its digest")
    return body
