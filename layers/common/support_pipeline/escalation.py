"""Escalations: rules that decide a conversation needs a person now, and what that does.

An escalation merges the policy's labels, sets its priority and team, and posts one private note
listing every reason that fired. Each reason escalates once per episode (until the conversation
is resolved); an agent's ``/escalate <reason>`` note always escalates. Every escalation is
recorded in the timeline with its reasons, for the weekly report.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.actions import Action, ActionRunner
from support_pipeline.chatwoot import payload as cw
from support_pipeline.chatwoot.client import Identity, reference_in
from support_pipeline.conversations import CUSTOMER, REPLY
from support_pipeline.policy import PhraseRule, SupportPolicy, normalize_text
from support_pipeline.processing.errors import PermanentError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore, account_day, conversation_pk, timeline_sk

logger = Logger(child=True)

STATE = "escalation"
MANUAL_COMMAND = "/escalate"
MAX_REASON = 500  # characters of an agent's /escalate reason quoted in the note
ESCALATION_EVENTS = frozenset(
    {
        "message_created",
        "conversation_status_changed",
        "conversation_updated",
        "conversation_opened",
    }
)


@dataclass(frozen=True)
class Reason:
    """Why a conversation is escalated: a stable code and words for the agents' note."""

    code: str
    text: str


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_own_message(payload: cw.Payload, own: Callable[[], Identity | None]) -> bool:
    """True for messages the pipeline itself wrote (no loops).

    Its notes end with a reference line (no call needed), which counts only on a private
    outgoing message: a customer who types such a line is still a customer. Anything else it
    writes is sent as the token's own user, so a message by that user is the pipeline's too.
    Contacts are never the pipeline, so ``own`` (which may ask Chatwoot once per process) is
    only asked about messages by users and bots.
    """
    if cw.base_event(str(payload.get("event", ""))) not in cw.MESSAGE_EVENTS:
        return False
    outgoing = cw.message_type(payload) == "outgoing"
    if outgoing and payload.get("private") and reference_in(payload.get("content")):
        return True
    sender = payload.get("sender")
    if not outgoing or not isinstance(sender, dict):
        return False
    sender_type = str(sender.get("type") or "").lower()
    if sender_type not in ("user", "agent_bot"):
        return False
    identity = own()
    if identity is None:
        return False
    return identity.type == sender_type and identity.id == str(sender.get("id"))


def episode_of(record: dict[str, Any]) -> int:
    """Which episode of the conversation this is: 0 until it is first reopened after a
    resolution, then 1, 2... (``reopened_count`` is order-insensitive, so every worker agrees)."""
    return int(record.get("reopened_count") or 0)


def claim_key(episode: int, code: str, dry_run: bool) -> str:
    """A reason's claim in one episode; claims made in dry run are kept apart, so going live
    acts on what a dry run only recorded."""
    return f"{'dry:' if dry_run else ''}{episode}:{code}"


def escalated_now(record: dict[str, Any], dry_run: bool) -> bool:
    """Whether the conversation was escalated in its current episode (the record's mark)."""
    return record.get("escalated_episode") == claim_key(episode_of(record), "", dry_run)


def matched_phrases(text: str, rule: PhraseRule) -> list[str]:
    """Phrases of any language that occur in ``text`` as whole words (accents ignored)."""
    haystack = f" {normalize_text(text)} "
    found = []
    for phrases in rule.phrases.values():
        for phrase in phrases:
            if f" {phrase} " in haystack and phrase not in found:
                found.append(phrase)
    return found


# How long an account's team list (and a team's members) is trusted before it is read again.
TEAMS_CACHE_SECONDS = 300.0


def person_holding(record: dict[str, Any]) -> str | None:
    """The user id of the person a conversation is assigned to (not an agent bot), if any."""
    assignee = record.get("assignee_id")
    kind = str(record.get("assignee_type") or "").lower()
    return str(assignee) if assignee and kind in ("user", "") else None


