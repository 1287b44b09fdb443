"""The http drafter against a real agent endpoint on loopback that checks Chatwoot's signature.

The endpoint verifies every request with ``support_pipeline.chatwoot.signature.verify`` (as the
team's endpoint would), records what it received, and answers what the test scripted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support_pipeline import deadline
from support_pipeline.chatwoot.payload import account_id, conversation_id
from support_pipeline.chatwoot.signature import SignatureError, SignedDelivery, verify
from support_pipeline.drafts.base import (
    ContextMessage,
    DraftContext,
    HttpDrafterSettings,
    Source,
)
from support_pipeline.drafts.http import HttpDrafter
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.processing.router import Router
from tests.support import attributes_of, fixture

SECRET = "agent-endpoint-secret-0123456789"  # invented for tests
QUESTION = "My card ending 4242 was charged twice, can you refund one?"
CONTEXT = DraftContext(
    account_id="1",
    conversation_id="7",
    question=QUESTION,
    messages=(
        ContextMessage("customer", "Hi, I have a billing question", 1790475300.0),
        ContextMessage("agent", "Sure, what happened?", 1790475320.5),
        ContextMessage("note", "Check Stripe first", None),
    ),
    language="en",
    inbox_id="3",
    labels=("billing", "vip"),
)
GOOD_ANSWER = {
    "draft": "Sorry about that! I can see two charges; a refund needs an agent's check.",
    "confidence": 0.72,
    "sources": ["Refund policy", {"title": "Double charges", "ref": "kb/billing/double.md"}],
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: str  # "ok" or the SignatureError's reason


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: GOOD_ANSWER)  # JSON-encoded unless bytes
    delay: float = 0.0


class AgentEndpoint:
    """The team's agent endpoint: verifies the signature (401 if it fails), then answers."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.replies: list[Reply] = []  # scripted, in order; the last one repeats
        self._release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = SignedDelivery(
                    self.headers.get("X-Chatwoot-Signature"),
                    self.headers.get("X-Chatwoot-Timestamp"),
                    body,
                )
                try:
                    verify(delivery, [endpoint.secret], now=time.time(), tolerance_seconds=300)
                    verified = "ok"
                except SignatureError as error:
                    verified = error.reason
                endpoint.received.append(Received(dict(self.headers), body, verified))
                if verified != "ok":
                    return self._send(401, json.dumps({"error": verified}).encode())
                reply = endpoint.replies[0] if endpoint.replies else Reply()
                if len(endpoint.replies) > 1:
                    endpoint.replies.pop(0)
                if reply.delay and endpoint._release.wait(reply.delay):
                    return  # the test is over
                raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
                self._send(reply.status, raw if isinstance(raw, bytes) else raw.encode())

            def _send(self, status: int, raw: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    if status in (301, 302, 307, 308):
                        self.send_header("Location", "http://203.0.113.9/elsewhere")
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/draft"

    def answer(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def endpoint():
    server = AgentEndpoint()
    yield server
    server.close()


def drafter(url: str, secret: str = SECRET, timeout: float = 2.0) -> HttpDrafter:
    settings = HttpDrafterSettings(
        url=url, secret_param="/support/agent-endpoint-secret", timeout_seconds=timeout
    )
    return HttpDrafter(settings, lambda: secret)


# ---- the contract ----------------------------------------------------------------------------
def test_good_answer_becomes_a_draft_result(endpoint):
    result = drafter(endpoint.url).draft(CONTEXT)
    assert result.drafter == "http"
    assert result.text == GOOD_ANSWER["draft"]
    assert result.confidence == 0.72
    assert result.language == "en"
    assert result.sources == (
        Source("Refund policy"),
        Source("Double charges", "kb/billing/double.md"),
    )
    [request] = endpoint.received
    assert request.verified == "ok"
    assert json.loads(request.body) == {
        "account_id": "1",
        "conversation_id": "7",
        "inbox_id": "3",
        "language": "en",
        "labels": ["billing", "vip"],
        "question": QUESTION,
        "messages": [
            {
                "role": "customer",
                "text": "Hi, I have a billing question",
                "created_at": 1790475300.0,
            },
            {"role": "agent", "text": "Sure, what happened?", "created_at": 1790475320.5},
            {"role": "note", "text": "Check Stripe first", "created_at": None},
        ],
    }
    assert request.headers["Content-Type"] == "application/json"
    uuid.UUID(request.headers["X-Support-Pipeline-Request"])


def test_each_request_has_its_own_request_id(endpoint):
    drafter(endpoint.url).draft(CONTEXT)
    drafter(endpoint.url).draft(CONTEXT)
    ids = {r.headers["X-Support-Pipeline-Request"] for r in endpoint.received}
    assert len(ids) == 2


def test_null_draft_is_no_draft(endpoint):
    endpoint.answer(Reply(body={"draft": None, "confidence": 0.1, "sources": []}))
    result = drafter(endpoint.url).draft(CONTEXT)
    assert (result.text, result.confidence, result.sources) == (None, 0.1, ())


def test_signature_verifies_with_the_secret_and_fails_with_another(endpoint):
    drafter(endpoint.url).draft(CONTEXT)
    [signed] = endpoint.received
    delivery = SignedDelivery(
        signed.headers["X-Chatwoot-Signature"], signed.headers["X-Chatwoot-Timestamp"], signed.body
    )
    verify(delivery, [SECRET], now=time.time(), tolerance_seconds=300)
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify(delivery, ["another-secret"], now=time.time(), tolerance_seconds=300)

    with pytest.raises(PermanentError) as caught:
        drafter(endpoint.url, secret="another-secret").draft(CONTEXT)
    assert endpoint.received[-1].verified == "signature mismatch"
    assert (caught.value.error_type, caught.value.reason) == (
        "drafter_rejected",
        "draft endpoint answered 401",
    )


def test_timestamp_is_the_one_signed_and_comes_from_the_clock(endpoint):
    settings = HttpDrafterSettings(url=endpoint.url, secret_param="/x", timeout_seconds=2.0)
    stale = HttpDrafter(settings, lambda: SECRET, clock=lambda: time.time() - 3600)
    with pytest.raises(PermanentError):
        stale.draft(CONTEXT)
    [request] = endpoint.received
    assert request.verified == "stale timestamp"


# ---- transient and permanent failures ----------------------------------------------------------
def test_slow_endpoint_is_a_transient_failure(endpoint):
    endpoint.answer(Reply(delay=5.0))
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        drafter(endpoint.url, timeout=0.2).draft(CONTEXT)
    assert time.monotonic() - started < 2.0
    assert caught.value.error_type == "drafter_unavailable"
    assert caught.value.reason == "draft endpoint timed out after 0.2 s"


def test_invocation_deadline_bounds_the_timeout(endpoint):
    endpoint.answer(Reply(delay=5.0))
    started = time.monotonic()
    with (
        deadline.running_until(deadline.Deadline.after(0.8)),
        pytest.raises(TransientError) as caught,
    ):
        drafter(endpoint.url, timeout=30.0).draft(CONTEXT)
    assert time.monotonic() - started < 2.0
    assert caught.value.error_type == "drafter_unavailable"


def test_no_call_is_started_without_time_left(endpoint):
    with (
        deadline.running_until(deadline.Deadline.after(0.3)),
        pytest.raises(TransientError) as caught,
    ):
        drafter(endpoint.url).draft(CONTEXT)
    assert caught.value.error_type == "deadline"
    assert endpoint.received == []


def test_unreachable_endpoint_is_a_transient_failure():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError) as caught:
        drafter(f"http://127.0.0.1:{port}/draft").draft(CONTEXT)
    assert (caught.value.error_type, caught.value.reason) == (
        "drafter_unavailable",
        "draft endpoint unreachable",
    )


@pytest.mark.parametrize("status", [503, 429, 500])
def test_throttling_and_server_errors_are_transient(endpoint, status):
    endpoint.answer(Reply(status=status, body={"error": "busy"}))
    with pytest.raises(TransientError) as caught:
        drafter(endpoint.url).draft(CONTEXT)
    assert caught.value.error_type == "drafter_unavailable"
    assert caught.value.reason == f"draft endpoint answered {status}"


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_errors_are_permanent(endpoint, status):
    endpoint.answer(Reply(status=status, body={"error": f"rejected: {QUESTION}"}))
    with pytest.raises(PermanentError) as caught:
        drafter(endpoint.url).draft(CONTEXT)
    assert caught.value.error_type == "drafter_rejected"
    assert caught.value.reason == f"draft endpoint answered {status}"


def test_redirects_are_not_followed(endpoint):
    endpoint.answer(Reply(status=307, body=b""))
    with pytest.raises(PermanentError) as caught:
        drafter(endpoint.url).draft(CONTEXT)
    assert caught.value.error_type == "drafter_rejected"
    assert len(endpoint.received) == 1  # nothing went to the Location


# ---- strict answers ----------------------------------------------------------------------------
def answer_with(**changes: Any) -> dict[str, Any]:
    answer = {**GOOD_ANSWER, **changes}
    return {k: v for k, v in answer.items() if v is not DROP}


DROP = object()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"Sorry about that, " + QUESTION.encode(), "the answer is not JSON"),
        (b'{"draft": "x", "confidence": NaN, "sources": []}', "the answer is not JSON"),
        ([GOOD_ANSWER], "the answer is not a JSON object"),
        (answer_with(draft=DROP), "the answer has no 'draft'"),
        (answer_with(confidence=DROP), "the answer has no 'confidence'"),
        (answer_with(sources=DROP), "the answer has no 'sources'"),
        (answer_with(draft=["x"]), "'draft' is not a string or null"),
        (answer_with(confidence=1.5), "'confidence' is not between 0 and 1"),
        (answer_with(confidence=-0.1), "'confidence' is not between 0 and 1"),
        (answer_with(confidence="0.9"), "'confidence' is not a number"),
        (answer_with(confidence=True), "'confidence' is not a number"),
        (answer_with(sources="Refund policy"), "'sources' is not a list"),
        (
            answer_with(sources=[1, 2]),
            "'sources[0]' is not a non-empty string or a {title, ref} object",
        ),
        (answer_with(sources=[{"ref": "kb/x.md"}]), "'sources[0].title' is not a non-empty string"),
        (answer_with(sources=["ok", {"title": "t", "ref": 7}]), "'sources[1].ref' is not a string"),
        (answer_with(draft="x" * 20001), "'draft' is longer than 20000 characters"),
        (b"[" * 300_000, "the answer is larger than 262144 bytes"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 60 else None,
)
def test_malformed_answers_are_permanent_and_name_what_is_wrong(endpoint, body, reason):
    endpoint.answer(Reply(body=body))
    with pytest.raises(PermanentError) as caught:
        drafter(endpoint.url).draft(CONTEXT)
    assert caught.value.error_type == "drafter_bad_answer"
    assert caught.value.reason == reason
    assert QUESTION not in caught.value.reason


