"""Chatwoot webhook signatures.

Chatwoot (account webhooks since 4.11.2, agent bots and API inboxes since 4.13.0) signs each
delivery as ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>``
with ``X-Chatwoot-Timestamp: <unix seconds>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SIGNATURE_RE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class SignatureError(Exception):
    """The delivery is not authentically from Chatwoot. ``reason`` is short and safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedDelivery:
    """The parts of a request that a signature covers."""

    signature_header: str | None
    timestamp_header: str | None
    body: bytes


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Return the ``X-Chatwoot-Signature`` value Chatwoot would send for ``body``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    delivery: SignedDelivery,
    secrets: Iterable[str],
    now: float,
    tolerance_seconds: int,
) -> None:
    """Raise :class:`SignatureError` unless one of ``secrets`` signed ``delivery`` recently.

    Every configured secret is compared (constant-time) so that timing does not reveal which
    one matched; several secrets serve several webhooks and old and new during a rotation.
    """
    if not delivery.signature_header:
        raise SignatureError("missing signature")
    match = _SIGNATURE_RE.match(delivery.signature_header.strip())
    if match is None:
        raise SignatureError("malformed signature header")
    if not delivery.timestamp_header:
        raise SignatureError("missing timestamp")
    try:
        timestamp = int(delivery.timestamp_header.strip())
    except ValueError:
        raise SignatureError("malformed timestamp") from None
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureError("stale timestamp" if timestamp < now else "timestamp in the future")
    given = match.group(1).lower().encode()
    matched = False
    for secret in secrets:
        expected = sign(secret, timestamp, delivery.body)[len("sha256=") :].encode()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError("signature mismatch")


def token_matches(token: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of an unsigned post's ``?token=`` against every secret."""
    if not token:
        return False
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(secret.encode(), token.encode())
    return matched


def parse_secrets(raw: str) -> list[str]:
    """Split the comma-separated secret parameter, dropping blanks."""
    return [part.strip() for part in raw.split(",") if part.strip()]
