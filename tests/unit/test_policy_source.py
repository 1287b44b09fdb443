"""A changed policy parameter takes effect without a deployment; a bad one never half applies."""

import pytest
import yaml

from support_pipeline.policy import PolicyError, PolicySource
from support_pipeline.telemetry import RecordingTelemetry
from support_pipeline.wiring import PerPolicy
from tests.support import SHIPPED_POLICY

SHIPPED = yaml.safe_load(SHIPPED_POLICY.read_text())


def text(**changes):
    return yaml.safe_dump({**SHIPPED, **changes})


class Parameter:
    def __init__(self, value):
        self.value = value
        self.reads = 0

    def __call__(self, name):
        self.reads += 1
        return self.value


def test_a_changed_parameter_rebuilds_the_service_and_a_bad_one_keeps_the_last_good():
    parameter = Parameter(text(timezone="Europe/Madrid"))
    telemetry = RecordingTelemetry()
    built = []
    services = PerPolicy(
        lambda policy: built.append(policy.timezone) or policy.timezone,
        PolicySource("/p", parameter),
        telemetry,
    )
    assert services.get() == services.get() == "Europe/Madrid"
    assert built == ["Europe/Madrid"]  # not rebuilt while unchanged
    parameter.value = text(timezone="America/Lima")
    assert services.get() == "America/Lima"
    parameter.value = text(timezone="Not/AZone")
    assert services.get() == "America/Lima"  # refused; the last good policy stays
    assert telemetry.total("PolicyRefused") == 1
    assert built == ["Europe/Madrid", "America/Lima"]


def test_an_invalid_policy_at_start_stops_the_function_with_the_field_named():
    with pytest.raises(PolicyError, match="timezone must be an IANA time zone"):
        PolicySource("/p", Parameter(text(timezone="Not/AZone"))).current()


def test_without_a_parameter_the_shipped_policy_is_used_and_cached():
    source = PolicySource("", Parameter("unused"))
    assert source.current() is source.current()
    assert source.current().timezone == "America/Bogota"