# ---- where it may send -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://agent.example.com/draft",
        "http://10.0.0.5:8080/draft",
        "http://127.0.0.1.nip.io/draft",
        "http://localhost.example.com/draft",
        "ftp://127.0.0.1/draft",
        "https:///draft",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused(url):
    with pytest.raises(ValueError):
        drafter(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://agent.example.com/draft",
        "http://127.0.0.1:8080/draft",
        "http://localhost:8080/draft",
        "http://[::1]:8080/draft",
    ],
)
def test_https_anywhere_and_http_on_loopback_are_accepted(url):
    assert drafter(url).settings.url == url


# ---- through the queue -------------------------------------------------------------------------
def test_unavailable_drafter_backs_off_then_dead_letters_with_its_reason(pipeline, endpoint):
    """A TransientError from a drafter retries through SQS like any other, then the DLQ."""
    endpoint.answer(Reply(status=503, body={"error": "model overloaded"}))
    http_drafter = drafter(endpoint.url)

    def draft_reply(event):
        payload = event.payload
        return http_drafter.draft(
            DraftContext(
                account_id=str(account_id(payload)),
                conversation_id=str(conversation_id(payload)),
                question=str(payload.get("content") or ""),
            )
        ).text

    router = Router()
    router.register(["message_created"], "draft", draft_reply)
    consumer = pipeline.consumer(router=router)
    hidden_for: list[int] = []
    pipeline.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: hidden_for.append(params["VisibilityTimeout"]),
    )
    max_receives = int(pipeline.stack.parameters["MaxReceiveCount"])
    assert pipeline.post(fixture("message_created_incoming"), delivery_id="drafter-503")[0] == 202

    backoffs: list[list[int]] = []
    for attempt in range(1, max_receives + 1):
        hidden_for.clear()
        assert pipeline.drain(consumer) == 1, attempt  # received once, then hidden
        backoffs.append(list(hidden_for))
        pipeline.make_visible()  # time passes

    assert pipeline.drain(consumer) == 0  # nothing left on EventsQueue
    assert len(endpoint.received) == max_receives
    assert all(r.verified == "ok" for r in endpoint.received)
    *retried, last = backoffs
    assert all(len(b) == 1 and b[0] > 0 for b in retried)  # backed off after each failure
    assert [b[0] for b in retried] == sorted(b[0] for b in retried)  # and never less
    assert last == []  # the last allowed attempt went to the DLQ instead
    [dead] = pipeline.messages(pipeline.dlq_url)
    attributes = attributes_of(dead)
    assert attributes["error_type"] == "drafter_unavailable"
    assert attributes["error_reason"] == "draft endpoint answered 503"
    assert attributes["receive_count"] == str(max_receives)
    assert attributes["delivery_id"] == "drafter-503"
