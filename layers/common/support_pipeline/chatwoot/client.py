"""Chatwoot application REST API client (requests), with errors mapped onto failure classes.

Header ``api_access_token``; base ``{CHATWOOT_BASE_URL}/api/v1/accounts/{account}/conversations``.
429, 5xx, timeouts and connection errors are transient (the event backs off and retries);
401/403/404/422 and other 4xx are permanent with a reason naming the call and status.

What Chatwoot keeps shapes how the pipeline recognises its own work: of a message created
through the API it keeps ``content``, ``private``, ``message_type``, ``content_type`` and only a
few known ``content_attributes`` keys, so the action id travels in the note's text as a short
reference line (:func:`with_reference`). ``GET .../messages`` answers the latest 20 messages;
``after=<id>`` pages forward 100 at a time, which is how a lost answer is recovered. The token's
own user (``GET /api/v1/profile``) is the sender of everything the pipeline writes.

Chatwoot does not deduplicate message creation: callers go through the action ledger
(:mod:`support_pipeline.actions`). One call only can send a message the customer sees:
:meth:`ChatwootClient.create_public_reply`, which refuses unless the store holds a person's
approval of exactly that text. Nothing here changes a conversation's status (resolving can send
the customer a CSAT survey).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from support_pipeline import deadline
from support_pipeline.chatwoot.payload import canonical_id
from support_pipeline.processing.errors import PermanentError, TransientError

DEFAULT_TIMEOUT = (3.05, 10.0)  # connect, read
# A call needs at least this long to be worth starting, and this much is kept back after it for
# the caller to record the outcome before Lambda's timeout.
MIN_CALL_SECONDS = 0.25
RESERVE_SECONDS = 0.5
PRIORITIES = ("urgent", "high", "medium", "low", "none")
LATEST_PAGE = 20  # GET .../messages without a cursor: the latest 20, ascending
AFTER_PAGE = 100  # GET .../messages?after=<id>: up to 100 after, ascending
# GET .../conversations answers CONVERSATION_RESULTS_PER_PAGE (an env var of the Chatwoot
# server, 25 by default) a page: callers never rely on the number, only on an empty page.
CONVERSATIONS_PAGE = 25
REFERENCE_RE = re.compile(r"(?:^|\n)ref: sp-([0-9a-f]{16})\s*$")


def content_digest(text: str) -> str:
    """What an approval is bound to: the exact text that may be sent."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


ApprovalLookup = Callable[[str, str, str], "dict[str, Any] | None"]
"""(account, conversation, draft id) -> the stored approval, or None."""


def reference(action_id: str) -> str:
    """The short, stable reference of an action that its note carries as its last line."""
    return "sp-" + hashlib.sha256(action_id.encode()).hexdigest()[:16]


def with_reference(content: str, action_id: str) -> str:
    """``content`` with the action's reference line appended (Chatwoot keeps the text)."""
    return f"{content.rstrip()}\n\nref: {reference(action_id)}"


def reference_in(content: Any) -> str | None:
    """The pipeline reference a message's text ends with, if any."""
    if not isinstance(content, str):
        return None
    found = REFERENCE_RE.search(content)
    return f"sp-{found.group(1)}" if found else None


@dataclass(frozen=True)
class ConversationPage:
    """One page of ``GET .../conversations``: the conversations (Chatwoot's list shape) and
    ``meta.all_count``, the number of conversations the listing holds (None if not given)."""

    conversations: list[dict[str, Any]]
    all_count: int | None


@dataclass(frozen=True)
class Identity:
    """Who a Chatwoot message is from: ``user`` or ``agent_bot`` and the id."""

    type: str
    id: str


class NoAnswerError(TransientError):
    """The call got no answer (timeout, connection lost): Chatwoot may or may not have acted."""


class ServerError(TransientError):
    """Chatwoot (or a proxy in front of it) answered 5xx: for a POST, it may have acted."""


class NotFoundError(PermanentError):
    """Chatwoot answered 404: the conversation (or account, or route) does not exist.

    ``from_chatwoot`` is True when the answer is Chatwoot's own JSON error (a record it does
    not have), False for anything else that says 404 (a proxy, a maintenance page, a wrong
    base URL).
    """

    def __init__(self, error_type: str, reason: str, from_chatwoot: bool = False) -> None:
        super().__init__(error_type, reason)
        self.from_chatwoot = from_chatwoot


