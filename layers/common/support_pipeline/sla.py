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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.actions import Action, ActionRunner
from support_pipeline.business_time import BusinessCalendar, WallClock
from support_pipeline.chatwoot import payload as cw
from support_pipeline.escalation import Escalator, Reason
from support_pipeline.policy import TARGETS, SupportPolicy
from support_pipeline.processing.errors import PermanentError, TransientError, classify
from support_pipeline.processing.router import EventContext
from support_pipeline.store import ConversationStore, conversation_pk, timeline_sk
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

    def state(self, now: float) -> str:
        """met | missed (closed) or breached | at_risk | running (open)."""
        if self.met_at is not None:
            return "met" if self.met_at <= self.due_at else "missed"
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


def compute_clocks(
    record: dict[str, Any],
    timeline: list[dict[str, Any]],
    policy: SupportPolicy,
    calendar: BusinessCalendar,
) -> list[SlaClock]:
    """Every SLA clock of a conversation, open or closed."""
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
        messages = [
            i for i in timeline if i.get("kind", "event") == "event" and i.get("message_type")
        ]
        for item in sorted(messages, key=lambda i: i.get("occurred_at", "")):
            at = cw.to_epoch(item.get("occurred_at"))
            if at is None or at <= first_reply or item.get("private"):
                continue
            if item["message_type"] == "incoming":
                waiting = at if waiting is None else waiting
            elif (
                item["message_type"] == "outgoing"
                and item.get("sender_type") == "User"
                and waiting is not None
            ):
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
        timeline = self.store.timeline(record["account_id"], record["conversation_id"])
        return compute_clocks(record, timeline, self.policy, self.calendar)

    # ---- the sweep -------------------------------------------------------------------------
    def sweep_conversation(self, record: dict[str, Any], now: float) -> dict[str, int]:
        """Flag at-risk and breached targets once each; clear at-risk when nothing is."""
        outcome = {"at_risk": 0, "breached": 0, "cleared": 0}
        if record.get("status") not in ("open", "pending"):
            return outcome  # snoozed: no flags until it wakes (see docs/support-policy.md)
        account, conversation = record["account_id"], record["conversation_id"]
        state, revision = self.store.get_state(account, conversation, STATE)
        new_state = {**state, "flags": dict(state.get("flags") or {})}
        flags: dict[str, str] = new_state["flags"]
        clocks = self.clocks(record)
        for clock in clocks:
            status = clock.state(now)
            if status == "breached" and flags.get(clock.instance) != "breached":
                self._breach(record, clock)
                flags[clock.instance] = "breached"
                outcome["breached"] += 1
            elif status == "at_risk" and clock.instance not in flags:
                self._at_risk(record, clock)
                flags[clock.instance] = "at_risk"
                new_state["at_risk_episode"] = int(new_state.get("at_risk_episode") or 0) + (
                    0 if new_state.get("at_risk_labelled") else 1
                )
                new_state["at_risk_labelled"] = True
                outcome["at_risk"] += 1
        if self._clear_if_safe(record, clocks, new_state, now):
            outcome["cleared"] += 1
        if new_state != state and not self.store.put_state(
            account, conversation, STATE, new_state, revision
        ):
            # Someone else moved the state on; the ledger already kept the actions exactly-once.
            raise TransientError("write_conflict", "SLA state changed during the sweep")
        return outcome

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
            )
        else:
            self._label_and_note(
                record, escalation_id, self.policy.sla.breached_label, reason.text, "sla_breach"
            )
        self._timeline(record, clock, "sla_breach", clock.due_at, met=False)
        self.telemetry.count("SlaBreached", reason=clock.target)

    def _target_words(self, clock: SlaClock) -> str:
        hours = clock.threshold_seconds / 3600
        span = f"{hours:g} h" if hours >= 1 else f"{clock.threshold_seconds // 60} min"
        kind = "business time" if clock.business_only else "wall-clock time"
        return f"Target: {span} of {kind}."

    def _clear_if_safe(
        self, record: dict[str, Any], clocks: list[SlaClock], state: dict[str, Any], now: float
    ) -> bool:
        """Remove our at-risk label once no open target is at risk (reply, resolution, breach)."""
        if not state.get("at_risk_labelled"):
            return False
        if any(c.state(now) == "at_risk" for c in clocks):
            return False
        account, conversation = record["account_id"], record["conversation_id"]
        episode = int(state.get("at_risk_episode") or 1)
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
        state["at_risk_labelled"] = False
        return True

    # ---- outcomes (processor) --------------------------------------------------------------
    def record_outcomes(self, record: dict[str, Any], now: float) -> int:
        """Timeline items for targets met or missed; clears the at-risk label. Idempotent."""
        recorded = 0
        clocks = self.clocks(record)
        for clock in clocks:
            if clock.met_at is None:
                continue
            met = clock.met_at <= clock.due_at
            if self._timeline(record, clock, "sla_outcome", clock.met_at, met=met):
                recorded += 1
                self.telemetry.count("SlaMet" if met else "SlaMissed", reason=clock.target)

        def clear(state: dict[str, Any]) -> dict[str, Any]:
            self._clear_if_safe(record, clocks, state, now)
            return state

        self.store.update_state(record["account_id"], record["conversation_id"], STATE, clear)
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
                "account_day": f"{account}#{at_iso[:10]}",
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
        record = self.sla.store.get_record(account, conversation)
        if record is None:
            return {"skipped": "no record"}
        return {"outcomes": self.sla.record_outcomes(record, self.clock())}


class SlaSweep:
    """The scheduled sweep over every account's open conversations (no table scan)."""

    def __init__(self, sla: SlaService, telemetry: Telemetry) -> None:
        self.sla = sla
        self.telemetry = telemetry

    def run(self, now: float) -> dict[str, int]:
        totals = {"conversations": 0, "at_risk": 0, "breached": 0, "cleared": 0, "failed": 0}
        for account in self.sla.store.accounts():
            for record in self.sla.store.open_conversations(account):
                totals["conversations"] += 1
                try:
                    for key, value in self.sla.sweep_conversation(record, now).items():
                        totals[key] += value
                except Exception as exc:
                    # One conversation never stops the sweep; the next sweep tries it again and
                    # the ledger keeps every action exactly-once.
                    failure = classify(exc)
                    totals["failed"] += 1
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
        logger.info("sla sweep finished", extra={**totals, "now": cw.iso(now)})
        return totals
