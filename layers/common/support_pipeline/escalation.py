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
from support_pipeline.chatwoot.client import ACTION_ATTRIBUTE
from support_pipeline.policy import PhraseRule, SupportPolicy, normalize_text
from support_pipeline.processing.errors import PermanentError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore, conversation_pk, timeline_sk

logger = Logger(child=True)

STATE = "escalation"
MANUAL_COMMAND = "/escalate"
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


def is_own_event(payload: cw.Payload, policy: SupportPolicy) -> bool:
    """True for messages the pipeline itself created (no loops)."""
    attributes = payload.get("content_attributes")
    if isinstance(attributes, dict) and ACTION_ATTRIBUTE in attributes:
        return True
    sender = payload.get("sender")
    if policy.actor.id and isinstance(sender, dict):
        return (
            str(sender.get("type") or "") == policy.actor.type
            and str(sender.get("id")) == policy.actor.id
        )
    return False


def matched_phrases(text: str, rule: PhraseRule) -> list[str]:
    """Phrases of any language that occur in ``text`` as whole words (accents ignored)."""
    haystack = f" {normalize_text(text)} "
    found = []
    for phrases in rule.phrases.values():
        for phrase in phrases:
            if f" {phrase} " in haystack and phrase not in found:
                found.append(phrase)
    return found


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

    def escalate(
        self,
        account_id: str,
        conversation_id: str,
        escalation_id: str,
        reasons: list[Reason],
        extra_labels: tuple[str, ...] = (),
        occurred_at: float | None = None,
    ) -> None:
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
        if policy.team_id is not None:
            action("assign_team", team_id=policy.team_id)
        action("private_note", content=self.note(reasons))
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
                "account_day": f"{account_id}#{occurred_iso[:10]}",
                "occurred_key": f"{occurred_iso}#{conversation_id}",
            }
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

    def note(self, reasons: list[Reason]) -> str:
        policy = self.policy.escalation
        lines = ["Escalated by the support pipeline:"]
        lines += [f"- {reason.text}" for reason in reasons]
        done = []
        if policy.priority:
            done.append(f"priority set to {policy.priority}")
        if policy.team_id is not None:
            done.append(f"assigned to team {policy.team_id}")
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

    def __call__(self, context: EventContext) -> dict[str, Any]:
        payload = context.payload
        if is_own_event(payload, self.policy):
            return {"skipped": "own event"}
        account = cw.account_id(payload)
        conversation_id = cw.conversation_id(payload)
        if not account or not conversation_id:
            if invalid := cw.invalid_ids(payload):  # malformed, not absent: never a quiet skip
                raise PermanentError("invalid_payload", f"{context.event}: {invalid}")
            return {"skipped": "no conversation"}
        # Only conversation events need the record (reopen count, resolution ends an episode).
        record = (
            self.store.get_record(account, conversation_id) or {}
            if context.event in cw.CONVERSATION_EVENTS
            else {}
        )
        reasons, manual = self._fired(context, account, conversation_id, record)
        if record.get("status") == "resolved":
            self.store.update_state(
                account, conversation_id, STATE, lambda state: {"escalated": []}
            )
        if not reasons:
            return {"escalated": []}

        state, _ = self.store.get_state(account, conversation_id, STATE)
        already = set(state.get("escalated") or [])
        new = [r for r in reasons if manual or r.code not in already]
        if not new:
            return {"escalated": [], "already": sorted(already)}
        self.escalator.escalate(
            account,
            conversation_id,
            f"escalation:{account}:{conversation_id}:{digest(context.dedupe_key)}",
            new,
            occurred_at=cw.to_epoch(payload.get("created_at"))
            or cw.to_epoch(payload.get("updated_at")),
        )
        codes = {r.code for r in new}
        self.store.update_state(
            account,
            conversation_id,
            STATE,
            lambda s: {**s, "escalated": sorted(set(s.get("escalated") or []) | codes)},
        )
        return {"escalated": sorted(codes)}

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
                command = content.strip()
                if command.lower().startswith(MANUAL_COMMAND):
                    why = command[len(MANUAL_COMMAND) :].strip() or "no reason given"
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
                waiting = unanswered_count(self.store.timeline(account, conversation_id))
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


def unanswered_count(timeline: list[dict[str, Any]]) -> int:
    """Customer messages since the last public reply by a person."""
    count = 0
    for item in sorted(timeline, key=lambda i: i.get("occurred_at", "")):
        if item.get("kind", "event") != "event" or not item.get("message_type"):
            continue
        if item["message_type"] == "incoming" and not item.get("private"):
            count += 1
        elif (
            item["message_type"] == "outgoing"
            and not item.get("private")
            and item.get("sender_type") == "User"
        ):
            count = 0
    return count
