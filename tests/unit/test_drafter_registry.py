"""drafts/registry.py: which drafters a process runs, and never the sample articles unless
the process may use them (KNOWLEDGE_SAMPLES=allow: the local stack and tests only)."""

from __future__ import annotations

from dataclasses import replace

from support_pipeline.config import SupportSettings
from support_pipeline.drafts import registry
from support_pipeline.drafts.base import BedrockSettings, KnowledgeSettings
from support_pipeline.drafts.bedrock import no_passages
from support_pipeline.policy import load_default_policy
from support_pipeline.wiring import deployed_drafters

SHIPPED = load_default_policy()


def drafts(**changes):
    return replace(SHIPPED.drafts, **changes)


def knowledge(**changes):
    return replace(SHIPPED.drafts.knowledge, **changes)


def test_the_shipped_articles_are_samples_and_a_source_of_ones_own_is_not():
    assert registry.knowledge_source(KnowledgeSettings()) is None
    assert registry.knowledge_source(KnowledgeSettings(path="knowledge/es")) is None
    assert registry.knowledge_source(KnowledgeSettings(s3_uri="s3://acme/kb/")) == "s3://acme/kb/"
    assert registry.knowledge_source(KnowledgeSettings(path="/srv/acme-kb")) == "/srv/acme-kb"


def test_without_a_source_the_knowledge_drafter_is_off_wherever_the_policy_names_it():
    state = registry.in_force(drafts(inboxes={"3": "http", "4": "knowledge"}), False)
    assert state.policy.drafter_for(None) == "off"
    assert state.policy.drafter_for("4") == "off"
    assert state.policy.drafter_for("3") == "http"  # untouched
    assert state.off_reason == "no knowledge source configured"
    assert state.off_where == ("default", "4")
    assert state.summary().startswith(
        "http; knowledge drafter off (by default, inbox 4): no knowledge source configured"
    )
    # and the rest of the drafts policy is as written
    assert replace(state.policy, drafter="knowledge", inboxes={"3": "http", "4": "knowledge"}) == (
        drafts(inboxes={"3": "http", "4": "knowledge"})
    )


def test_a_source_or_the_local_setting_leaves_the_policy_as_written():
    with_source = drafts(knowledge=knowledge(s3_uri="s3://acme/kb/"))
    assert registry.in_force(with_source, False).policy is with_source
    assert registry.in_force(with_source, False).summary() == "knowledge over s3://acme/kb/"
    local = registry.in_force(SHIPPED.drafts, True)
    assert local.policy is SHIPPED.drafts and local.samples
    assert local.summary() == "knowledge over the sample articles of a fictional store"
    off = registry.in_force(drafts(enabled=False), False)
    assert off.off_reason is None and off.summary() == "off (drafts.enabled is false)"


def test_bedrock_without_a_source_drafts_on_no_passages_from_the_samples():
    bedrock = drafts(drafter="bedrock", bedrock=BedrockSettings(model_id="m"))
    state = registry.in_force(bedrock, False)
    assert state.policy is bedrock and state.off_reason is None and not state.samples
    assert state.summary() == "bedrock (passages: none, so it declines)"
    built = registry.bedrock_drafter(bedrock, client=object())
    assert built._retrieve is no_passages
    local = registry.bedrock_drafter(bedrock, client=object(), samples_allowed=True)
    assert local._retrieve is not no_passages  # the knowledge drafter's retrieval


def test_the_wiring_gives_the_draft_service_the_policy_in_force(pipeline_logs):
    policy, pick = deployed_drafters(SHIPPED, SupportSettings())
    assert policy.drafts.drafter == "off" and pick("7") is None
    assert policy.escalation == SHIPPED.escalation and policy.sla == SHIPPED.sla
    assert "drafts off: no knowledge source configured" in pipeline_logs.getvalue()
    local, pick = deployed_drafters(SHIPPED, SupportSettings(knowledge_samples=True))
    assert local is SHIPPED and pick("7").name == "knowledge"
