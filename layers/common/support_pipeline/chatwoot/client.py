"""Chatwoot application REST API client (requests), with errors mapped onto failure classes.

Header ``api_access_token``; base ``{CHATWOOT_BASE_URL}/api/v1/accounts/{account}/conversations``.
429, 5xx, timeouts and connection errors are transient (the event backs off and retries);
401/403/404/422 and other 4xx are permanent with a reason naming the call and status.
Chatwoot does not deduplicate message creation: callers go through the action ledger
(:mod:`support_pipeline.actions`), which tags every message with its action id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from support_pipeline.chatwoot.payload import canonical_id
from support_pipeline.processing.errors import PermanentError, TransientError

ACTION_ATTRIBUTE = "support_pipeline_action"
DEFAULT_TIMEOUT = (3.05, 10.0)  # connect, read
PRIORITIES = ("urgent", "high", "medium", "low", "none")
STATUSES = ("open", "resolved", "pending", "snoozed")


@dataclass(frozen=True)
class Approval:
    """A human's explicit approval of a customer-facing message (recorded by the approval flow)."""

    approval_id: str
    approved_by: str
    approved_at: str
    approved: bool = True


class ChatwootClient:
    """Operations the pipeline takes on a conversation."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()
        self._timeout = timeout

    # ---- transport -------------------------------------------------------------------------
    def _url(self, account_id: str, conversation_id: str, suffix: str) -> str:
        # Canonical ids only, checked before any request: requests resolves "/../" in a path, so
        # a conversation id like "7/../../../2/conversations/9" would reach another account.
        account, conversation = canonical_id(account_id), canonical_id(conversation_id)
        if account is None or conversation is None:
            name = "account" if account is None else "conversation"
            raise PermanentError("invalid_id", f"{name} id is not a positive integer")
        return f"{self.base_url}/api/v1/accounts/{account}/conversations/{conversation}{suffix}"

    def _call(
        self,
        method: str,
        account_id: str,
        conversation_id: str,
        suffix: str = "",
        body: dict[str, Any] | None = None,
    ) -> Any:
        name = f"{method} conversations/{conversation_id}{suffix}"
        try:
            response = self._session.request(
                method,
                self._url(account_id, conversation_id, suffix),
                json=body,
                headers={"api_access_token": self._token(), "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.Timeout:
            raise TransientError("chatwoot_unavailable", f"{name} timed out") from None
        except requests.ConnectionError:
            raise TransientError("chatwoot_unavailable", f"{name} could not connect") from None
        status = response.status_code
        if status == 429:
            raise TransientError("chatwoot_throttled", f"{name} returned 429")
        if status >= 500:
            raise TransientError("chatwoot_unavailable", f"{name} returned {status}")
        if status >= 400:
            raise PermanentError("chatwoot_rejected", f"{name} returned {status}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientError(
                "chatwoot_unavailable", f"{name} returned a body that is not JSON"
            ) from None

    # ---- reading ---------------------------------------------------------------------------
    def get_conversation(self, account_id: str, conversation_id: str) -> dict[str, Any]:
        found = self._call("GET", account_id, conversation_id)
        return found if isinstance(found, dict) else {}

    def list_messages(self, account_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's recent messages (Chatwoot returns the latest page)."""
        found = self._call("GET", account_id, conversation_id, "/messages")
        payload = found.get("payload") if isinstance(found, dict) else found
        return [m for m in payload or [] if isinstance(m, dict)]

    def get_labels(self, account_id: str, conversation_id: str) -> list[str]:
        found = self._call("GET", account_id, conversation_id, "/labels")
        payload = found.get("payload") if isinstance(found, dict) else found
        return [str(label) for label in payload or []]

    def find_action_message(
        self, account_id: str, conversation_id: str, action_id: str
    ) -> dict[str, Any] | None:
        """The message a previous attempt of ``action_id`` created, if Chatwoot has it."""
        for message in self.list_messages(account_id, conversation_id):
            attributes = message.get("content_attributes")
            if isinstance(attributes, dict) and attributes.get(ACTION_ATTRIBUTE) == action_id:
                return message
        return None

    # ---- acting ----------------------------------------------------------------------------
    def _create_message(
        self,
        account_id: str,
        conversation_id: str,
        content: str,
        private: bool,
        attributes: dict[str, str],
    ) -> dict[str, Any]:
        created = self._call(
            "POST",
            account_id,
            conversation_id,
            "/messages",
            {
                "content": content,
                "message_type": "outgoing",
                "private": private,
                "content_attributes": attributes,
            },
        )
        return created if isinstance(created, dict) else {}

    def create_private_note(
        self, account_id: str, conversation_id: str, content: str, action_id: str
    ) -> dict[str, Any]:
        """A private note only agents see, tagged with its action id."""
        return self._create_message(
            account_id, conversation_id, content, True, {ACTION_ATTRIBUTE: action_id}
        )

    def create_public_message(
        self,
        account_id: str,
        conversation_id: str,
        content: str,
        action_id: str,
        approval: Approval | None,
    ) -> dict[str, Any]:
        """A message the customer sees: refused unless a human approved it."""
        if approval is None or not approval.approved:
            raise PermanentError("approval_required", "a public message needs a human's approval")
        return self._create_message(
            account_id,
            conversation_id,
            content,
            False,
            {ACTION_ATTRIBUTE: action_id, "approval_id": approval.approval_id},
        )

    def set_labels(self, account_id: str, conversation_id: str, labels: Iterable[str]) -> list[str]:
        """Replace the whole label list (Chatwoot's semantics): prefer add/remove_labels."""
        found = self._call(
            "POST", account_id, conversation_id, "/labels", {"labels": sorted(set(labels))}
        )
        payload = found.get("payload") if isinstance(found, dict) else None
        return [str(label) for label in payload or []]

    def add_labels(self, account_id: str, conversation_id: str, labels: Iterable[str]) -> list[str]:
        """Read, merge, write: never drops a label a person set."""
        current = self.get_labels(account_id, conversation_id)
        wanted = set(current) | set(labels)
        if wanted == set(current):
            return current
        return self.set_labels(account_id, conversation_id, wanted)

    def remove_labels(
        self, account_id: str, conversation_id: str, labels: Iterable[str]
    ) -> list[str]:
        """Read, remove only ``labels``, write."""
        current = self.get_labels(account_id, conversation_id)
        wanted = set(current) - set(labels)
        if wanted == set(current):
            return current
        return self.set_labels(account_id, conversation_id, wanted)

    def assign(
        self,
        account_id: str,
        conversation_id: str,
        team_id: int | None = None,
        assignee_id: int | None = None,
    ) -> None:
        if team_id is None and assignee_id is None:
            raise ValueError("assign needs a team_id or an assignee_id")
        body = {"assignee_id": assignee_id} if assignee_id is not None else {"team_id": team_id}
        self._call("POST", account_id, conversation_id, "/assignments", body)

    def set_priority(self, account_id: str, conversation_id: str, priority: str) -> None:
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        self._call("POST", account_id, conversation_id, "/toggle_priority", {"priority": priority})

    def set_status(self, account_id: str, conversation_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._call("POST", account_id, conversation_id, "/toggle_status", {"status": status})
