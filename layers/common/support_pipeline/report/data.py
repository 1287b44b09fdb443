"""What the report reads: every item of an account's days, and the records they belong to.

Reads only by key: one ``ByAccountDay`` query per account and local day (timeline items, SLA
outcomes and breaches, escalations, decided drafts and CSAT answers all carry ``account_day``),
then one ``GetItem`` per conversation seen for its record. Never a scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.report.period import Period
from support_pipeline.store import ConversationStore

ConversationKey = tuple[str, str]  # (account id, conversation id)


@dataclass
class PeriodData:
    """The stored items of one period, sorted by kind."""

    period: Period
    accounts: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    sla_outcomes: list[dict[str, Any]] = field(default_factory=list)
    sla_breaches: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    csat: list[dict[str, Any]] = field(default_factory=list)
    other: int = 0  # items of kinds this report does not know (newer features)
    records: dict[ConversationKey, dict[str, Any]] = field(default_factory=dict)
    _by_conversation: dict[ConversationKey, list[dict[str, Any]]] | None = field(
        default=None, repr=False
    )

    @property
    def empty(self) -> bool:
        return not (
            self.events
            or self.escalations
            or self.sla_outcomes
            or self.sla_breaches
            or self.drafts
            or self.csat
        )

    def conversations(self) -> set[ConversationKey]:
        """Every conversation with anything stored in the period."""
        found: set[ConversationKey] = set()
        for items in (
            self.events,
            self.escalations,
            self.sla_outcomes,
            self.sla_breaches,
            self.drafts,
            self.csat,
        ):
            for item in items:
                key = conversation_key(item)
                if key is not None:
                    found.add(key)
        return found

    def record(self, key: ConversationKey) -> dict[str, Any]:
        return self.records.get(key) or {}

    def events_of(self, key: ConversationKey) -> list[dict[str, Any]]:
        """The conversation's event items of the period, oldest first (indexed once)."""
        if self._by_conversation is None:
            index: dict[ConversationKey, list[dict[str, Any]]] = {}
            for item in sorted(self.events, key=lambda i: str(i.get("occurred_at", ""))):
                found = conversation_key(item)
                if found is not None:
                    index.setdefault(found, []).append(item)
            self._by_conversation = index
        return self._by_conversation.get(key, [])


def conversation_key(item: dict[str, Any]) -> ConversationKey | None:
    account, conversation = item.get("account_id"), item.get("conversation_id")
    if account is None or conversation is None:
        return None
    return str(account), str(conversation)


KINDS = {
    "event": "events",
    "escalation": "escalations",
    "sla_outcome": "sla_outcomes",
    "sla_breach": "sla_breaches",
    "draft": "drafts",
    "csat": "csat",
}


class ReportReader:
    """Reads periods for the report; records are cached across periods (one read each)."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self._records: dict[ConversationKey, dict[str, Any] | None] = {}
        self._timelines: dict[ConversationKey, list[dict[str, Any]]] = {}

    def accounts(self) -> list[str]:
        return sorted(set(self.store.accounts()), key=lambda a: (len(a), a))

    def read(self, period: Period, accounts: Iterable[str]) -> PeriodData:
        data = PeriodData(period=period, accounts=list(accounts))
        for account in data.accounts:
            for day in period.days:
                for item in self.store.events_on_day(account, day.isoformat()):
                    bucket = KINDS.get(str(item.get("kind", "event")))
                    if bucket is None:
                        data.other += 1
                        continue
                    getattr(data, bucket).append(item)
        for key in sorted(data.conversations()):
            record = self.record(key)
            if record is not None:
                data.records[key] = record
        return data

    def record(self, key: ConversationKey) -> dict[str, Any] | None:
        if key not in self._records:
            self._records[key] = self.store.get_record(*key)
        return self._records[key]

    def breach_recorded(self, item: dict[str, Any]) -> bool:
        """Whether the sweep recorded a breach of the same target instance as ``item`` (a
        missed outcome): then that breach counted it, in the period of its due time."""
        key = conversation_key(item)
        if key is None:
            return False
        if key not in self._timelines:
            self._timelines[key] = self.store.timeline(*key)
        started = to_epoch(item.get("started_at"))
        return any(
            other.get("kind") == "sla_breach"
            and other.get("target") == item.get("target")
            and to_epoch(other.get("started_at")) == started
            for other in self._timelines[key]
        )
