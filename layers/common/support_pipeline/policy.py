"""The support policy: SLA targets, business hours, escalation rules, who the pipeline is.

Loaded from ``config/support-policy.yaml`` (shipped in the layer as ``support-policy.yaml``) or,
when ``SUPPORT_POLICY_PARAM`` names one, from that SSM parameter. Validation is all-or-nothing:
a bad policy raises :class:`PolicyError` naming the field, never a half-applied policy.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from support_pipeline.drafts.base import BedrockSettings, HttpDrafterSettings, KnowledgeSettings

DEFAULT_POLICY_FILE = Path(__file__).with_name("support-policy.yaml")
PRIORITIES = ("urgent", "high", "medium", "low", "none")
TARGETS = ("first_response", "next_response", "resolution")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class PolicyError(ValueError):
    """The policy is invalid; the message names the field."""


def normalize_text(text: str) -> str:
    """Lowercase, accents removed, runs of non-letters collapsed to one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(re.findall(r"[a-z0-9]+", stripped))


@dataclass(frozen=True)
class Actor:
    type: str
    id: str


@dataclass(frozen=True)
class SlaTargets:
    """Seconds per target for one priority."""

    first_response: int
    next_response: int
    resolution: int

    def seconds(self, target: str) -> int:
        value: int = getattr(self, target)
        return value


@dataclass(frozen=True)
class SlaPolicy:
    at_risk_fraction: float
    business_hours_only: dict[str, bool]
    clock_starts: str
    targets: dict[str, SlaTargets]
    at_risk_label: str
    breached_label: str


@dataclass(frozen=True)
class PhraseRule:
    enabled: bool
    phrases: dict[str, tuple[str, ...]]  # language -> normalized phrases
    min_hits: int = 1


@dataclass(frozen=True)
class EscalationPolicy:
    labels: tuple[str, ...]
    priority: str | None
    team_id: int | None
    sla_breach: bool
    asks_for_human: PhraseRule
    negative_language: PhraseRule
    vip_enabled: bool
    vip_contact_attribute: str | None
    vip_label: str | None
    reopened_enabled: bool
    reopened_times: int
    unanswered_enabled: bool
    unanswered_count: int


DRAFTERS = ("knowledge", "bedrock", "http")
GRADES = ("tone", "accuracy", "policy")


@dataclass(frozen=True)
class DraftsPolicy:
    """Reply drafts: where they are written, by which drafter, and how they are judged."""

    enabled: bool = False
    drafter: str = "knowledge"  # one of DRAFTERS, or "off"
    inboxes: dict[str, str] = field(default_factory=dict)  # inbox id -> drafter or "off"
    statuses: tuple[str, ...] = ("open",)
    quiet_after_agent_reply: int = 600  # seconds: no draft while an agent is talking
    skip_escalated: bool = True
    burst_window: int = 10  # seconds of quiet that end a customer's turn
    context_messages: int = 10
    confidence_floor: float = 0.35
    needs_human_label: str = "needs-human"
    expire_after: int = 86400
    edited_similarity: float = 0.6
    grade_targets: dict[str, float] = field(
        default_factory=lambda: {"tone": 4.5, "accuracy": 4.7, "policy": 4.8}
    )
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    bedrock: BedrockSettings | None = None
    http: HttpDrafterSettings | None = None

    def drafter_for(self, inbox_id: str | None) -> str:
        """The drafter of an inbox ("off": no drafts there)."""
        if not self.enabled:
            return "off"
        return self.inboxes.get(str(inbox_id), self.drafter) if inbox_id else self.drafter


