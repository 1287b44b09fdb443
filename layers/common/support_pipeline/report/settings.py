"""What the weekly report needs, read once from the environment (template.yaml sets it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from support_pipeline.config import ConfigError, SupportSettings

REPORTS_PREFIX = "reports/"
MAX_LINK_SECONDS = 7 * 86400  # S3's limit for a presigned URL (SigV4)


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


@dataclass(frozen=True)
class ReportSettings:
    conversations_table: str
    payload_bucket: str = ""
    report_topic_arn: str = ""
    events_dlq_url: str = ""
    sla_goal_percent: float = 95.0
    link_expiry_seconds: int = 86400
    schedule_timezone: str = ""
    support: SupportSettings = field(default_factory=SupportSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReportSettings:
        env = os.environ if env is None else env
        table = env.get("CONVERSATIONS_TABLE", "")
        if not table:
            raise ConfigError("environment variable CONVERSATIONS_TABLE is required")
        return cls(
            conversations_table=table,
            payload_bucket=env.get("PAYLOAD_BUCKET", ""),
            report_topic_arn=env.get("REPORT_TOPIC_ARN", ""),
            events_dlq_url=env.get("EVENTS_DLQ_URL", ""),
            sla_goal_percent=_number(env, "REPORT_SLA_GOAL_PERCENT", 95.0, 1, 100),
            link_expiry_seconds=int(
                _number(env, "REPORT_LINK_EXPIRY_SECONDS", 86400, 60, MAX_LINK_SECONDS)
            ),
            schedule_timezone=env.get("REPORT_SCHEDULE_TIMEZONE", ""),
            support=SupportSettings.from_env(env),
        )

    def link(self, account_id: str, conversation_id: str) -> str | None:
        """The conversation in Chatwoot's agent app, when a Chatwoot is configured."""
        base = self.support.chatwoot_base_url.rstrip("/")
        if not base:
            return None
        return f"{base}/app/accounts/{account_id}/conversations/{conversation_id}"
