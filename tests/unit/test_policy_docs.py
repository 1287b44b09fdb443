"""docs/support-policy.md documents every field of the shipped policy."""

import yaml

from support_pipeline.policy import PRIORITIES, WEEKDAYS
from tests.support import ROOT

DOC = (ROOT / "docs" / "support-policy.md").read_text()


def leaf_paths(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield from leaf_paths(value, path)
    else:
        yield prefix


def documented_name(path: str) -> str:
    parts = path.split(".")
    if parts[0] == "business_hours":
        return "business_hours"
    if parts[:2] == ["sla", "targets"] and parts[2] in PRIORITIES:
        parts[2] = "<priority>"
    if parts[-2:-1] and parts[-2] in ("phrases", "lexicon"):
        parts = parts[:-1]
    return ".".join(parts)


def test_every_field_of_the_shipped_policy_is_documented():
    shipped = yaml.safe_load((ROOT / "config" / "support-policy.yaml").read_text())
    names = sorted({documented_name(p) for p in leaf_paths(shipped)})
    missing = [name for name in names if f"`{name}`" not in DOC and f"## {name}" not in DOC]
    assert missing == []
    assert all(day in WEEKDAYS for day in shipped["business_hours"])


def test_the_agents_guide_quotes_the_shipped_policy():
    from support_pipeline.policy import load_default_policy

    guide = (ROOT / "docs" / "support-workflow.md").read_text()
    policy = load_default_policy()
    assert f"{round(policy.sla.at_risk_fraction * 100)} %" in guide
    assert {2: "reopened twice"}[policy.escalation.reopened_times] in guide
    assert f"{policy.escalation.unanswered_count} messages in a row" in guide
    assert f"`{policy.sla.at_risk_label}`" in guide and f"`{policy.sla.breached_label}`" in guide
    assert all(f"`{label}`" in guide for label in policy.escalation.labels)


def test_the_agents_guide_to_drafts_quotes_the_shipped_policy():
    from support_pipeline.policy import load_default_policy

    guide = (ROOT / "docs" / "support-workflow.md").read_text()
    drafts = load_default_policy().drafts
    assert f"{drafts.burst_window} s without a new message" in guide
    assert f"in the last {drafts.quiet_after_agent_reply // 60} minutes" in guide
    assert f"below {round(drafts.confidence_floor * 100)} % confident" in guide
    assert f"expires after {drafts.expire_after // 3600} hours" in guide
    assert f"`{drafts.needs_human_label}`" in guide
