"""The REST client against the fake Chatwoot over real HTTP: calls, merging, error classes."""

import pytest
import requests

from support_pipeline import deadline
from support_pipeline.chatwoot.client import (
    ChatwootClient,
    Identity,
    content_digest,
    reference,
    reference_in,
)
from support_pipeline.processing.errors import PermanentError, TransientError
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot
from support_pipeline_ops.local.stack import free_port
from tests.support import ROOT


@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        server.add_conversation(1, 5, labels=["billing", "vip"])
        yield server


@pytest.fixture
def client(fake):
    return ChatwootClient(fake.url, lambda: fake.token)


def test_private_note_carries_its_reference_in_the_text_which_chatwoot_keeps(fake, client):
    start = client.latest_message_id("1", "5")
    created = client.create_private_note("1", "5", "Nota", "esc:1:5:x/private_note")
    [call] = fake.calls_to("POST", "/messages")
    assert call.path == "/api/v1/accounts/1/conversations/5/messages"
    assert call.body == {
        "content": "Nota\n\nref: " + reference("esc:1:5:x/private_note"),
        "message_type": "outgoing",
        "private": True,
    }
    assert reference_in(created["content"]) == reference("esc:1:5:x/private_note")
    assert client.find_note("1", "5", "esc:1:5:x/private_note", start)["id"] == created["id"]
    assert client.find_note("1", "5", "other", start) is None
    assert client.find_note("1", "5", "esc:1:5:x/private_note", created["id"]) is None


def test_the_fake_drops_content_attributes_chatwoot_does_not_keep(fake):
    answer = requests.post(
        f"{fake.url}/api/v1/accounts/1/conversations/5/messages",
        json={
            "content": "hola",
            "private": True,
            "content_attributes": {"support_pipeline_action": "x", "in_reply_to": 7},
        },
        headers={"api_access_token": fake.token},
        timeout=5,
    ).json()
    assert answer["content_attributes"] == {"in_reply_to": 7}
    assert answer["sender"] == {"id": fake.actor_id, "type": "user", "name": "Support pipeline"}


def test_messages_page_like_chatwoot_and_the_search_reads_every_page(fake, client):
    first = fake.add_customer_message(1, 5, "primero")["id"]
    for i in range(129):
        fake.add_customer_message(1, 5, f"mensaje {i}")
    latest = client.list_messages("1", "5")
    assert len(latest) == 20 and latest[-1]["content"] == "mensaje 128"
    assert [m["id"] for m in latest] == sorted(m["id"] for m in latest)  # oldest first
    assert len(client.list_messages("1", "5", after=first)) == 100
    before = client.list_messages("1", "5", before=latest[0]["id"])
    assert len(before) == 20 and before[-1]["id"] == latest[0]["id"] - 1
    assert len(list(client.messages_after("1", "5", first - 1))) == 130
    note = client.create_private_note("1", "5", "tarde", "a/private_note")
    for i in range(30):
        fake.add_customer_message(1, 5, f"después {i}")
    # 160 messages after the start: found on the second page of 100
    assert client.find_note("1", "5", "a/private_note", first - 1)["id"] == note["id"]


def test_the_pipeline_learns_who_it_is_from_the_token_once(fake, client):
    assert client.identity() == Identity("user", str(fake.actor_id))
    client.identity()
    assert len([c for c in fake.calls if c.path == "/api/v1/profile"]) == 1


def test_calls_are_cut_to_the_time_left_and_not_started_without_it(fake, client):
    seen = []

    class Recording(requests.Session):
        def request(self, *args, **kwargs):
            seen.append(kwargs["timeout"])
            return super().request(*args, **kwargs)

    timed = ChatwootClient(fake.url, lambda: fake.token, session=Recording())
    now = [1000.0]
    with deadline.running_until(deadline.Deadline(1002.0, lambda: now[0])):
        timed.get_labels("1", "5")
        assert seen == [(1.5, 1.5)]  # 2 s left, 0.5 s kept back
        now[0] = 1001.6
        with pytest.raises(TransientError) as refused:
            timed.get_labels("1", "5")
    assert refused.value.error_type == "deadline"
    assert len(seen) == 1 and len(fake.calls) == 1
    timed.get_labels("1", "5")
    assert seen[-1] == (3.05, 10.0)


def test_only_the_approval_checked_call_can_reach_the_customer_and_none_changes_status():
    # One method posts a non-private message, and it checks the stored approval first; nothing
    # anywhere toggles a conversation's status (resolving sends the customer a CSAT survey).
    assert not hasattr(ChatwootClient, "set_status")
    package = ROOT / "layers" / "common" / "support_pipeline"
    posting_public = []
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "toggle_status" not in text, source
        if '"private": False' in text:
            posting_public.append(source.relative_to(package).as_posix())
    assert posting_public == ["chatwoot/client.py"]
    body = (package / "chatwoot" / "client.py").read_text()
    method = body[body.index("def create_public_reply") : body.index("def set_labels")]
    assert method.index("approval_of(") < method.index('"private": False')


