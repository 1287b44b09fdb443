"""The Chatwoot access token only travels over https, except to a local Chatwoot."""

import pytest

from support_pipeline.config import ConfigError, ProcessorSettings, SupportSettings, SweepSettings

TOKEN = {"CHATWOOT_API_TOKEN_PARAM": "/support-pipeline/chatwoot-api-token"}


def support(url: str, **env: str) -> SupportSettings:
    return SupportSettings.from_env({**TOKEN, "CHATWOOT_BASE_URL": url, **env})


def test_https_is_accepted():
    assert support("https://chatwoot.example.com").chatwoot_base_url == (
        "https://chatwoot.example.com"
    )


@pytest.mark.parametrize("flag", [None, "", "false", "0"])
def test_plain_http_is_refused_without_the_local_flag(flag):
    env = {} if flag is None else {"CHATWOOT_ALLOW_HTTP": flag}
    with pytest.raises(ConfigError, match=r"CHATWOOT_BASE_URL must start with https://") as error:
        support("http://chatwoot.example.com", **env)
    assert "CHATWOOT_ALLOW_HTTP" in str(error.value)  # says how the local stack gets past it


def test_plain_http_is_accepted_when_the_local_stack_allows_it():
    settings = support("http://127.0.0.1:3001", CHATWOOT_ALLOW_HTTP="true")
    assert settings.chatwoot_base_url == "http://127.0.0.1:3001" and not settings.dry_run


@pytest.mark.parametrize("url", ["ftp://chatwoot.example.com", "chatwoot.example.com"])
def test_the_flag_allows_http_and_nothing_else(url):
    with pytest.raises(ConfigError, match="https://"):
        support(url, CHATWOOT_ALLOW_HTTP="true")


def test_a_malformed_flag_is_a_config_error_not_a_silent_no():
    with pytest.raises(ConfigError, match="CHATWOOT_ALLOW_HTTP must be true or false"):
        support("http://127.0.0.1:3001", CHATWOOT_ALLOW_HTTP="maybe")


def test_no_url_is_a_dry_run_whatever_the_flag():
    assert SupportSettings.from_env({}).dry_run
    assert SupportSettings.from_env({"CHATWOOT_ALLOW_HTTP": "true"}).dry_run


def test_both_functions_refuse_http_at_start_up():
    base = {
        **TOKEN,
        "CHATWOOT_BASE_URL": "http://chatwoot.example.com",
        "CONVERSATIONS_TABLE": "c",
        "ACTIONS_TABLE": "a",
    }
    with pytest.raises(ConfigError, match="https://"):
        SweepSettings.from_env(base)
    processor = {
        **base,
        "EVENTS_QUEUE_URL": "q",
        "EVENTS_DLQ_URL": "d",
    }
    with pytest.raises(ConfigError, match="https://"):
        ProcessorSettings.from_env(processor)
