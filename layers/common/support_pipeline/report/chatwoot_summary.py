"""Chatwoot's own numbers for the period, beside ours.

``GET /api/v2/accounts/{id}/reports/summary?type=account&since=<unix>&until=<unix>`` answers
(Chatwoot's ReportsController#summary and V2::Reports::Conversations::MetricBuilder) with
``conversations_count``, ``incoming_messages_count``, ``outgoing_messages_count``,
``avg_first_response_time``, ``avg_resolution_time`` (seconds, wall-clock unless
``business_hours`` is asked for; null when nothing happened), ``resolutions_count``,
``reply_time``, and ``previous``: the same for the equal-length period just before
(``since - (until - since)`` to ``since``). Its range is ``since...until``, end excluded, like
ours.

A lead trusts a report that agrees with the tool the agents use, or says why it does not: each
of our numbers is set beside Chatwoot's, and a large gap is flagged with the likely reasons.
"""

from __future__ import annotations

from typing import Any, Protocol

from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.report.period import Period

COUNTS = (
    "conversations_count",
    "incoming_messages_count",
    "outgoing_messages_count",
    "resolutions_count",
)
AVERAGES = ("avg_first_response_time", "avg_resolution_time")
COMPARED = COUNTS + AVERAGES
# What counts as a large disagreement (docs/report.md): counts that differ by more than
# COUNT_TOLERANCE of the larger one and by more than COUNT_SLACK; averages that differ by more
# than TIME_TOLERANCE of Chatwoot's and by more than TIME_SLACK seconds.
COUNT_TOLERANCE, COUNT_SLACK = 0.10, 2
TIME_TOLERANCE, TIME_SLACK = 0.25, 300.0

LABELS = {
    "conversations_count": "conversations opened",
    "incoming_messages_count": "messages in",
    "outgoing_messages_count": "messages out (with private notes)",
    "resolutions_count": "resolutions",
    "avg_first_response_time": "average first response (wall clock)",
    "avg_resolution_time": "average resolution time (wall clock)",
}

WHY_FEWER = {
    "conversations_count": "we saw fewer conversations than Chatwoot counts: webhook deliveries "
    "lost before they reached us (Chatwoot never retries one; see rejected webhooks and the DLQ), "
    "an inbox or event not subscribed in the webhook, or the pipeline started mid-period",
    "incoming_messages_count": "messages lost before they reached us (Chatwoot never retries a "
    "webhook), or message events not subscribed in the webhook",
    "outgoing_messages_count": "messages lost before they reached us, or messages Chatwoot "
    "creates without a webhook event (some channels' echoes)",
    "resolutions_count": "status changes lost before they reached us, or conversations resolved "
    "more than once in the period that we saw only once",
}
WHY_MORE = {
    "conversations_count": "conversations deleted in Chatwoot since (Chatwoot no longer counts "
    "them; we keep what we saw), or replayed or redriven old events",
    "incoming_messages_count": "messages deleted in Chatwoot since, or replayed old events",
    "outgoing_messages_count": "messages deleted in Chatwoot since, or replayed old events",
    "resolutions_count": "conversations deleted in Chatwoot since, or status observations that "
    "Chatwoot did not record as a resolution event",
}
WHY_TIMES = (
    "Chatwoot measures from the conversation's creation or its last bot handoff, over the "
    "reporting events created in the period, in wall-clock time; our figure starts at the "
    "conversation's creation as we recorded it, and a lost first reply or resolution event "
    "moves it. Our SLA numbers are in business time and are not comparable to these."
)


class SummaryClient(Protocol):
    def report_summary(self, account_id: str, since: int, until: int) -> dict[str, Any]: ...


