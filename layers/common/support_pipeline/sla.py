"""SLA clocks, outcomes and the scheduled sweep.

For each conversation: first response due (from creation, or from when a bot handed it to
humans), next response due (after each customer message that waits for an answer), resolution
due; and when each was met. Thresholds come from the policy by priority, or from Chatwoot's own
``applied_sla`` when the conversation carries one. Targets count business time or wall-clock
time as the policy says.

The sweep flags at-risk and breached targets once each (label, private note; a breach also
escalates) and records breaches in the timeline. The processor records met and missed targets
as replies and resolutions arrive, and clears the at-risk label when nothing is at risk anymore.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from support_pipeline import deadline
from support_pipeline.actions import LEASE_MARGIN_SECONDS, Action, ActionRunner
from support_pipeline.business_time import BusinessCalendar, WallClock
from support_pipeline.chatwoot import payload as cw
from support_pipeline.chatwoot.client import NotFoundError
from support_pipeline.conversations import CUSTOMER, REPLY, add_mark
from support_pipeline.escalation import Escalator, Reason, person_holding
from support_pipeline.pause import OFF, NeverPaused, Paused, PauseSwitch
from support_pipeline.policy import TARGETS, SupportPolicy
from support_pipeline.processing.errors import PermanentError, TransientError, classify
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore, account_day, conversation_pk, timeline_sk
from support_pipeline.telemetry import Telemetry

logger = Logger(child=True)

STATE = "sla"
TARGET_WORDS = {
    "first_response": "first response",
    "next_response": "next response",
    "resolution": "resolution",
}


@dataclass(frozen=True)
class SlaClock:
    """One target instance of one conversation."""

    target: str
    started_at: float
    due_at: float
    at_risk_at: float
    met_at: float | None
    threshold_seconds: int
    business_only: bool

    @property
    def instance(self) -> str:
        return f"{self.target}@{int(self.started_at)}"

    @property
    def in_time(self) -> bool | None:
        """Whether the answer came in time (None: no answer yet): at or before the due moment,
        as Chatwoot's own SLA evaluation counts it (docs/support-policy.md). An open clock is
        breached once its due moment has come (``state``), as Chatwoot's is no longer within."""
        if self.met_at is None:
            return None
        return self.met_at <= self.due_at

    def state(self, now: float) -> str:
        """met | missed (closed) or breached | at_risk | running (open)."""
        if self.met_at is not None:
            return "met" if self.in_time else "missed"
        if now >= self.due_at:
            return "breached"
        if now >= self.at_risk_at:
            return "at_risk"
        return "running"


def thresholds(
    record: dict[str, Any], policy: SupportPolicy
) -> tuple[dict[str, int], dict[str, bool]]:
    """Seconds per target and business-time flags: Chatwoot's applied SLA, else the policy's."""
    override = record.get("sla_override")
    if isinstance(override, dict):
        seconds = {t: int(override[t]) for t in TARGETS if override.get(t)}
        only = bool(override.get("business_hours_only"))
        return seconds, {t: only for t in TARGETS}
    priority = record.get("priority") or "none"
    targets = policy.sla.targets.get(priority, policy.sla.targets["none"])
    return {t: targets.seconds(t) for t in TARGETS}, dict(policy.sla.business_hours_only)


def clock_start(record: dict[str, Any], policy: SupportPolicy) -> float | None:
    """When first-response and resolution clocks start (None: still with a bot)."""
    created = record.get("created_at")
    if policy.sla.clock_starts == "opened" and record.get("seen_pending"):
        return record.get("first_open_at")
    return created


def marks_from_timeline(timeline: list[dict[str, Any]]) -> list[list[Any]]:
    """Customer-message and human-reply marks from timeline items: for records written before
    the record kept its own ``message_marks``."""
    marks: list[list[Any]] = []
    for item in timeline:
        if item.get("kind", "event") != "event" or item.get("private"):
            continue
        at = cw.to_epoch(item.get("occurred_at"))
        if at is None:
            continue
        if item.get("message_type") == "incoming":
            marks = add_mark(marks, at, CUSTOMER, str(item.get("message_id") or at))
        elif item.get("message_type") == "outgoing" and item.get("sender_type") == "User":
            marks = add_mark(marks, at, REPLY, str(item.get("message_id") or at))
    return marks


