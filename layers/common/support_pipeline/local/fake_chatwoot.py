"""A small, honest fake of the Chatwoot application API on loopback, for tests and demos.

It keeps real state (labels, priority, status, team, messages) per conversation, checks the
``api_access_token`` header, answers the shapes of Chatwoot's OpenAPI description, records every
call it receives, and can be told to fail a call (429, 5xx, 404) a number of times.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/conversations/(\d+)(/[a-z_]+)?$")


@dataclass
class Call:
    method: str
    path: str
    suffix: str
    body: Any
    status: int


@dataclass
class Conversation:
    labels: list[str] = field(default_factory=list)
    priority: str | None = None
    status: str = "open"
    team_id: int | None = None
    assignee_id: int | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)


class FakeChatwoot:
    """Start with ``start()``; ``url`` is the base URL to give the client."""

    def __init__(
        self,
        token: str = "fake-chatwoot-token",  # noqa: S107  # nosec B107 - a fake's invented token
        actor_id: int = 1,
    ) -> None:
        self.token = token
        self.actor_id = actor_id
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.calls: list[Call] = []
        self._failures: list[dict[str, Any]] = []
        self._ids = itertools.count(10_000)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- test controls ---------------------------------------------------------------------
    def add_conversation(
        self, account_id: str | int, conversation_id: str | int, **state: Any
    ) -> Conversation:
        conversation = Conversation(**state)
        self.conversations[(str(account_id), str(conversation_id))] = conversation
        return conversation

    def conversation(self, account_id: str | int, conversation_id: str | int) -> Conversation:
        return self.conversations[(str(account_id), str(conversation_id))]

    def fail(self, method: str, suffix: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` on ``suffix`` with ``status``."""
        self._failures.append({"method": method, "suffix": suffix, "status": status, "left": times})

    def calls_to(self, method: str, suffix: str, ok_only: bool = True) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and c.suffix == suffix and (not ok_only or c.status < 400)
        ]

    def notes(self, account_id: str | int, conversation_id: str | int) -> list[str]:
        return [
            m["content"]
            for m in self.conversation(account_id, conversation_id).messages
            if m.get("private")
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
                status, answer = fake._answer(
                    self.command, self.path, dict(self.headers.items()), body
                )
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
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
            match = ROUTE.match(path.split("?")[0])
            suffix = (match.group(3) or "") if match else ""
            status, answer = self._route(method, match, headers, body)
            self.calls.append(Call(method, path, suffix, body, status))
            return status, answer

    def _route(
        self, method: str, match: re.Match[str] | None, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        token = next((v for k, v in headers.items() if k.lower() == "api_access_token"), None)
        if token != self.token:
            return 401, {"error": "Invalid Access Token"}
        if match is None:
            return 404, {"error": "not found"}
        suffix = match.group(3) or ""
        for failure in self._failures:
            if failure["method"] == method and failure["suffix"] == suffix and failure["left"] > 0:
                failure["left"] -= 1
                return failure["status"], {"error": "injected failure"}
        conversation = self.conversations.get((match.group(1), match.group(2)))
        if conversation is None:
            return 404, {"error": "Resource could not be found"}
        body = body if isinstance(body, dict) else {}
        if (method, suffix) == ("GET", ""):
            return 200, self._conversation_json(int(match.group(2)), conversation)
        if (method, suffix) == ("GET", "/messages"):
            return 200, {"meta": {"labels": conversation.labels}, "payload": conversation.messages}
        if (method, suffix) == ("POST", "/messages"):
            if not isinstance(body.get("content"), str) or not body["content"]:
                return 422, {"error": "content is required"}
            message = {
                "id": next(self._ids),
                "content": body["content"],
                "message_type": 1 if body.get("message_type", "outgoing") == "outgoing" else 0,
                "private": bool(body.get("private")),
                "content_type": "text",
                "content_attributes": body.get("content_attributes") or {},
                "sender_type": "User",
                "sender_id": self.actor_id,
                "conversation_id": int(match.group(2)),
            }
            conversation.messages.append(message)
            return 200, message
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
        return 404, {"error": "not found"}

    @staticmethod
    def _conversation_json(conversation_id: int, conversation: Conversation) -> dict[str, Any]:
        return {
            "id": conversation_id,
            "status": conversation.status,
            "priority": conversation.priority,
            "labels": conversation.labels,
            "meta": {"team": {"id": conversation.team_id} if conversation.team_id else None},
        }
