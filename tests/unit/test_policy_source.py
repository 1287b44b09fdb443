"""A changed policy parameter takes effect without a deployment; a bad one never half applies."""

import pytest
import yaml

from support_pipeline.policy import PolicyError, PolicySource, PolicyUnavailable
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


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self):
        return self.now


class FlakyParameter(Parameter):
    """The SSM parameter, or (with ``error`` set) SSM failing as Powertools reports it."""

    def __init__(self, value):
        super().__init__(value)
        self.error = None

    def __call__(self, name):
        if self.error is not None:
            self.reads += 1
            raise self.error
        return super().__call__(name)


def throttled():
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import ClientError

    try:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetParameter"
        )
    except ClientError as exc:
        try:
            raise GetParameterError(str(exc))  # Powertools wraps every failure this way
        except GetParameterError as wrapped:
            return wrapped


def test_a_failed_read_keeps_the_last_good_policy_and_is_retried_only_after_the_interval():
    parameter = FlakyParameter(text(timezone="Europe/Madrid"))
    clock = Clock()
    telemetry = RecordingTelemetry()
    built = []
    services = PerPolicy(
        lambda policy: built.append(policy.timezone) or policy.timezone,
        PolicySource("/p", parameter, retry_after=60, clock=clock),
        telemetry,
    )
    assert services.get() == "Europe/Madrid"

    parameter.error = throttled()
    reads = parameter.reads
    assert services.get() == "Europe/Madrid"  # the batch goes on with the last good policy
    assert parameter.reads == reads + 1
    assert telemetry.total("PolicyUnreadable") == 1 and telemetry.total("PolicyRefused") == 0

    for _ in range(5):  # every batch inside the interval: no read, no new error
        clock.now += 10
        assert services.get() == "Europe/Madrid"
    assert parameter.reads == reads + 1
    assert telemetry.total("PolicyUnreadable") == 1

    clock.now += 15  # 65 s after the failure: read again, still failing
    assert services.get() == "Europe/Madrid"
    assert parameter.reads == reads + 2
    assert telemetry.total("PolicyUnreadable") == 2

    parameter.error = None
    parameter.value = text(timezone="America/Lima")
    clock.now += 30
    assert services.get() == "Europe/Madrid"  # not yet: the interval has not passed
    clock.now += 31
    assert services.get() == "America/Lima"  # read again: the new policy applies
    assert built == ["Europe/Madrid", "America/Lima"]
    assert telemetry.total("PolicyUnreadable") == 2 and telemetry.total("PolicyRefused") == 0


def test_a_failed_read_is_logged_once_with_its_error_type(caplog):
    parameter = FlakyParameter(text())
    services = PerPolicy(lambda policy: policy, PolicySource("/p", parameter, clock=Clock()))
    services.get()
    parameter.error = throttled()
    with caplog.at_level("ERROR"):
        for _ in range(3):
            services.get()
    [record] = [r for r in caplog.records if "support policy" in r.getMessage()]
    assert "unreadable" in record.getMessage()
    assert "GetParameterError" in record.error and "ThrottlingException" in record.error


def test_a_failed_read_at_cold_start_fails_with_a_clear_error():
    parameter = FlakyParameter(text())
    parameter.error = throttled()
    with pytest.raises(PolicyUnavailable) as raised:
        PolicySource("/support/policy", parameter, clock=Clock()).current()
    message = str(raised.value)
    assert "/support/policy" in message and "ThrottlingException" in message
    assert "no policy to fall back on" in message