def compute_clocks(
    record: dict[str, Any],
    marks: list[list[Any]],
    policy: SupportPolicy,
    calendar: BusinessCalendar,
) -> list[SlaClock]:
    """Every SLA clock of a conversation, open or closed, from its record and its marks
    (``[epoch, "c" | "r", message id]``: customer messages and human replies)."""
    seconds, business_only = thresholds(record, policy)
    fraction = policy.sla.at_risk_fraction
    wall = WallClock()

    def clock(target: str, start: float, met: float | None) -> SlaClock:
        arithmetic = calendar if business_only[target] else wall
        limit = seconds[target]
        return SlaClock(
            target=target,
            started_at=start,
            due_at=arithmetic.add(start, limit),
            at_risk_at=arithmetic.add(start, limit * fraction),
            met_at=None if met is None else max(met, start),
            threshold_seconds=limit,
            business_only=business_only[target],
        )

    clocks: list[SlaClock] = []
    start = clock_start(record, policy)
    first_reply = record.get("first_reply_created_at")
    if start is not None:
        if "first_response" in seconds:
            clocks.append(clock("first_response", start, first_reply))
        if "resolution" in seconds:
            resolved = record.get("resolved_at") if record.get("status") == "resolved" else None
            clocks.append(clock("resolution", start, resolved))
    if "next_response" in seconds and first_reply is not None:
        waiting: float | None = None
        for at, kind, _ in sorted(marks, key=lambda m: (float(m[0]), str(m[1]))):
            at = float(at)
            if at <= first_reply:
                continue
            if kind == CUSTOMER:
                waiting = at if waiting is None else waiting
            elif kind == REPLY and waiting is not None:
                clocks.append(clock("next_response", waiting, at))
                waiting = None
        if waiting is not None:
            clocks.append(clock("next_response", waiting, None))
    return clocks


def _local(epoch: float, policy: SupportPolicy) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(policy.zone).strftime("%Y-%m-%d %H:%M")


