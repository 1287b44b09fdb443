"""The scheduled weekly report: which period an invocation is about, and the whole run.

EventBridge Scheduler invokes the function every Monday at 09:00 in the policy's zone with
``{"scheduled_time": "<aws.scheduler.scheduled-time>"}``: the report covers the last full week
before that moment (not before "now", so a late or retried run reports the same week). A manual
invocation may name ``{"week": "2026-W39"}`` or ``{"from": "2026-09-01", "to": "2026-09-10"}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline.policy import PolicySource, SupportPolicy
from support_pipeline.processing.errors import PermanentError
from support_pipeline.report.builder import Health, ReportBuilder
from support_pipeline.report.chatwoot_summary import SummaryClient
from support_pipeline.report.period import Period, PeriodError
from support_pipeline.report.publish import publish
from support_pipeline.report.settings import ReportSettings
from support_pipeline.store import ConversationStore

logger = Logger(child=True)


def period_of(event: dict[str, Any], policy: SupportPolicy, now: float) -> Period:
    """The period an invocation asks for (default: the last full week before its schedule)."""
    try:
        if event.get("week"):
            return Period.iso_week(str(event["week"]), policy.zone)
        if event.get("from") or event.get("to"):
            return Period.between(str(event.get("from")), str(event.get("to")), policy.zone)
    except PeriodError as error:
        raise PermanentError("invalid_period", str(error)) from None
    moment = to_epoch(event.get("scheduled_time")) or to_epoch(event.get("time")) or now
    return Period.last_full_week(moment, policy.zone)


@dataclass
class WeeklyReport:
    settings: ReportSettings
    store: ConversationStore
    policies: PolicySource
    s3: Any
    sns: Any
    health: Health | None
    chatwoot: SummaryClient | None
    clock: Callable[[], float] = time.time

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        policy = self.policies.current()
        period = period_of(event, policy, self.clock())
        report = ReportBuilder(
            self.store, policy, self.settings, self.health, self.chatwoot, self.clock
        ).build(period)
        result = publish(
            report,
            self.s3,
            self.settings.payload_bucket,
            self.sns,
            self.settings.report_topic_arn,
            self.settings.link_expiry_seconds,
        )
        logger.info(
            "weekly report published",
            extra={
                "period": result["period"],
                "conversations": result["conversations"],
                "message_id": result["message_id"],
            },
        )
        return result


def build_weekly_report() -> WeeklyReport:
    """The report with real AWS clients and Chatwoot, from the function's environment."""
    from botocore.config import Config

    from support_pipeline import aws
    from support_pipeline.report.health import HealthReader
    from support_pipeline.wiring import chatwoot_client

    settings = ReportSettings.from_env()
    config = aws.PROCESSOR_CONFIG
    # The announcement's link: Signature Version 4 (S3 refuses SigV2 on newer buckets; SigV4
    # allows up to 7 days).
    presigning = config.merge(Config(signature_version="s3v4"))
    return WeeklyReport(
        settings=settings,
        store=ConversationStore(aws.resource("dynamodb", config), settings.conversations_table),
        policies=PolicySource(settings.support.support_policy_param),
        s3=aws.client("s3", presigning),
        sns=aws.client("sns", config),
        health=HealthReader(
            aws.client("cloudwatch", config), aws.client("sqs", config), settings.events_dlq_url
        ),
        chatwoot=chatwoot_client(settings.support),
    )
