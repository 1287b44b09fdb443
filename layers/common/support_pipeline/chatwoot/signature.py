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


@dataclass(frozen=True)
class Credential:
    """What a matching secret (or token) may speak for: ``accounts`` None means any account."""

    accounts: frozenset[str] | None

    def allows(self, account_id: str | None) -> bool:
        return self.accounts is None or account_id in self.accounts


def _credential(matched: list[str | None]) -> Credential:
    return Credential(None if None in matched else frozenset(a for a in matched if a))


def scoped(entry: str) -> tuple[str | None, str]:
    """``"<account id>:<secret>"`` -> (account, secret); a plain secret has no account."""
    account, separator, secret = entry.partition(":")
    if separator and account.isdigit() and secret:
        return account, secret
    return None, entry


def verify(
    delivery: SignedDelivery,
    secrets: Iterable[str],
    now: float,
    tolerance_seconds: int,
) -> Credential:
    """Raise :class:`SignatureError` unless one of ``secrets`` signed ``delivery`` recently.

    Every configured secret is compared (constant-time) so that timing does not reveal which
    one matched; several secrets serve several webhooks and old and new during a rotation.
    Returns what the matching secret may sign for: the accounts of ``<account>:<secret>``
    entries, or any account for a plain secret.
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
    matched: list[str | None] = []
    for entry in secrets:
        account, secret = scoped(entry)
        expected = sign(secret, timestamp, delivery.body)[len("sha256=") :].encode()
        if hmac.compare_digest(expected, given):
            matched.append(account)
    if not matched:
        raise SignatureError("signature mismatch")
    return _credential(matched)


def token_matches(token: str | None, secrets: Iterable[str]) -> Credential | None:
    """Constant-time check of an unsigned post's ``?token=`` against every secret: None when
    none matches, else what the matching secret may speak for."""
    if not token:
        return None
    matched: list[str | None] = []
    for entry in secrets:
        account, secret = scoped(entry)
        if hmac.compare_digest(secret.encode(), token.encode()):
            matched.append(account)
    if not matched:
        return None
    return _credential(matched)


def parse_secrets(raw: str) -> list[str]:
    """Split the comma-separated secret parameter, dropping blanks."""
    return [part.strip() for part in raw.split(",") if part.strip()]
