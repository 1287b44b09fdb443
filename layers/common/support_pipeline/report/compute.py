"""The report's numbers, from the stored items of a period and of the one before it.

Pure functions over :class:`PeriodData`; docs/report.md says what each number means. Every
count here is of distinct things (a message delivered twice is one message, a survey answered
twice is one answer), and every rate or mean over nothing is ``None`` ("no data"), never 0 or
100 %.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

from support_pipeline.business_time import BusinessCalendar
from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.drafts.store import NO_DRAFT, OUTCOMES
from support_pipeline.policy import GRADES, TARGETS, SupportPolicy
from support_pipeline.report.data import ConversationKey, PeriodData, ReportReader, conversation_key
from support_pipeline.report.stats import compared, mean, median, percent, percentile, rounded
from support_pipeline.sla import clock_start

PRIORITIES = ("urgent", "high", "medium", "low", "none")
ANSWERED_OUTCOMES = ("sent_as_is", "edited", "replaced")


# ---- conversations: opened, resolved, reopened ----------------------------------------------
def transitions(record: dict[str, Any]) -> list[tuple[float, str | None, str]]:
    """(version, from, to) of each status change the record's status points show, oldest first.

    The first point counts as a change from whatever came before it (``status_before``, or
    nothing): a conversation first seen resolved was resolved then.
    """
    before = record.get("status_before") or {}
    last: str | None = before.get("last") if isinstance(before, dict) else None
    found: list[tuple[float, str | None, str]] = []
    for version, status in record.get("status_points") or []:
        if status != last:
            found.append((float(version), last, str(status)))
        last = status
    return found


def resolutions(record: dict[str, Any]) -> list[float]:
    return [v for v, _, to in transitions(record) if to == "resolved"]


def reopenings(record: dict[str, Any]) -> list[float]:
    return [v for v, before, to in transitions(record) if before == "resolved" and to != before]


@dataclass(frozen=True)
class Message:
    account_id: str
    conversation_id: str
    message_id: str
    direction: str  # in | out | note
    at: float


def messages(data: PeriodData) -> list[Message]:
    """Distinct messages created in the period (a delivery seen twice is one message)."""
    found: dict[tuple[str, str, str], Message] = {}
    for item in data.events:
        if item.get("event") != "message_created" or not item.get("message_id"):
            continue
        kind, private = item.get("message_type"), bool(item.get("private"))
        if kind == "incoming" and not private:
            direction = "in"
        elif kind == "outgoing":
            direction = "note" if private else "out"
        else:
            continue  # activity and template messages are not conversation
        at = to_epoch(item.get("occurred_at"))
        key = conversation_key(item)
        if key is None or at is None:
            continue
        message = Message(key[0], key[1], str(item["message_id"]), direction, at)
        found.setdefault((key[0], key[1], message.message_id), message)
    return list(found.values())


@dataclass
class Volume:
    opened: list[tuple[ConversationKey, float]]
    resolved: list[tuple[ConversationKey, float]]
    reopened: list[tuple[ConversationKey, float]]
    messages: list[Message]
    active: set[ConversationKey]
    first_replies: list[tuple[ConversationKey, float]]

    def count(self, name: str, account: str | None = None) -> int:
        if name == "messages_in":
            return len([m for m in self.messages if m.direction == "in" and _of(m, account)])
        if name == "messages_out":
            return len([m for m in self.messages if m.direction == "out" and _of(m, account)])
        if name == "private_notes":
            return len([m for m in self.messages if m.direction == "note" and _of(m, account)])
        if name == "active_conversations":
            return len([k for k in self.active if account is None or k[0] == account])
        rows: list[tuple[ConversationKey, float]] = getattr(self, name)
        return len([k for k, _ in rows if account is None or k[0] == account])


def _of(message: Message, account: str | None) -> bool:
    return account is None or message.account_id == account


def volume(data: PeriodData) -> Volume:
    period = data.period
    opened, resolved, reopened, first_replies = [], [], [], []
    for key, record in sorted(data.records.items()):
        created = record.get("created_at")
        if created is not None and period.contains(created):
            opened.append((key, float(created)))
        resolved += [(key, v) for v in resolutions(record) if period.contains(v)]
        reopened += [(key, v) for v in reopenings(record) if period.contains(v)]
        first_reply = record.get("first_reply_created_at")
        if first_reply is not None and period.contains(first_reply):
            first_replies.append((key, float(first_reply)))
    active = {k for k in (conversation_key(i) for i in data.events) if k is not None}
    return Volume(opened, resolved, reopened, messages(data), active, first_replies)


# ---- SLA ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetInstance:
    """One SLA target of one conversation (e.g. the first response, or one next response)."""

    account_id: str
    conversation_id: str
    target: str
    started_at: float
    due_at: float
    met_at: float | None  # when it was answered or resolved; None: not yet, as far as we know
    met: bool
    priority: str
    team_id: str | None
    threshold_seconds: int
    business_only: bool
    measured_seconds: float | None  # in the policy's measure (business or wall), when answered

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.account_id, self.conversation_id, self.target, int(self.started_at))


def target_instances(data: PeriodData, reader: ReportReader | None) -> list[TargetInstance]:
    """SLA targets decided in the period: met ones when they were met, missed ones when they
    went overdue.

    A missed target is counted once: in the period of the sweep's breach record (its due time)
    when there is one, else in the period of its missed outcome (the sweep does not flag
    snoozed conversations, so a target can be missed with no breach record). A target keeps
    its first verdict: a resolution met in time stays met when the conversation is reopened
    and resolved again late (the reopening is counted in the volume).
    """
    period = data.period
    candidates: list[tuple[str, TargetInstance]] = []
    for item in data.sla_outcomes:
        instance = _instance(item, met_at=to_epoch(item.get("occurred_at")))
        if instance is None:
            continue
        if (
            not instance.met
            and instance.due_at < period.start_epoch
            and reader is not None
            and reader.breach_recorded(item)
        ):
            continue  # its breach was counted in the period it went overdue
        candidates.append((str(item.get("occurred_at", "")), instance))
    for item in data.sla_breaches:
        instance = _instance(item, met_at=None)
        if instance is not None:
            candidates.append((str(item.get("occurred_at", "")), instance))
    found: dict[tuple[str, str, str, int], TargetInstance] = {}
    for _, instance in sorted(candidates, key=lambda c: (c[0], c[1].met_at is None)):
        first = found.get(instance.key)
        if first is None:
            found[instance.key] = instance
        elif not first.met and first.met_at is None and instance.met_at is not None:
            # overdue first, answered late afterwards: still missed, now with its answer time
            found[instance.key] = replace(
                first, met_at=instance.met_at, measured_seconds=instance.measured_seconds
            )
    return sorted(found.values(), key=lambda i: (i.account_id, int(i.conversation_id), i.key))


def _instance(item: dict[str, Any], met_at: float | None) -> TargetInstance | None:
    key = conversation_key(item)
    started, due = to_epoch(item.get("started_at")), to_epoch(item.get("due_at"))
    if key is None or started is None or due is None or item.get("target") not in TARGETS:
        return None
    met = bool(item.get("met")) and item.get("kind") == "sla_outcome"
    measured = item.get("measured_seconds") if met_at is not None else None
    team = item.get("team_id")
    return TargetInstance(
        account_id=key[0],
        conversation_id=key[1],
        target=str(item["target"]),
        started_at=started,
        due_at=due,
        met_at=met_at,
        met=met,
        priority=str(item.get("priority") or "none"),
        team_id=None if team in (None, "") else str(team),
        threshold_seconds=int(item.get("threshold_seconds") or 0),
        business_only=bool(item.get("business_only")),
        measured_seconds=None if measured is None else float(measured),
    )


class Elapsed(Protocol):
    def elapsed(self, start: float, end: float) -> float: ...


class RememberedCalendar:
    """Business time between two moments, worked out once per pair (the same target is
    counted overall, by priority and by team)."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        self._calendar = calendar
        self._known: dict[tuple[float, float], float] = {}

    def elapsed(self, start: float, end: float) -> float:
        key = (start, end)
        if key not in self._known:
            self._known[key] = self._calendar.elapsed(start, end)
        return self._known[key]