class Escalator:
    """Applies an escalation in Chatwoot, once per escalation id, and records it."""

    def __init__(
        self,
        policy: SupportPolicy,
        store: ConversationStore,
        actions: ActionRunner,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.store = store
        self.actions = actions
        self.clock = clock
        # Per account: when the team list was read, and the team ids then (TEAMS_CACHE_SECONDS).
        self._teams: dict[str, tuple[float, set[str]]] = {}
        self._members: dict[tuple[str, int], tuple[float, set[str]]] = {}

    def _cached(self, cache: dict[Any, tuple[float, set[str]]], key: Any, read: Any) -> set[str]:
        now = self.clock()
        found = cache.get(key)
        if found is None or now - found[0] >= TEAMS_CACHE_SECONDS:
            found = (now, read())
            cache[key] = found
        return found[1]

    def team_plan(self, account_id: str, team_id: int, holder: str | None) -> tuple[bool, str]:
        """Whether to assign the escalation team, and what the note says about it.

        Chatwoot's AssignmentsController#set_team finds the team with ``find_by``: an unknown
        id sets the conversation's team to nil (and answers 200 ``null``), so the id is checked
        against the account's teams first and an unknown one is never sent. Setting a team
        also removes an assignee who is not one of its members
        (Conversation#ensure_assignee_is_from_team): a conversation a person already holds is
        left with them unless they are in the team; the note says so, and the labels, the
        priority and the note still call the team's attention.
        """
        client = self.actions.client
        if client is None:  # a dry run: recorded as it would be done
            return True, f"assigned to team {team_id}"
        teams = self._cached(
            self._teams,
            account_id,
            lambda: {str(t.get("id")) for t in client.list_teams(account_id)},
        )
        if str(team_id) not in teams:
            logger.warning(
                "escalation team not found in Chatwoot; not assigned",
                extra={"account_id": account_id, "team_id": team_id},
            )
            return False, (
                f"not assigned: Chatwoot has no team {team_id} in this account "
                "(fix escalation.team_id in the support policy)"
            )
        if holder is None:
            return True, f"assigned to team {team_id}"
        members = self._cached(
            self._members,
            (account_id, team_id),
            lambda: client.team_member_ids(account_id, team_id),
        )
        if holder in members:
            return True, f"assigned to team {team_id} (its agent, a member, keeps it)"
        return False, (
            f"team {team_id} not assigned: the agent who holds the conversation is not in it, "
            "and Chatwoot would unassign them"
        )

    def escalate(
        self,
        account_id: str,
        conversation_id: str,
        escalation_id: str,
        reasons: list[Reason],
        extra_labels: tuple[str, ...] = (),
        occurred_at: float | None = None,
        episode: int | None = None,
        holder: str | None = None,
    ) -> None:
        """Take the escalation's actions once each and record it; ``episode`` (the record's)
        marks the record as escalated in that episode, which drafting reads. ``holder``: the
        user id of the person the conversation is assigned to, if any."""
        policy = self.policy.escalation
        labels = tuple(dict.fromkeys(policy.labels + extra_labels))
        planned: list[Action] = []

        def action(kind: str, **detail: Any) -> None:
            planned.append(
                Action(
                    account_id,
                    conversation_id,
                    f"{escalation_id}/{kind}",
                    kind,
                    detail,
                    reason=",".join(r.code for r in reasons),
                )
            )

        if labels:
            action("add_labels", labels=list(labels))
        if policy.priority:
            action("set_priority", priority=policy.priority)
        team_words = None
        if policy.team_id is not None:
            assign, team_words = self.team_plan(account_id, policy.team_id, holder)
            if assign:
                action("assign_team", team_id=policy.team_id)
            else:
                self.actions.telemetry.count("EscalationTeamSkipped")
        action("private_note", content=self.note(reasons, team_words))
        for planned_action in planned:
            self.actions.run(planned_action)
        when = occurred_at or self.clock()
        occurred_iso = cw.iso(when)
        self.store.add_timeline_item(
            {
                "pk": conversation_pk(account_id, conversation_id),
                "sk": timeline_sk(occurred_iso, escalation_id),
                "kind": "escalation",
                "event": "escalation",
                "occurred_at": occurred_iso,
                "reasons": [r.code for r in reasons],
                "escalation_id": escalation_id,
                "account_id": account_id,
                "conversation_id": conversation_id,
                "account_day": account_day(account_id, when, self.policy.zone),
                "occurred_key": f"{occurred_iso}#{conversation_id}",
            }
        )
        if episode is not None:
            self.store.set_record_fields(
                account_id,
                conversation_id,
                {"escalated_episode": claim_key(episode, "", self.actions.dry_run)},
            )
        logger.info(
            "conversation escalated",
            extra={
                "account_id": account_id,
                "conversation_id": conversation_id,
                "reasons": [r.code for r in reasons],
                "dry_run": self.actions.dry_run,
            },
        )

    def note(self, reasons: list[Reason], team_words: str | None = None) -> str:
        policy = self.policy.escalation
        lines = ["Escalated by the support pipeline:"]
        lines += [f"- {reason.text}" for reason in reasons]
        done = []
        if policy.priority:
            done.append(f"priority set to {policy.priority}")
        if policy.team_id is not None:
            done.append(team_words or f"assigned to team {policy.team_id}")
        if policy.labels:
            done.append("labelled " + ", ".join(policy.labels))
        if done:
            lines.append("Done: " + "; ".join(done) + ".")
        return "\n".join(lines)


@dataclass
class EscalationRules:
    """Route handler: evaluate the escalation rules on each conversation and message event."""

    policy: SupportPolicy
    store: ConversationStore
    escalator: Escalator
    own: Callable[[], Identity | None] = lambda: None

    def __call__(self, context: EventContext) -> dict[str, Any]:
        payload = context.payload
        if is_own_message(payload, self.own):
            return {"skipped": "own event"}
        account = cw.account_id(payload)
        conversation_id = cw.conversation_id(payload)
        if not account or not conversation_id:
            if invalid := cw.invalid_ids(payload):  # malformed, not absent: never a quiet skip
                raise PermanentError("invalid_payload", f"{context.event}: {invalid}")
            return {"skipped": "no conversation"}
        # The record as the recorder just wrote it (no read of its own), else read it.
        record = _shared_record(context, self.store, account, conversation_id)
        reasons, manual = self._fired(context, account, conversation_id, record)
        if not reasons:
            return {"escalated": []}
        escalation_id = f"escalation:{account}:{conversation_id}:{digest(context.dedupe_key)}"
        if not manual:
            reasons = self._claim(account, conversation_id, escalation_id, reasons, record)
        if not reasons:
            return {"escalated": [], "already": "claimed in this episode"}
        self.escalator.escalate(
            account,
            conversation_id,
            escalation_id,
            reasons,
            occurred_at=cw.to_epoch(payload.get("created_at"))
            or cw.to_epoch(payload.get("updated_at")),
            episode=episode_of(record),
            holder=person_holding(record),
        )
        # The handlers after this one read the shared record: it is escalated now.
        record["escalated_episode"] = claim_key(
            episode_of(record), "", self.escalator.actions.dry_run
        )
        return {"escalated": sorted(r.code for r in reasons)}

    def _claim(
        self,
        account: str,
        conversation_id: str,
        escalation_id: str,
        reasons: list[Reason],
        record: dict[str, Any],
    ) -> list[Reason]:
        """Claim each reason for this escalation with a conditional write, before acting.

        A reason escalates once per episode (between a reopening and the next): the first
        escalation to claim it owns it, a concurrent event with the same reason loses the write
        and does nothing, and a retry of the owning event finds its own claim and finishes.
        Claims are keyed by episode, so nothing has to be reset on resolution (a reset would
        race with the next episode's claims).
        """
        episode = episode_of(record)
        dry_run = self.escalator.actions.dry_run
        keys = {r.code: claim_key(episode, r.code, dry_run) for r in reasons}

        def claim(state: dict[str, Any]) -> dict[str, Any]:
            owned = _owned(state)
            for key in keys.values():
                owned.setdefault(key, escalation_id)
            # Claims of episodes long over are history: keep the state item small.
            kept = {k: v for k, v in owned.items() if (_episode_of_key(k) or 0) >= episode - 1}
            return {**state, "escalated": kept}

        state = self.store.update_state(account, conversation_id, STATE, claim)
        owned = _owned(state)
        return [r for r in reasons if owned.get(keys[r.code]) == escalation_id]

    def _fired(
        self, context: EventContext, account: str, conversation_id: str, record: dict[str, Any]
    ) -> tuple[list[Reason], bool]:
        rules = self.policy.escalation
        payload = context.payload
        reasons: list[Reason] = []
        if context.event == "message_created":
            kind = cw.message_type(payload)
            private = bool(payload.get("private"))
            raw_content = payload.get("content")
            content: str = raw_content if isinstance(raw_content, str) else ""
            if kind == "outgoing" and private and _is_agent(payload):
                if context.attributes.get("signed") != "true":
                    # An unsigned post (by URL token) has no integrity and can be replayed:
                    # it never carries an agent's command.
                    return [], False
                why = manual_reason(content)
                if why is not None:
                    return [Reason("manual", f"An agent asked for escalation: {why}")], True
                return [], False
            if kind != "incoming" or private:
                return [], False
            if rules.asks_for_human.enabled:
                found = matched_phrases(content, rules.asks_for_human)
                if found:
                    quoted = ", ".join(f'"{p}"' for p in found[:3])
                    reasons.append(
                        Reason(
                            "asks_for_human",
                            "The customer asks for a person, refund, cancellation or legal "
                            f"action ({quoted}).",
                        )
                    )
            if rules.negative_language.enabled:
                hits = matched_phrases(content, rules.negative_language)
                if len(hits) >= rules.negative_language.min_hits:
                    reasons.append(
                        Reason(
                            "negative_language",
                            f"Strongly negative or abusive language ({len(hits)} term(s)).",
                        )
                    )
            if rules.vip_enabled and _is_vip(payload, rules.vip_contact_attribute, rules.vip_label):
                reasons.append(Reason("vip_contact", "The contact is a VIP."))
            if rules.unanswered_enabled:
                waiting = unanswered_count(record.get("message_marks") or [])
                if waiting >= rules.unanswered_count:
                    reasons.append(
                        Reason(
                            "unanswered_messages",
                            f"{waiting} customer messages in a row without an agent reply.",
                        )
                    )
        elif rules.reopened_enabled and record.get("status") == "open":
            reopened = int(record.get("reopened_count") or 0)
            if reopened >= rules.reopened_times:
                reasons.append(
                    Reason("reopened", f"The conversation was reopened {reopened} times.")
                )
        return reasons, False


def manual_reason(content: str) -> str | None:
    """The reason of an ``/escalate <why>`` note, or None when the note is no such command.

    Total: any text gives an answer, never an exception (a crash would retry the event to the
    DLQ). The command is the note's first word (``/escalated`` is not it); the reason is
    quoted in a private note, so it is kept printable and short.
    """
    command = content.strip()
    name = command[: len(MANUAL_COMMAND)]
    after = command[len(MANUAL_COMMAND) : len(MANUAL_COMMAND) + 1]
    if name.lower() != MANUAL_COMMAND or (after and (after.isalnum() or after == "_")):
        return None
    words = command[len(MANUAL_COMMAND) : len(MANUAL_COMMAND) + 4 * MAX_REASON].split()
    printable = ("".join(c for c in word if c.isprintable()) for word in words)
    why = " ".join(word for word in printable if word).strip(" :")
    if len(why) > MAX_REASON:
        why = why[: MAX_REASON - 1] + "…"
    return why or "no reason given"


def _is_agent(payload: cw.Payload) -> bool:
    sender = payload.get("sender")
    return isinstance(sender, dict) and str(sender.get("type") or "").lower() == "user"


def _is_vip(payload: cw.Payload, attribute: str | None, label: str | None) -> bool:
    conversation = cw.conversation_of(payload) or {}
    if label and label in (conversation.get("labels") or []):
        return True
    if not attribute:
        return False
    meta = conversation.get("meta") if isinstance(conversation.get("meta"), dict) else {}
    for sender in (payload.get("sender"), (meta or {}).get("sender")):
        if isinstance(sender, dict):
            attributes = sender.get("custom_attributes")
            if isinstance(attributes, dict) and attributes.get(attribute) not in (
                None,
                False,
                "",
                "false",
                0,
            ):
                return True
    return False


def _owned(state: dict[str, Any]) -> dict[str, str]:
    """Claim key (``[dry:]<episode>:<code>``) -> the escalation that claimed it."""
    escalated = state.get("escalated") or {}
    if isinstance(escalated, list):  # written before claims carried their escalation
        return {f"0:{code}": "" for code in escalated}
    return {str(key): str(owner) for key, owner in dict(escalated).items()}


def _episode_of_key(key: str) -> int | None:
    number = key.removeprefix("dry:").split(":", 1)[0]
    return int(number) if number.isascii() and number.isdigit() else None


def unanswered_count(marks: list[list[Any]]) -> int:
    """Distinct customer messages since the last public reply by a person, from the record's
    marks (one per message: an edit or update of a message is not a new one)."""
    waiting: set[str] = set()
    for _, kind, message_id in sorted(marks, key=lambda m: (float(m[0]), str(m[1]))):
        if kind == CUSTOMER:
            waiting.add(str(message_id))
        elif kind == REPLY:
            waiting.clear()
    return len(waiting)


def _shared_record(
    context: EventContext, store: ConversationStore, account: str, conversation_id: str
) -> dict[str, Any]:
    """The conversation record as the recorder left it for this event, else read."""
    shared = context.shared.get("record")
    if isinstance(shared, dict):
        return shared
    return store.get_record(account, conversation_id) or {}