class SlaService:
    """SLA decisions for one conversation at a time; used by the sweep and the processor."""

    def __init__(
        self,
        policy: SupportPolicy,
        store: ConversationStore,
        actions: ActionRunner,
        escalator: Escalator,
        telemetry: Telemetry,
    ) -> None:
        self.policy = policy
        self.store = store
        self.actions = actions
        self.escalator = escalator
        self.telemetry = telemetry
        self.calendar = BusinessCalendar.from_policy(policy)

    def clocks(self, record: dict[str, Any]) -> list[SlaClock]:
        marks = record.get("message_marks")
        if marks is None:  # a record from before the marks: read them off its timeline
            timeline = self.store.timeline(record["account_id"], record["conversation_id"])
            marks = marks_from_timeline(timeline)
        return compute_clocks(record, marks, self.policy, self.calendar)

    # ---- the sweep -------------------------------------------------------------------------
    def sweep_conversation(self, record: dict[str, Any], now: float) -> dict[str, int]:
        """Flag at-risk and breached targets once each; clear at-risk when nothing is.

        Each flag is claimed in the SLA state with a conditional write before anything is done
        in Chatwoot, and stays ``pending`` until its actions are done: a concurrent sweep loses
        the write and does nothing, and a sweep that died half-way is finished by the next one
        (the action ledger keeps each action exactly once).
        """
        outcome = {"at_risk": 0, "breached": 0, "cleared": 0}
        if record.get("status") not in ("open", "pending"):
            return outcome  # snoozed: no flags until it wakes (see docs/support-policy.md)
        account, conversation = record["account_id"], record["conversation_id"]
        state, revision = self.store.get_state(account, conversation, STATE)
        clocks = self.clocks(record)
        new_state = {
            **state,
            "flags": dict(state.get("flags") or {}),
            "pending": dict(state.get("pending") or {}),
        }
        flags: dict[str, str] = new_state["flags"]
        pending: dict[str, str] = new_state["pending"]
        # Flags recorded in dry run are kept apart: once live, the pipeline acts on them.
        mode = "dry:" if self.actions.dry_run else ""
        for clock in clocks:
            status, key = clock.state(now), mode + clock.instance
            if status == "breached" and flags.get(key) != "breached":
                flags[key] = pending[key] = "breached"
            elif status == "at_risk" and key not in flags:
                flags[key] = pending[key] = "at_risk"
                new_state["at_risk_episode"] = int(new_state.get("at_risk_episode") or 0) + (
                    0 if new_state.get("at_risk_labelled") else 1
                )
                new_state["at_risk_labelled"] = True
        if new_state["flags"] != (state.get("flags") or {}):
            if not self.store.put_state(account, conversation, STATE, new_state, revision):
                # Another sweep or event claimed first; whatever it claimed, it does.
                raise TransientError("write_conflict", "SLA state changed during the sweep")
            if new_state.get("at_risk_labelled") and not record.get("sla_at_risk"):
                # The processor reads this mark off the record (no read of the SLA state on
                # every reply) to know there is an at-risk label to clear.
                self.store.set_record_fields(account, conversation, {"sla_at_risk": True})
        by_instance = {mode + clock.instance: clock for clock in clocks}
        for instance, kind in sorted(pending.items()):
            claimed = by_instance.get(instance)
            # A flag left pending by an earlier sweep is finished only if it still holds: a
            # reply since then means no late "at risk" label and note.
            if claimed is not None and claimed.state(now) in ("breached", kind):
                if kind == "breached":
                    self._breach(record, claimed)
                else:
                    self._at_risk(record, claimed)
                outcome[kind] += 1
            self._confirm(account, conversation, instance)
        if pending:
            # Acting took time: a reply the processor recorded meanwhile found the flag still
            # pending and left the label to us. Decide on the record as it is now.
            record = self.store.get_record(account, conversation) or record
            clocks = self.clocks(record)
        if self._clear_if_safe(record, clocks, now, known=new_state):
            outcome["cleared"] += 1
        return outcome

    def _confirm(self, account: str, conversation: str, instance: str) -> None:
        """The flag's actions are done: it is no longer pending."""

        def done(state: dict[str, Any]) -> dict[str, Any]:
            left = dict(state.get("pending") or {})
            left.pop(instance, None)
            return {**state, "pending": left}

        self.store.update_state(account, conversation, STATE, done)

    def _label_and_note(
        self, record: dict[str, Any], action_base: str, label: str, note: str, reason: str
    ) -> None:
        account, conversation = record["account_id"], record["conversation_id"]
        self.actions.run(
            Action(
                account,
                conversation,
                f"{action_base}/labels",
                "add_labels",
                {"labels": [label]},
                reason,
            )
        )
        self.actions.run(
            Action(
                account,
                conversation,
                f"{action_base}/note",
                "private_note",
                {"content": note},
                reason,
            )
        )

    def _at_risk(self, record: dict[str, Any], clock: SlaClock) -> None:
        self._label_and_note(
            record,
            f"sla-at-risk:{record['account_id']}:{record['conversation_id']}:{clock.instance}",
            self.policy.sla.at_risk_label,
            f"SLA at risk: the {TARGET_WORDS[clock.target]} is due "
            f"{_local(clock.due_at, self.policy)} ({self.policy.timezone}). "
            f"{self._target_words(clock)}",
            "sla_at_risk",
        )
        self.telemetry.count("SlaAtRisk", reason=clock.target)

    def _breach(self, record: dict[str, Any], clock: SlaClock) -> None:
        account, conversation = record["account_id"], record["conversation_id"]
        reason = Reason(
            "sla_breach",
            f"SLA breached: the {TARGET_WORDS[clock.target]} was due "
            f"{_local(clock.due_at, self.policy)} ({self.policy.timezone}). "
            f"{self._target_words(clock)}",
        )
        escalation_id = f"sla-breach:{account}:{conversation}:{clock.instance}"
        if self.policy.escalation.sla_breach:
            self.escalator.escalate(
                account,
                conversation,
                escalation_id,
                [reason],
                extra_labels=(self.policy.sla.breached_label,),
                occurred_at=clock.due_at,
                episode=int(record.get("reopened_count") or 0),
                holder=person_holding(record),
            )
        else:
            self._label_and_note(
                record, escalation_id, self.policy.sla.breached_label, reason.text, "sla_breach"
            )
        self._timeline(record, clock, "sla_breach", clock.due_at, met=False)
        self.telemetry.count("SlaBreached", reason=clock.target)

    def next_due(self, record: dict[str, Any], after: float | None = None) -> float | None:
        """The conversation's next SLA moment the sweep has to look at: the earliest at-risk or
        breach moment of an open target after ``after`` (default: the last time the sweep acted
        on it). None when nothing can come due (met, resolved, snoozed: an event changes that)."""
        if record.get("status") not in ("open", "pending"):
            return None
        since = float(record.get("sla_swept_through") or 0) if after is None else after
        moments = [
            moment
            for clock in self.clocks(record)
            if clock.met_at is None
            for moment in (clock.at_risk_at, clock.due_at)
            if moment > since
        ]
        return min(moments, default=None)

    def due_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record's fields for the ``DueConversations`` index (None removes them)."""
        due = self.next_due(record)
        return {
            "next_due": due,
            "due_account": record.get("account_id") if due is not None else None,
        }

    def swept(self, record: dict[str, Any], now: float) -> bool:
        """The sweep acted on everything due by ``now``: move the conversation's next moment on.

        Computed from the record as it is after acting (read consistently: the processor may
        have recorded a reply and a new question while the sweep talked to Chatwoot, and the
        sweep's own actions write to the record), and written only if the record is still at
        that revision, so a newer ``next_due`` the processor set is never overwritten with one
        computed from an older record. On such a race nothing is written: the conversation stays
        due where the processor put it, and the next sweep looks again (its flags are claimed,
        so nothing is done twice). False then. Not in dry run: what a dry run only recorded
        stays due, so the pipeline acts on it once it is live.
        """
        if self.actions.dry_run:
            return True
        current = self.store.get_record(record["account_id"], record["conversation_id"])
        if current is None:
            return False
        due = self.next_due(current, after=now)
        return self.store.set_record_fields(
            current["account_id"],
            current["conversation_id"],
            {
                "sla_swept_through": now,
                "next_due": due,
                "due_account": current["account_id"] if due is not None else None,
                "sweep_failures": None,
            },
            expected_revision=int(current.get("revision") or 0),
        )

    def sweep_failed(self, record: dict[str, Any]) -> None:
        """Count a failed sweep of the conversation on its record: the sweep takes conversations
        with fewer failures first, so a few that keep failing never starve the others."""
        self.store.set_record_fields(
            record["account_id"],
            record["conversation_id"],
            {"sweep_failures": int(record.get("sweep_failures") or 0) + 1},
        )

    def forget_if_gone(self, record: dict[str, Any]) -> bool:
        """After a 404: if Chatwoot confirms the conversation is gone while its API answers
        for the token, close the record so the sweep stops visiting it."""
        client = self.actions.client
        if client is None:
            return False
        account, conversation = record["account_id"], record["conversation_id"]
        try:
            client.get_conversation(account, conversation)
            return False  # it is there: the 404 was about something else
        except NotFoundError as missing:
            if not missing.from_chatwoot:
                return False  # a 404 page from something in front of Chatwoot proves nothing
            # Chatwoot itself answers for this token right now: the conversation is gone.
            client.identity(fresh=True)
        self.store.close_gone(account, conversation, self.escalator.clock())
        self.telemetry.count("ConversationGone")
        logger.warning(
            "conversation gone in Chatwoot; closed and no longer swept",
            extra={"account_id": account, "conversation_id": conversation},
        )
        return True

    def _target_words(self, clock: SlaClock) -> str:
        hours = clock.threshold_seconds / 3600
        span = f"{hours:g} h" if hours >= 1 else f"{clock.threshold_seconds // 60} min"
        kind = "business time" if clock.business_only else "wall-clock time"
        return f"Target: {span} of {kind}."

    def _clear_if_safe(
        self,
        record: dict[str, Any],
        clocks: list[SlaClock],
        now: float,
        known: dict[str, Any] | None = None,
    ) -> bool:
        """Remove our at-risk label once no open target is at risk (reply, resolution, breach).

        The clearing is claimed in the SLA state first (``clearing`` names the episode), then
        done, then confirmed; a clearing left over by a failed attempt is finished first.
        ``known`` is the state as the caller just wrote it, which saves a read when nothing is
        labelled.
        """
        if any(c.state(now) == "at_risk" for c in clocks):
            return False
        if known is not None and not known.get("at_risk_labelled") and not known.get("clearing"):
            return False
        account, conversation = record["account_id"], record["conversation_id"]

        def claim(state: dict[str, Any]) -> dict[str, Any]:
            if not state.get("at_risk_labelled"):
                return state
            if "at_risk" in (state.get("pending") or {}).values():
                return state  # the sweep has not labelled it yet; it clears after it does
            return {
                **state,
                "at_risk_labelled": False,
                "clearing": int(state.get("at_risk_episode") or 1),
            }

        state = self.store.update_state(account, conversation, STATE, claim)
        episode = state.get("clearing")
        if not episode:
            return False
        self.actions.run(
            Action(
                account,
                conversation,
                f"sla-clear:{account}:{conversation}:{episode}",
                "remove_labels",
                {"labels": [self.policy.sla.at_risk_label]},
                reason="sla_cleared",
            )
        )

        def done(state: dict[str, Any]) -> dict[str, Any]:
            if state.get("clearing") != episode:
                return state
            return {k: v for k, v in state.items() if k != "clearing"}

        self.store.update_state(account, conversation, STATE, done)
        self.store.set_record_fields(account, conversation, {"sla_at_risk": None})
        return True

    # ---- outcomes (processor) --------------------------------------------------------------
    def record_outcomes(
        self, record: dict[str, Any], now: float, met_at: float | None = None
    ) -> int:
        """Timeline items for targets met or missed (only those met at ``met_at``, the reply or
        resolution at hand, when given); clears the at-risk label. Idempotent."""
        recorded = 0
        clocks = self.clocks(record)
        for clock in clocks:
            if clock.met_at is None:
                continue
            if met_at is not None and abs(clock.met_at - met_at) > 1.0:
                continue  # met by another event, which recorded it
            met = bool(clock.in_time)
            if self._timeline(record, clock, "sla_outcome", clock.met_at, met=met):
                recorded += 1
                self.telemetry.count("SlaMet" if met else "SlaMissed", reason=clock.target)
        if record.get("sla_at_risk") or record.get("message_marks") is None:
            self._clear_if_safe(record, clocks, now)
        return recorded

    def _timeline(
        self, record: dict[str, Any], clock: SlaClock, kind: str, at: float, met: bool
    ) -> bool:
        account, conversation = record["account_id"], record["conversation_id"]
        at_iso = cw.iso(at)
        measured = (self.calendar if clock.business_only else WallClock()).elapsed(
            clock.started_at, clock.met_at if clock.met_at is not None else at
        )
        return self.store.add_timeline_item(
            {
                "pk": conversation_pk(account, conversation),
                "sk": timeline_sk(at_iso, f"{kind}:{clock.instance}"),
                "kind": kind,
                "event": kind,
                "target": clock.target,
                "met": met,
                "occurred_at": at_iso,
                "due_at": cw.iso(clock.due_at),
                "started_at": cw.iso(clock.started_at),
                "measured_seconds": int(measured),
                "threshold_seconds": clock.threshold_seconds,
                "business_only": clock.business_only,
                "priority": record.get("priority") or "none",
                "team_id": record.get("team_id"),
                "account_id": account,
                "conversation_id": conversation,
                "account_day": account_day(account, at, self.policy.zone),
                "occurred_key": f"{at_iso}#{conversation}",
            }
        )