def adherence(instances: list[TargetInstance], calendar: Elapsed) -> dict[str, Any]:
    """% met, and how long answers took in business time (median, p90)."""
    met = [i for i in instances if i.met]
    answered = [i for i in instances if i.met_at is not None]
    business = [calendar.elapsed(i.started_at, i.met_at) for i in answered if i.met_at]
    own = [i.measured_seconds for i in answered if i.measured_seconds is not None]
    return {
        "judged": len(instances),
        "met": len(met),
        "missed": len(instances) - len(met),
        "unanswered_past_due": len([i for i in instances if i.met_at is None]),
        "answered": len(answered),
        "met_percent": percent(len(met), len(instances)),
        "median_business_seconds": rounded(median(business), 0),
        "p90_business_seconds": rounded(percentile(business, 0.9), 0),
        "p90_policy_seconds": rounded(percentile(own, 0.9), 0),
    }


def sla_section(
    current: list[TargetInstance],
    previous: list[TargetInstance] | None,
    calendar: BusinessCalendar,
    policy: SupportPolicy,
    goal_percent: float,
    link: Callable[[str, str], str | None],
) -> dict[str, Any]:
    remembered = RememberedCalendar(calendar)

    def stats(
        instances: list[TargetInstance],
        before: list[TargetInstance] | None,
        threshold: int | None,
        business_only: bool,
    ) -> dict[str, Any]:
        now = adherence(instances, remembered)
        then = adherence(before, remembered) if before is not None else None

        def prior(name: str) -> Any:
            return None if then is None else then[name]

        return {
            "judged": compared(now["judged"], prior("judged"), unit="count"),
            "met": now["met"],
            "missed": now["missed"],
            "unanswered_past_due": now["unanswered_past_due"],
            "met_percent": compared(
                now["met_percent"], prior("met_percent"), unit="percent", target=goal_percent
            ),
            "median_business_seconds": compared(
                now["median_business_seconds"],
                prior("median_business_seconds"),
                unit="seconds",
                better="lower",
            ),
            "p90_business_seconds": compared(
                now["p90_business_seconds"],
                prior("p90_business_seconds"),
                unit="seconds",
                better="lower",
            ),
            "p90_policy_seconds": compared(
                now["p90_policy_seconds"],
                prior("p90_policy_seconds"),
                unit="seconds",
                target=None if threshold is None else float(threshold),
                better="lower",
            ),
            "threshold_seconds": threshold,
            "measure": "business" if business_only else "wall",
        }

    section: dict[str, Any] = {"goal_percent": goal_percent, "targets": {}}
    for target in TARGETS:
        mine = [i for i in current if i.target == target]
        theirs = None if previous is None else [i for i in previous if i.target == target]
        business_only = bool(policy.sla.business_hours_only.get(target))
        by_priority = {}
        for priority in PRIORITIES:
            threshold = policy.sla.targets[priority].seconds(target)
            by_priority[priority] = stats(
                [i for i in mine if i.priority == priority],
                None if theirs is None else [i for i in theirs if i.priority == priority],
                threshold,
                business_only,
            )
        teams = sorted(
            {(i.account_id, i.team_id) for i in mine}
            | {(i.account_id, i.team_id) for i in theirs or []},
            key=lambda t: (t[0], t[1] is None, int(t[1]) if t[1] and t[1].isdigit() else 0),
        )
        by_team = [
            {
                "account_id": account,
                "team_id": team,
                **stats(
                    [i for i in mine if (i.account_id, i.team_id) == (account, team)],
                    None
                    if theirs is None
                    else [i for i in theirs if (i.account_id, i.team_id) == (account, team)],
                    None,
                    business_only,
                ),
            }
            for account, team in teams
        ]
        section["targets"][target] = {
            "all": stats(mine, theirs, None, business_only),
            "by_priority": by_priority,
            "by_team": by_team,
        }
    section["breaches"] = breach_list(current, calendar, link)
    return section


