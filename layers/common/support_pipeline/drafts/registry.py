"""Which drafter writes for which inbox: built once per process, on first use.

The layer ships sample articles (``support_pipeline/knowledge``): a fictional jewellery store's.
They are never a deployment's knowledge source: unless the process is told it may use them
(``KNOWLEDGE_SAMPLES=allow``, set by the local stack and events/env.json only), the knowledge
drafter is off wherever the policy names it until ``drafts.knowledge`` points at the team's own
articles (an ``s3_uri``, or a ``path`` other than the samples), and the bedrock drafter gets no
passages from the samples (:func:`in_force`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from support_pipeline.drafts.base import Drafter, KnowledgeSettings
from support_pipeline.policy import DraftsPolicy

Factory = Callable[[DraftsPolicy], Drafter]

NO_KNOWLEDGE_SOURCE = "no knowledge source configured"
SAMPLES = "the sample articles of a fictional store"
HOW_TO_CONFIGURE = (
    "set drafts.knowledge.s3_uri or a path of your own articles, or name the bedrock or http "
    "drafter: docs/drafters.md"
)


def sample_articles() -> Path:
    """The folder of sample articles shipped in the layer."""
    from support_pipeline.drafts.knowledge import resolve_location

    return Path(resolve_location(KnowledgeSettings()))


def knowledge_source(knowledge: KnowledgeSettings) -> str | None:
    """Where the team's own articles are (the S3 URI or the folder), or None where the
    settings name the layer's sample articles (or a folder inside them)."""
    if knowledge.s3_uri:
        return knowledge.s3_uri
    from support_pipeline.drafts.knowledge import resolve_location

    folder = Path(resolve_location(knowledge))
    samples = sample_articles()
    if folder == samples or samples in folder.parents:
        return None
    return str(folder)


@dataclass(frozen=True)
class DraftsInForce:
    """The drafts policy as a process runs it."""

    policy: DraftsPolicy  # the knowledge drafter turned off where it would read the samples
    off_reason: str | None  # why it was turned off; None: nothing was
    off_where: tuple[str, ...]  # "default" and/or the inbox ids it was turned off for
    samples: bool  # the knowledge drafter (or bedrock's passages) reads the sample articles

    @property
    def drafters(self) -> list[str]:
        """The drafters in use, by name (none: drafting is off)."""
        if not self.policy.enabled:
            return []
        return sorted({self.policy.drafter, *self.policy.inboxes.values()} - {"off"})

    def summary(self) -> str:
        """One line for people: which drafters draft from what, or why drafting is off."""
        if not self.policy.enabled:
            return "off (drafts.enabled is false)"
        source = knowledge_source(self.policy.knowledge)
        parts = []
        for name in self.drafters:
            if name == "knowledge":
                parts.append(f"knowledge over {source or SAMPLES}")
            elif name == "bedrock":
                passages = source or (SAMPLES if self.samples else "none, so it declines")
                parts.append(f"bedrock (passages: {passages})")
            else:
                parts.append(name)
        if self.off_reason is None:
            return "; ".join(parts) or "off (drafts.drafter is off)"
        why = f"{self.off_reason} ({HOW_TO_CONFIGURE})"
        if not parts:
            return f"off: {why}"
        where = ", ".join("by default" if w == "default" else f"inbox {w}" for w in self.off_where)
        return "; ".join([*parts, f"knowledge drafter off ({where}): {why}"])


def in_force(drafts: DraftsPolicy, samples_allowed: bool) -> DraftsInForce:
    """``drafts`` as run by a process that may (local stack, tests) or may not (a deployment)
    use the layer's sample articles: without a knowledge source of the team's own and without
    ``samples_allowed``, every inbox the policy gives the knowledge drafter gets none."""
    source = knowledge_source(drafts.knowledge)
    uses = {drafts.drafter, *drafts.inboxes.values()} if drafts.enabled else set()
    reads_samples = source is None and bool(uses & {"knowledge", "bedrock"})
    if source is not None or samples_allowed or "knowledge" not in uses:
        return DraftsInForce(drafts, None, (), reads_samples and samples_allowed)
    where = (("default",) if drafts.drafter == "knowledge" else ()) + tuple(
        inbox for inbox, name in sorted(drafts.inboxes.items()) if name == "knowledge"
    )
    policy = replace(
        drafts,
        drafter="off" if drafts.drafter == "knowledge" else drafts.drafter,
        inboxes={
            inbox: "off" if name == "knowledge" else name for inbox, name in drafts.inboxes.items()
        },
    )
    return DraftsInForce(policy, NO_KNOWLEDGE_SOURCE, where, False)


def knowledge_drafter(policy: DraftsPolicy, s3: Any = None) -> Drafter:
    from support_pipeline.drafts.knowledge import KnowledgeDrafter

    return KnowledgeDrafter(policy.knowledge, s3=s3)


def bedrock_drafter(
    policy: DraftsPolicy, client: Any, s3: Any = None, *, samples_allowed: bool = False
) -> Drafter:
    """The bedrock drafter, its passages retrieved from the knowledge base: never from the
    sample articles unless ``samples_allowed`` (then, without a knowledge source, none)."""
    from support_pipeline.drafts.bedrock import BedrockDrafter

    if policy.bedrock is None:
        raise ValueError("drafts.bedrock is not configured")
    if knowledge_source(policy.knowledge) is None and not samples_allowed:
        return BedrockDrafter(policy.bedrock, client, retrieve=None)
    retrieval = knowledge_drafter(policy, s3=s3)
    return BedrockDrafter(policy.bedrock, client, retrieve=getattr(retrieval, "retrieve", None))


def http_drafter(policy: DraftsPolicy, fetch_parameter: Callable[[str], str]) -> Drafter:
    from support_pipeline.drafts.http import HttpDrafter

    if policy.http is None:
        raise ValueError("drafts.http is not configured")
    settings = policy.http
    return HttpDrafter(settings, secret=lambda: fetch_parameter(settings.secret_param))


class DrafterRegistry:
    """``registry(inbox_id)``: the inbox's drafter, or None where drafts are off."""

    def __init__(self, policy: DraftsPolicy, factories: dict[str, Factory]) -> None:
        self._policy = policy
        self._factories = factories
        self._built: dict[str, Drafter] = {}

    def __call__(self, inbox_id: str | None) -> Drafter | None:
        name = self._policy.drafter_for(inbox_id)
        if name == "off":
            return None
        if name not in self._built:
            factory = self._factories.get(name)
            if factory is None:
                return None
            self._built[name] = factory(self._policy)
        return self._built[name]
