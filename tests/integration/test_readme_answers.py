"""The README's table of the endpoint's answers is what the real ingest handler answers: each
row is driven by a request made for it, and every refusal the handler can give is in the table."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from support_pipeline.ingest import WebhookRequest
from tests.support import NOW, ROOT, SECRET, body_of, fixture, signed_headers, webhook_event

README = ROOT / "README.md"
SECRET_PARAM = "/support-pipeline/webhook-secret"


def documented() -> list[tuple[int, dict[str, Any]]]:
    text = README.read_text()
    section = text[text.index("## Answers the endpoint gives") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for match in re.finditer(r"^\| (\d{3}) \| `(\{.*?\})` \|", section, re.MULTILINE):
        rows.append((int(match.group(1)), json.loads(match.group(2))))
    return rows


def post(pipeline, event: dict[str, Any], service=None, **settings: Any):
    answer = (service or pipeline.ingest(**settings)).handle(WebhookRequest.from_api_gateway(event))
    return answer.status, answer.body


def signed(body: bytes, **headers: str) -> dict[str, str]:
    return {**signed_headers(body), **headers}


INCOMING = body_of(fixture("message_created_incoming"))


def bound_secret(pipeline):
    pipeline.clients["ssm"].put_parameter(
        Name=SECRET_PARAM, Value="2:secret-of-account-two", Type="SecureString", Overwrite=True
    )
    return post(pipeline, webhook_event(INCOMING, secret="secret-of-account-two"))


def no_secret(pipeline):
    pipeline.clients["ssm"].put_parameter(
        Name=SECRET_PARAM, Value=",", Type="SecureString", Overwrite=True
    )
    return post(pipeline, webhook_event(INCOMING))


def internal_error(pipeline):
    broken = dataclasses.replace(pipeline.ingest(), sqs=None)  # a bug: no client to send with
    return post(pipeline, webhook_event(INCOMING), service=broken)


def not_base64(pipeline):
    event = webhook_event(b"{}")
    event["body"], event["isBase64Encoded"] = "***", True
    return post(pipeline, event)


def queue_gone(pipeline):
    pipeline.sqs.delete_queue(QueueUrl=pipeline.queue_url)
    return post(pipeline, webhook_event(INCOMING))


def hostile_id(pipeline):
    """An unsigned post (no integrity) with a malformed id; a signed one is taken in."""
    payload = fixture("message_created_incoming")
    payload["conversation"]["id"] = "7#2"
    event = webhook_event(payload, headers={}, query=f"token={SECRET}")
    return post(pipeline, event, accept_url_token=True)


def typing(pipeline):
    return post(
        pipeline,
        webhook_event({**fixture("conversation_updated"), "event": "conversation_typing_on"}),
    )


REQUESTS: dict[str, Callable[[Any], tuple[int, dict[str, Any]]]] = {
    "queued": lambda p: post(p, webhook_event(INCOMING)),
    "ignored": typing,
    "body is not JSON": lambda p: post(p, webhook_event(b"{not json")),
    "body is not a JSON object": lambda p: post(
        p, webhook_event(b"[1, 2]", headers={}, query=f"token={SECRET}"), accept_url_token=True
    ),
    "event is missing": lambda p: post(
        p, webhook_event({"id": 1}, headers={}, query=f"token={SECRET}"), accept_url_token=True
    ),
    "body is not valid base64": not_base64,
    "body is not UTF-8": lambda p: post(p, webhook_event(b'{"event": "\xff"}')),
    "conversation id at conversation.id is not a positive integer": hostile_id,
    "missing signature": lambda p: post(p, webhook_event(INCOMING, headers={})),
    "missing signature and invalid token": lambda p: post(
        p, webhook_event(INCOMING, headers={}, query="token=guess"), accept_url_token=True
    ),
    "an unsigned post cannot carry the pipeline's own events": lambda p: post(
        p,
        webhook_event({"event": "draft_due"}, headers={}, query=f"token={SECRET}"),
        accept_url_token=True,
    ),
    "malformed signature header": lambda p: post(
        p, webhook_event(INCOMING, headers=signed(INCOMING, **{"X-Chatwoot-Signature": "md5=x"}))
    ),
    "missing timestamp": lambda p: post(
        p,
        webhook_event(
            INCOMING,
            headers={k: v for k, v in signed(INCOMING).items() if k != "X-Chatwoot-Timestamp"},
        ),
    ),
    "malformed timestamp": lambda p: post(
        p, webhook_event(INCOMING, headers=signed(INCOMING, **{"X-Chatwoot-Timestamp": "soon"}))
    ),
    "stale timestamp": lambda p: post(p, webhook_event(INCOMING, timestamp=NOW - 3600)),
    "timestamp in the future": lambda p: post(p, webhook_event(INCOMING, timestamp=NOW + 3600)),
    "signature mismatch": lambda p: post(p, webhook_event(INCOMING, secret="not-" + SECRET)),
    "the secret that signed this is not valid for its account": bound_secret,
    "method not allowed; POST the Chatwoot webhook here": lambda p: post(
        p, webhook_event(INCOMING, method="GET")
    ),
    "body too large": lambda p: post(p, webhook_event(INCOMING), max_body_bytes=64),
    "queue unavailable; nothing was accepted": queue_gone,
    "webhook secrets unavailable": lambda p: (
        p.clients["ssm"].delete_parameter(Name=SECRET_PARAM),
        post(p, webhook_event(INCOMING)),
    )[1],
    "no webhook secret configured": no_secret,
    "internal error; nothing was accepted": internal_error,
}


def row_key(body: dict[str, Any]) -> str:
    return str(body.get("reason") or body["status"])


ROWS = documented()


def test_the_table_has_a_row_for_every_answer_the_handler_gives():
    assert len(ROWS) >= 20
    assert {row_key(body) for _, body in ROWS} == set(REQUESTS)
    source = "\n".join(
        (ROOT / path).read_text()
        for path in (
            "layers/common/support_pipeline/ingest.py",
            "layers/common/support_pipeline/chatwoot/signature.py",
        )
    )
    reasons = set(re.findall(r'_refuse\(\d{3}, "([^"]+)"\)', source))
    reasons |= set(re.findall(r'SignatureError\(\s*"([^"]+)"', source))
    reasons |= {"stale timestamp", "timestamp in the future"}  # one expression, two reasons
    reasons.discard('stale timestamp" if timestamp < now else "timestamp in the future')
    assert reasons <= set(REQUESTS)


@pytest.mark.parametrize(("status", "body"), ROWS, ids=[row_key(b) for _, b in ROWS])
def test_each_documented_answer_is_what_the_handler_answers(pipeline, status, body):
    assert REQUESTS[row_key(body)](pipeline) == (status, body)