def breach_list(
    instances: list[TargetInstance],
    calendar: BusinessCalendar,
    link: Callable[[str, str], str | None],
) -> list[dict[str, Any]]:
    """Missed targets, by conversation."""
    by_conversation: dict[tuple[str, str], list[TargetInstance]] = defaultdict(list)
    for instance in instances:
        if not instance.met:
            by_conversation[(instance.account_id, instance.conversation_id)].append(instance)
    found = []
    for (account, conversation), missed in sorted(
        by_conversation.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))
    ):
        found.append(
            {
                "account_id": account,
                "conversation_id": conversation,
                "link": link(account, conversation),
                "priority": missed[-1].priority,
                "team_id": missed[-1].team_id,
                "missed": [
                    {
                        "target": i.target,
                        "started_at": i.started_at,
                        "due_at": i.due_at,
                        "answered_at": i.met_at,
                        "late_business_seconds": None
                        if i.met_at is None
                        else round(max(0.0, calendar.elapsed(i.due_at, i.met_at))),
                    }
                    for i in sorted(missed, key=lambda i: (i.due_at, i.target))
                ],
            }
        )
    return found


# ---- escalations ----------------------------------------------------------------------------
def _team_at(data: PeriodData, key: ConversationKey, at: float | None) -> str | None:
    """The conversation's team when ``at`` happened: the latest event before it that names
    one, else the record's."""
    team: Any = None
    for item in data.events_of(key):
        when = to_epoch(item.get("occurred_at"))
        if at is not None and when is not None and when > at:
            break
        if item.get("team_id") not in (None, ""):
            team = item.get("team_id")
    if team is None:
        team = data.record(key).get("team_id")
    return None if team in (None, "") else str(team)


