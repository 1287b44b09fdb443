"""A small, honest fake of the Chatwoot application API on loopback, for tests and demos.

It keeps real state (labels, priority, status, team, messages) per conversation and behaves the
way Chatwoot does where the pipeline depends on it, never more kindly (checked against Chatwoot's
controllers, MessageFinder and MessageBuilder, and its OpenAPI description):

- ``api_access_token`` is checked; ``GET /api/v1/profile`` answers the token's own user.
- ``POST .../messages`` keeps ``content``, ``private``, ``message_type``, ``content_type`` and,
  of ``content_attributes``, only the keys Chatwoot's MessageBuilder reads (``in_reply_to``,
  ``items``, ``automation_rule_id``); the sender is the token's user. Creation is not
  deduplicated. ``incoming`` is refused outside API inboxes.
- ``GET .../messages`` answers the latest 20, oldest first; ``before=<id>`` the 20 before;
  ``after=<id>`` up to 100 after; both: the range.
- ``POST .../labels`` replaces the whole list.
- An unknown conversation is 404 ``{"error": "Resource could not be found"}``.
- ``GET /api/v2/accounts/{id}/reports/summary?type=account&since=&until=`` answers like
  Chatwoot's ReportsController#summary (V2::Reports::Conversations::MetricBuilder): counts of
  conversations created, incoming and outgoing messages (private notes are outgoing too) and
  resolutions in ``since...until`` (end excluded), averages of the first-response, resolution
  and reply-time reporting events created in it (seconds; null when there are none), and
  ``previous``: the same for the equal period just before. Tests add the reporting data.

Test controls: add conversations and customer messages, fail the next calls of a route with a
status, or *lose the answer* of the next calls (the call takes effect, the connection is closed
without a response: what a read timeout looks like to the client). Every call is recorded.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/conversations/(\d+)(/[a-z_]+)?$")
SUMMARY = re.compile(r"^/api/v2/accounts/(\d+)/reports/summary$")
SUMMARY_COUNTS = (
    "conversations_count",
    "incoming_messages_count",
    "outgoing_messages_count",
    "resolutions_count",
)
REPORT_EVENTS = {
    "first_response": "avg_first_response_time",
    "conversation_resolved": "avg_resolution_time",
    "reply_time": "reply_time",
}
PROFILE = "/api/v1/profile"
KEPT_CONTENT_ATTRIBUTES = ("in_reply_to", "items", "automation_rule_id")
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
LATEST_PAGE, BEFORE_PAGE, AFTER_PAGE, BETWEEN_PAGE = 20, 20, 100, 1000
NOT_FOUND = {"error": "Resource could not be found"}


@dataclass
class Call:
    method: str
    path: str
    suffix: str
    body: Any
    status: int
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Conversation:
    labels: list[str] = field(default_factory=list)
    priority: str | None = None
    status: str = "open"
    team_id: int | None = None
    assignee_id: int | None = None
    api_inbox: bool = False
    contact_id: int = 501
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Page:
    html: str


@dataclass
class ReportData:
    """What Chatwoot's reports count for one account: conversations (created_at), messages
    (message_type, created_at) and reporting events (name, created_at, value in seconds)."""

    conversations: list[float] = field(default_factory=list)
    messages: list[tuple[int, float]] = field(default_factory=list)
    events: list[tuple[str, float, float]] = field(default_factory=list)


class _LoseAnswer(Exception):
    """Close the connection without answering."""


class FakeChatwoot:
    """Start with ``start()``; ``url`` is the base URL to give the client."""

    def __init__(
        self,
        token: str = "fake-chatwoot-token",  # noqa: S107  # nosec B107 - a fake's invented token
        actor_id: int = 900,  # the pipeline's own user; the fixtures' agent is user 1
    ) -> None:
        self.token = token
        self.actor_id = actor_id
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.calls: list[Call] = []
        self._failures: list[dict[str, Any]] = []
        self._ids = itertools.count(10_000)
        self._clock = itertools.count(1_790_470_000)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.reports: dict[str, ReportData] = {}
        self.reports_allowed = True  # False: the token's user may not read reports (401)

    # ---- test controls ---------------------------------------------------------------------
    def add_conversation(
        self, account_id: str | int, conversation_id: str | int, **state: Any
    ) -> Conversation:
        conversation = Conversation(**state)
        self.conversations[(str(account_id), str(conversation_id))] = conversation
        return conversation

    def delete_conversation(self, account_id: str | int, conversation_id: str | int) -> None:
        """As an agent deleting it in Chatwoot: every later call on it is 404."""
        del self.conversations[(str(account_id), str(conversation_id))]

    def conversation(self, account_id: str | int, conversation_id: str | int) -> Conversation:
        return self.conversations[(str(account_id), str(conversation_id))]

    def add_customer_message(
        self, account_id: str | int, conversation_id: str | int, content: str
    ) -> dict[str, Any]:
        """A message the customer wrote (as the widget or a channel would create it)."""
        with self._lock:
            conversation = self.conversation(account_id, conversation_id)
            return self._store_message(
                conversation,
                int(conversation_id),
                content,
                "incoming",
                private=False,
                sender={"id": conversation.contact_id, "type": "contact", "name": "Customer"},
            )

    def add_report_conversation(
        self,
        account_id: str | int,
        created_at: float,
        first_response_at: float | None = None,
        resolved_at: float | None = None,
    ) -> None:
        """A conversation as Chatwoot's reports see it: created, first answered (a
        ``first_response`` reporting event) and resolved (``conversation_resolved``), each
        event created when it happened with its time since creation as value."""
        data = self.reports.setdefault(str(account_id), ReportData())
        data.conversations.append(created_at)
        if first_response_at is not None:
            data.events.append(
                ("first_response", first_response_at, first_response_at - created_at)
            )
        if resolved_at is not None:
            data.events.append(("conversation_resolved", resolved_at, resolved_at - created_at))

    def add_report_message(
        self, account_id: str | int, message_type: str, created_at: float, count: int = 1
    ) -> None:
        """Messages as Chatwoot counts them (``incoming`` or ``outgoing``: notes are outgoing)."""
        data = self.reports.setdefault(str(account_id), ReportData())
        data.messages += [(MESSAGE_TYPES[message_type], created_at)] * count

    def fail(self, method: str, suffix: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` on ``suffix`` with ``status``."""
        self._failures.append({"method": method, "suffix": suffix, "status": status, "left": times})

    def proxy_error(self, status: int, times: int = 1) -> None:
        """Something in front of Chatwoot (a proxy, a maintenance page) answers the next
        ``times`` calls of any route with ``status`` and an HTML page."""
        self._failures.append({"method": "*", "suffix": "*", "status": status, "left": times})

    def lose_answer(self, method: str, suffix: str, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``method`` on ``suffix``, then hang up."""
        self._failures.append({"method": method, "suffix": suffix, "status": 0, "left": times})

    def calls_to(self, method: str, suffix: str, ok_only: bool = True) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and c.suffix == suffix and (not ok_only or 0 < c.status < 400)
        ]

    def notes(self, account_id: str | int, conversation_id: str | int) -> list[str]:
        return [
            m["content"]
            for m in self.conversation(account_id, conversation_id).messages
            if m.get("private")
        ]

    def public_messages(self, account_id: str | int, conversation_id: str | int) -> list[str]:
        """What the customer sees that was written by an agent or the pipeline."""
        return [
            m["content"]
            for m in self.conversation(account_id, conversation_id).messages
            if not m.get("private") and m["message_type"] == MESSAGE_TYPES["outgoing"]
        ]

    # ---- server ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the fake first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeChatwoot:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                try:
                    status, answer = fake._answer(
                        self.command, self.path, dict(self.headers.items()), body
                    )
                except _LoseAnswer:
                    self.close_connection = True
                    return
                if isinstance(answer, _Page):
                    self._page(status, answer)
                    return
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _page(self, status: int, page: _Page) -> None:
                payload = page.html.encode()
                self.send_response(status)
                self.send_header("content-type", "text/html")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(
            target=self._server.serve_forever, name="fake-chatwoot", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeChatwoot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the API ---------------------------------------------------------------------------
    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        with self._lock:
            url = urlsplit(path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            match = ROUTE.match(url.path)
            suffix = (match.group(3) or "") if match else url.path
            status, answer, lose = self._route(method, url.path, match, query, headers, body)
            self.calls.append(Call(method, path, suffix, body, 0 if lose else status, query))
            if lose:
                raise _LoseAnswer
            return status, answer

    def _route(
        self,
        method: str,
        path: str,
        match: re.Match[str] | None,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, Any, bool]:
        for failure in self._failures:  # in front of Chatwoot: answers before Chatwoot does
            if failure["method"] == "*" and failure["left"] > 0:
                failure["left"] -= 1
                return failure["status"], _Page("<html><h1>Not here</h1></html>"), False
        token = next((v for k, v in headers.items() if k.lower() == "api_access_token"), None)
        if token != self.token:
            return 401, {"error": "Invalid Access Token"}, False
        suffix = (match.group(3) or "") if match else path
        lose = False
        for failure in self._failures:
            if failure["left"] <= 0 or failure["method"] == "*":
                continue
            if failure["method"] == method and failure["suffix"] == suffix:
                failure["left"] -= 1
                if failure["status"] == 0:
                    lose = True
                    break
                return failure["status"], {"error": "injected failure"}, False
        if (method, path) == ("GET", PROFILE):
            return 200, self._profile(), lose
        summary = SUMMARY.match(path)
        if summary is not None and method == "GET":
            if not self.reports_allowed:
                return 401, {"error": "You are not authorized to do this action"}, False
            if query.get("type") != "account":
                return 404, NOT_FOUND, False
            return 200, self._summary(summary.group(1), query), lose
        if match is None:
            return 404, NOT_FOUND, False
        conversation = self.conversations.get((match.group(1), match.group(2)))
        if conversation is None:
            return 404, NOT_FOUND, False
        status, answer = self._conversation_route(
            method, suffix, int(match.group(2)), conversation, query, body
        )
        return status, answer, lose

    def _profile(self) -> dict[str, Any]:
        return {
            "id": self.actor_id,
            "name": "Support pipeline",
            "available_name": "Support pipeline",
            "email": "pipeline@example.invalid",
            "type": "user",
            "accounts": [
                {"id": int(account), "role": "agent"}
                for account in sorted({a for a, _ in self.conversations}, key=int)
            ],
        }

    def _summary(self, account_id: str, query: dict[str, str]) -> dict[str, Any]:
        """ReportsController#summary: the period, and ``previous`` of the same length."""
        data = self.reports.get(account_id, ReportData())
        since, until = query.get("since", ""), query.get("until", "")
        if not since.isdigit() or not until.isdigit():
            current = self._summary_of(data, None)
            return {**current, "previous": self._summary_of(data, None)}
        start, end = int(since), int(until)
        current = self._summary_of(data, (start, end))
        return {**current, "previous": self._summary_of(data, (start - (end - start), start))}

    @staticmethod
    def _summary_of(data: ReportData, window: tuple[int, int] | None) -> dict[str, Any]:
        def inside(at: float) -> bool:  # Chatwoot's since...until: the end is excluded
            return window is not None and window[0] <= at < window[1]

        averages: dict[str, Any] = {}
        for name, key in REPORT_EVENTS.items():
            values = [v for n, at, v in data.events if n == name and inside(at)]
            averages[key] = sum(values) / len(values) if values else None
        return {
            "conversations_count": len([at for at in data.conversations if inside(at)]),
            "incoming_messages_count": len(
                [
                    1
                    for kind, at in data.messages
                    if kind == MESSAGE_TYPES["incoming"] and inside(at)
                ]
            ),
            "outgoing_messages_count": len(
                [
                    1
                    for kind, at in data.messages
                    if kind == MESSAGE_TYPES["outgoing"] and inside(at)
                ]
            ),
            "avg_first_response_time": averages["avg_first_response_time"],
            "avg_resolution_time": averages["avg_resolution_time"],
            "resolutions_count": len(
                [1 for n, at, _ in data.events if n == "conversation_resolved" and inside(at)]
            ),
            "reply_time": averages["reply_time"],
        }

    def _conversation_route(
        self,
        method: str,
        suffix: str,
        conversation_id: int,
        conversation: Conversation,
        query: dict[str, str],
        body: Any,
    ) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        if (method, suffix) == ("GET", ""):
            return 200, self._conversation_json(conversation_id, conversation)
        if (method, suffix) == ("GET", "/messages"):
            return 200, {
                "meta": {"labels": conversation.labels, "contact_id": conversation.contact_id},
                "payload": self._page(conversation.messages, query),
            }
        if (method, suffix) == ("POST", "/messages"):
            kind = str(body.get("message_type") or "outgoing")
            if kind not in ("incoming", "outgoing"):
                return 422, {"error": f"'{kind}' is not a valid message_type"}
            if kind == "incoming" and not conversation.api_inbox:
                return 422, {"error": "Incoming messages are only allowed in Api inboxes"}
            if not isinstance(body.get("content"), str) or not body["content"]:
                return 422, {"error": "content is required"}
            attributes = body.get("content_attributes")
            kept = {
                key: attributes[key]
                for key in KEPT_CONTENT_ATTRIBUTES
                if isinstance(attributes, dict) and key in attributes
            }
            return 200, self._store_message(
                conversation,
                conversation_id,
                body["content"],
                kind,
                private=bool(body.get("private")),
                sender={"id": self.actor_id, "type": "user", "name": "Support pipeline"},
                content_attributes=kept,
            )
        if (method, suffix) == ("GET", "/labels"):
            return 200, {"payload": list(conversation.labels)}
        if (method, suffix) == ("POST", "/labels"):
            labels = body.get("labels")
            if not isinstance(labels, list):
                return 422, {"error": "labels must be a list"}
            conversation.labels = [str(label) for label in labels]
            return 200, {"payload": list(conversation.labels)}
        if (method, suffix) == ("POST", "/assignments"):
            if "assignee_id" in body:
                conversation.assignee_id = body["assignee_id"]
            elif "team_id" in body:
                conversation.team_id = body["team_id"]
            else:
                return 422, {"error": "assignee_id or team_id required"}
            return 200, {"id": conversation.assignee_id}
        if (method, suffix) == ("POST", "/toggle_priority"):
            if body.get("priority") not in ("urgent", "high", "medium", "low", "none"):
                return 422, {"error": "invalid priority"}
            conversation.priority = None if body["priority"] == "none" else body["priority"]
            return 200, None
        if (method, suffix) == ("POST", "/toggle_status"):
            conversation.status = str(body.get("status", "open"))
            return 200, {"payload": {"success": True, "current_status": conversation.status}}
        return 404, NOT_FOUND

    def _store_message(
        self,
        conversation: Conversation,
        conversation_id: int,
        content: str,
        kind: str,
        private: bool,
        sender: dict[str, Any],
        content_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message = {
            "id": next(self._ids),
            "content": content,
            "message_type": MESSAGE_TYPES[kind],
            "content_type": "text",
            "content_attributes": content_attributes or {},
            "created_at": next(self._clock),
            "private": private,
            "status": "sent",
            "source_id": None,
            "conversation_id": conversation_id,
            "sender": sender,
        }
        conversation.messages.append(message)
        return dict(message)

    @staticmethod
    def _page(messages: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        """Chatwoot's MessageFinder: which messages one GET answers, oldest first."""
        ordered = sorted(messages, key=lambda m: (m["created_at"], m["id"]))
        after = int(query["after"]) if query.get("after", "").isdigit() else None
        before = int(query["before"]) if query.get("before", "").isdigit() else None
        if after is not None and before is not None:
            return [m for m in ordered if after <= m["id"] < before][:BETWEEN_PAGE]
        if before is not None:
            return [m for m in ordered if m["id"] < before][-BEFORE_PAGE:]
        if after is not None:
            return [m for m in ordered if m["id"] > after][:AFTER_PAGE]
        return ordered[-LATEST_PAGE:]

    @staticmethod
    def _conversation_json(conversation_id: int, conversation: Conversation) -> dict[str, Any]:
        return {
            "id": conversation_id,
            "status": conversation.status,
            "priority": conversation.priority,
            "labels": conversation.labels,
            "meta": {"team": {"id": conversation.team_id} if conversation.team_id else None},
        }
