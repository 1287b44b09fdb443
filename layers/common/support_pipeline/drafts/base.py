"""What every drafter receives and returns.

A drafter turns the conversation's context into a suggested reply for an agent to approve. It
never sends anything: the draft service posts the suggestion as a private note, and only an
agent's ``/send`` makes it a public reply. Customer text lives in these objects and in the
drafts store; it never goes to logs.

Failures follow the pipeline's classes: a drafter raises :class:`TransientError` for what may
work later (timeouts, throttling, 5xx: the event retries through the queue) and
:class:`PermanentError` for what never will (a misconfigured endpoint, a refused request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ROLES = ("customer", "agent", "bot", "note")


@dataclass(frozen=True)
class ContextMessage:
    """One earlier message of the conversation, oldest first in a context."""

    role: str  # one of ROLES ("note": a private note between agents)
    text: str
    created_at: float | None = None


@dataclass(frozen=True)
class DraftContext:
    """Everything a drafter may use: the customer's turn and what came before it."""

    account_id: str
    conversation_id: str
    question: str  # the customer's turn: the messages of the burst, joined
    messages: tuple[ContextMessage, ...] = ()  # the last N messages, oldest first
    language: str | None = None  # the contact's language when Chatwoot knows it ("es", "en")
    inbox_id: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where a draft's content comes from (an article, a document, a URL)."""

    title: str
    ref: str = ""  # article id, path or URL


@dataclass(frozen=True)
class DraftResult:
    """A suggested reply, or none (``text`` None) when the drafter has nothing good enough."""

    drafter: str
    text: str | None
    confidence: float  # 0..1, comparable to the policy's confidence floor
    language: str  # the language the draft is written in
    sources: tuple[Source, ...] = field(default_factory=tuple)


class Drafter(Protocol):
    """Composes a suggested reply; stateless between calls apart from caches it builds once."""

    name: str

    def draft(self, context: DraftContext) -> DraftResult:
        """A draft for ``context``; raise TransientError / PermanentError on failure."""
        ...


@dataclass(frozen=True)
class KnowledgeSettings:
    """The ``knowledge`` drafter: Markdown articles in a folder of the deploy, or under an S3
    prefix (``s3://bucket/prefix/``)."""

    path: str = "knowledge"  # relative to the layer's support_pipeline package, or absolute
    s3_uri: str | None = None
    max_passages: int = 3


@dataclass(frozen=True)
class BedrockSettings:
    """The ``bedrock`` drafter: Amazon Bedrock's Converse API with retrieved passages."""

    model_id: str
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    max_tokens: int = 400
    temperature: float = 0.2
    max_prompt_chars: int = 12000
    max_passages: int = 4


@dataclass(frozen=True)
class HttpDrafterSettings:
    """The ``http`` drafter: the team's own agent endpoint, HMAC-signed like Chatwoot signs."""

    url: str
    secret_param: str  # SSM parameter holding the signing secret
    timeout_seconds: float = 5.0
