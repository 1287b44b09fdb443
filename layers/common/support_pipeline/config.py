"""Typed settings read once from the environment.

template.yaml's Parameters feed these environment variables, so the template stays the single
source of truth for every number; the defaults here only serve tests and the local stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_IGNORED_EVENTS = ("conversation_typing_on", "conversation_typing_off")


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


BACKOFF_SCALE_ENV = "LOCAL_BACKOFF_SCALE"
# ``allow``: drafts may come from the sample articles shipped in the layer (a fictional store's).
# Only the local stack and events/env.json set it, never template.yaml: deployed, drafts stay off
# until a knowledge source is configured (docs/drafters.md, "Configure a knowledge source").
KNOWLEDGE_SAMPLES_ENV = "KNOWLEDGE_SAMPLES"


def backoff_scale(env: Mapping[str, str]) -> float:
    """The local stack's retry-delay factor (``LOCAL_BACKOFF_SCALE``; unset: 1)."""
    raw = env.get(BACKOFF_SCALE_ENV)
    if raw is None or raw == "":
        return 1.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{BACKOFF_SCALE_ENV} must be a number, got {raw!r}") from exc
    if not 0 < value <= 1:
        raise ConfigError(f"{BACKOFF_SCALE_ENV} must be > 0 and <= 1, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if raw.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _csv(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> frozenset[str]:
    raw = env.get(name)
    if raw is None:
        return frozenset(default)
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class IngestSettings:
    """What the webhook endpoint needs."""

    events_queue_url: str
    webhook_secret_param: str
    payload_bucket: str = ""
    signature_tolerance_seconds: int = 300
    max_body_bytes: int = 2 * 1024 * 1024
    claim_check_threshold_bytes: int = 240 * 1024
    accept_url_token: bool = False
    ignored_events: frozenset[str] = field(
        default_factory=lambda: frozenset(DEFAULT_IGNORED_EVENTS)
    )
    secret_cache_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        return cls(
            events_queue_url=_required(env, "EVENTS_QUEUE_URL"),
            webhook_secret_param=_required(env, "WEBHOOK_SECRET_PARAM"),
            payload_bucket=env.get("PAYLOAD_BUCKET", ""),
            signature_tolerance_seconds=_int(env, "SIGNATURE_TOLERANCE_SECONDS", 300, minimum=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1),
            claim_check_threshold_bytes=_int(
                env, "CLAIM_CHECK_THRESHOLD_BYTES", 240 * 1024, minimum=1024
            ),
            accept_url_token=_bool(env, "ACCEPT_URL_TOKEN", False),
            ignored_events=_csv(env, "IGNORED_EVENTS", DEFAULT_IGNORED_EVENTS),
            secret_cache_seconds=_int(env, "SECRET_CACHE_SECONDS", 300),
        )


@dataclass(frozen=True)
class SupportSettings:
    """Where the support policy and the Chatwoot API are (shared by processor and sweep)."""

    support_policy_param: str = ""
    chatwoot_base_url: str = ""
    chatwoot_api_token_param: str = ""
    knowledge_samples: bool = False  # drafts may use the layer's sample articles (local only)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupportSettings:
        env = os.environ if env is None else env
        samples = env.get(KNOWLEDGE_SAMPLES_ENV, "").strip()
        if samples not in ("", "allow"):
            raise ConfigError(f"{KNOWLEDGE_SAMPLES_ENV} must be allow or unset, got {samples!r}")
        settings = cls(
            support_policy_param=env.get("SUPPORT_POLICY_PARAM", "").strip(),
            chatwoot_base_url=env.get("CHATWOOT_BASE_URL", "").strip(),
            chatwoot_api_token_param=env.get("CHATWOOT_API_TOKEN_PARAM", "").strip(),
            knowledge_samples=samples == "allow",
        )
        if settings.chatwoot_base_url and not settings.chatwoot_api_token_param:
            raise ConfigError("CHATWOOT_API_TOKEN_PARAM is required when CHATWOOT_BASE_URL is set")
        url = settings.chatwoot_base_url
        local_http = url.startswith("http://") and _bool(env, "CHATWOOT_ALLOW_HTTP", False)
        if url and not url.startswith("https://") and not local_http:
            raise ConfigError(
                "CHATWOOT_BASE_URL must start with https://: the access token travels in a header "
                "(plain http:// only for the local stack, which sets CHATWOOT_ALLOW_HTTP=true)"
            )
        return settings

    @property
    def dry_run(self) -> bool:
        return not self.chatwoot_base_url


@dataclass(frozen=True)
class PauseSettings:
    """The pause switch (support_pipeline/pause.py): its SSM parameter, how long a read is
    trusted, and how long the processor puts a paused event back on the queue for."""

    parameter: str = ""
    cache_seconds: int = 30
    paused_delay_seconds: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PauseSettings:
        env = os.environ if env is None else env
        delay = _int(env, "PAUSED_EVENT_DELAY_SECONDS", 60, minimum=0)
        if delay > 900:
            raise ConfigError("PAUSED_EVENT_DELAY_SECONDS must be <= 900 (the SQS delay limit)")
        return cls(
            parameter=env.get("PAUSE_PARAM", "").strip(),
            cache_seconds=_int(env, "PAUSE_CACHE_SECONDS", 30),
            paused_delay_seconds=delay,
        )


@dataclass(frozen=True)
class SweepSettings:
    """What the scheduled SLA sweep needs."""

    conversations_table: str
    actions_table: str
    support: SupportSettings
    pause: PauseSettings = field(default_factory=lambda: PauseSettings())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SweepSettings:
        env = os.environ if env is None else env
        return cls(
            conversations_table=_required(env, "CONVERSATIONS_TABLE"),
            actions_table=_required(env, "ACTIONS_TABLE"),
            support=SupportSettings.from_env(env),
            pause=PauseSettings.from_env(env),
        )


@dataclass(frozen=True)
class SignalsSettings:
    """What the weekly signals export needs: where drafts are, where files go, which policy
    (its time zone says where a week starts)."""

    conversations_table: str
    payload_bucket: str
    support_policy_param: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SignalsSettings:
        env = os.environ if env is None else env
        return cls(
            conversations_table=_required(env, "CONVERSATIONS_TABLE"),
            payload_bucket=_required(env, "PAYLOAD_BUCKET"),
            support_policy_param=env.get("SUPPORT_POLICY_PARAM", "").strip(),
        )


@dataclass(frozen=True)
class ProcessorSettings:
    """What the queue consumer needs."""

    events_queue_url: str
    events_dlq_url: str
    conversations_table: str
    payload_bucket: str = ""
    max_receive_count: int = 8
    backoff_base_seconds: int = 10
    backoff_cap_seconds: int = 900
    # Only the local stack sets LOCAL_BACKOFF_SCALE (never the template): 0.1 makes every retry
    # delay a tenth as long, for practice.
    backoff_scale: float = 1.0
    timeline_retention_days: int = 400
    actions_table: str = ""
    record_start_seconds: float = 5.0
    support: SupportSettings = field(default_factory=lambda: SupportSettings())
    pause: PauseSettings = field(default_factory=lambda: PauseSettings())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProcessorSettings:
        env = os.environ if env is None else env
        settings = cls(
            events_queue_url=_required(env, "EVENTS_QUEUE_URL"),
            events_dlq_url=_required(env, "EVENTS_DLQ_URL"),
            conversations_table=_required(env, "CONVERSATIONS_TABLE"),
            payload_bucket=env.get("PAYLOAD_BUCKET", ""),
            max_receive_count=_int(env, "MAX_RECEIVE_COUNT", 8, minimum=1),
            backoff_base_seconds=_int(env, "BACKOFF_BASE_SECONDS", 10),
            backoff_cap_seconds=_int(env, "BACKOFF_CAP_SECONDS", 900),
            backoff_scale=backoff_scale(env),
            timeline_retention_days=_int(env, "TIMELINE_RETENTION_DAYS", 400, minimum=1),
            actions_table=env.get("ACTIONS_TABLE", ""),
            record_start_seconds=_int(env, "RECORD_START_SECONDS", 5, minimum=1),
            support=SupportSettings.from_env(env),
            pause=PauseSettings.from_env(env),
        )
        if settings.backoff_cap_seconds > 43200:
            raise ConfigError("BACKOFF_CAP_SECONDS must be <= 43200 (the SQS visibility limit)")
        return settings


@dataclass(frozen=True)
class ReconcilerSettings:
    """What the scheduled reconciler needs: where records and timelines are, the queue it
    replays onto, Chatwoot's API, and its schedule (the first run of an account looks back one
    period) and overlap (the window reaches this far behind the checkpoint, and events younger
    than this are left to their webhook until the next run)."""

    conversations_table: str
    events_queue_url: str
    support: SupportSettings
    rate_seconds: int = 900
    overlap_seconds: int = 120
    ignored_events: frozenset[str] = field(
        default_factory=lambda: frozenset(DEFAULT_IGNORED_EVENTS)
    )
    pause: PauseSettings = field(default_factory=lambda: PauseSettings())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        env = os.environ if env is None else env
        return cls(
            conversations_table=_required(env, "CONVERSATIONS_TABLE"),
            events_queue_url=_required(env, "EVENTS_QUEUE_URL"),
            support=SupportSettings.from_env(env),
            rate_seconds=_int(env, "RECONCILE_RATE_MINUTES", 15, minimum=1) * 60,
            overlap_seconds=_int(env, "RECONCILE_OVERLAP_SECONDS", 120, minimum=1),
            ignored_events=_csv(env, "IGNORED_EVENTS", DEFAULT_IGNORED_EVENTS),
            pause=PauseSettings.from_env(env),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is required")
    return value