def can_meet_a_target(context: EventContext) -> bool:
    """Only a person's public reply or a resolution meets a target (saves reads otherwise)."""
    payload = context.payload
    if context.event == "message_created":
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        return (
            cw.message_type(payload) == "outgoing"
            and not payload.get("private")
            and str((sender or {}).get("type") or "").lower() == "user"
        )
    return str(payload.get("status") or "") == "resolved"


@dataclass
class SlaOutcomes:
    """Route handler: after a reply or resolution, record SLA outcomes and clear risk flags."""

    sla: SlaService
    clock: Callable[[], float] = time.time

    def __call__(self, context: EventContext) -> dict[str, Any]:
        if not can_meet_a_target(context):
            return {"skipped": "cannot meet a target"}
        account = cw.account_id(context.payload)
        conversation = cw.conversation_id(context.payload)
        if not account or not conversation:
            if invalid := cw.invalid_ids(context.payload):  # malformed, not absent: never a skip
                raise PermanentError("invalid_payload", f"{context.event}: {invalid}")
            return {"skipped": "no conversation"}
        shared = context.shared.get("record")
        record = (
            shared if isinstance(shared, dict) else self.sla.store.get_record(account, conversation)
        )
        if not record:
            return {"skipped": "no record"}
        payload = context.payload
        met_at = (
            cw.to_epoch(payload.get("created_at"))
            if context.event == "message_created"
            else record.get("resolved_at")
        )
        return {"outcomes": self.sla.record_outcomes(record, self.clock(), met_at)}


