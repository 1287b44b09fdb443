"""The REST client against the fake Chatwoot over real HTTP: calls, merging, error classes."""

import pytest
import requests

from support_pipeline.chatwoot.client import ACTION_ATTRIBUTE, Approval, ChatwootClient
from support_pipeline.local.fake_chatwoot import FakeChatwoot
from support_pipeline.local.stack import free_port
from support_pipeline.processing.errors import PermanentError, TransientError


@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        server.add_conversation(1, 5, labels=["billing", "vip"])
        yield server


@pytest.fixture
def client(fake):
    return ChatwootClient(fake.url, lambda: fake.token)


def test_private_note_is_private_outgoing_and_tagged_with_its_action(fake, client):
    created = client.create_private_note("1", "5", "Nota", "esc:1:5:x/private_note")
    [call] = fake.calls_to("POST", "/messages")
    assert call.path == "/api/v1/accounts/1/conversations/5/messages"
    assert call.body == {
        "content": "Nota",
        "message_type": "outgoing",
        "private": True,
        "content_attributes": {ACTION_ATTRIBUTE: "esc:1:5:x/private_note"},
    }
    assert client.find_action_message("1", "5", "esc:1:5:x/private_note")["id"] == created["id"]
    assert client.find_action_message("1", "5", "other") is None


def test_add_labels_reads_merges_and_writes_without_dropping_a_persons_label(fake, client):
    assert sorted(client.add_labels("1", "5", ["escalated"])) == ["billing", "escalated", "vip"]
    assert fake.calls_to("POST", "/labels")[0].body == {"labels": ["billing", "escalated", "vip"]}
    client.add_labels("1", "5", ["vip"])  # already there: no write
    assert len(fake.calls_to("POST", "/labels")) == 1
    assert sorted(client.remove_labels("1", "5", ["escalated"])) == ["billing", "vip"]


def test_assignment_priority_and_status(fake, client):
    client.assign("1", "5", team_id=3)
    client.set_priority("1", "5", "urgent")
    client.set_status("1", "5", "pending")
    conversation = fake.conversation(1, 5)
    assert (conversation.team_id, conversation.priority, conversation.status) == (
        3,
        "urgent",
        "pending",
    )
    assert client.get_conversation("1", "5")["priority"] == "urgent"


def test_a_public_message_needs_a_humans_approval(fake, client):
    with pytest.raises(PermanentError) as refused:
        client.create_public_message("1", "5", "Hola", "draft:1", approval=None)
    assert refused.value.error_type == "approval_required"
    assert fake.calls_to("POST", "/messages", ok_only=False) == []
    approval = Approval("appr-1", approved_by="agent-3", approved_at="2026-11-26T10:00:00Z")
    client.create_public_message("1", "5", "Hola", "draft:1", approval=approval)
    [call] = fake.calls_to("POST", "/messages")
    assert (
        call.body["private"] is False and call.body["content_attributes"]["approval_id"] == "appr-1"
    )


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (429, TransientError, "chatwoot_throttled"),
        (500, TransientError, "chatwoot_unavailable"),
        (503, TransientError, "chatwoot_unavailable"),
        (401, PermanentError, "chatwoot_rejected"),
        (403, PermanentError, "chatwoot_rejected"),
        (404, PermanentError, "chatwoot_rejected"),
        (422, PermanentError, "chatwoot_rejected"),
    ],
)
def test_http_errors_map_onto_failure_classes_naming_call_and_status(
    fake, client, status, kind, error_type
):
    fake.fail("POST", "/toggle_priority", status)
    with pytest.raises(kind) as error:
        client.set_priority("1", "5", "high")
    assert error.value.error_type == error_type
    assert error.value.reason == f"POST conversations/5/toggle_priority returned {status}"


def test_wrong_token_is_permanent(fake):
    client = ChatwootClient(fake.url, lambda: "wrong-token")
    with pytest.raises(PermanentError, match="returned 401"):
        client.get_labels("1", "5")


def test_connection_refused_and_timeouts_are_transient():
    nobody = ChatwootClient(f"http://127.0.0.1:{free_port()}", lambda: "t")
    with pytest.raises(TransientError, match="could not connect"):
        nobody.get_labels("1", "5")

    class SlowSession(requests.Session):
        def request(self, *args, **kwargs):
            raise requests.ReadTimeout("slow")

    slow = ChatwootClient("http://127.0.0.1:9", lambda: "t", session=SlowSession())
    with pytest.raises(TransientError, match="timed out"):
        slow.get_labels("1", "5")
