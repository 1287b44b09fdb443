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
- ``GET /api/v1/accounts/<id>/conversations`` is ConversationFinder: ``status`` (default
  ``open``; ``all``), ``assignee_type``, ``sort_by`` (default ``last_activity_at_desc``) and
  ``page`` (25 a page, Kaminari's; past the end an empty page), answered as
  ``{"data": {"meta": {mine/assigned/unassigned/all_count}, "payload": [...]}}`` with each
  conversation in Chatwoot's list partial (``id`` is the display id; ``last_activity_at``,
  ``timestamp`` and ``created_at`` whole seconds, ``updated_at`` a float; ``messages`` the last
  message of any kind; ``last_non_activity_message``). Only conversations of inboxes the
  token's user sees are listed (``visible_inboxes``; None: an administrator, all of them).
- Time is kept as Chatwoot keeps it: every message sets its conversation's ``last_activity_at``
  (without touching ``updated_at``); status, priority, label, team and assignee changes move
  ``updated_at`` and add an *activity* message (``message_type`` 2, no webhook); an incoming
  message reopens a resolved or snoozed conversation and starts ``waiting_since``, a person's
  public reply ends it and sets the first reply. Two moments are never equal (microseconds).
- ``webhooks``: what Chatwoot would have posted for every change, in order, built as Chatwoot
  builds them (``message_created`` with ``created_at`` to the millisecond, ``message_type`` as
  a word, the conversation's push data; ``conversation_updated`` and
  ``conversation_status_changed`` with ``changed_attributes``). Tests deliver them, or lose them.
- A 429 is rack-attack's: plain text ``Retry later``, no ``Retry-After``.

