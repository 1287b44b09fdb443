"""Chatwoot as it really behaves, through the real client and handlers (issue: Chatwoot as it
really behaves). The fake follows Chatwoot's source, each behaviour with a comment naming the
file; these tests pin what the pipeline does about it."""

from __future__ import annotations

import pytest
import requests

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.policy import PolicyError
from tests.support import policy_with


def test_toggle_priority_takes_only_chatwoots_enum_and_null(chatwoot):
    """Conversation#toggle_priority assigns to a Rails enum: "none" is a 500, null clears."""
    url = f"{chatwoot.url}/api/v1/accounts/1/conversations/1/toggle_priority"
    headers = {"api_access_token": chatwoot.token}
    assert (
        requests.post(url, json={"priority": "none"}, headers=headers, timeout=5).status_code == 500
    )
    assert (
        requests.post(url, json={"priority": "high"}, headers=headers, timeout=5).status_code == 200
    )
    assert chatwoot.conversation(1, 1).priority == "high"
    assert (
        requests.post(url, json={"priority": None}, headers=headers, timeout=5).status_code == 200
    )
    assert chatwoot.conversation(1, 1).priority is None


@pytest.mark.parametrize("clear", [None, "none"])
def test_the_client_clears_a_priority_with_null(chatwoot, clear):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    client.set_priority("1", "1", "urgent")
    client.set_priority("1", "1", clear)
    assert chatwoot.conversation(1, 1).priority is None
    [_, cleared] = chatwoot.calls_to("POST", "/toggle_priority")
    assert cleared.body == {"priority": None}


def test_a_policy_cannot_escalate_to_priority_none():
    with pytest.raises(PolicyError, match="escalation.priority must be one of urgent"):
        policy_with(**{"escalation.priority": "none"})
    assert policy_with(**{"escalation.priority": None}).escalation.priority is None