class ChatwootClient:
    """Operations the pipeline takes on a conversation."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        on_error: Callable[[str], None] | None = None,
        gate: Callable[[str], None] | None = None,
    ) -> None:
        """``on_error`` hears of each failed call by its HTTP status (``"429"``, ``"503"``) or
        ``"timeout"``, ``"no_answer"``, ``"bad_body"`` (the callers count them); ``gate`` is
        asked before each call with the call's name and may refuse it by raising (the pause
        switch)."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()
        self._timeout = timeout
        self._identity: Identity | None = None
        self._on_error = on_error
        self._gate = gate

    # ---- transport -------------------------------------------------------------------------
    def _url(self, account_id: str, conversation_id: str, suffix: str) -> str:
        # Canonical ids only, checked before any request: requests resolves "/../" in a path, so
        # a conversation id like "7/../../../2/conversations/9" would reach another account.
        account, conversation = canonical_id(account_id), canonical_id(conversation_id)
        if account is None or conversation is None:
            name = "account" if account is None else "conversation"
            raise PermanentError("invalid_id", f"{name} id is not a positive integer")
        return f"{self.base_url}/api/v1/accounts/{account}/conversations/{conversation}{suffix}"

    def _account_url(self, account_id: str, path: str, version: str = "v1") -> str:
        """``/api/<version>/accounts/<account><path>``, the id checked first."""
        account = canonical_id(account_id)
        if account is None:
            raise PermanentError("invalid_id", "account id is not a positive integer")
        return f"{self.base_url}/api/{version}/accounts/{account}{path}"

    def _timeouts(self, name: str) -> tuple[float, float]:
        """The default timeouts, cut to what the invocation has left (minus a reserve)."""
        left = deadline.remaining()
        if left is None:
            return self._timeout
        usable = left - RESERVE_SECONDS
        if usable < MIN_CALL_SECONDS:
            raise TransientError(
                "deadline", f"{name} not started: {max(left, 0):.1f} s left in the invocation"
            )
        connect, read = self._timeout
        return (min(connect, usable), min(read, usable))

    def _request(
        self,
        method: str,
        url: str,
        name: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        if self._gate is not None:
            self._gate(name)
        timeout = self._timeouts(name)
        try:
            response = self._session.request(
                method,
                url,
                json=body,
                params=params,
                headers={"api_access_token": self._token(), "Accept": "application/json"},
                timeout=timeout,
                stream=True,
            )
            content = self._read(response, name)
        except requests.Timeout:
            self._failed("timeout")
            raise NoAnswerError("chatwoot_unavailable", f"{name} timed out") from None
        except requests.ConnectionError:
            self._failed("no_answer")
            raise NoAnswerError("chatwoot_unavailable", f"{name} got no answer") from None
        except NoAnswerError:
            self._failed("no_answer")  # cut off, or too slow for the time left
            raise
        status = response.status_code
        if status >= 400:
            self._failed(str(status))
        if status == 429:
            raise TransientError("chatwoot_throttled", f"{name} returned 429")
        if status >= 500:
            raise ServerError("chatwoot_unavailable", f"{name} returned {status}")
        if status == 404:
            raise NotFoundError(
                "chatwoot_rejected",
                f"{name} returned 404",
                from_chatwoot=_chatwoot_error(response, content),
            )
        if status >= 400:
            raise PermanentError("chatwoot_rejected", f"{name} returned {status}")
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            self._failed("bad_body")
            raise TransientError(
                "chatwoot_unavailable", f"{name} returned a body that is not JSON"
            ) from None

    def _failed(self, reason: str) -> None:
        """Tell ``on_error``; counting never changes what the call does."""
        if self._on_error is not None:
            with contextlib.suppress(Exception):
                self._on_error(reason)

    @staticmethod
    def _read(response: requests.Response, name: str) -> bytes:
        """The whole body, given up on when the invocation's time runs out: a read timeout
        bounds each read of the socket, not an answer that trickles in."""
        chunks = []
        raw = response.raw
        try:
            while True:
                # read1: whatever has arrived (up to 64 KiB), not a full buffer of it
                chunk = raw.read1(65536, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                left = deadline.remaining()
                if left is not None and left < RESERVE_SECONDS:
                    raise NoAnswerError(
                        "chatwoot_unavailable", f"{name} answered too slowly for the time left"
                    )
        except (ProtocolError, ReadTimeoutError):
            raise NoAnswerError("chatwoot_unavailable", f"{name} got no whole answer") from None
        finally:
            response.close()
        return b"".join(chunks)

    def _call(
        self,
        method: str,
        account_id: str,
        conversation_id: str,
        suffix: str = "",
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        name = f"{method} conversations/{conversation_id}{suffix}"
        return self._request(
            method, self._url(account_id, conversation_id, suffix), name, body, params
        )

    # ---- who we are ------------------------------------------------------------------------
    def identity(self, fresh: bool = False) -> Identity:
        """The user the access token belongs to (``GET /api/v1/profile``), asked once unless
        ``fresh`` (a check that the API answers right now)."""
        if self._identity is None or fresh:
            found = self._request("GET", f"{self.base_url}/api/v1/profile", "GET profile")
            user_id = found.get("id") if isinstance(found, dict) else None
            if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
                raise TransientError("chatwoot_unavailable", "GET profile returned no user id")
            self._identity = Identity("user", str(user_id))
        return self._identity

    def profile(self) -> dict[str, Any]:
        """The token's own user (``GET /api/v1/profile``), with the accounts it belongs to."""
        found = self._request("GET", f"{self.base_url}/api/v1/profile", "GET profile")
        return found if isinstance(found, dict) else {}

    # ---- reading ---------------------------------------------------------------------------
    def get_conversation(self, account_id: str, conversation_id: str) -> dict[str, Any]:
        found = self._call("GET", account_id, conversation_id)
        return found if isinstance(found, dict) else {}

    def list_messages(
        self,
        account_id: str,
        conversation_id: str,
        after: int | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """One page of messages, oldest first: the latest 20, 20 ``before`` an id, or up to
        100 ``after`` one (Chatwoot's paging)."""
        params: dict[str, Any] = {}
        if after is not None:
            params["after"] = after
        if before is not None:
            params["before"] = before
        found = self._call("GET", account_id, conversation_id, "/messages", params=params or None)
        payload = found.get("payload") if isinstance(found, dict) else found
        return [m for m in payload or [] if isinstance(m, dict)]

    def list_conversations(self, account_id: str, page: int) -> ConversationPage:
        """One page of the account's conversations of every status, most recent activity first
        (``GET .../conversations?status=all&sort_by=last_activity_at_desc&page=N``, Chatwoot's
        ConversationFinder). Only conversations of inboxes the token's user can see are listed:
        an administrator sees them all."""
        found = self._request(
            "GET",
            self._account_url(account_id, "/conversations"),
            f"GET conversations?page={page}",
            params={
                "status": "all",
                "assignee_type": "all",
                "sort_by": "last_activity_at_desc",
                "page": page,
            },
        )
        data = found.get("data") if isinstance(found, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("payload"), list):
            raise TransientError(
                "chatwoot_unavailable", "GET conversations returned no data.payload list"
            )
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        count = (meta or {}).get("all_count")
        return ConversationPage(
            [c for c in data["payload"] if isinstance(c, dict)],
            count if isinstance(count, int) and not isinstance(count, bool) else None,
        )

    def latest_message_id(self, account_id: str, conversation_id: str) -> int:
        """The newest message's id (0 for a conversation without messages)."""
        ids = [_int_id(m.get("id")) for m in self.list_messages(account_id, conversation_id)]
        return max([i for i in ids if i is not None], default=0)

    def messages_after(
        self, account_id: str, conversation_id: str, after: int
    ) -> Iterator[dict[str, Any]]:
        """Every message newer than ``after``, oldest first, page by page."""
        cursor = after
        while True:
            page = self.list_messages(account_id, conversation_id, after=cursor)
            yield from page
            ids = [i for i in (_int_id(m.get("id")) for m in page) if i is not None]
            if len(page) < AFTER_PAGE or not ids or max(ids) <= cursor:
                return
            cursor = max(ids)

    def find_note(
        self, account_id: str, conversation_id: str, action_id: str, after: int
    ) -> dict[str, Any] | None:
        """The private note an earlier attempt of ``action_id`` created after message ``after``."""
        wanted = reference(action_id)
        for message in self.messages_after(account_id, conversation_id, after):
            if message.get("private") and reference_in(message.get("content")) == wanted:
                return message
        return None

    def find_public_reply(
        self, account_id: str, conversation_id: str, content: str, after: int
    ) -> dict[str, Any] | None:
        """A public message with exactly ``content`` the pipeline sent after message ``after``
        (a reply the customer sees carries no reference line: its sender and text are the key)."""
        ours, _ = self.reply_or_answer(account_id, conversation_id, content, after)
        return ours[0] if ours else None

    def reply_or_answer(
        self,
        account_id: str,
        conversation_id: str,
        content: str,
        after: int,
        me: Identity | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """After message ``after``: the pipeline's own public messages with exactly ``content``
        (one may be an earlier attempt's, oldest first), and the first public reply a person
        wrote (an agent answered the customer themselves). Read from Chatwoot, page by page.
        ``me``: who the pipeline is (default: the token's own user)."""
        me = me or self.identity()
        ours: list[dict[str, Any]] = []
        person: dict[str, Any] | None = None
        for message in self.messages_after(account_id, conversation_id, after):
            if message.get("private") or message.get("message_type") not in (1, "outgoing"):
                continue
            sender = message.get("sender") if isinstance(message.get("sender"), dict) else {}
            sender_type = str((sender or {}).get("type") or "").lower()
            mine = sender_type == me.type and str((sender or {}).get("id")) == me.id
            if mine and message.get("content") == content:
                ours.append(message)
            elif not mine and sender_type == "user" and person is None:
                person = message
        return ours, person

    def customer_wrote_between(
        self, account_id: str, conversation_id: str, low: int, high: int
    ) -> dict[str, Any] | None:
        """The first message the customer wrote after message ``low`` and before ``high``."""
        for message in self.messages_after(account_id, conversation_id, low):
            message_id = _int_id(message.get("id"))
            if message_id is not None and message_id >= high:
                return None  # ascending: nothing before ``high`` is left
            incoming = message.get("message_type") in (0, "incoming")
            if message_id is not None and incoming and not message.get("private"):
                return message
        return None

    def report_summary(self, account_id: str, since: int, until: int) -> dict[str, Any]:
        """Chatwoot's own account summary for ``since``..``until`` (unix seconds, end
        excluded) and the equal period before it (``previous``): the weekly report's
        comparison. ``GET /api/v2/accounts/{id}/reports/summary?type=account``."""
        found = self._request(
            "GET",
            self._account_url(account_id, "/reports/summary", version="v2"),
            "GET reports/summary",
            params={"type": "account", "since": str(int(since)), "until": str(int(until))},
        )
        return found if isinstance(found, dict) else {}

    def list_teams(self, account_id: str) -> list[dict[str, Any]]:
        """The account's teams (``GET /api/v1/accounts/{id}/teams``: every team, members or
        not). Team ids are checked against this before assigning: Chatwoot's
        AssignmentsController#set_team uses ``find_by`` and sets an unknown team to nil."""
        return _objects(self._request("GET", self._account_url(account_id, "/teams"), "GET teams"))

    def team_member_ids(self, account_id: str, team_id: int) -> set[str]:
        """The user ids of a team's members (``GET .../teams/{id}/team_members``)."""
        url = self._account_url(account_id, f"/teams/{int(team_id)}/team_members")
        return {str(m.get("id")) for m in _objects(self._request("GET", url, "GET team_members"))}

    def get_labels(self, account_id: str, conversation_id: str) -> list[str]:
        found = self._call("GET", account_id, conversation_id, "/labels")
        payload = found.get("payload") if isinstance(found, dict) else found
        return [str(label) for label in payload or []]

    # ---- acting ----------------------------------------------------------------------------
    def create_private_note(
        self, account_id: str, conversation_id: str, content: str, action_id: str
    ) -> dict[str, Any]:
        """A private note only agents see, ending with the action's reference line."""
        created = self._call(
            "POST",
            account_id,
            conversation_id,
            "/messages",
            {
                "content": with_reference(content, action_id),
                "message_type": "outgoing",
                "private": True,
            },
        )
        return created if isinstance(created, dict) else {}

    def create_public_reply(
        self,
        account_id: str,
        conversation_id: str,
        content: str,
        draft_id: str,
        approval_of: ApprovalLookup,
    ) -> dict[str, Any]:
        """A reply the customer sees: refused unless a person's stored approval of this draft
        is bound to exactly this text (nothing is sent then)."""
        approval = approval_of(account_id, conversation_id, draft_id)
        if approval is None or approval.get("digest") != content_digest(content):
            raise PermanentError(
                "approval_required",
                f"no stored approval matches the public reply for draft {draft_id}",
            )
        created = self._call(
            "POST",
            account_id,
            conversation_id,
            "/messages",
            {"content": content, "message_type": "outgoing", "private": False},
        )
        return created if isinstance(created, dict) else {}

    def set_labels(self, account_id: str, conversation_id: str, labels: Iterable[str]) -> list[str]:
        """Replace the whole label list (Chatwoot's semantics): prefer add/remove_labels."""
        found = self._call(
            "POST", account_id, conversation_id, "/labels", {"labels": sorted(set(labels))}
        )
        payload = found.get("payload") if isinstance(found, dict) else None
        return [str(label) for label in payload or []]

    def change_labels(
        self,
        account_id: str,
        conversation_id: str,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> list[str]:
        """Read, change only ``add``/``remove``, write, and check what Chatwoot kept.

        Callers serialise label changes per conversation (the action runner's label lock), so
        the pipeline's own writers never overwrite each other.
        """
        added, removed = set(add), set(remove)
        current = self.get_labels(account_id, conversation_id)
        wanted = (set(current) | added) - removed
        if wanted == set(current):
            return current
        result = self.set_labels(account_id, conversation_id, wanted)
        if not added <= set(result) or removed & set(result):
            raise TransientError(
                "label_conflict", f"POST conversations/{conversation_id}/labels did not stick"
            )
        return result

    def add_labels(self, account_id: str, conversation_id: str, labels: Iterable[str]) -> list[str]:
        """Read, merge, write. Keeps every label present when it read them; Chatwoot's API has
        no atomic add, so a label a person adds between the read and the write can be lost (the
        pipeline's own writers are serialised by the label lock in actions.py)."""
        return self.change_labels(account_id, conversation_id, add=labels)

    def remove_labels(
        self, account_id: str, conversation_id: str, labels: Iterable[str]
    ) -> list[str]:
        """Read, remove only ``labels``, write."""
        return self.change_labels(account_id, conversation_id, remove=labels)

    def assign(
        self,
        account_id: str,
        conversation_id: str,
        team_id: int | None = None,
        assignee_id: int | None = None,
    ) -> Any:
        """Assign an agent, or a team. For a team Chatwoot answers the team, or ``null`` when
        it has no team of that id (and then sets the conversation's team to nil): that
        answer is returned, so the caller can tell."""
        if team_id is None and assignee_id is None:
            raise ValueError("assign needs a team_id or an assignee_id")
        body = {"assignee_id": assignee_id} if assignee_id is not None else {"team_id": team_id}
        return self._call("POST", account_id, conversation_id, "/assignments", body)

    def set_priority(self, account_id: str, conversation_id: str, priority: str | None) -> None:
        """Set the priority, or clear it (None, or the pipeline's word "none"): Chatwoot takes
        only its enum's names or null; "none" itself would be a 500 (Conversation#
        toggle_priority assigns it to a Rails enum)."""
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        wanted = None if priority in (None, "none") else priority
        self._call("POST", account_id, conversation_id, "/toggle_priority", {"priority": wanted})


def _chatwoot_error(response: requests.Response, content: bytes) -> bool:
    """Whether an error answer is Chatwoot's own JSON (``{"error": ...}``)."""
    if "json" not in response.headers.get("content-type", ""):
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _objects(found: Any) -> list[dict[str, Any]]:
    """The objects of a list answer, bare or under ``payload``."""
    payload = found.get("payload") if isinstance(found, dict) else found
    return (
        [item for item in payload or [] if isinstance(item, dict)]
        if isinstance(payload, list)
        else []
    )


def _int_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