Test controls: add conversations and messages (a customer's, an agent's, an agent bot's),
change a conversation's status as an agent would, fail the next calls of a route with a
status (before Chatwoot acts, or after it acted: a proxy's 502/504 for a request Rails still
finished), or *lose the answer* of the next calls (the call takes effect, the connection is
closed without a response: what a read timeout looks like to the client). Every call is
recorded.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
LIST_ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/conversations$")
TEAMS_ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/teams$")
TEAM_MEMBERS_ROUTE = re.compile(r"^/api/v1/accounts/(\d+)/teams/(\d+)/team_members$")
CONVERSATIONS_PAGE = 25  # CONVERSATION_RESULTS_PER_PAGE's default
STATUSES = ("open", "resolved", "pending", "snoozed")
# ConversationFinder's sort options that order by a time (the others fall back to the default).
SORTS = {
    "last_activity_at_desc": ("last_activity_at", True),
    "last_activity_at_asc": ("last_activity_at", False),
    "created_at_desc": ("created_at", True),
    "created_at_asc": ("created_at", False),
    "latest": ("last_activity_at", True),
}
PROFILE = "/api/v1/profile"
KEPT_CONTENT_ATTRIBUTES = ("in_reply_to", "items", "automation_rule_id")
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
LATEST_PAGE, BEFORE_PAGE, AFTER_PAGE, BETWEEN_PAGE = 20, 20, 100, 1000
MESSAGES_PER_MINUTE = 200  # Limits.conversation_message_per_minute_limit
NOT_FOUND = {"error": "Resource could not be found"}
# ``render json: nil`` is the body ``null`` (``head :ok``, an answer of None here, has none).
JSON_NULL_BODY = "null"


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
    inbox_id: int = 1
    # Chatwoot's timestamps, as exact floats (the API rounds some of them down to seconds).
    created_at: float = 0.0
    updated_at: float = 0.0
    last_activity_at: float = 0.0
    waiting_since: float | None = None
    first_reply_created_at: float | None = None
    snoozed_until: float | None = None
    muted: bool = False  # Conversation#mute!: a customer's message no longer reopens it
    bot_inbox: bool = False  # its inbox has an active agent bot (Inbox#active_bot?)


@dataclass
class Team:
    """A team of an account: its members' user ids; ``allow_auto_assign`` as in Chatwoot (the
    column defaults to true); ``online``: the members available for auto-assignment now."""

    name: str
    members: set[int] = field(default_factory=set)
    allow_auto_assign: bool = True
    online: set[int] = field(default_factory=set)


@dataclass
class _Page:
    html: str
    content_type: str = "text/html"


JSON_NULL = _Page(JSON_NULL_BODY, "application/json; charset=utf-8")


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
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock``: Chatwoot's time (default: one second more for every message)."""
        self.token = token
        self.actor_id = actor_id
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.calls: list[Call] = []
        self.webhooks: list[dict[str, Any]] = []
        # Inboxes the token's user is a member of; None: an administrator, who sees them all.
        self.visible_inboxes: set[int] | None = None
        self._failures: list[dict[str, Any]] = []
        self._ids = itertools.count(10_000)
        self._time_source = clock
        self._second = 1_790_470_000
        self._last_moment = 0.0
        self._exact: dict[int, float] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.reports: dict[str, ReportData] = {}
        self.reports_allowed = True  # False: the token's user may not read reports (401)
        self.teams: dict[tuple[str, int], Team] = {}
        # The accounts the token's user belongs to (every account given a conversation).
        self.accounts: set[str] = set()

    # ---- test controls ---------------------------------------------------------------------
    def add_conversation(
        self, account_id: str | int, conversation_id: str | int, **state: Any
    ) -> Conversation:
        with self._lock:
            conversation = Conversation(**state)
            self.accounts.add(str(account_id))
            now = self._moment()
            for name in ("created_at", "updated_at", "last_activity_at"):
                if not getattr(conversation, name):
                    setattr(conversation, name, now)
            self.conversations[(str(account_id), str(conversation_id))] = conversation
            self._webhook(
                "conversation_created", self._push_data(account_id, conversation_id, conversation)
            )
            return conversation

    def add_team(
        self, account_id: str | int, team_id: int, name: str = "", members: tuple[int, ...] = ()
    ) -> Team:
        """A team of the account, as an administrator creates it (Settings -> Teams)."""
        with self._lock:
            team = Team(name or f"Team {team_id}", set(members))
            self.teams[(str(account_id), int(team_id))] = team
            return team

    def delete_team(self, account_id: str | int, team_id: int) -> None:
        """An administrator deletes the team: later assignments to it find no team."""
        with self._lock:
            del self.teams[(str(account_id), int(team_id))]

    def _team_json(self, account_id: str, team_id: int, team: Team) -> dict[str, Any]:
        # app/views/api/v1/models/_team.json.jbuilder
        return {
            "id": team_id,
            "name": team.name,
            "description": "",
            "allow_auto_assign": team.allow_auto_assign,
            "account_id": int(account_id),
            "is_member": self.actor_id in team.members,
        }

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
                sender=_contact(conversation.contact_id),
                account_id=account_id,
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

    def delete_message(
        self, account_id: str | int, conversation_id: str | int, message_id: int
    ) -> None:
        """An agent deletes a message in the dashboard. MessagesController#destroy keeps the
        message, emptied: ``content`` becomes "This message was deleted" and
        ``content_attributes`` ``{"deleted": true}``."""
        with self._lock:
            for message in self.conversation(account_id, conversation_id).messages:
                if message["id"] == message_id:
                    message.update(
                        content="This message was deleted",
                        content_type="text",
                        content_attributes={"deleted": True},
                    )
                    return
            raise KeyError(message_id)

    def add_agent_message(
        self,
        account_id: str | int,
        conversation_id: str | int,
        content: str,
        private: bool = False,
        user_id: int = 1,
    ) -> dict[str, Any]:
        """A reply (or, ``private``, a note) an agent wrote in Chatwoot's dashboard."""
        with self._lock:
            return self._store_message(
                self.conversation(account_id, conversation_id),
                int(conversation_id),
                content,
                "outgoing",
                private=private,
                sender={"id": user_id, "name": "Agent", "type": "user"},
                account_id=account_id,
            )

    def add_bot_message(
        self,
        account_id: str | int,
        conversation_id: str | int,
        content: str,
        private: bool = False,
        bot_id: int = 1,
    ) -> dict[str, Any]:
        """A message (or, ``private``, a note) an agent bot posted with its own token: Chatwoot's
        Messages::MessageBuilder makes the bot the sender, and AgentBot#push_event_data
        (app/models/agent_bot.rb) shows it as ``{"id", "name", "type": "agent_bot"}``."""
        with self._lock:
            return self._store_message(
                self.conversation(account_id, conversation_id),
                int(conversation_id),
                content,
                "outgoing",
                private=private,
                sender={"id": bot_id, "name": "Helper bot", "type": "agent_bot"},
                account_id=account_id,
            )

    def set_status(self, account_id: str | int, conversation_id: str | int, status: str) -> None:
        """An agent changes the conversation's status in the dashboard."""
        with self._lock:
            self._change(
                account_id,
                conversation_id,
                self.conversation(account_id, conversation_id),
                status=status,
            )

    def take_webhooks(self) -> list[dict[str, Any]]:
        """The deliveries Chatwoot would have made since the last call, oldest first."""
        with self._lock:
            taken, self.webhooks = self.webhooks, []
            return taken

    def fail(
        self,
        method: str,
        suffix: str,
        status: int,
        times: int = 1,
        after: int = 0,
        acted: bool = False,
    ) -> None:
        """Answer ``times`` calls of ``method`` on ``suffix`` with ``status``, once ``after``
        of them have been answered normally. ``suffix``: ``/messages``, ``/labels``...; the
        conversations list's is its whole path, ``/api/v1/accounts/1/conversations``.

        ``acted``: the call takes effect first and only its answer is ``status`` (an HTML
        page). That is the proxy in front of Rails giving up on a request Rails still finishes
        (Chatwoot's deployment/nginx_chatwoot.conf proxies to Puma; nginx answers 502/504 on
        its own timeouts): for a POST, the message is created although the client saw a 5xx.
        """
        self._failures.append(
            {
                "method": method,
                "suffix": suffix,
                "status": status,
                "left": times,
                "skip": after,
                "acted": acted,
            }
        )

    def proxy_error(self, status: int, times: int = 1) -> None:
        """Something in front of Chatwoot (a proxy, a maintenance page) answers the next
        ``times`` calls of any route with ``status`` and an HTML page."""
        self._failures.append({"method": "*", "suffix": "*", "status": status, "left": times})

    def lose_answer(self, method: str, suffix: str, times: int = 1, after: int = 0) -> None:
        """Carry out the next ``times`` calls of ``method`` on ``suffix``, then hang up; the
        first ``after`` such calls are answered normally."""
        self._failures.append(
            {"method": method, "suffix": suffix, "status": 0, "left": times, "skip": after}
        )

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
                self.send_header("content-type", page.content_type)
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
        acted_status = 0
        for failure in self._failures:
            if failure["left"] <= 0 or failure["method"] == "*":
                continue
            if failure["method"] == method and failure["suffix"] == suffix:
                if failure.get("skip", 0) > 0:
                    failure["skip"] -= 1
                    continue
                failure["left"] -= 1
                if failure["status"] == 0:
                    lose = True
                    break
                if failure.get("acted"):  # Rails does the work; the proxy answers for it
                    acted_status = failure["status"]
                    break
                if failure["status"] == 429:  # rack-attack's answer: no JSON, no Retry-After
                    return 429, _Page("Retry later\n", "text/plain"), False
                return failure["status"], {"error": "injected failure"}, False
        status, answer, done = self._route_to_chatwoot(method, path, match, query, body)
        if acted_status:
            return acted_status, _Page(f"<html><h1>{acted_status} Gateway error</h1></html>"), False
        return status, answer, lose and done

    def _route_to_chatwoot(
        self,
        method: str,
        path: str,
        match: re.Match[str] | None,
        query: dict[str, str],
        body: Any,
    ) -> tuple[int, Any, bool]:
        """What Chatwoot answers an authenticated call (faults already decided), and whether
        it did the work (only then can a lost answer hide a done call)."""
        suffix = (match.group(3) or "") if match else path
        if (method, path) == ("GET", PROFILE):
            return 200, self._profile(), True
        summary = SUMMARY.match(path)
        if summary is not None and method == "GET":
            if not self.reports_allowed:
                return 401, {"error": "You are not authorized to do this action"}, False
            if query.get("type") != "account":
                return 404, NOT_FOUND, False
            return 200, self._summary(summary.group(1), query), True
        listing = LIST_ROUTE.match(path)
        if listing is not None and method == "GET":
            return 200, self._list(listing.group(1), query), True
        teams = TEAMS_ROUTE.match(path)
        if teams is not None and method == "GET":
            # TeamsController#index: every team of Current.account, members or not.
            account = teams.group(1)
            return (
                200,
                [
                    self._team_json(a, i, t)
                    for (a, i), t in sorted(self.teams.items())
                    if a == account
                ],
                True,
            )
        members = TEAM_MEMBERS_ROUTE.match(path)
        if members is not None and method == "GET":
            # TeamMembersController#index (fetch_team: teams.find -> 404 when there is none).
            team = self.teams.get((members.group(1), int(members.group(2))))
            if team is None:
                return 404, NOT_FOUND, False
            return (
                200,
                [
                    {"id": uid, "name": f"Agent {uid}", "role": "agent"}
                    for uid in sorted(team.members)
                ],
                True,
            )
        if match is None:
            return 404, NOT_FOUND, False
        if match.group(1) not in self.accounts:
            # Api::V1::Accounts::BaseController#ensure_current_account: not the user's account.
            return 401, {"error": "You are not authorized to access this account"}, False
        conversation = self.conversations.get((match.group(1), match.group(2)))
        if conversation is None:
            return 404, NOT_FOUND, False
        if (
            self.visible_inboxes is not None
            and conversation.inbox_id not in self.visible_inboxes
            and conversation.assignee_id != self.actor_id
        ):
            # ConversationPolicy#show? (authorize @conversation, :show?): an agent sees the
            # conversations of their inboxes (or assigned to them); Pundit's refusal is a 401.
            return 401, {"error": "You are not authorized to do this action"}, False
        status, answer = self._conversation_route(
            method, suffix, match.group(1), int(match.group(2)), conversation, query, body
        )
        return status, answer, True

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
        account_id: str,
        conversation_id: int,
        conversation: Conversation,
        query: dict[str, str],
        body: Any,
    ) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        if (method, suffix) == ("GET", ""):
            return 200, self._list_json(account_id, conversation_id, conversation)
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
            # Message#prevent_message_flood: a conversation's 201st message within a minute
            # (Limits.conversation_message_per_minute_limit) fails validation: 422. (Checked on
            # the API only; the test controls set up what Chatwoot already holds.)
            since = self._moment() - 60
            if sum(1 for m in conversation.messages if m["created_at"] >= since) >= (
                MESSAGES_PER_MINUTE
            ):
                return 422, {"error": "Validation failed: Too many messages"}
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
                account_id=account_id,
            )
        if (method, suffix) == ("GET", "/labels"):
            return 200, {"payload": list(conversation.labels)}
        if (method, suffix) == ("POST", "/labels"):
            labels = body.get("labels")
            if not isinstance(labels, list):
                return 422, {"error": "labels must be a list"}
            self._change(account_id, conversation_id, conversation, labels=[str(x) for x in labels])
            return 200, {"payload": list(conversation.labels)}
        if (method, suffix) == ("POST", "/assignments"):
            if "assignee_id" in body:
                self._change(
                    account_id, conversation_id, conversation, assignee_id=body["assignee_id"]
                )
                return 200, {"id": conversation.assignee_id}
            if "team_id" in body:
                # AssignmentsController#set_team: ``Current.account.teams.find_by(id:)``, so an
                # unknown id is nil: the conversation's team is set to nil and the answer is
                # ``null``. Conversation#ensure_assignee_is_from_team (AssignmentHandler) then
                # removes an assignee who is not a member of the new team.
                wanted = body.get("team_id")
                key = (str(account_id), int(wanted)) if str(wanted).isdigit() else None
                team = self.teams.get(key) if key else None
                changes: dict[str, Any] = {"team_id": key[1] if team and key else None}
                if team is not None and conversation.assignee_id not in (None, *team.members):
                    changes["assignee_id"] = None
                # ... and ``self.assignee ||= find_assignee_from_team``: with auto-assignment
                # on, an unassigned conversation goes to an online member of the team.
                unassigned = changes.get("assignee_id", conversation.assignee_id) is None
                available = sorted(team.online & team.members) if team is not None else []
                if team is not None and team.allow_auto_assign and unassigned and available:
                    changes["assignee_id"] = available[0]
                self._change(account_id, conversation_id, conversation, **changes)
                if team is None or key is None:
                    return 200, JSON_NULL
                return 200, self._team_json(str(account_id), key[1], team)
            return 200, JSON_NULL  # neither key: ``render json: nil``
        if (method, suffix) == ("POST", "/toggle_priority"):
            # ConversationsController#toggle_priority -> Conversation#toggle_priority:
            # ``self.priority = priority.presence``: null or "" clears it; anything but the
            # enum's names (low, medium, high, urgent), "none" included, raises ArgumentError
            # in Rails' enum, which Chatwoot answers 500.
            wanted = body.get("priority")
            if wanted in (None, ""):
                priority = None
            elif wanted in ("urgent", "high", "medium", "low"):
                priority = wanted
            else:
                return 500, {"error": f"'{wanted}' is not a valid priority"}
            self._change(account_id, conversation_id, conversation, priority=priority)
            return 200, None
        if (method, suffix) == ("POST", "/toggle_status"):
            self._change(
                account_id, conversation_id, conversation, status=str(body.get("status", "open"))
            )
            return 200, {"payload": {"success": True, "current_status": conversation.status}}
        return 404, NOT_FOUND

    # ---- Chatwoot's time and side effects --------------------------------------------------
    def _moment(self, advance: bool = False) -> float:
        """Now, on Chatwoot's clock: never twice the same (Postgres keeps microseconds)."""
        if self._time_source is not None:
            now = float(self._time_source())
        else:
            now = float(self._second)
            if advance:
                self._second += 1
        now = max(now, round(self._last_moment + 0.000001, 6))
        self._last_moment = now
        return now

    def _change(
        self,
        account_id: str | int,
        conversation_id: str | int,
        conversation: Conversation,
        **changes: Any,
    ) -> None:
        """Save changed attributes as Conversation#save does: ``updated_at`` moves, an activity
        message is written, and the webhooks for the change are sent."""
        changed = {
            name: value for name, value in changes.items() if getattr(conversation, name) != value
        }
        if not changed:
            return
        previous = {name: getattr(conversation, name) for name in changed}
        for name, value in changed.items():
            setattr(conversation, name, value)
        conversation.updated_at = self._moment()
        if "status" in changed and conversation.status != "snoozed":
            conversation.snoozed_until = None
        shown = [
            {
                ("label_list" if name == "labels" else name): {
                    "previous_value": previous[name],
                    "current_value": value,
                }
            }
            for name, value in changed.items()
        ]
        data = self._push_data(account_id, conversation_id, conversation)
        if "status" in changed:
            self._webhook("conversation_status_changed", {**data, "changed_attributes": shown})
        self._webhook("conversation_updated", {**data, "changed_attributes": shown})
        if set(changed) & {"status", "priority", "labels", "assignee_id", "team_id"}:
            self._store_message(
                conversation,
                int(conversation_id),
                f"Conversation updated: {', '.join(sorted(changed))}",
                "activity",
                private=False,
                sender=None,
                account_id=account_id,
            )

    def _store_message(
        self,
        conversation: Conversation,
        conversation_id: int,
        content: str,
        kind: str,
        private: bool,
        sender: dict[str, Any] | None,
        content_attributes: dict[str, Any] | None = None,
        account_id: str | int | None = None,
    ) -> dict[str, Any]:
        created = self._moment(advance=True)
        message: dict[str, Any] = {
            "id": next(self._ids),
            "content": content,
            "inbox_id": conversation.inbox_id,
            "message_type": MESSAGE_TYPES[kind],
            "content_type": "text",
            "content_attributes": content_attributes or {},
            "created_at": int(created),
            "private": private,
            "status": "sent",
            "source_id": None,
            "conversation_id": conversation_id,
            "sender": sender,
        }
        self._exact[message["id"]] = created
        conversation.messages.append(message)
        # Message#refresh_conversation_activity! (set_conversation_activity): an update_all of
        # last_activity_at and updated_at, with no webhook of its own.
        conversation.last_activity_at = created
        conversation.updated_at = created
        if kind == "activity" or account_id is None:
            return dict(message)
        self._webhook("message_created", self._message_webhook(account_id, conversation, message))
        if kind == "incoming" and not private and not conversation.muted:
            # Message#reopen_conversation: a muted conversation never reopens; a snoozed one
            # opens; a resolved one opens, or becomes pending when its inbox has an active bot
            # (reopen_resolved_conversation, for the bot to take it back).
            if conversation.status == "snoozed":
                self._change(account_id, conversation_id, conversation, status="open")
            elif conversation.status == "resolved":
                reopened = "pending" if conversation.bot_inbox else "open"
                self._change(account_id, conversation_id, conversation, status=reopened)
            if conversation.waiting_since is None:
                self._change(account_id, conversation_id, conversation, waiting_since=created)
        human = kind == "outgoing" and not private and (sender or {}).get("type") == "user"
        if human:
            changes: dict[str, Any] = {"waiting_since": None}
            if conversation.first_reply_created_at is None:
                changes["first_reply_created_at"] = created
            self._change(account_id, conversation_id, conversation, **changes)
        return dict(message)

    def _webhook(self, event: str, data: dict[str, Any]) -> None:
        self.webhooks.append({**data, "event": event})

    # ---- what Chatwoot answers and sends ---------------------------------------------------
    def _list(self, account_id: str, query: dict[str, str]) -> dict[str, Any]:
        """ConversationFinder#perform and the conversations index view."""
        status = query.get("status") or "open"
        found = [
            (int(conversation_id), conversation)
            for (account, conversation_id), conversation in self.conversations.items()
            if account == account_id
            and (self.visible_inboxes is None or conversation.inbox_id in self.visible_inboxes)
            and (status == "all" or conversation.status == status)
        ]
        # The counts are taken before assignee_type narrows the list, as the finder does.
        total = len(found)
        mine = sum(1 for _, c in found if c.assignee_id == self.actor_id)
        unassigned = sum(1 for _, c in found if c.assignee_id is None)
        assignee_type = query.get("assignee_type")
        if assignee_type == "me":
            found = [f for f in found if f[1].assignee_id == self.actor_id]
        elif assignee_type == "unassigned":
            found = [f for f in found if f[1].assignee_id is None]
        elif assignee_type == "assigned":
            found = [f for f in found if f[1].assignee_id is not None]
        attribute, descending = SORTS.get(query.get("sort_by") or "", SORTS["latest"])
        found.sort(key=lambda f: getattr(f[1], attribute), reverse=descending)
        page = int(query["page"]) if query.get("page", "").isdigit() else 1
        first = (max(page, 1) - 1) * CONVERSATIONS_PAGE
        return {
            "data": {
                "meta": {
                    "mine_count": mine,
                    "assigned_count": total - unassigned,
                    "unassigned_count": unassigned,
                    "all_count": total,
                },
                "payload": [
                    self._list_json(account_id, conversation_id, conversation)
                    for conversation_id, conversation in found[first : first + CONVERSATIONS_PAGE]
                ],
            }
        }

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

    def _meta(self, conversation: Conversation) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "sender": _contact(conversation.contact_id),
            "channel": "Channel::Api" if conversation.api_inbox else "Channel::WebWidget",
            "hmac_verified": False,
        }
        if conversation.assignee_id is not None:
            meta["assignee"] = {"id": conversation.assignee_id, "name": "Agent", "type": "user"}
            meta["assignee_type"] = "User"
        if conversation.team_id is not None:
            meta["team"] = {"id": conversation.team_id, "name": f"team {conversation.team_id}"}
        return meta

    def _list_json(
        self, account_id: str | int, conversation_id: int, conversation: Conversation
    ) -> dict[str, Any]:
        """api/v1/conversations/partials/_conversation.json.jbuilder (list, show)."""
        last = conversation.messages[-1] if conversation.messages else None
        sendable = [m for m in conversation.messages if m["message_type"] != 2]
        return {
            "meta": self._meta(conversation),
            "id": conversation_id,
            "messages": [self._message_push(account_id, conversation, last)] if last else [],
            "account_id": int(account_id),
            "uuid": f"00000000-0000-4000-8000-{int(account_id):06d}{conversation_id:06d}",
            "additional_attributes": {},
            "agent_last_seen_at": 0,
            "assignee_last_seen_at": 0,
            "can_reply": True,
            "contact_last_seen_at": 0,
            "custom_attributes": {},
            "inbox_id": conversation.inbox_id,
            "labels": list(conversation.labels),
            "muted": False,
            "snoozed_until": _iso(conversation.snoozed_until),
            "status": conversation.status,
            "created_at": int(conversation.created_at),
            "updated_at": conversation.updated_at,
            "timestamp": int(conversation.last_activity_at),
            "first_reply_created_at": int(conversation.first_reply_created_at or 0),
            "unread_count": 0,
            "last_non_activity_message": (
                self._message_push(account_id, conversation, sendable[-1]) if sendable else None
            ),
            "last_activity_at": int(conversation.last_activity_at),
            "priority": conversation.priority,
            "waiting_since": int(conversation.waiting_since or 0),
            "sla_policy_id": None,
        }

    def _message_push(
        self, account_id: str | int, conversation: Conversation, message: dict[str, Any]
    ) -> dict[str, Any]:
        """Message#push_event_data."""
        sender = message.get("sender")
        kind = str((sender or {}).get("type") or "")
        return {
            **message,
            "account_id": int(account_id),
            "updated_at": _iso(self._exact.get(message["id"], float(message["created_at"]))),
            "sender_type": {"contact": "Contact", "user": "User", "agent_bot": "AgentBot"}.get(
                kind
            ),
            "sender_id": (sender or {}).get("id"),
            "conversation": {
                "assignee_id": conversation.assignee_id,
                "unread_count": 0,
                "last_activity_at": int(conversation.last_activity_at),
            },
        }

    def _push_data(
        self, account_id: str | int, conversation_id: str | int, conversation: Conversation
    ) -> dict[str, Any]:
        """Conversation#webhook_data (push_event_data), as a webhook carries it."""
        # Conversations::EventDataPresenter#push_data: ``messages.chat.last``, the last message
        # that is neither activity nor private.
        chat = [m for m in conversation.messages if m["message_type"] != 2 and not m.get("private")]
        last = chat[-1] if chat else None
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": self._meta(conversation)["channel"],
            "id": int(conversation_id),
            "inbox_id": conversation.inbox_id,
            "messages": [self._message_push(account_id, conversation, last)] if last else [],
            "labels": list(conversation.labels),
            "meta": {**self._meta(conversation), "team": self._meta(conversation).get("team")},
            "status": conversation.status,
            "custom_attributes": {},
            "snoozed_until": _iso(conversation.snoozed_until),
            "unread_count": 0,
            "first_reply_created_at": _iso(conversation.first_reply_created_at),
            "priority": conversation.priority,
            "waiting_since": int(conversation.waiting_since or 0),
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": int(conversation.last_activity_at),
            "timestamp": int(conversation.last_activity_at),
            "created_at": int(conversation.created_at),
            "updated_at": conversation.updated_at,
            "account": {"id": int(account_id), "name": "Example Store"},
        }

    def _message_webhook(
        self, account_id: str | int, conversation: Conversation, message: dict[str, Any]
    ) -> dict[str, Any]:
        """Message#webhook_data: created_at to the millisecond, message_type as a word."""
        conversation_data = self._push_data(account_id, message["conversation_id"], conversation)
        # The conversation embeds its last *chat* message (push_data's messages.chat.last): for
        # a chat message that is this one; for a private note it is the one before (the 4.17.1
        # capture: note 4, conversation.messages[0] is message 3).
        return {
            "account": {"id": int(account_id), "name": "Example Store"},
            "additional_attributes": {},
            "content_attributes": message["content_attributes"],
            "content_type": message["content_type"],
            "content": message["content"],
            "conversation": conversation_data,
            "created_at": _iso(self._exact[message["id"]]),
            "id": message["id"],
            "inbox": {"id": conversation.inbox_id, "name": "Support"},
            "message_type": {v: k for k, v in MESSAGE_TYPES.items()}[message["message_type"]],
            "private": message["private"],
            "sender": message["sender"],
            "source_id": None,
        }


def _contact(contact_id: int) -> dict[str, Any]:
    return {
        "additional_attributes": {},
        "custom_attributes": {},
        "email": None,
        "id": contact_id,
        "identifier": None,
        "name": "Customer",
        "phone_number": None,
        "thumbnail": "",
        "blocked": False,
        "type": "contact",
    }


def _iso(epoch: float | None) -> str | None:
    """A Rails time in JSON: ISO-8601 with milliseconds, or null."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(math.floor(epoch * 1000) / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
