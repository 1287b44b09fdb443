"""Reply drafts: one suggested reply per customer turn, approved (or not) by an agent.

The flow, all inside Chatwoot:

1. A customer writes (``message_created``, incoming, not private). If drafting applies (policy:
   inbox, status, no agent talking right now, not escalated), the pipeline schedules a
   ``draft_due`` event on its own queue, delayed by the burst window. A newer customer message
   supersedes a pending draft at once.
2. ``draft_due`` fires. If a newer customer message came meanwhile (a burst), its own
   ``draft_due`` will draft for the whole turn: this one does nothing. Otherwise the inbox's
   drafter composes a reply from the turn and the last messages. Below the confidence floor no
   draft is posted and the conversation is labelled for a person; else the draft is stored
   (``pending``) and posted as a private note naming its id and how to approve it.
3. An agent decides in a private note: ``/send`` (the only path to a public message: the
   approval is stored first, then the reply is sent exactly once), ``/reject``, ``/grade``; or
   answers the customer themselves (``edited`` or ``replaced``, by similarity). Undecided drafts
   expire. Every decision is the draft's outcome, its learning signal; CSAT joins it later.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.actions import CANCELLED, Action, ActionRunner
from support_pipeline.chatwoot import payload as cw
from support_pipeline.chatwoot.client import Identity, reference_in
from support_pipeline.drafts import commands
from support_pipeline.drafts.base import ContextMessage, DraftContext, Drafter
from support_pipeline.drafts.store import (
    APPROVED,
    NO_DRAFT,
    OUTCOMES,
    PENDING,
    TURN_CHARS,
    DraftStore,
    draft_id_for,
)
from support_pipeline.escalation import escalated_now, is_own_message
from support_pipeline.messages import ORIGIN_ATTRIBUTE, PIPELINE_ORIGIN, to_message_attributes
from support_pipeline.policy import SupportPolicy
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore
from support_pipeline.telemetry import Telemetry

logger = Logger(child=True)

DRAFT_DUE = "draft_due"
DRAFT_EVENTS = frozenset({"message_created", "message_updated", DRAFT_DUE})
STATUS_WORDS = {
    APPROVED: "approved and being sent",
    "sent_as_is": "sent",
    "edited": "answered by an agent's own edited reply",
    "replaced": "answered by an agent's own reply",
    "rejected": "rejected",
    "expired": "expired",
    "superseded": "superseded by a newer customer message",
    NO_DRAFT: "not drafted",
}

Schedule = Callable[[dict[str, Any], str, int], None]
"""(payload, dedupe key, delay seconds): put one of the pipeline's own events on its queue."""


def sqs_schedule(sqs: Any, queue_url: str, clock: Callable[[], float] = time.time) -> Schedule:
    """Schedule the pipeline's own events on EventsQueue with an SQS delay."""

    def schedule(payload: dict[str, Any], dedupe_key: str, delay: int) -> None:
        attributes = {
            "event": str(payload["event"]),
            "dedupe_key": dedupe_key,
            "signed": "true",  # the pipeline's own: only its role may send to the queue
            ORIGIN_ATTRIBUTE: PIPELINE_ORIGIN,
            "received_at": cw.iso(clock()),
            "account_id": str(cw.account_id(payload) or ""),
            "conversation_id": str(cw.conversation_id(payload) or ""),
        }
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=json.dumps(payload),
            MessageAttributes=to_message_attributes(attributes),
            DelaySeconds=max(0, min(900, int(delay))),
        )

    return schedule


def word_edit(draft: str, final: str) -> tuple[int, float]:
    """Word-level edit distance between a draft and the reply sent, and its similarity ratio
    (1 - distance / longer length): 1.0 is the draft as is, 0.0 nothing in common."""
    a = re.findall(r"\w+|[^\w\s]", draft.casefold())
    b = re.findall(r"\w+|[^\w\s]", final.casefold())
    if not a and not b:
        return 0, 1.0
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    distance = previous[-1]
    return distance, round(1.0 - distance / max(len(a), len(b)), 4)


def _role(message: dict[str, Any]) -> str | None:
    kind = cw.message_type(message)
    if kind == "incoming":
        return "customer"
    if kind != "outgoing":
        return None  # activity and template messages are not conversation
    if message.get("private"):
        return "note"
    sender = message.get("sender") if isinstance(message.get("sender"), dict) else {}
    return "bot" if str((sender or {}).get("type", "")).lower() == "agent_bot" else "agent"