def escalation_counts(data: PeriodData) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    by_team: Counter[tuple[str, str | None]] = Counter()
    conversations: set[ConversationKey] = set()
    for item in data.escalations:
        key = conversation_key(item)
        if key is None:
            continue
        conversations.add(key)
        for reason in item.get("reasons") or ["unknown"]:
            by_reason[str(reason)] += 1
        by_team[(key[0], _team_at(data, key, to_epoch(item.get("occurred_at"))))] += 1
    return {
        "escalations": len(data.escalations),
        "conversations": conversations,
        "by_reason": by_reason,
        "by_team": by_team,
    }


def escalation_section(
    data: PeriodData,
    previous: PeriodData | None,
    current_volume: Volume,
    prior_volume: Volume | None,
) -> dict[str, Any]:
    now = escalation_counts(data)
    then = escalation_counts(previous) if previous is not None else None
    active_now = len(current_volume.active)
    rate = percent(len(now["conversations"]), active_now)
    prior_rate = (
        percent(len(then["conversations"]), len(prior_volume.active))
        if then is not None and prior_volume is not None
        else None
    )
    reasons = sorted(
        set(now["by_reason"]) | set(then["by_reason"] if then else ()),
        key=lambda r: (-now["by_reason"][r], r),
    )
    teams = sorted(
        set(now["by_team"]) | set(then["by_team"] if then else ()),
        key=lambda t: (-now["by_team"][t], t[0], t[1] or ""),
    )
    return {
        "escalations": compared(
            now["escalations"], None if then is None else then["escalations"], unit="count"
        ),
        "conversations_escalated": compared(
            len(now["conversations"]),
            None if then is None else len(then["conversations"]),
            unit="count",
        ),
        "rate_percent": compared(rate, prior_rate, unit="percent", better="lower"),
        "by_reason": [
            {
                "reason": reason,
                **compared(
                    now["by_reason"][reason],
                    None if then is None else then["by_reason"][reason],
                    unit="count",
                    better="lower",
                ),
            }
            for reason in reasons
        ],
        "by_team": [
            {
                "account_id": account,
                "team_id": team,
                **compared(
                    now["by_team"][(account, team)],
                    None if then is None else then["by_team"][(account, team)],
                    unit="count",
                    better="lower",
                ),
            }
            for account, team in teams
        ],
    }


# ---- volume ---------------------------------------------------------------------------------
VOLUME_NAMES = (
    "opened",
    "resolved",
    "reopened",
    "messages_in",
    "messages_out",
    "private_notes",
    "active_conversations",
)


def volume_section(data: PeriodData, current: Volume, previous: Volume | None) -> dict[str, Any]:
    section: dict[str, Any] = {
        name: compared(
            current.count(name), None if previous is None else previous.count(name), unit="count"
        )
        for name in VOLUME_NAMES
    }
    section["by_inbox"] = by_inbox(data, current)
    section["daily"] = daily(data.period.days, data, current)
    return section


def by_inbox(data: PeriodData, current: Volume) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str | None], Counter[str]] = defaultdict(Counter)

    def inbox(key: ConversationKey) -> tuple[str, str | None]:
        value = data.record(key).get("inbox_id")
        return key[0], None if value in (None, "") else str(value)

    for key, _ in current.opened:
        rows[inbox(key)]["opened"] += 1
    for key, _ in current.resolved:
        rows[inbox(key)]["resolved"] += 1
    for message in current.messages:
        if message.direction in ("in", "out"):
            rows[inbox((message.account_id, message.conversation_id))][
                f"messages_{message.direction}"
            ] += 1
    return [
        {
            "account_id": account,
            "inbox_id": inbox_id,
            **{
                name: counts[name] for name in ("opened", "resolved", "messages_in", "messages_out")
            },
        }
        for (account, inbox_id), counts in sorted(
            rows.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or "")
        )
    ]