@dataclass(frozen=True)
class SupportPolicy:
    actor: Actor
    timezone: str
    business_hours: dict[int, tuple[tuple[int, int], ...]]  # weekday 0=Monday -> minute windows
    holidays: frozenset[date]
    sla: SlaPolicy
    escalation: EscalationPolicy
    drafts: DraftsPolicy = field(default_factory=DraftsPolicy)
    source: str = field(default="", compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _Reader:
    """Typed access to a nested mapping that names the path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise PolicyError(f"{path or 'policy'} must be a mapping")
        self.data = data
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def child(self, key: str) -> _Reader:
        if key not in self.data:
            raise PolicyError(f"{self._name(key)} is required")
        return _Reader(self.data[key], self._name(key))

    def optional_child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key) or {}, self._name(key))

    def get(
        self, key: str, kind: type | tuple[type, ...], default: Any = ..., allow_none: bool = False
    ) -> Any:
        if key not in self.data:
            if default is ...:
                raise PolicyError(f"{self._name(key)} is required")
            return default
        value = self.data[key]
        if value is None and allow_none:
            return None
        if (
            isinstance(value, bool)
            and kind is not bool
            and bool not in (kind if isinstance(kind, tuple) else (kind,))
        ):
            raise PolicyError(f"{self._name(key)} must be {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise PolicyError(f"{self._name(key)} must be {_kind_name(kind)}, got {value!r}")
        return value

    def keys(self) -> list[str]:
        return [str(k) for k in self.data]


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_duration(value: Any, path: str) -> int:
    """Seconds from ``900``, ``"15m"``, ``"4h"``, ``"1d"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise PolicyError(f"{path} must be a duration like 900, '15m' or '4h', got {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip():
        match = _DURATION_RE.match(value.strip().lower())
        if not match or not any(match.groups()):
            raise PolicyError(f"{path} must be a duration like 900, '15m' or '4h', got {value!r}")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise PolicyError(f"{path} must be a duration like 900, '15m' or '4h', got {value!r}")
    if seconds <= 0:
        raise PolicyError(f"{path} must be longer than zero")
    return seconds


def _window(text: Any, path: str) -> tuple[int, int]:
    """``"09:00-18:00"`` -> minutes after local midnight, (540, 1080); ``24:00`` may end a day."""
    if not isinstance(text, str) or not re.match(r"^\d{2}:\d{2}-\d{2}:\d{2}$", text.strip()):
        raise PolicyError(f"{path} must look like '09:00-18:00', got {text!r}")
    minutes = []
    for part in text.strip().split("-"):
        hours, mins = int(part[:2]), int(part[3:])
        if mins > 59 or hours > 24 or (hours == 24 and mins):
            raise PolicyError(f"{path} has an impossible time: {text!r}")
        minutes.append(hours * 60 + mins)
    start, end = minutes
    if start >= 1440 or end <= start:
        raise PolicyError(f"{path} must end after it starts: {text!r}")
    return start, end


def _phrases(reader: _Reader, key: str) -> dict[str, tuple[str, ...]]:
    lists = reader.child(key)
    result: dict[str, tuple[str, ...]] = {}
    for language in lists.keys():  # noqa: SIM118 - _Reader.keys, not a dict
        path = f"{lists.path}.{language}"
        if not LANGUAGE_RE.match(language):
            raise PolicyError(f"{path}: language must be a code like 'en' or 'es'")
        entries = lists.get(language, list)
        normalized = []
        for i, phrase in enumerate(entries):
            if not isinstance(phrase, str) or not normalize_text(phrase):
                raise PolicyError(f"{path}[{i}] must be a non-empty phrase")
            normalized.append(normalize_text(phrase))
        result[language] = tuple(normalized)
    if not result:
        raise PolicyError(f"{lists.path} needs at least one language")
    return result


def _priority(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if value not in PRIORITIES:
        raise PolicyError(f"{path} must be one of {', '.join(PRIORITIES)} or null, got {value!r}")
    return str(value)


def _escalation_priority(value: Any) -> str | None:
    """What an escalation sets: one of Chatwoot's priorities, or null to leave it alone. "none"
    is the SLA targets' word for no priority; Chatwoot's toggle_priority takes only its enum's
    names and would answer "none" with a 500."""
    if value == "none":
        raise PolicyError(
            "escalation.priority must be one of urgent, high, medium, low or null "
            "(null leaves the priority as it is), got 'none'"
        )
    return _priority(value, "escalation.priority")


def parse_policy(data: Any, source: str = "") -> SupportPolicy:
    """Validate a policy document (already parsed from YAML/JSON) into a :class:`SupportPolicy`."""
    root = _Reader(data, "")
    version = root.get("version", int)
    if version != 1:
        raise PolicyError(f"version must be 1, got {version}")

    actor_reader = root.child("actor")
    actor_type = actor_reader.get("type", str)
    if actor_type not in ("user", "agent_bot"):
        raise PolicyError(f"actor.type must be user or agent_bot, got {actor_type!r}")
    actor_id = actor_reader.get("id", int, default=None, allow_none=True)
    actor = Actor(type=actor_type, id="" if actor_id is None else str(actor_id))

    timezone = root.get("timezone", str)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(
            f"timezone must be an IANA time zone like 'America/Bogota', got {timezone!r}"
        ) from None

    hours_reader = root.child("business_hours")
    unknown_days = set(hours_reader.keys()) - set(WEEKDAYS)
    if unknown_days:
        raise PolicyError(f"business_hours has unknown day(s): {', '.join(sorted(unknown_days))}")
    business_hours: dict[int, tuple[tuple[int, int], ...]] = {}
    for index, day in enumerate(WEEKDAYS):
        windows = hours_reader.get(day, list, default=[])
        parsed = sorted(_window(w, f"business_hours.{day}[{i}]") for i, w in enumerate(windows))
        for (_, end), (start, _) in itertools.pairwise(parsed):
            if start < end:
                raise PolicyError(f"business_hours.{day} has overlapping windows")
        business_hours[index] = tuple(parsed)
    if not any(business_hours.values()):
        raise PolicyError("business_hours must open at least one window in the week")

    holidays = set()
    for i, value in enumerate(root.get("holidays", list, default=[])):
        try:
            holidays.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
        except ValueError:
            raise PolicyError(
                f"holidays[{i}] must be a date like 2026-12-25, got {value!r}"
            ) from None

    sla_reader = root.child("sla")
    fraction = sla_reader.get("at_risk_fraction", (int, float))
    if not 0 < fraction < 1:
        raise PolicyError(f"sla.at_risk_fraction must be between 0 and 1, got {fraction}")
    bho_reader = sla_reader.child("business_hours_only")
    business_only = {target: bool(bho_reader.get(target, bool)) for target in TARGETS}
    clock_starts = sla_reader.get("clock_starts", str, default="opened")
    if clock_starts not in ("created", "opened"):
        raise PolicyError(f"sla.clock_starts must be created or opened, got {clock_starts!r}")
    targets_reader = sla_reader.child("targets")
    unknown = set(targets_reader.keys()) - set(PRIORITIES)
    if unknown:
        raise PolicyError(f"sla.targets has unknown priority(ies): {', '.join(sorted(unknown))}")
    targets = {}
    for priority in PRIORITIES:
        one = targets_reader.child(priority)
        targets[priority] = SlaTargets(
            **{t: parse_duration(one.get(t, (int, str)), f"{one.path}.{t}") for t in TARGETS}
        )
    labels_reader = sla_reader.optional_child("labels")
    sla = SlaPolicy(
        at_risk_fraction=float(fraction),
        business_hours_only=business_only,
        clock_starts=clock_starts,
        targets=targets,
        at_risk_label=labels_reader.get("at_risk", str, default="sla-at-risk"),
        breached_label=labels_reader.get("breached", str, default="sla-breached"),
    )

    esc = root.child("escalation")
    labels = esc.get("labels", list, default=[])
    if not all(isinstance(label, str) and label.strip() for label in labels):
        raise PolicyError("escalation.labels must be a list of label names")
    team_id = esc.get("team_id", int, default=None, allow_none=True)
    rules = esc.child("rules")
    human = rules.child("asks_for_human")
    negative = rules.child("negative_language")
    vip = rules.child("vip_contact")
    reopened = rules.child("reopened")
    unanswered = rules.child("unanswered_messages")
    min_hits = negative.get("min_hits", int, default=1)
    if min_hits < 1:
        raise PolicyError("escalation.rules.negative_language.min_hits must be at least 1")
    times = reopened.get("times", int)
    count = unanswered.get("count", int)
    if times < 1 or count < 1:
        raise PolicyError(
            "escalation.rules reopened.times and unanswered_messages.count must be at least 1"
        )
    escalation = EscalationPolicy(
        labels=tuple(label.strip() for label in labels),
        priority=_escalation_priority(esc.get("priority", str, default=None, allow_none=True)),
        team_id=team_id,
        sla_breach=rules.child("sla_breach").get("enabled", bool),
        asks_for_human=PhraseRule(human.get("enabled", bool), _phrases(human, "phrases")),
        negative_language=PhraseRule(
            negative.get("enabled", bool), _phrases(negative, "lexicon"), min_hits
        ),
        vip_enabled=vip.get("enabled", bool),
        vip_contact_attribute=vip.get("contact_attribute", str, default=None, allow_none=True),
        vip_label=vip.get("label", str, default=None, allow_none=True),
        reopened_enabled=reopened.get("enabled", bool),
        reopened_times=times,
        unanswered_enabled=unanswered.get("enabled", bool),
        unanswered_count=count,
    )
    return SupportPolicy(
        actor=actor,
        timezone=timezone,
        business_hours=business_hours,
        holidays=frozenset(holidays),
        sla=sla,
        escalation=escalation,
        drafts=_drafts(root.optional_child("drafts")),
        source=source,
    )


def _fraction(reader: _Reader, key: str, default: float) -> float:
    value = reader.get(key, (int, float), default=default)
    if not 0 <= value <= 1:
        raise PolicyError(f"{reader._name(key)} must be between 0 and 1, got {value}")
    return float(value)


def _drafts(reader: _Reader) -> DraftsPolicy:
    """The ``drafts`` section; absent: drafting off."""
    if not reader.data:
        return DraftsPolicy()
    drafter = reader.get("drafter", str, default="knowledge")
    if drafter not in (*DRAFTERS, "off"):
        raise PolicyError(f"drafts.drafter must be one of {', '.join(DRAFTERS)} or off")
    inboxes: dict[str, str] = {}
    for inbox, choice in (reader.get("inboxes", dict, default={}) or {}).items():
        if not re.fullmatch(r"[1-9][0-9]{0,18}", str(inbox)):
            raise PolicyError(f"drafts.inboxes: {inbox!r} is not an inbox id")
        if choice not in (*DRAFTERS, "off"):
            raise PolicyError(
                f"drafts.inboxes.{inbox} must be one of {', '.join(DRAFTERS)} or off, "
                f"got {choice!r}"
            )
        inboxes[str(inbox)] = str(choice)
    statuses = reader.get("statuses", list, default=["open"])
    if not statuses or any(s not in ("open", "pending", "snoozed") for s in statuses):
        raise PolicyError("drafts.statuses must list open, pending or snoozed")
    used = {drafter, *inboxes.values()}
    grades_reader = reader.optional_child("grade_targets")
    grade_targets = {}
    for grade in GRADES:
        value = grades_reader.get(
            grade, (int, float), default={"tone": 4.5, "accuracy": 4.7, "policy": 4.8}[grade]
        )
        if not 1 <= value <= 5:
            raise PolicyError(f"drafts.grade_targets.{grade} must be between 1 and 5")
        grade_targets[grade] = float(value)
    knowledge = reader.optional_child("knowledge")
    knowledge_settings = KnowledgeSettings(
        path=knowledge.get("path", str, default="knowledge"),
        s3_uri=knowledge.get("s3_uri", str, default=None, allow_none=True),
        max_passages=knowledge.get("max_passages", int, default=3),
    )
    if knowledge_settings.s3_uri and not knowledge_settings.s3_uri.startswith("s3://"):
        raise PolicyError("drafts.knowledge.s3_uri must look like s3://bucket/prefix/")
    bedrock_settings = None
    bedrock = reader.optional_child("bedrock")
    if bedrock.data.get("model_id") or "bedrock" in used:
        model_id = bedrock.get("model_id", str, default=None, allow_none=True)
        if not model_id:
            raise PolicyError("drafts.bedrock.model_id is required when bedrock drafts")
        bedrock_settings = BedrockSettings(
            model_id=model_id,
            guardrail_id=bedrock.get("guardrail_id", str, default=None, allow_none=True),
            guardrail_version=bedrock.get(
                "guardrail_version", (str, int), default=None, allow_none=True
            ),
            max_tokens=bedrock.get("max_tokens", int, default=400),
            temperature=float(bedrock.get("temperature", (int, float), default=0.2)),
            max_prompt_chars=bedrock.get("max_prompt_chars", int, default=12000),
        )
        if bedrock_settings.guardrail_id and bedrock_settings.guardrail_version is None:
            raise PolicyError("drafts.bedrock.guardrail_version is required with a guardrail_id")
    http_settings = None
    http = reader.optional_child("http")
    if http.data.get("url") or "http" in used:
        url = http.get("url", str, default=None, allow_none=True)
        secret_param = http.get("secret_param", str, default=None, allow_none=True)
        if not url or not secret_param:
            raise PolicyError("drafts.http.url and drafts.http.secret_param are required for http")
        if not url.startswith("https://"):
            raise PolicyError("drafts.http.url must be https://")
        http_settings = HttpDrafterSettings(
            url=url,
            secret_param=secret_param,
            timeout_seconds=float(
                parse_duration(http.get("timeout", (int, str), default=5), "drafts.http.timeout")
            ),
        )
    burst_window = parse_duration(
        reader.get("burst_window", (int, str), default="10s"), "drafts.burst_window"
    )
    if burst_window > 900:
        raise PolicyError("drafts.burst_window must be at most 15m (SQS delays a message 900 s)")
    context_messages = reader.get("context_messages", int, default=10)
    if not 1 <= context_messages <= 20:
        raise PolicyError("drafts.context_messages must be between 1 and 20")
    return DraftsPolicy(
        enabled=reader.get("enabled", bool, default=True),
        drafter=drafter,
        inboxes=inboxes,
        statuses=tuple(str(s) for s in statuses),
        quiet_after_agent_reply=parse_duration(
            reader.get("quiet_after_agent_reply", (int, str), default="10m"),
            "drafts.quiet_after_agent_reply",
        ),
        skip_escalated=reader.get("skip_escalated", bool, default=True),
        burst_window=burst_window,
        context_messages=context_messages,
        confidence_floor=_fraction(reader, "confidence_floor", 0.35),
        needs_human_label=reader.get("needs_human_label", str, default="needs-human"),
        expire_after=parse_duration(
            reader.get("expire_after", (int, str), default="24h"), "drafts.expire_after"
        ),
        edited_similarity=_fraction(reader, "edited_similarity", 0.6),
        grade_targets=grade_targets,
        knowledge=knowledge_settings,
        bedrock=bedrock_settings,
        http=http_settings,
    )


def parse_policy_text(text: str, source: str) -> SupportPolicy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source} is not valid YAML: {exc}") from None
    try:
        return parse_policy(data, source)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None


def load_default_policy() -> SupportPolicy:
    """The policy shipped in the layer."""
    return parse_policy_text(
        DEFAULT_POLICY_FILE.read_text(encoding="utf-8"), "config/support-policy.yaml"
    )


class PolicyUnavailable(RuntimeError):
    """The policy parameter cannot be read and there is no earlier policy to fall back on."""


def _describe_failure(error: BaseException) -> str:
    """The error's type (and what it wraps: Powertools wraps every SSM failure), never a value."""
    parts = [type(error).__name__]
    inner = error.__cause__ or error.__context__
    if inner is not None:
        parts.append(type(inner).__name__)
    for candidate in (error, inner):
        response = getattr(candidate, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code:
            parts.append(str(code))
            break
    return " ".join(dict.fromkeys(parts))


class PolicySource:
    """The policy in force: the SSM parameter's (re-read at most every ``max_age`` seconds),
    else the shipped file.

    A changed parameter takes effect without a deployment. A changed but invalid parameter is
    refused with an error naming the field, and the last good policy stays in force; an invalid
    policy at start-up stops the function (it has nothing good to fall back on).

    A read that fails (throttling, network, permissions) also keeps the last good policy, and
    the next read waits ``retry_after`` seconds rather than hitting SSM on every batch; at
    start-up it raises :class:`PolicyUnavailable`. After each call, ``last_error`` says what
    went wrong and ``last_error_kind`` whether the policy was ``"refused"`` or ``"unreadable"``;
    a failed read is reported by the call that made it, a refused policy by every call while it
    is stored.
    """

    def __init__(
        self,
        parameter_name: str | None,
        fetch_parameter: Any = None,
        max_age: int = 300,
        *,
        retry_after: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parameter_name = parameter_name or ""
        self._fetch = fetch_parameter
        self._max_age = max_age
        self._retry_after = retry_after
        self._clock = clock
        self._text: str | None = None
        self._policy: SupportPolicy | None = None
        self._refused: str | None = None
        self._failed_at: float | None = None
        self.last_error: str | None = None
        self.last_error_kind: str | None = None

    def _read(self) -> str:
        if self._fetch is None:
            from aws_lambda_powertools.utilities import parameters

            return str(
                parameters.get_parameter(self.parameter_name, decrypt=True, max_age=self._max_age)
            )
        return str(self._fetch(self.parameter_name))

    def _report(self, error: str | None, kind: str) -> None:
        self.last_error, self.last_error_kind = error, (kind if error else None)

    def current(self) -> SupportPolicy:
        if not self.parameter_name:
            if self._policy is None:
                self._policy = load_default_policy()
            return self._policy
        if (
            self._policy is not None
            and self._failed_at is not None
            and self._clock() - self._failed_at < self._retry_after
        ):
            self._report(None, "")  # already reported by the call whose read failed
            return self._policy
        try:
            text = self._read()
        except Exception as error:
            failure = _describe_failure(error)
            if self._policy is None:
                raise PolicyUnavailable(
                    f"cannot read the support policy from SSM parameter {self.parameter_name} "
                    f"({failure}), and there is no policy to fall back on yet"
                ) from error
            self._failed_at = self._clock()
            self._report(failure, "unreadable")
            return self._policy
        self._failed_at = None
        if text == self._text and self._policy is not None:
            self._report(self._refused, "refused")
            return self._policy
        try:
            policy = parse_policy_text(text, f"SSM parameter {self.parameter_name}")
        except PolicyError as error:
            if self._policy is None:
                raise
            self._refused = str(error)
            self._text = text  # do not re-parse the same bad text on every call
            self._report(self._refused, "refused")
            return self._policy
        self._text, self._policy, self._refused = text, policy, None
        self._report(None, "")
        return policy


def load_policy(parameter_name: str | None, fetch_parameter: Any = None) -> SupportPolicy:
    """The SSM parameter's policy when ``parameter_name`` is set, else the shipped default."""
    return PolicySource(parameter_name, fetch_parameter).current()