class DraftExpiry(Protocol):
    """Drafts nobody decided on expire on the sweep's schedule."""

    def expire(self, now: float) -> int: ...


SWEEP_LEASE = "sla-sweep"
# The sweep stops starting conversations when less than this is left of its invocation.
SWEEP_STOP_SECONDS = 10.0
# Without a Lambda deadline (CLI, tests) a sweep's lease lasts this long.
SWEEP_LEASE_SECONDS = 900.0


class SlaSweep:
    """The scheduled sweep over the conversations that are due (no table scan).

    Each open conversation carries its next SLA moment (``next_due``: the earliest at-risk or
    breach moment not swept yet) on the sparse ``DueConversations`` index, kept by the processor
    as the record changes and moved on by the sweep after it has acted. A sweep reads only the
    conversations due now, earliest first, so its cost grows with the work that is due, not
    with the number of open conversations, and with none due it makes a constant number of
    calls. One sweep runs at a time (a lease in the table, besides the function's reserved
    concurrency of 1). It stops starting conversations when its invocation is nearly out of
    time; whatever it did not reach is still due, and earliest, next time. A conversation
    Chatwoot says is gone (404, with the API otherwise answering) is closed in the store and
    leaves the sweep.
    """

    def __init__(
        self,
        sla: SlaService,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.time,
        stop_seconds: float = SWEEP_STOP_SECONDS,
        drafts: DraftExpiry | None = None,
        pause: PauseSwitch | None = None,
    ) -> None:
        self.sla = sla
        self.telemetry = telemetry
        self.clock = clock
        self.stop_seconds = stop_seconds
        self.drafts = drafts
        self.pause = pause or NeverPaused()

    def run(self, now: float) -> dict[str, int]:
        """One sweep as of ``now`` (the schedule's time); counts of what it did.

        While the pipeline is paused (either mode) the sweep does nothing: it only acts, and
        what is due stays due, so the first sweep after the pause acts on the conversations as
        they are then (a target met meanwhile gets no late warning; one breached is escalated).
        """
        totals = {
            "conversations": 0,
            "at_risk": 0,
            "breached": 0,
            "cleared": 0,
            "failed": 0,
            "gone": 0,
            "left_for_next_sweep": 0,
        }
        mode = self.pause.mode()
        if mode != OFF:
            self.telemetry.count("Paused", reason=mode)
            logger.warning("sla sweep skipped: the pipeline is paused", extra={"mode": mode})
            return {**totals, "paused": 1}
        store = self.sla.store
        owner = uuid.uuid4().hex
        left = deadline.remaining()
        lease_seconds = (
            SWEEP_LEASE_SECONDS if left is None else max(left, 0.0) + LEASE_MARGIN_SECONDS
        )
        if not store.acquire_lease(SWEEP_LEASE, owner, self.clock() + lease_seconds, self.clock()):
            logger.warning("another sla sweep is running; this one does nothing")
            self.telemetry.count("SlaSweepSkipped")
            return {**totals, "skipped": 1}
        try:
            self._sweep(now, totals)
            if self.drafts is not None:
                totals["drafts_expired"] = self.drafts.expire(now)
        except Paused as paused:
            # Paused while sweeping: what was not reached is still due after the pause.
            self.telemetry.count("Paused", reason=paused.mode)
            logger.warning(
                "sla sweep stopped: the pipeline was paused", extra={"mode": paused.mode}
            )
            totals["paused"] = 1
        finally:
            store.release_lease(SWEEP_LEASE, owner)
        logger.info("sla sweep finished", extra={**totals, "now": cw.iso(now)})
        return totals

    def _due(self, now: float) -> list[tuple[float, str, dict[str, Any]]]:
        """The conversations due now (one query per account): those whose sweeps failed fewer
        times first, then earliest first. A conversation that keeps failing (Chatwoot times out
        on it) is still tried every sweep, but after the others, so it cannot hold them back."""
        store = self.sla.store
        return sorted(
            (
                (float(record.get("next_due") or 0), account, record)
                for account in store.accounts()
                for record in store.due_conversations(account, now)
            ),
            key=lambda entry: (
                int(entry[2].get("sweep_failures") or 0),
                entry[0],
                entry[1],
                str(entry[2].get("pk", "")),
            ),
        )

    def _sweep(self, now: float, totals: dict[str, int]) -> None:
        entries = self._due(now)
        for index, (_, account, record) in enumerate(entries):
            left = deadline.remaining()
            if left is not None and left < self.stop_seconds:
                totals["left_for_next_sweep"] = len(entries) - index
                self.telemetry.count("SlaSweepStoppedEarly")
                logger.warning(
                    "sla sweep out of time; what it did not reach is still due",
                    extra={"left_for_next_sweep": totals["left_for_next_sweep"]},
                )
                return
            totals["conversations"] += 1
            try:
                # The index is eventually consistent and a sweep takes time: act on the record
                # as it is now (a reply recorded since the query means no breach to flag).
                current = self.sla.store.get_record(account, str(record["conversation_id"]))
                if current is None:
                    continue
                record = current
                for key, value in self.sla.sweep_conversation(record, now).items():
                    totals[key] += value
            except Paused:
                raise  # the pause ends the sweep; this conversation stays due
            except NotFoundError as missing:
                if self._gone(record):
                    totals["gone"] += 1
                else:
                    self._failed(account, record, totals, missing)
                continue
            except Exception as exc:
                # One conversation never stops the sweep; it stays due, the next sweep tries it
                # again, and the claims and the ledger keep every action exactly-once.
                self._failed(account, record, totals, exc)
                continue
            self.sla.swept(record, now)

    def _gone(self, record: dict[str, Any]) -> bool:
        try:
            return self.sla.forget_if_gone(record)
        except Exception:  # could not confirm: keep the conversation, fail it as usual
            return False

    def _failed(
        self, account: str, record: dict[str, Any], totals: dict[str, int], exc: BaseException
    ) -> None:
        failure = classify(exc)
        totals["failed"] += 1
        try:
            self.sla.sweep_failed(record)
        except Exception:  # the count only orders the next sweep; the failure is reported below
            logger.warning("could not count the failed sweep on the record")
        self.telemetry.count("SlaSweepFailed", reason=failure.error_type)
        logger.warning(
            "sla sweep failed for a conversation",
            extra={
                "account_id": account,
                "conversation_id": record.get("conversation_id"),
                "error_type": failure.error_type,
                "error_reason": failure.reason,
            },
        )