def daily(days: list[date], data: PeriodData, current: Volume) -> list[dict[str, Any]]:
    period = data.period
    rows = {day: Counter[str]() for day in days}
    for _, at in current.opened:
        rows[period.day_of(at)]["opened"] += 1
    for _, at in current.resolved:
        rows[period.day_of(at)]["resolved"] += 1
    for message in current.messages:
        day = period.day_of(message.at)
        if day in rows and message.direction in ("in", "out"):
            rows[day][f"messages_{message.direction}"] += 1
    return [
        {
            "date": day.isoformat(),
            "weekday": day.strftime("%a"),
            **{n: rows[day][n] for n in ("opened", "resolved", "messages_in", "messages_out")},
        }
        for day in days
    ]


# ---- CSAT -----------------------------------------------------------------------------------
def ratings(data: PeriodData) -> list[int]:
    return [int(i["rating"]) for i in data.csat if isinstance(i.get("rating"), int | float)]


def csat_section(data: PeriodData, previous: PeriodData | None) -> dict[str, Any]:
    now = ratings(data)
    then = ratings(previous) if previous is not None else None

    def distribution(values: list[int]) -> dict[str, int]:
        counts = Counter(values)
        return {str(score): counts[score] for score in range(1, 6)}

    return {
        "responses": compared(len(now), None if then is None else len(then), unit="count"),
        "mean": compared(
            rounded(mean(now)), None if then is None else rounded(mean(then)), unit="score"
        ),
        "distribution": distribution(now),
        "previous_distribution": None if then is None else distribution(then),
    }