def test_a_public_reply_without_a_matching_approval_is_refused_before_any_request(fake, client):
    approvals = {("1", "5", "d-abcdef"): {"digest": content_digest("Hola, su pedido llega hoy.")}}

    def approval_of(account, conversation, draft):
        return approvals.get((account, conversation, draft))

    for content, draft in (("Hola, su pedido llega mañana.", "d-abcdef"), ("Hola", "d-zzzzzz")):
        with pytest.raises(PermanentError) as refused:
            client.create_public_reply("1", "5", content, draft, approval_of)
        assert refused.value.error_type == "approval_required"
    assert fake.calls_to("POST", "/messages", ok_only=False) == []
    client.create_public_reply("1", "5", "Hola, su pedido llega hoy.", "d-abcdef", approval_of)
    [call] = fake.calls_to("POST", "/messages")
    assert call.body == {
        "content": "Hola, su pedido llega hoy.",
        "message_type": "outgoing",
        "private": False,
    }
    assert fake.public_messages(1, 5) == ["Hola, su pedido llega hoy."]


def test_add_labels_reads_merges_and_writes_without_dropping_a_persons_label(fake, client):
    assert sorted(client.add_labels("1", "5", ["escalated"])) == ["billing", "escalated", "vip"]
    assert fake.calls_to("POST", "/labels")[0].body == {"labels": ["billing", "escalated", "vip"]}
    client.add_labels("1", "5", ["vip"])  # already there: no write
    assert len(fake.calls_to("POST", "/labels")) == 1
    assert sorted(client.remove_labels("1", "5", ["escalated"])) == ["billing", "vip"]


def test_assignment_and_priority(fake, client):
    fake.add_team(1, 3, "Billing")
    assert client.assign("1", "5", team_id=3)["id"] == 3  # Chatwoot answers the team
    assert client.assign("1", "5", team_id=4) is None  # no such team: null, and no team left
    assert fake.conversation(1, 5).team_id is None
    client.assign("1", "5", team_id=3)
    client.set_priority("1", "5", "urgent")
    conversation = fake.conversation(1, 5)
    assert (conversation.team_id, conversation.priority) == (3, "urgent")
    assert client.get_conversation("1", "5")["priority"] == "urgent"


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
    with pytest.raises(TransientError, match="got no answer"):
        nobody.get_labels("1", "5")

    class SlowSession(requests.Session):
        def request(self, *args, **kwargs):
            raise requests.ReadTimeout("slow")

    slow = ChatwootClient("http://127.0.0.1:9", lambda: "t", session=SlowSession())
    with pytest.raises(TransientError, match="timed out"):
        slow.get_labels("1", "5")


def test_an_answer_that_trickles_in_is_given_up_on_when_the_time_left_runs_out():
    import socket
    import threading
    import time as real_time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle():
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        connection.sendall(b"Content-Length: 1000\r\n\r\n")
        while not stop.is_set():  # one byte every 0.1 s: no single read ever times out
            try:
                connection.sendall(b" ")
            except OSError:
                break
            real_time.sleep(0.1)
        connection.close()

    threading.Thread(target=trickle, daemon=True).start()
    host, port = listener.getsockname()
    slow = ChatwootClient(f"http://{host}:{port}", lambda: "t")
    started = real_time.monotonic()
    try:
        with (
            deadline.running_until(deadline.Deadline.after(1.5, real_time.monotonic)),
            pytest.raises(TransientError) as gave_up,
        ):
            slow.get_labels("1", "5")
    finally:
        stop.set()
        listener.close()
    assert "too slowly" in gave_up.value.reason
    assert real_time.monotonic() - started < 1.5


def test_a_gzipped_answer_is_read(fake, client, monkeypatch):
    import gzip
    import io

    from urllib3.response import HTTPResponse

    body = gzip.compress(b'{"payload": ["billing", "vip"]}')

    class Gzipping(requests.Session):
        def request(self, method, url, **kwargs):
            response = requests.Response()
            response.status_code = 200
            response.headers["content-type"] = "application/json"
            response.raw = HTTPResponse(
                body=io.BytesIO(body),
                headers={"content-encoding": "gzip"},
                status=200,
                preload_content=False,
                decode_content=False,
            )
            return response

    zipped = ChatwootClient(fake.url, lambda: fake.token, session=Gzipping())
    assert zipped.get_labels("1", "5") == ["billing", "vip"]