def _language(payload: cw.Payload) -> str | None:
    """The contact's language when Chatwoot carries one (widget browser language)."""
    conversation = cw.conversation_of(payload) or {}
    candidates = []
    attributes = conversation.get("additional_attributes")
    if isinstance(attributes, dict):
        candidates.append(attributes.get("browser_language"))
        browser = attributes.get("browser")
        if isinstance(browser, dict):
            candidates.append(browser.get("browser_language"))
    sender = payload.get("sender")
    if isinstance(sender, dict):
        for key in ("additional_attributes", "custom_attributes"):
            extra = sender.get(key)
            if isinstance(extra, dict):
                candidates.append(extra.get("language"))
    for candidate in candidates:
        if isinstance(candidate, str) and re.match(r"^[a-zA-Z]{2}\b", candidate):
            return candidate[:2].lower()
    return None


@dataclass
class DraftService:
    """Route handler for drafts, approvals and their outcomes."""

    policy: SupportPolicy
    store: ConversationStore
    drafts: DraftStore
    actions: ActionRunner
    drafter_for: Callable[[str | None], Drafter | None]
    schedule: Schedule
    telemetry: Telemetry
    own: Callable[[], Identity | None] = lambda: None
    clock: Callable[[], float] = time.time

    def __call__(self, context: EventContext) -> dict[str, Any]:
        payload = context.payload
        if context.event == DRAFT_DUE:
            return self.draft_turn(payload)
        if context.event == "message_updated":
            return self.join_csat(payload)
        if is_own_message(payload, self.own):
            return {"skipped": "own message"}
        account, conversation = cw.account_id(payload), cw.conversation_id(payload)
        if not account or not conversation:
            return {"skipped": "no conversation"}
        kind = cw.message_type(payload)
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        by_agent = str((sender or {}).get("type") or "").lower() == "user"
        if kind == "incoming" and not payload.get("private"):
            return self.customer_wrote(context, account, conversation)
        if kind == "outgoing" and by_agent and payload.get("private"):
            return self.agent_note(context, account, conversation)
        if kind == "outgoing" and by_agent:
            if context.attributes.get("signed") != "true":
                # Anyone holding the URL token can post any body: an unsigned "agent reply"
                # never decides a draft (nor cancels an approved one).
                return {"skipped": "an unsigned post decides no draft"}
            return self.agent_replied(
                payload, account, conversation, self._record(context, account, conversation)
            )
        return {"skipped": "not a customer or agent message"}

    def _record(self, context: EventContext, account: str, conversation: str) -> dict[str, Any]:
        """The record as the recorder just wrote it for this event (no read), else read."""
        shared = context.shared.get("record")
        if isinstance(shared, dict):
            return shared
        return self.store.get_record(account, conversation) or {}

    # ---- 1. a customer writes --------------------------------------------------------------
    def customer_wrote(
        self, context: EventContext, account: str, conversation: str
    ) -> dict[str, Any]:
        payload = context.payload
        record = self._record(context, account, conversation)
        result: dict[str, Any] = {}
        superseded = self._supersede(account, conversation, record)
        if superseded:
            result["superseded"] = superseded
        why_not = self._why_not(record, self.clock())
        if why_not:
            return {**result, "skipped": why_not}
        message_id = cw.message_id(payload) or ""
        # The pipeline's own event carries ids only: the customer's text (up to 150,000
        # characters in Chatwoot) is read back from Chatwoot when the turn is drafted, so the
        # event stays small whatever the customer wrote.
        due = {
            "event": DRAFT_DUE,
            "account": {"id": int(account)},
            "conversation": {"id": int(conversation)},
            "message_id": int(message_id),
            "message_created_at": cw.to_epoch(payload.get("created_at")),
            "inbox_id": record.get("inbox_id"),
            "language": _language(payload),
        }
        if self.actions.dry_run:
            # No Chatwoot to read the turn from: the text is kept beside the drafts.
            content = payload.get("content")
            self.drafts.remember_turn(
                account, conversation, message_id, content if isinstance(content, str) else ""
            )
        self.schedule(
            due,
            f"pipeline:{DRAFT_DUE}:{account}:{conversation}:{message_id}",
            self.policy.drafts.burst_window,
        )
        return {**result, "scheduled": message_id}

    def _supersede(self, account: str, conversation: str, record: dict[str, Any]) -> list[str]:
        if not record.get("pending_draft_id"):
            return []
        done = []
        for draft in self.drafts.of_conversation(account, conversation):
            if draft.get("status") == PENDING and self.drafts.decide(draft, "superseded"):
                self.telemetry.count("DraftDecided", reason="superseded")
                done.append(str(draft["draft_id"]))
        return done

    def _why_not(self, record: dict[str, Any], now: float) -> str | None:
        """Why no draft should be made for this conversation now (None: draft)."""
        policy = self.policy.drafts
        if policy.drafter_for(record.get("inbox_id")) == "off":
            return "drafts are off for this inbox"
        if record.get("status") not in policy.statuses:
            return f"conversation is {record.get('status') or 'unknown'}"
        last_agent = record.get("last_agent_reply_at")
        if last_agent and now - float(last_agent) < policy.quiet_after_agent_reply:
            return "an agent replied recently"
        if policy.skip_escalated and escalated_now(record, self.actions.dry_run):
            return "conversation is escalated"
        return None

    # ---- 2. the turn is over: draft --------------------------------------------------------
    def draft_turn(self, due: dict[str, Any]) -> dict[str, Any]:
        account, conversation = cw.account_id(due), cw.conversation_id(due)
        message_id = str(due.get("message_id") or "")
        if not account or not conversation or not message_id.isdigit():
            raise PermanentError("invalid_payload", "draft_due names no conversation and message")
        record = self.store.get_record(account, conversation) or {}
        written = float(due.get("message_created_at") or 0)
        if float(record.get("last_incoming_at") or 0) > written + 0.001:
            return {"skipped": "a newer customer message drafts the turn"}
        answered = max(
            float(record.get("last_agent_reply_at") or 0),
            float(record.get("last_outgoing_at") or 0),
        )
        if answered > written:
            return {"skipped": "the customer was answered meanwhile"}
        why_not = self._why_not(record, self.clock())
        if why_not:
            return {"skipped": why_not}
        draft_id = draft_id_for(account, conversation, message_id)
        stored = self.drafts.get(account, conversation, draft_id)
        if stored is None:
            inbox = record.get("inbox_id") or due.get("inbox_id")
            drafter = self.drafter_for(str(inbox) if inbox else None)
            if drafter is None:
                return {"skipped": "no drafter"}
            stored = self._compose(drafter, account, conversation, message_id, due, record)
        # From here on only the stored draft counts: a retry (the note refused, an answer
        # lost, the pause) never asks the drafter again, so the note an agent reads is the
        # text /send sends, whoever won the race to store it.
        if stored.get("status") == NO_DRAFT:
            return self._no_draft(stored)
        if stored.get("status") != PENDING:
            return {"skipped": f"draft {draft_id} is {stored.get('status')} already"}
        if self._newer_message(account, conversation, written):
            return self._stale(stored, account, conversation)
        self.store.set_record_fields(
            account, conversation, {"pending_draft_id": draft_id, "open_gap_id": None}
        )
        # The customer may have written again while the drafter worked (seconds, for a model):
        # that message's own draft_due drafts the whole turn. Read after pending_draft_id is
        # set, so a message recorded later supersedes this draft itself (customer_wrote).
        if self._newer_message(account, conversation, written):
            return self._stale(stored, account, conversation)
        self.actions.run(self._note_action(stored))
        self.telemetry.count("DraftPosted", reason=str(stored.get("drafter")))
        logger.info(
            "draft posted",
            extra={
                "account_id": account,
                "conversation_id": conversation,
                "draft_id": draft_id,
                "drafter": stored.get("drafter"),
                "confidence": stored.get("confidence"),
            },
        )
        return {"draft": draft_id, "confidence": stored.get("confidence")}

    def _newer_message(self, account: str, conversation: str, written: float) -> bool:
        now = self.store.get_record(account, conversation) or {}
        return float(now.get("last_incoming_at") or 0) > written + 0.001

    def _stale(self, stored: dict[str, Any], account: str, conversation: str) -> dict[str, Any]:
        """The customer wrote again while this draft was made: superseded before its note,
        without touching the mark of a newer draft."""
        if self.drafts.decide(stored, "superseded"):
            self.telemetry.count("DraftDecided", reason="superseded")
        self.store.release_pending_draft(account, conversation, stored["draft_id"])
        return {
            "skipped": "a newer customer message came while drafting",
            "draft": stored["draft_id"],
        }

    def _compose(
        self,
        drafter: Drafter,
        account: str,
        conversation: str,
        message_id: str,
        due: dict[str, Any],
        record: dict[str, Any],
    ) -> dict[str, Any]:
        """Ask the drafter once for this turn and store what it said (a draft, or no draft).
        Two workers may both ask: the first stored answer wins and both go on with it."""
        context = self._context(account, conversation, due, record)
        draft_id = draft_id_for(account, conversation, message_id)
        result = drafter.draft(context)
        self.telemetry.count("DraftComposed", reason=drafter.name)
        inbox = record.get("inbox_id") or due.get("inbox_id")
        confident = (
            result.text is not None and result.confidence >= self.policy.drafts.confidence_floor
        )
        if not confident:
            self.telemetry.count("DraftNotConfident", reason=result.drafter)
        draft = {
            "draft_id": draft_id,
            "account_id": account,
            "conversation_id": conversation,
            "inbox_id": str(inbox) if inbox else None,
            "drafter": result.drafter,
            "language": result.language,
            "confidence": round(float(result.confidence), 4),
            "sources": [{"title": s.title, "ref": s.ref} for s in result.sources],
            "question": context.question,
            "turn_message_id": message_id,
            "text": result.text if confident else None,
            "status": PENDING if confident else NO_DRAFT,
        }
        if self.drafts.create(draft):
            return self.drafts.get(account, conversation, draft_id) or draft
        stored = self.drafts.get(account, conversation, draft_id)
        if stored is None:  # stored by another worker, then gone: not for us to guess
            raise TransientError("draft_race", f"draft {draft_id} vanished while storing it")
        return stored

    def _note_action(self, draft: dict[str, Any]) -> Action:
        account, conversation, draft_id = (
            draft["account_id"],
            draft["conversation_id"],
            draft["draft_id"],
        )
        return Action(
            account,
            conversation,
            f"draft:{account}:{conversation}:{draft_id}/note",
            "private_note",
            {"content": self._note(draft)},
            reason="draft",
        )

    def _no_draft(self, gap: dict[str, Any]) -> dict[str, Any]:
        account, conversation = gap["account_id"], gap["conversation_id"]
        self.actions.run(
            Action(
                account,
                conversation,
                f"draft:{account}:{conversation}:{gap['draft_id']}/needs-human",
                "add_labels",
                {"labels": [self.policy.drafts.needs_human_label]},
                reason="draft_low_confidence",
            )
        )
        # The agent's own reply to this turn becomes the gap's answer (agent_replied).
        self.store.set_record_fields(account, conversation, {"open_gap_id": gap["draft_id"]})
        return {"no_draft": gap["draft_id"], "confidence": gap.get("confidence")}

    def _context(
        self, account: str, conversation: str, due: dict[str, Any], record: dict[str, Any]
    ) -> DraftContext:
        """The turn and the last messages: from Chatwoot when it is there (the webhook carries
        one message only), else (a dry run) the turn's text kept when it was scheduled."""
        client = self.actions.client
        history: list[ContextMessage] = []
        if client is not None:
            for message in client.list_messages(account, conversation):
                role = _role(message)
                text = message.get("content")
                if role is None or not isinstance(text, str) or not text.strip():
                    continue
                if role == "note" and reference_in(text):
                    continue  # the pipeline's own notes (drafts, escalations) are not context
                history.append(ContextMessage(role, text, cw.to_epoch(message.get("created_at"))))
        turn: list[str] = []
        for earlier in reversed(history):
            if earlier.role in ("agent", "bot"):
                break
            if earlier.role == "customer":
                turn.insert(0, earlier.text)
        question = "\n".join(turn)
        if client is None:
            question = self.drafts.turn_text(account, conversation, str(due["message_id"]))
        question = question[:TURN_CHARS]
        if not history and question:
            history = [ContextMessage("customer", question, due.get("message_created_at"))]
        labels = record.get("labels") if isinstance(record.get("labels"), list) else []
        return DraftContext(
            account_id=account,
            conversation_id=conversation,
            question=question,
            messages=tuple(history[-self.policy.drafts.context_messages :]),
            language=due.get("language") if isinstance(due.get("language"), str) else None,
            inbox_id=str(due["inbox_id"]) if due.get("inbox_id") else None,
            labels=tuple(str(label) for label in labels or []),
        )

    @staticmethod
    def _note(draft: dict[str, Any]) -> str:
        """The note agents read: built from the stored draft only (its text is what /send
        sends)."""
        found = draft.get("sources")
        sources: list[Any] = found if isinstance(found, list) else []
        cited = "; ".join(str(s.get("title")) for s in sources if isinstance(s, dict))
        confidence = round(float(draft.get("confidence") or 0) * 100)
        return (
            f"Draft reply {draft['draft_id']} · {confidence}% confident · "
            f"{draft.get('drafter')}: {cited or 'no sources'}\n\n"
            f"{draft['text']}\n\n"
            "Reply in a private note: /send to send it to the customer as it is, "
            "/reject <why> to drop it, or write your own reply (it is compared with this draft)."
        )

    # ---- 3. an agent decides ---------------------------------------------------------------
    def agent_note(self, context: EventContext, account: str, conversation: str) -> dict[str, Any]:
        content = context.payload.get("content")
        command = commands.parse(content) if isinstance(content, str) else None
        if command is None:
            return {"skipped": "not a command"}
        if context.attributes.get("signed") != "true":
            # An unsigned post (accepted by URL token) has no integrity and can be replayed:
            # it never carries an agent's command.
            self.telemetry.count("DraftCommandUnsigned")
            logger.warning(
                "command in an unsigned post ignored",
                extra={"account_id": account, "conversation_id": conversation},
            )
            return {"skipped": "commands need a signed delivery"}
        command_id = cw.message_id(context.payload) or context.dedupe_key
        sender = context.payload.get("sender") or {}
        agent = str(sender.get("id") or "") if isinstance(sender, dict) else ""
        if command.error:
            return self._answer(account, conversation, command_id, command.error)
        refused = self._not_in_chatwoot(context.payload, command, command_id, agent)
        if refused is not None:
            logger.warning(
                "command not confirmed by Chatwoot; nothing done",
                extra={"account_id": account, "conversation_id": conversation, "why": refused},
            )
            self.telemetry.count("DraftCommandUnconfirmed")
            return self._answer(
                account,
                conversation,
                command_id,
                f"This {command.name} is not in the conversation as an agent's note in Chatwoot "
                f"({refused}): nothing was done.",
            )
        typed_at = cw.to_epoch(context.payload.get("created_at"))
        drafts = self.drafts.of_conversation(account, conversation)
        posted = [d for d in drafts if d.get("status") != NO_DRAFT]
        if command.draft_id:
            target = next((d for d in drafts if d["draft_id"] == command.draft_id), None)
            if target is None:
                return self._answer(
                    account,
                    conversation,
                    command_id,
                    f"There is no draft {command.draft_id} in this conversation.",
                )
            if command.name != "/grade" and not self._seen_before(target, command_id, typed_at):
                return self._answer(
                    account,
                    conversation,
                    command_id,
                    f"Draft {command.draft_id} was not in the conversation when you wrote "
                    f"{command.name}: nothing was done. Read its note, then write the "
                    "command again.",
                )
        elif command.name == "/grade":
            target = posted[-1] if posted else None
        else:
            # The draft the agent saw: the latest one whose note was in the conversation before
            # the command was written. A command delivered late (a retry, a replay, a pause)
            # never reaches a draft posted after it; if the one it meant is decided by now,
            # the agent is told why nothing was done.
            seen = [d for d in posted if self._seen_before(d, command_id, typed_at)]
            target = seen[-1] if seen else None
        if target is None:
            return self._answer(
                account,
                conversation,
                command_id,
                f"There is no {'draft' if command.name == '/grade' else 'pending draft'} in "
                "this conversation to "
                + {"/send": "send", "/reject": "reject", "/grade": "grade"}[command.name]
                + ".",
            )
        if command.name == "/send":
            return self.send(target, agent, command_id, typed_at)
        if command.name == "/reject":
            return self.reject(target, agent, command_id, command.reason)
        return self.grade(target, agent, command_id, command)

    def _not_in_chatwoot(
        self, payload: cw.Payload, command: commands.Command, command_id: str, agent: str
    ) -> str | None:
        """Why Chatwoot does not confirm the command, or None when it does. The webhook is
        signed, but only Chatwoot knows the message: it must be there, in this conversation, a
        private note by that user (not the pipeline's own), not deleted, and the same command.
        A forged or replayed delivery, a command from another account's user, or one the
        agent deleted before it was done is refused. (A dry run has no Chatwoot: not checked.)"""
        client = self.actions.client
        if client is None:
            return None
        if not command_id.isdigit():
            return "it has no message id"
        account, conversation = cw.account_id(payload) or "", cw.conversation_id(payload) or ""
        found = next(
            (
                m
                for m in client.list_messages(account, conversation, after=int(command_id) - 1)
                if str(m.get("id")) == command_id
            ),
            None,
        )
        if found is None:
            return "no such message"
        sender = found.get("sender") if isinstance(found.get("sender"), dict) else {}
        attributes = found.get("content_attributes")
        me = self.own()
        content = found.get("content")
        if (
            not found.get("private")
            or found.get("message_type") not in (1, "outgoing")
            or str((sender or {}).get("type") or "").lower() != "user"
        ):
            return "not an agent's private note"
        if str((sender or {}).get("id")) != agent or (
            me is not None and me.type == "user" and me.id == agent
        ):
            return "written by someone else"
        if isinstance(attributes, dict) and attributes.get("deleted"):
            return "deleted"
        if not isinstance(content, str) or commands.parse(content) != command:
            return "its text is not this command"
        return None

    def _seen_before(self, draft: dict[str, Any], command_id: str, typed_at: float | None) -> bool:
        """Whether the draft's note was in the conversation before the command was written,
        in Chatwoot's own order (message ids). A note whose posting is unconfirmed (an answer
        lost) is looked for in Chatwoot. In a dry run no note exists: the draft must have been
        made before the command was typed."""
        if self.actions.dry_run:
            made = float(draft.get("created_epoch") or 0)
            return typed_at is None or made <= typed_at
        if not command_id.isdigit():
            return False  # no Chatwoot message id to order by: never guess
        note_id = self._note_id(draft)
        return note_id is not None and note_id < int(command_id)

    def _note_id(self, draft: dict[str, Any]) -> int | None:
        """The Chatwoot id of the draft's note: from the ledger, or (its answer lost) found in
        Chatwoot; None when it was never posted."""
        note = self._note_action(draft)
        entry = self.actions.ledger.get(note) or {}
        result = entry.get("result") if isinstance(entry.get("result"), dict) else {}
        note_id = (result or {}).get("message_id")
        if note_id is None and entry.get("search_after") is not None:
            client = self.actions.client
            if client is None:  # a dry run posts no note
                return None
            found = client.find_note(
                note.account_id, note.conversation_id, note.action_id, int(entry["search_after"])
            )
            note_id = (found or {}).get("id")
        if isinstance(note_id, bool) or not isinstance(note_id, int | float | str):
            return None
        return int(note_id) if str(note_id).isdigit() else None

    def send(
        self,
        draft: dict[str, Any],
        agent: str,
        command_id: str,
        typed_at: float | None = None,
    ) -> dict[str, Any]:
        """Approve and send a draft: the approval is stored first, then the reply is sent
        once (the action ledger), then the outcome is recorded. ``typed_at``: when the agent
        wrote the /send (an answer written after it, before the reply could go, wins)."""
        account, conversation, draft_id = (
            draft["account_id"],
            draft["conversation_id"],
            draft["draft_id"],
        )
        mine = draft.get("command_id") == command_id
        if draft.get("status") == "replaced" and mine:
            return self._tell_not_sent(draft, command_id)  # a retry: only the answer was left
        if draft.get("status") == "superseded" and mine:
            return self._overtaken(draft, command_id)
        mine = mine and draft.get("status") == APPROVED
        if draft.get("status") != PENDING and not mine:
            return self._already(draft, command_id)
        made = float(draft.get("created_epoch") or 0)
        if (
            not mine
            and typed_at is not None
            and made
            and typed_at - made > self.policy.drafts.expire_after
        ):
            # Expired when the /send was written, whether or not the sweep has marked it yet.
            expired = self.drafts.decide(draft, "expired")
            if expired is not None:
                self.telemetry.count("DraftDecided", reason="expired")
                self.store.release_pending_draft(account, conversation, draft_id)
            return self._already(expired or {**draft, "status": "expired"}, command_id)
        if not self.drafts.record_approval(draft, agent, command_id):
            return self._already({**draft, "status": APPROVED}, command_id)
        approved = self.drafts.decide(
            draft, APPROVED, {"approver_id": agent}, expected=(PENDING,), command_id=command_id
        )
        if approved is None:
            return self._already(
                self.drafts.get(account, conversation, draft_id) or draft, command_id
            )
        reply = Action(
            account,
            conversation,
            f"draft:{account}:{conversation}:{draft_id}/send",
            "public_reply",
            {
                "content": approved["text"],
                "draft_id": draft_id,
                # Chatwoot's messages after the /send decide every attempt: a person's own
                # reply there cancels the send; so does a customer message between the draft's
                # note and the /send (the turn moved on, whatever webhooks we got).
                "after_message_id": int(command_id) if command_id.isdigit() else 0,
                "note_message_id": 0 if self.actions.dry_run else (self._note_id(draft) or 0),
            },
            reason="draft_approved",
        )
        if typed_at is not None and self._answered_before_sending(reply, typed_at):
            return self._not_sent(approved, command_id)
        if self.actions.run(reply) == CANCELLED:
            entry = self.actions.ledger.get(reply) or {}
            if (entry.get("result") or {}).get("overtaken_by_message_id"):
                return self._overtaken(approved, command_id)
            return self._not_sent(approved, command_id)
        self.drafts.decide(
            approved,
            "sent_as_is",
            {"final_text": approved["text"], "edit_distance": 0, "edit_ratio": 1.0},
            expected=(APPROVED,),
            command_id=command_id,
        )
        self.store.release_pending_draft(account, conversation, draft_id)
        self.telemetry.count("DraftDecided", reason="sent_as_is")
        logger.info(
            "draft sent on approval",
            extra={"draft_id": draft_id, "conversation_id": conversation, "approver_id": agent},
        )
        return {"sent": draft_id}

    def _answered_before_sending(self, reply: Action, typed_at: float) -> bool:
        """An agent answered the customer after typing /send, and the approved reply was never
        posted (held back while the pipeline was paused, or behind a backlog): the agent's own
        answer stands; sending the draft as well would answer the customer twice. This reads
        the webhooks we received; the ledger then checks Chatwoot itself before every attempt
        to post (``ActionRunner._reply``), so an answer whose webhook was lost counts too."""
        if not self.actions.dry_run:
            # Live, Chatwoot itself decides, under the reply's claim (ActionRunner._reply): its
            # messages tell a person's answer from the pipeline's own reply, which the record's
            # ``last_agent_reply_at`` (any public message by a user) cannot.
            return False
        entry = self.actions.ledger.get(reply)
        if entry is not None and entry.get("status") == "done":
            return False
        record = self.store.get_record(reply.account_id, reply.conversation_id) or {}
        return float(record.get("last_agent_reply_at") or 0) > typed_at

    def _not_sent(self, approved: dict[str, Any], command_id: str) -> dict[str, Any]:
        account, conversation = approved["account_id"], approved["conversation_id"]
        decided = self.drafts.decide(
            approved,
            "replaced",
            {"not_sent": "an agent answered the customer after /send"},
            expected=(APPROVED,),
            command_id=command_id,
        )
        if decided is not None:
            self.telemetry.count("DraftDecided", reason="replaced")
        self.store.release_pending_draft(account, conversation, approved["draft_id"])
        return self._tell_not_sent(approved, command_id)

    def _overtaken(self, approved: dict[str, Any], command_id: str) -> dict[str, Any]:
        """The customer wrote again after the draft's note and before /send: the draft answers
        a turn that is over; nothing was sent."""
        account, conversation, draft_id = (
            approved["account_id"],
            approved["conversation_id"],
            approved["draft_id"],
        )
        if (
            self.drafts.decide(approved, "superseded", expected=(APPROVED,), command_id=command_id)
            is not None
        ):
            self.telemetry.count("DraftDecided", reason="superseded")
        self.store.release_pending_draft(account, conversation, draft_id)
        self._answer(
            account,
            conversation,
            command_id,
            f"Draft {draft_id} was not sent: the customer wrote again after it was drafted, "
            "before /send. Nothing was sent; a draft for the new message follows if it applies.",
        )
        return {"not_sent": draft_id, "superseded": True}

    def _tell_not_sent(self, draft: dict[str, Any], command_id: str) -> dict[str, Any]:
        draft_id = draft["draft_id"]
        self._answer(
            draft["account_id"],
            draft["conversation_id"],
            command_id,
            f"Draft {draft_id} was not sent: the customer was answered by an agent after "
            "/send, before the pipeline could send it. Nothing was sent twice.",
        )
        logger.info(
            "approved draft not sent: answered meanwhile",
            extra={"draft_id": draft_id, "conversation_id": draft["conversation_id"]},
        )
        return {"not_sent": draft_id}

    def reject(
        self, draft: dict[str, Any], agent: str, command_id: str, reason: str
    ) -> dict[str, Any]:
        decided = self.drafts.decide(
            draft,
            "rejected",
            {"rejection_reason": reason, "decided_by": agent},
            command_id=command_id,
        )
        if decided is None:
            return self._already(draft, command_id)
        self.store.release_pending_draft(
            draft["account_id"], draft["conversation_id"], draft["draft_id"]
        )
        self.telemetry.count("DraftDecided", reason="rejected")
        return {"rejected": draft["draft_id"]}

    def grade(
        self, draft: dict[str, Any], agent: str, command_id: str, command: commands.Command
    ) -> dict[str, Any]:
        self.drafts.annotate(
            draft,
            {
                "grades": dict(command.grades),
                "grade_comment": command.comment,
                "graded_by": agent,
                "graded_at": cw.iso(self.clock()),
            },
        )
        self.telemetry.count("DraftGraded")
        return {"graded": draft["draft_id"]}

    def _already(self, draft: dict[str, Any], command_id: str) -> dict[str, Any]:
        words = STATUS_WORDS.get(str(draft.get("status")), str(draft.get("status")))
        return self._answer(
            draft["account_id"],
            draft["conversation_id"],
            command_id,
            f"Draft {draft['draft_id']} was already {words}: nothing was done.",
        )

    def _answer(
        self, account: str, conversation: str, command_id: str, text: str
    ) -> dict[str, Any]:
        """A short private note telling the agent what was wrong with a command."""
        self.actions.run(
            Action(
                account,
                conversation,
                f"command:{account}:{conversation}:{command_id}/answer",
                "private_note",
                {"content": text},
                reason="command_refused",
            )
        )
        self.telemetry.count("DraftCommandRefused")
        return {"refused": text}

    def agent_replied(
        self, payload: cw.Payload, account: str, conversation: str, record: dict[str, Any]
    ) -> dict[str, Any]:
        """An agent answered the customer themselves: the pending draft was edited or replaced,
        or the turn that got no draft has its answer (a knowledge gap's learning signal)."""
        gap_id = record.get("open_gap_id")
        if not record.get("pending_draft_id") and not gap_id:
            return {"skipped": "no pending draft"}
        content = payload.get("content")
        final = content if isinstance(content, str) else ""
        sender = payload.get("sender") or {}
        agent = str(sender.get("id") or "") if isinstance(sender, dict) else ""
        if gap_id:
            gap = self.drafts.get(account, conversation, str(gap_id))
            answered = bool(gap and final.strip() and self.drafts.answer_gap(gap, final, agent))
            self.store.set_record_fields(account, conversation, {"open_gap_id": None})
            if not record.get("pending_draft_id"):
                return {"gap_answered": str(gap_id) if answered else None}
        outcomes = []
        for draft in self.drafts.of_conversation(account, conversation):
            if draft.get("status") != PENDING:
                continue
            distance, ratio = word_edit(str(draft.get("text") or ""), final)
            outcome = "edited" if ratio >= self.policy.drafts.edited_similarity else "replaced"
            if self.drafts.decide(
                draft,
                outcome,
                {
                    "final_text": final,
                    "edit_distance": distance,
                    "edit_ratio": ratio,
                    "decided_by": agent,
                },
            ):
                self.telemetry.count("DraftDecided", reason=outcome)
                outcomes.append(outcome)
                # Only the mark of a draft decided here: a draft marked meanwhile keeps it.
                self.store.release_pending_draft(account, conversation, draft["draft_id"])
        return {"outcomes": outcomes}

    # ---- 4. expiry and CSAT ----------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Drafts nobody decided on within the policy's window become ``expired``."""
        cutoff = cw.iso(now - self.policy.drafts.expire_after)
        expired = 0
        for account in self.store.accounts():
            for draft in self.drafts.pending(account, created_before=cutoff):
                if self.drafts.decide(draft, "expired"):
                    expired += 1
                    self.telemetry.count("DraftDecided", reason="expired")
                    self.store.release_pending_draft(
                        draft["account_id"], draft["conversation_id"], draft["draft_id"]
                    )
        return expired

    def join_csat(self, payload: cw.Payload) -> dict[str, Any]:
        """A CSAT answer (``input_csat``, rating 1-5) joins every decided draft's signal."""
        if payload.get("content_type") != "input_csat":
            return {"skipped": "not a CSAT answer"}
        attributes = payload.get("content_attributes")
        submitted = attributes.get("submitted_values") if isinstance(attributes, dict) else None
        response = submitted.get("csat_survey_response") if isinstance(submitted, dict) else None
        rating = response.get("rating") if isinstance(response, dict) else None
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            return {"skipped": "no rating"}
        account, conversation = cw.account_id(payload), cw.conversation_id(payload)
        if not account or not conversation:
            return {"skipped": "no conversation"}
        joined = 0
        for draft in self.drafts.of_conversation(account, conversation):
            if draft.get("status") in OUTCOMES and draft.get("csat") != rating:
                self.drafts.annotate(draft, {"csat": rating})
                joined += 1
        return {"csat": rating, "joined": joined}
