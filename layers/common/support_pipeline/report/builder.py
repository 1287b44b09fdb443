"""Build the report of a period: read, compute, compare, and hand back every output file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from support_pipeline.business_time import BusinessCalendar
from support_pipeline.chatwoot.payload import iso
from support_pipeline.policy import SupportPolicy
from support_pipeline.report import compute
from support_pipeline.report.chatwoot_summary import SummaryClient, chatwoot_section
from support_pipeline.report.data import PeriodData, ReportReader
from support_pipeline.report.period import Period
from support_pipeline.report.settings import ReportSettings
from support_pipeline.store import ConversationStore

logger = Logger(child=True)

SCHEMA = "support-pipeline/report"
SCHEMA_VERSION = 1


class Health(Protocol):
    def read(self, period: Period, previous: Period | None) -> dict[str, Any]: ...


NO_HEALTH = {
    "available": False,
    "note": "Not available: no CloudWatch client was given to this report.",
    "dlq_depth_now": None,
}


@dataclass
class Report:
    """The numbers (``data``, what report.json holds) and the per-conversation rows."""

    data: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.data["period"]["label"])

    def files(self) -> dict[str, bytes]:
        from support_pipeline.report import render

        return {
            "report.json": render.to_json(self.data).encode(),
            "report.csv": render.to_csv(self.rows).encode(),
            "report.md": render.to_markdown(self.data).encode(),
            "report.html": render.to_html(self.data).encode(),
        }

    def summary(self, link: str | None = None) -> str:
        from support_pipeline.report import render

        return render.summary_text(self.data, link)


@dataclass
class ReportBuilder:
    store: ConversationStore
    policy: SupportPolicy
    settings: ReportSettings
    health: Health | None = None
    chatwoot: SummaryClient | None = None
    clock: Callable[[], float] = time.time

    def build(self, period: Period, accounts: list[str] | None = None) -> Report:
        started = time.perf_counter()
        reader = ReportReader(self.store)
        accounts = accounts if accounts is not None else reader.accounts()
        calendar = BusinessCalendar.from_policy(self.policy)
        previous_period = period.previous()
        current = reader.read(period, accounts)
        before = reader.read(previous_period, accounts)
        previous: PeriodData | None = None if before.empty else before

        instances = compute.target_instances(current, reader)
        prior_instances = None if previous is None else compute.target_instances(previous, reader)
        volume = compute.volume(current)
        prior_volume = None if previous is None else compute.volume(previous)
        link = self.settings.link

        def local(epoch: float | None) -> str:
            if epoch is None:
                return ""
            return (
                datetime.fromtimestamp(float(epoch), UTC)
                .astimezone(period.zone)
                .isoformat(timespec="minutes")
            )

        notes = []
        if current.empty:
            notes.append(
                "Nothing was recorded in this period: no conversation, message, SLA target, "
                "escalation, draft or CSAT answer. Counts are zero and rates have no data."
            )
        if previous is None:
            notes.append(
                "Nothing was recorded in the period before, so there is no comparison: this is "
                "likely the pipeline's first week."
            )
        if not current.empty and not (current.sla_outcomes or current.sla_breaches):
            notes.append("No SLA target was met or missed in this period.")
        if self.settings.schedule_timezone and self.settings.schedule_timezone != (
            self.policy.timezone
        ):
            notes.append(
                f"The report is scheduled in {self.settings.schedule_timezone} but the support "
                f"policy's time zone is {self.policy.timezone}: periods follow the policy."
            )
        if current.other:
            notes.append(f"{current.other} stored item(s) of kinds this report does not know.")

        ours = {a: compute.ours_like_chatwoot(current, volume, a) for a in accounts}
        prior_ours = (
            None
            if previous is None or prior_volume is None
            else {a: compute.ours_like_chatwoot(previous, prior_volume, a) for a in accounts}
        )
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "generated_at": iso(self.clock()),
            "period": period.describe(),
            "previous_period": previous_period.describe(),
            "has_previous": previous is not None,
            "accounts": accounts,
            "policy": {
                "timezone": self.policy.timezone,
                "source": self.policy.source,
                "grade_targets": dict(self.policy.drafts.grade_targets),
                "sla_goal_percent": self.settings.sla_goal_percent,
            },
            "notes": notes,
            "conversations": len(current.conversations()),
            "sla": compute.sla_section(
                instances,
                prior_instances,
                calendar,
                self.policy,
                self.settings.sla_goal_percent,
                link,
            ),
            "escalations": compute.escalation_section(current, previous, volume, prior_volume),
            "volume": compute.volume_section(current, volume, prior_volume),
            "csat": compute.csat_section(current, previous),
            "drafts": compute.drafts_section(current, previous, self.policy),
            "pipeline_health": (
                self.health.read(period, previous_period if previous is not None else None)
                if self.health is not None
                else dict(NO_HEALTH)
            ),
            "chatwoot": chatwoot_section(self.chatwoot, accounts, period, ours, prior_ours),
        }
        rows = compute.conversation_rows(current, instances, self.policy, calendar, link, local)
        data["timing"] = {"build_seconds": round(time.perf_counter() - started, 3)}
        logger.info(
            "report built",
            extra={
                "period": period.label,
                "conversations": len(rows),
                "seconds": data["timing"]["build_seconds"],
            },
        )
        return Report(data, rows)