# ---- drafts ---------------------------------------------------------------------------------
def draft_numbers(drafts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    items = list(drafts)
    outcomes = Counter(str(d.get("outcome") or d.get("status")) for d in items)
    answered = [d for d in items if d.get("outcome") in ANSWERED_OUTCOMES]
    ratios = [float(d["edit_ratio"]) for d in answered if d.get("edit_ratio") is not None]
    approvals = [
        float(d["seconds_to_decision"])
        for d in items
        if d.get("outcome") == "sent_as_is" and d.get("seconds_to_decision") is not None
    ]
    grades: dict[str, list[float]] = {grade: [] for grade in GRADES}
    graded = 0
    for draft in items:
        given = draft.get("grades")
        if isinstance(given, dict) and given:
            graded += 1
            for grade in GRADES:
                if isinstance(given.get(grade), int | float):
                    grades[grade].append(float(given[grade]))
    return {
        "drafted": sum(outcomes[o] for o in OUTCOMES),
        "not_drafted": outcomes[NO_DRAFT],
        "outcomes": {o: outcomes[o] for o in OUTCOMES},
        "median_edit_ratio": rounded(median(ratios), 3),
        "median_seconds_to_approval": rounded(median(approvals), 0),
        "graded": graded,
        "grades": {grade: rounded(mean(values)) for grade, values in grades.items()},
    }


def drafts_section(
    data: PeriodData, previous: PeriodData | None, policy: SupportPolicy
) -> dict[str, Any]:
    now = draft_numbers(data.drafts)
    then = draft_numbers(previous.drafts) if previous is not None else None

    def prior(*path: str) -> Any:
        value: Any = then
        for part in path:
            if value is None:
                return None
            value = value[part]
        return value

    targets = policy.drafts.grade_targets
    return {
        "drafted": compared(now["drafted"], prior("drafted"), unit="count"),
        "not_drafted": compared(now["not_drafted"], prior("not_drafted"), unit="count"),
        "outcomes": {
            outcome: compared(now["outcomes"][outcome], prior("outcomes", outcome), unit="count")
            for outcome in OUTCOMES
        },
        "median_edit_ratio": compared(
            now["median_edit_ratio"], prior("median_edit_ratio"), unit="ratio"
        ),
        "median_seconds_to_approval": compared(
            now["median_seconds_to_approval"],
            prior("median_seconds_to_approval"),
            unit="seconds",
            better="lower",
        ),
        "graded": compared(now["graded"], prior("graded"), unit="count"),
        "grades": {
            grade: compared(
                now["grades"][grade],
                prior("grades", grade),
                unit="score",
                target=targets.get(grade),
            )
            for grade in GRADES
        },
    }


# ---- one row per conversation (report.csv) --------------------------------------------------
CSV_COLUMNS = (
    "account_id",
    "conversation_id",
    "link",
    "inbox_id",
    "team_id",
    "priority",
    "status",
    "opened_at",
    "first_response_at",
    "first_response_business_seconds",
    "resolved_at",
    "resolution_business_seconds",
    "first_response_sla",
    "next_response_met",
    "next_response_missed",
    "resolution_sla",
    "reopened_count",
    "escalation_reasons",
    "csat",
    "draft_outcomes",
)


def conversation_rows(
    data: PeriodData,
    instances: list[TargetInstance],
    policy: SupportPolicy,
    calendar: BusinessCalendar,
    link: Callable[[str, str], str | None],
    local: Callable[[float | None], str],
) -> list[dict[str, Any]]:
    """One row per conversation with anything stored in the period."""
    by_key: dict[ConversationKey, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for instance in instances:
        by_key[(instance.account_id, instance.conversation_id)][instance.target].append(instance)
    for item in data.escalations:
        key = conversation_key(item)
        if key is not None:
            by_key[key]["reasons"] += [str(r) for r in item.get("reasons") or []]
    for item in sorted(data.csat, key=lambda i: str(i.get("answered_at", ""))):
        key = conversation_key(item)
        if key is not None:
            by_key[key]["csat"].append(item.get("rating"))
    for item in sorted(data.drafts, key=lambda i: str(i.get("decided_at", ""))):
        key = conversation_key(item)
        if key is not None:
            by_key[key]["drafts"].append(str(item.get("outcome") or item.get("status")))

    def verdict(found: list[TargetInstance]) -> str:
        if not found:
            return ""
        return "missed" if any(not i.met for i in found) else "met"

    rows = []
    for key in sorted(data.conversations(), key=lambda k: (k[0], int(k[1]))):
        record = data.record(key)
        facts = by_key[key]
        start = clock_start(record, policy) if record else None
        first_reply = record.get("first_reply_created_at")
        resolved = record.get("resolved_at") if record.get("status") == "resolved" else None
        next_response = facts["next_response"]
        rows.append(
            {
                "account_id": key[0],
                "conversation_id": key[1],
                "link": link(*key) or "",
                "inbox_id": record.get("inbox_id") or "",
                "team_id": record.get("team_id") or "",
                "priority": record.get("priority") or "none",
                "status": record.get("status") or "",
                "opened_at": local(record.get("created_at")),
                "first_response_at": local(first_reply),
                "first_response_business_seconds": ""
                if start is None or first_reply is None
                else round(calendar.elapsed(start, first_reply)),
                "resolved_at": local(resolved),
                "resolution_business_seconds": ""
                if start is None or resolved is None
                else round(calendar.elapsed(start, resolved)),
                "first_response_sla": verdict(facts["first_response"]),
                "next_response_met": len([i for i in next_response if i.met]),
                "next_response_missed": len([i for i in next_response if not i.met]),
                "resolution_sla": verdict(facts["resolution"]),
                "reopened_count": int(record.get("reopened_count") or 0),
                "escalation_reasons": ";".join(dict.fromkeys(facts["reasons"])),
                "csat": facts["csat"][-1] if facts["csat"] else "",
                "draft_outcomes": ";".join(facts["drafts"]),
            }
        )
    return rows


# ---- what Chatwoot's summary counts, from our side ------------------------------------------
def ours_like_chatwoot(
    data: PeriodData, current: Volume, account: str
) -> dict[str, float | int | None]:
    """Our numbers defined as Chatwoot's summary defines its own (wall-clock times, every
    outgoing message including private notes)."""
    first = [
        at - float(data.record(key).get("created_at") or at)
        for key, at in current.first_replies
        if key[0] == account and data.record(key).get("created_at") is not None
    ]
    resolution = [
        at - float(data.record(key).get("created_at") or at)
        for key, at in current.resolved
        if key[0] == account and data.record(key).get("created_at") is not None
    ]
    return {
        "conversations_count": current.count("opened", account),
        "incoming_messages_count": current.count("messages_in", account),
        "outgoing_messages_count": current.count("messages_out", account)
        + current.count("private_notes", account),
        "resolutions_count": current.count("resolved", account),
        "avg_first_response_time": rounded(mean(max(0.0, s) for s in first), 1),
        "avg_resolution_time": rounded(mean(max(0.0, s) for s in resolution), 1),
    }
