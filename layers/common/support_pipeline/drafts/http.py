"""The ``http`` drafter: the team's own agent endpoint, signed the way Chatwoot signs webhooks.

One POST per draft with the conversation's context as JSON::

    {"account_id", "conversation_id", "inbox_id", "language", "labels", "question",
     "messages": [{"role", "text", "created_at"}]}

signed ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`` with
``X-Chatwoot-Timestamp`` (so the endpoint can reuse a Chatwoot webhook verifier), plus an
``X-Support-Pipeline-Request`` id for correlating both sides' logs. The answer must be a JSON
object ``{"draft": str | null, "confidence": 0..1, "sources": [str | {"title", "ref"}]}``.

Timeouts, connection errors, 429 and 5xx are transient (the event retries through the queue like
any other); redirects and other 4xx are permanent (``drafter_rejected``); an answer that breaks
the contract is permanent (``drafter_bad_answer``, naming the field, never quoting the body).
Only https, except to a loopback host (tests, the local stack).
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from aws_lambda_powertools import Logger

from support_pipeline import deadline
from support_pipeline.chatwoot.signature import sign
from support_pipeline.drafts.base import DraftContext, DraftResult, HttpDrafterSettings, Source
from support_pipeline.processing.errors import PermanentError, TransientError

logger = Logger(child=True)

UNKNOWN_LANGUAGE = "und"  # BCP 47 "undetermined": the contact's language is not known
REQUEST_ID_HEADER = "X-Support-Pipeline-Request"
# A call needs at least this long to be worth starting, and this much is kept back after it for
# the caller to record the outcome before Lambda's timeout (as the Chatwoot client does).
MIN_CALL_SECONDS = 0.25
RESERVE_SECONDS = 0.5
# The answer becomes a private note an agent reads: bounded, and never read past the bound.
MAX_ANSWER_BYTES = 256 * 1024
MAX_DRAFT_CHARS = 20_000
MAX_SOURCES = 20


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (no DNS lookup: a name is not trusted)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is https, or http to a loopback host."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("http drafter: the url has no host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise ValueError(
        "http drafter: the url must start with https:// (the conversation travels in the body; "
        "plain http:// only to a loopback host)"
    )


def request_body(context: DraftContext) -> dict[str, Any]:
    """What the endpoint receives for ``context``."""
    return {
        "account_id": context.account_id,
        "conversation_id": context.conversation_id,
        "inbox_id": context.inbox_id,
        "language": context.language,
        "labels": list(context.labels),
        "question": context.question,
        "messages": [
            {"role": m.role, "text": m.text, "created_at": m.created_at} for m in context.messages
        ],
    }


def _bad(reason: str) -> PermanentError:
    return PermanentError("drafter_bad_answer", reason)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _source(item: Any, index: int) -> Source:
    if isinstance(item, str) and item.strip():
        return Source(title=item.strip())
    if isinstance(item, dict):
        title, ref = item.get("title"), item.get("ref", "")
        if not isinstance(title, str) or not title.strip():
            raise _bad(f"'sources[{index}].title' is not a non-empty string")
        if ref is None:
            ref = ""
        if not isinstance(ref, str):
            raise _bad(f"'sources[{index}].ref' is not a string")
        return Source(title=title.strip(), ref=ref.strip())
    raise _bad(f"'sources[{index}]' is not a non-empty string or a {{title, ref}} object")


def parse_answer(raw: bytes, context: DraftContext, drafter: str) -> DraftResult:
    """The endpoint's answer as a DraftResult; PermanentError naming what breaks the contract."""
    try:
        answer = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise _bad("the answer is not a JSON object")
    for key in ("draft", "confidence", "sources"):
        if key not in answer:
            raise _bad(f"the answer has no '{key}'")
    draft = answer["draft"]
    if draft is not None and not isinstance(draft, str):
        raise _bad("'draft' is not a string or null")
    if isinstance(draft, str) and len(draft) > MAX_DRAFT_CHARS:
        raise _bad(f"'draft' is longer than {MAX_DRAFT_CHARS} characters")
    confidence = answer["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise _bad("'confidence' is not a number")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise _bad("'confidence' is not between 0 and 1")
    sources = answer["sources"]
    if not isinstance(sources, list):
        raise _bad("'sources' is not a list")
    if len(sources) > MAX_SOURCES:
        raise _bad(f"'sources' has more than {MAX_SOURCES} items")
    parsed = tuple(_source(item, n) for n, item in enumerate(sources))
    language = answer.get("language")  # optional: the language the endpoint wrote in
    if language is not None and (not isinstance(language, str) or not language.strip()):
        raise _bad("'language' is not a non-empty string")
    text = draft.strip() if isinstance(draft, str) and draft.strip() else None
    return DraftResult(
        drafter=drafter,
        text=text,
        confidence=float(confidence),
        language=(language or context.language or UNKNOWN_LANGUAGE).strip(),
        sources=parsed,
    )


class HttpDrafter:
    """Asks the team's agent endpoint for a draft; see the module docstring."""

    name = "http"

    def __init__(
        self,
        settings: HttpDrafterSettings,
        secret: Callable[[], str],
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_url(settings.url)
        if not settings.timeout_seconds > 0:
            raise ValueError("http drafter: timeout_seconds must be positive")
        self.settings = settings
        self._secret = secret
        self._session = session or requests.Session()
        self._clock = clock

    def _timeout(self) -> float:
        """The configured timeout, cut to what the invocation has left (minus a reserve)."""
        left = deadline.remaining()
        if left is None:
            return self.settings.timeout_seconds
        usable = left - RESERVE_SECONDS
        if usable < MIN_CALL_SECONDS:
            raise TransientError(
                "deadline",
                f"draft endpoint not called: {max(left, 0):.1f} s left in the invocation",
            )
        return min(self.settings.timeout_seconds, usable)

    def draft(self, context: DraftContext) -> DraftResult:
        timeout = self._timeout()
        secret = self._secret()
        if not secret:
            raise PermanentError("drafter_misconfigured", "the draft endpoint's secret is empty")
        body = json.dumps(request_body(context), ensure_ascii=False, separators=(",", ":"))
        raw = body.encode()
        timestamp = int(self._clock())
        request_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Chatwoot-Signature": sign(secret, timestamp, raw),
            "X-Chatwoot-Timestamp": str(timestamp),
            REQUEST_ID_HEADER: request_id,
        }
        started = time.monotonic()
        answer = self._post(raw, headers, timeout, started)
        result = parse_answer(answer, context, self.name)
        logger.info(
            "http draft",
            extra={
                "account_id": context.account_id,
                "conversation_id": context.conversation_id,
                "request_id": request_id,
                "outcome": "draft" if result.text else "no_answer",
                "confidence": result.confidence,
                "sources": len(result.sources),
                "elapsed_ms": int((time.monotonic() - started) * 1000),
            },
        )
        return result

    def _post(self, raw: bytes, headers: dict[str, str], timeout: float, started: float) -> bytes:
        try:
            response = self._session.post(
                self.settings.url,
                data=raw,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # a redirect could carry the conversation elsewhere
                stream=True,
            )
        except requests.Timeout:
            raise TransientError(
                "drafter_unavailable", f"draft endpoint timed out after {timeout:.1f} s"
            ) from None
        except requests.ConnectionError:
            raise TransientError("drafter_unavailable", "draft endpoint unreachable") from None
        with response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise TransientError("drafter_unavailable", f"draft endpoint answered {status}")
            if 300 <= status < 400:
                raise PermanentError(
                    "drafter_rejected", f"draft endpoint answered {status} (redirects not followed)"
                )
            if status >= 400 or status < 200:
                raise PermanentError("drafter_rejected", f"draft endpoint answered {status}")
            return self._read(response, timeout, started)

    @staticmethod
    def _read(response: requests.Response, timeout: float, started: float) -> bytes:
        """The body, within ``MAX_ANSWER_BYTES`` and (roughly) the timeout as a whole."""
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=16 * 1024):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _bad(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                # The read timeout bounds each read; this bounds a slow trickle of them.
                if time.monotonic() - started > timeout:
                    raise TransientError(
                        "drafter_unavailable", f"draft endpoint timed out after {timeout:.1f} s"
                    )
                chunks.append(chunk)
        except requests.Timeout:
            raise TransientError(
                "drafter_unavailable", f"draft endpoint timed out after {timeout:.1f} s"
            ) from None
        except requests.RequestException:
            raise TransientError("drafter_unavailable", "draft endpoint answer cut off") from None
        return b"".join(chunks)
