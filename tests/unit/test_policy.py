import copy

import pytest
import yaml

from support_pipeline.policy import (
    PolicyError,
    load_default_policy,
    load_policy,
    normalize_text,
    parse_duration,
    parse_policy,
)
from tests.support import ROOT

SHIPPED = yaml.safe_load((ROOT / "config" / "support-policy.yaml").read_text())


def test_the_shipped_policy_is_valid_and_is_what_the_layer_carries():
    policy = load_default_policy()
    assert policy.sla.targets["urgent"].first_response == 15 * 60
    assert policy.sla.targets["high"].resolution == 86400
    assert policy.business_hours[6] == ()  # closed on Sunday
    assert "reembolso" in policy.escalation.asks_for_human.phrases["es"]
    layer_copy = ROOT / "layers" / "common" / "support_pipeline" / "support-policy.yaml"
    assert layer_copy.read_text() == (ROOT / "config" / "support-policy.yaml").read_text()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["sla", "targets", "urgent", "first_response"],
            "soon",
            "sla.targets.urgent.first_response must be a duration",
        ),
        (["sla", "targets", "urgent", "first_response"], 0, "must be longer than zero"),
        (["sla", "at_risk_fraction"], 1.5, "sla.at_risk_fraction must be between 0 and 1"),
        (["timezone"], "Mars/Olympus", "timezone must be an IANA time zone"),
        (
            ["business_hours", "monday"],
            ["18:00-09:00"],
            "business_hours.monday[0] must end after it starts",
        ),
        (
            ["business_hours", "monday"],
            ["9-5"],
            "business_hours.monday[0] must look like '09:00-18:00'",
        ),
        (["business_hours", "funday"], [], "business_hours has unknown day(s): funday"),
        (["holidays"], ["christmas"], "holidays[0] must be a date"),
        (["escalation", "priority"], "critical", "escalation.priority must be one of"),
        (
            ["escalation", "rules", "reopened", "times"],
            "two",
            "escalation.rules.reopened.times must be a whole number",
        ),
        (
            ["escalation", "rules", "asks_for_human", "phrases", "english"],
            ["help"],
            "language must be a code",
        ),
        (["actor", "type"], "robot", "actor.type must be user or agent_bot"),
        (["sla", "clock_starts"], "whenever", "sla.clock_starts must be created or opened"),
        (
            ["escalation", "rules", "sla_breach", "enabled"],
            "yes",
            "escalation.rules.sla_breach.enabled must be true or false",
        ),
    ],
)
def test_a_bad_field_is_named(path, value, message):
    data = copy.deepcopy(SHIPPED)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PolicyError) as error:
        parse_policy(data)
    assert message in str(error.value)


def test_a_missing_section_is_named():
    data = copy.deepcopy(SHIPPED)
    del data["sla"]["targets"]["low"]
    with pytest.raises(PolicyError, match=r"sla\.targets\.low is required"):
        parse_policy(data)


def test_a_week_without_hours_is_refused():
    data = copy.deepcopy(SHIPPED)
    data["business_hours"] = {day: [] for day in data["business_hours"]}
    with pytest.raises(PolicyError, match="at least one window"):
        parse_policy(data)


def test_durations():
    assert parse_duration(900, "x") == 900
    assert parse_duration("15m", "x") == 900
    assert parse_duration("1h30m", "x") == 5400
    assert parse_duration("2d", "x") == 172800
    with pytest.raises(PolicyError):
        parse_duration(True, "x")


def test_ssm_policy_overrides_the_file_and_bad_yaml_is_named():
    text = yaml.safe_dump({**SHIPPED, "timezone": "Europe/Madrid"})
    policy = load_policy("/support-pipeline/policy", fetch_parameter=lambda name: text)
    assert policy.timezone == "Europe/Madrid"
    assert load_policy("", fetch_parameter=lambda name: text).timezone == "America/Bogota"
    with pytest.raises(PolicyError, match=r"SSM parameter /p is not valid YAML"):
        load_policy("/p", fetch_parameter=lambda name: "a: [b")


def test_text_normalisation_strips_accents_and_punctuation():
    assert normalize_text("¡Quiero un REEMBOLSO, ya!") == "quiero un reembolso ya"
    assert normalize_text("Devolución") == "devolucion"
