"""Which drafter writes for which inbox: built once per process, on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support_pipeline.drafts.base import Drafter
from support_pipeline.policy import DraftsPolicy

Factory = Callable[[DraftsPolicy], Drafter]


def knowledge_drafter(policy: DraftsPolicy, s3: Any = None) -> Drafter:
    from support_pipeline.drafts.knowledge import KnowledgeDrafter

    return KnowledgeDrafter(policy.knowledge, s3=s3)


def bedrock_drafter(policy: DraftsPolicy, client: Any, s3: Any = None) -> Drafter:
    from support_pipeline.drafts.bedrock import BedrockDrafter

    if policy.bedrock is None:
        raise ValueError("drafts.bedrock is not configured")
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