def _number(value: Any) -> float | None:
    """Chatwoot's values: integers, floats, numeric strings (Rails decimals), or null."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_summary(answer: Any) -> tuple[dict[str, float | None], dict[str, float | None] | None]:
    """The period's numbers and the previous period's (None when Chatwoot sent none)."""
    if not isinstance(answer, dict):
        raise ValueError("the summary is not a JSON object")
    if not any(name in answer for name in COMPARED):
        raise ValueError("the summary has none of the expected numbers")
    current = {name: _number(answer.get(name)) for name in (*COMPARED, "reply_time")}
    previous_block = answer.get("previous")
    previous = (
        {name: _number(previous_block.get(name)) for name in (*COMPARED, "reply_time")}
        if isinstance(previous_block, dict)
        else None
    )
    return current, previous


def compare(name: str, chatwoot: float | None, ours: float | int | None) -> dict[str, Any]:
    """One number beside Chatwoot's, and whether the gap is large, with the likely reasons."""
    row: dict[str, Any] = {
        "metric": name,
        "label": LABELS[name],
        "chatwoot": chatwoot,
        "ours": ours,
        "difference": None,
        "disagrees": False,
        "why": None,
    }
    if chatwoot is None or ours is None:
        if name in AVERAGES and (chatwoot is None) != (ours is None):
            row["why"] = "only one side has any event to average over"
        return row
    difference = float(ours) - chatwoot
    row["difference"] = round(difference, 1)
    if name in COUNTS:
        large = abs(difference) > max(COUNT_SLACK, COUNT_TOLERANCE * max(abs(chatwoot), ours))
        if large:
            row["why"] = (WHY_FEWER if difference < 0 else WHY_MORE)[name]
    else:
        large = abs(difference) > max(TIME_SLACK, TIME_TOLERANCE * abs(chatwoot))
        if large:
            row["why"] = WHY_TIMES
    row["disagrees"] = large
    return row


def chatwoot_section(
    client: SummaryClient | None,
    accounts: list[str],
    period: Period,
    ours: dict[str, dict[str, float | int | None]],
    previous_ours: dict[str, dict[str, float | int | None]] | None,
) -> dict[str, Any]:
    """Per account: Chatwoot's summary, ours beside it, and the large disagreements."""
    if client is None:
        return {
            "available": False,
            "note": "No Chatwoot is configured (ChatwootBaseUrl is empty): nothing to compare.",
            "accounts": [],
        }
    if not accounts:
        return {
            "available": False,
            "note": "No account has sent the pipeline anything yet: nothing to compare.",
            "accounts": [],
        }
    found = []
    for account in accounts:
        entry: dict[str, Any] = {"account_id": account}
        try:
            answer = client.report_summary(account, int(period.start_epoch), int(period.end_epoch))
            current, previous = parse_summary(answer)
        except PermanentError as refused:
            entry.update(
                status="refused",
                note=f"Chatwoot refused the summary ({refused.reason}): reading reports needs an "
                "administrator of the account (or, on Enterprise, a custom role with "
                "report_manage); an agent is refused with 401 even with a valid token. Chatwoot "
                "must also have the v2 reports API.",
            )
            found.append(entry)
            continue
        except (TransientError, ValueError) as failure:
            reason = failure.reason if isinstance(failure, TransientError) else str(failure)
            entry.update(status="unavailable", note=f"Chatwoot's summary was not usable: {reason}")
            found.append(entry)
            continue
        rows = [compare(name, current[name], ours[account].get(name)) for name in COMPARED]
        entry.update(
            status="ok",
            chatwoot=current,
            chatwoot_previous=previous,
            ours=ours[account],
            ours_previous=None if previous_ours is None else previous_ours.get(account),
            comparisons=rows,
            disagreements=[row["metric"] for row in rows if row["disagrees"]],
        )
        found.append(entry)
    usable = [e for e in found if e.get("status") == "ok"]
    note = (
        "Chatwoot's own summary for the same period, beside ours."
        if usable
        else "Chatwoot did not answer the summary for any account."
    )
    return {"available": bool(usable), "note": note, "accounts": found}
