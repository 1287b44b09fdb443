"""The pause switch and the Chatwoot client's two hooks (the pause gate, the error count)."""

import boto3
import pytest

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.config import PauseSettings, SupportSettings
from support_pipeline.pause import (
    ACTIONS,
    CONSUME,
    OFF,
    Paused,
    PauseSwitch,
    parse_mode,
    ssm_reader,
)
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline.telemetry import RecordingTelemetry
from support_pipeline.wiring import chatwoot_client
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from support_pipeline_ops.local.stack import free_port
from tests.support import Clock


class Parameter:
    """An SSM parameter as the switch reads it: a value, missing (None), or unreadable."""

    def __init__(self, value=None):
        self.value = value
        self.error: Exception | None = None
        self.reads = 0

    def __call__(self):
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.value


@pytest.mark.parametrize(
    ("value", "mode", "known"),
    [
        (None, OFF, True),
        ("", OFF, True),
        ("off", OFF, True),
        (" Actions\n", ACTIONS, True),
        ("CONSUME", CONSUME, True),
        ("pasue", CONSUME, False),  # a typo in an emergency brake still brakes
        ("true", CONSUME, False),
    ],
)
def test_values_and_the_modes_they_mean(value, mode, known):
    assert parse_mode(value) == (mode, known)


def test_the_parameter_is_read_at_most_every_max_age_seconds():
    parameter, clock = Parameter("actions"), Clock(0)
    switch = PauseSwitch(parameter, max_age=30, clock=clock)
    assert switch.mode() == ACTIONS
    parameter.value = "off"
    clock.advance(29)
    assert switch.mode() == ACTIONS and parameter.reads == 1
    clock.advance(1)
    assert switch.mode() == OFF and parameter.reads == 2


def test_a_failed_read_keeps_the_last_mode_and_is_counted():
    parameter, clock, telemetry = Parameter("consume"), Clock(0), RecordingTelemetry()
    switch = PauseSwitch(parameter, max_age=30, clock=clock, telemetry=telemetry)
    assert switch.mode() == CONSUME
    parameter.error = RuntimeError("ThrottlingException")
    clock.advance(30)
    assert switch.mode() == CONSUME
    assert telemetry.total("PauseUnreadable") == 1
    clock.advance(10)  # not retried on every call: it waits max_age again
    assert switch.mode() == CONSUME and parameter.reads == 2


def test_unreadable_before_any_read_runs_the_pipeline_and_says_so():
    parameter, telemetry = Parameter(), RecordingTelemetry()
    parameter.error = RuntimeError("no route to SSM")
    switch = PauseSwitch(parameter, max_age=30, clock=Clock(0), telemetry=telemetry)
    assert switch.mode() == OFF
    assert telemetry.total("PauseUnreadable") == 1


def test_hold_raises_paused_in_either_mode_and_passes_when_off():
    parameter = Parameter("actions")
    switch = PauseSwitch(parameter, max_age=0, clock=Clock(0))
    with pytest.raises(Paused) as held:
        switch.hold("GET profile")
    assert held.value.mode == ACTIONS and "GET profile" in str(held.value)
    # Paused is neither failure class: nothing classifies it as a retry or a dead letter.
    assert not isinstance(held.value, PermanentError | TransientError)
    parameter.value = "consume"
    with pytest.raises(Paused):
        switch.hold()
    parameter.value = "off"
    switch.hold()


def test_the_ssm_reader_says_none_for_a_missing_parameter(aws):
    ssm = boto3.client("ssm", region_name="us-east-1")
    read = ssm_reader(ssm, "/support-pipeline/pause")
    assert read() is None
    ssm.put_parameter(Name="/support-pipeline/pause", Value="consume", Type="String")
    assert read() == "consume"


def test_pause_settings_from_the_environment():
    settings = PauseSettings.from_env(
        {"PAUSE_PARAM": "/p", "PAUSE_CACHE_SECONDS": "5", "PAUSED_EVENT_DELAY_SECONDS": "900"}
    )
    assert settings == PauseSettings("/p", 5, 900)
    assert PauseSettings.from_env({}) == PauseSettings("", 30, 60)
    with pytest.raises(ValueError, match="900"):
        PauseSettings.from_env({"PAUSED_EVENT_DELAY_SECONDS": "901"})


# ---- the client's hooks ---------------------------------------------------------------------
@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        server.add_conversation(1, 5, labels=["billing"])
        yield server


def test_a_paused_client_makes_no_call_at_all(fake):
    switch = PauseSwitch(Parameter("actions"), max_age=0, clock=Clock(0))
    client = ChatwootClient(fake.url, lambda: fake.token, gate=switch.hold)
    with pytest.raises(Paused):
        client.get_labels("1", "5")
    with pytest.raises(Paused):
        client.identity()
    assert fake.calls == []


def test_failed_calls_are_counted_by_status_through_the_wiring(fake):
    telemetry = RecordingTelemetry()
    settings = SupportSettings(chatwoot_base_url=fake.url, chatwoot_api_token_param="/token")
    client = chatwoot_client(settings, lambda name: fake.token, telemetry=telemetry)
    assert client is not None
    fake.fail("GET", "/labels", 429)
    with pytest.raises(TransientError):
        client.get_labels("1", "5")
    fake.fail("GET", "/labels", 503)
    with pytest.raises(TransientError):
        client.get_labels("1", "5")
    with pytest.raises(PermanentError):
        client.get_labels("1", "404")  # Chatwoot's own 404
    assert client.get_labels("1", "5") == ["billing"]  # a success counts nothing
    assert telemetry.counts == {
        ("ChatwootApiError", "429"): 1,
        ("ChatwootApiError", "503"): 1,
        ("ChatwootApiError", "404"): 1,
    }


def test_no_answer_is_counted_and_a_broken_counter_changes_nothing():
    reasons = []
    nobody = ChatwootClient(f"http://127.0.0.1:{free_port()}", lambda: "t", on_error=reasons.append)
    with pytest.raises(TransientError):
        nobody.get_labels("1", "5")
    assert reasons == ["no_answer"]

    def broken(reason):
        raise RuntimeError("metrics are down")

    still = ChatwootClient(f"http://127.0.0.1:{free_port()}", lambda: "t", on_error=broken)
    with pytest.raises(TransientError, match="got no answer"):
        still.get_labels("1", "5")
