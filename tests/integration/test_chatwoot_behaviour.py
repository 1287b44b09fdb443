"""Chatwoot as it really behaves, through the real client and handlers (issue: Chatwoot as it
really behaves). The fake follows Chatwoot's source, each behaviour with a comment naming the
file; these tests pin what the pipeline does about it."""

from __future__ import annotations

import pytest
import requests

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.policy import PolicyError
from tests.support import NOW, SECRET, attributes_of, fixture, incoming, policy_with


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
    with pytest.raises(PolicyError, match=r"escalation\.priority must be one of urgent"):
        policy_with(**{"escalation.priority": "none"})
    assert policy_with(**{"escalation.priority": None}).escalation.priority is None


# ---- automation rules' "Send webhook event" ------------------------------------------------
def automation_post(message_id, content, at, conversation_id=1, message_type=0):
    """What AutomationRules::ActionService#send_webhook_event posts for a message_created rule:
    ``conversation.webhook_data`` merged with ``event: "automation_event.message_created"``.
    The top-level ``id`` is the conversation's; the message is ``messages[0]``, the last chat
    message (integer message_type, the conversation's database id, not its display id)."""
    post = fixture("conversation_updated")
    post.pop("changed_attributes", None)
    post.update(event="automation_event.message_created", id=conversation_id, status="open")
    embedded = post["messages"][0]
    embedded.update(
        id=message_id,
        content=content,
        message_type=message_type,
        created_at=int(at),
        conversation_id=77,  # Chatwoot's database id: never the conversation's display id
        private=False,
        sender_type="Contact",
        sender={"id": 1, "name": "Ana Prueba", "type": "contact"},
    )
    post["messages"] = [embedded]
    return post


def post_unsigned(pipeline, payload):
    """Posted by URL token, as an automation rule's webhook URL carries it."""
    return pipeline.post(
        payload, service=pipeline.ingest(accept_url_token=True), headers={}, query=f"token={SECRET}"
    )


def test_automation_posts_are_keyed_by_the_message_they_carry(pipeline):
    first = automation_post(101, "Hola, ¿cuánto tarda el envío?", NOW)
    second = automation_post(102, "¿Y a Cali?", NOW + 60)
    answers = [post_unsigned(pipeline, p) for p in (first, second, second)]
    assert [status for status, _ in answers] == [202, 202, 202]
    assert [body["dedupe_key"] for _, body in answers] == [
        "unsigned:message_created:1:101",
        "unsigned:message_created:1:102",
        "unsigned:message_created:1:102",  # the same post again: a repeat
    ]
    pipeline.drain()
    timeline = pipeline.store().timeline("1", "1")
    assert sorted(i.get("message_id") for i in timeline if i.get("message_id")) == ["101", "102"]
    record = pipeline.store().get_record("1", "1")
    assert record["last_incoming_at"] == pytest.approx(NOW + 60)
    assert pipeline.messages(pipeline.dlq_url) == []
    assert pipeline.telemetry.total("EventDuplicate") == 1


def test_an_automation_post_runs_the_same_support_work_as_a_signed_message(pipeline, chatwoot):
    """The README's advice (automation rules for what webhooks cannot send) holds: a customer's
    refund demand posted by an automation rule escalates as the signed webhook would."""
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    policy = policy_with(**{"escalation.team_id": None})
    assert post_unsigned(pipeline, automation_post(301, "Quiero un reembolso ya", NOW))[0] == 202
    pipeline.drain(pipeline.consumer(chatwoot=client, policy=policy))
    assert any(n.startswith("Escalated by the support pipeline") for n in chatwoot.notes(1, 1))
    assert pipeline.messages(pipeline.dlq_url) == []


def test_an_automation_post_without_a_message_is_dead_lettered_with_its_reason(pipeline):
    post = automation_post(101, "x", NOW)
    post["messages"] = []
    assert post_unsigned(pipeline, post)[0] == 202
    pipeline.drain()
    [dead] = pipeline.messages(pipeline.dlq_url)
    assert attributes_of(dead)["error_type"] == "invalid_payload"


# ---- teams ---------------------------------------------------------------------------------
def test_assignments_behave_as_chatwoots_controller(chatwoot):
    """AssignmentsController#set_team: find_by, so an unknown team clears the team and answers
    null; an assignee outside the new team is removed; neither key answers null."""
    url = f"{chatwoot.url}/api/v1/accounts/1/conversations/1/assignments"
    headers = {"api_access_token": chatwoot.token}
    conversation = chatwoot.conversation(1, 1)
    conversation.assignee_id = 4  # not in team 7 (members 1 and 3)
    answer = requests.post(url, json={"team_id": 7}, headers=headers, timeout=5)
    assert answer.status_code == 200 and answer.json()["id"] == 7
    assert (conversation.team_id, conversation.assignee_id) == (7, None)
    answer = requests.post(url, json={"team_id": 99}, headers=headers, timeout=5)
    assert (answer.status_code, answer.json()) == (200, None)
    assert conversation.team_id is None  # cleared: what a wrong team id does in Chatwoot
    answer = requests.post(url, json={}, headers=headers, timeout=5)
    assert (answer.status_code, answer.json()) == (200, None)


def escalating(message_id, assignee=None):
    """A refund demand (escalates), the conversation held by ``assignee`` (a user id) or not."""
    payload = incoming("Quiero un reembolso ya", message_id, NOW, status="open")
    meta = payload["conversation"]["meta"]
    if assignee is None:
        meta.update(assignee=None, assignee_type=None)
    else:
        meta.update(
            assignee={"id": assignee, "name": "Agent", "type": "user"}, assignee_type="User"
        )
    return payload


def escalate(pipeline, chatwoot, payload, team_id=7, consumer=None):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    policy = policy_with(**{"escalation.team_id": team_id})
    assert (
        pipeline.post(payload, delivery_id=f"team-{payload['id']}", timestamp=pipeline.clock.now)[0]
        == 202
    )
    pipeline.drain(consumer or pipeline.consumer(chatwoot=client, policy=policy))
    return [n for n in chatwoot.notes(1, 1) if n.startswith("Escalated")]


def test_a_team_chatwoot_does_not_have_is_never_sent_and_the_note_says_so(pipeline, chatwoot):
    chatwoot.conversation(1, 1).team_id = 5
    [note] = escalate(pipeline, chatwoot, escalating(401), team_id=99)
    assert chatwoot.calls_to("POST", "/assignments") == []
    assert chatwoot.conversation(1, 1).team_id == 5  # never cleared
    assert "not assigned: Chatwoot has no team 99" in note
    assert pipeline.telemetry.total("EscalationTeamSkipped") == 1
    assert pipeline.messages(pipeline.dlq_url) == []


def test_a_conversation_an_agent_holds_stays_with_them(pipeline, chatwoot):
    chatwoot.conversation(1, 1).assignee_id = 4  # agent 4 is not in team 7
    [note] = escalate(pipeline, chatwoot, escalating(402, assignee=4))
    assert chatwoot.calls_to("POST", "/assignments") == []
    assert chatwoot.conversation(1, 1).assignee_id == 4
    assert "team 7 not assigned: the agent who holds the conversation is not in it" in note
    assert "escalated" in chatwoot.conversation(1, 1).labels  # the team still sees it


def test_an_agent_in_the_team_keeps_the_conversation_and_it_joins_the_team(pipeline, chatwoot):
    chatwoot.conversation(1, 1).assignee_id = 3  # a member of team 7
    [note] = escalate(pipeline, chatwoot, escalating(403, assignee=3))
    assert [c.body for c in chatwoot.calls_to("POST", "/assignments")] == [{"team_id": 7}]
    assert (chatwoot.conversation(1, 1).team_id, chatwoot.conversation(1, 1).assignee_id) == (7, 3)
    assert "assigned to team 7 (its agent, a member, keeps it)" in note


def test_a_team_deleted_after_the_check_is_reported(pipeline, chatwoot, monkeypatch):
    from support_pipeline.escalation import Escalator

    real = Escalator.team_plan

    def then_deleted(self, *args):
        plan = real(self, *args)
        chatwoot.delete_team(1, 7)  # an administrator deletes it right after the check
        return plan

    monkeypatch.setattr(Escalator, "team_plan", then_deleted)
    escalate(pipeline, chatwoot, escalating(404))
    assert pipeline.telemetry.total("EscalationTeamMissing") == 1
    assert pipeline.messages(pipeline.dlq_url) == []


def test_the_team_list_is_read_once_per_five_minutes(pipeline, chatwoot):
    """One process (a warm Lambda) reads the account's teams once per 300 s."""
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    consumer = pipeline.consumer(chatwoot=client, policy=policy_with(**{"escalation.team_id": 7}))
    teams = ("GET", "/api/v1/accounts/1/teams")
    escalate(pipeline, chatwoot, escalating(405), consumer=consumer)
    for conversation, message, later in ((2, 406, 299), (3, 407, 301)):
        chatwoot.add_conversation(1, conversation)
        payload = escalating(message)
        payload["conversation"]["id"] = conversation
        pipeline.clock.advance(later)
        escalate(pipeline, chatwoot, payload, consumer=consumer)
        assert len(chatwoot.calls_to(*teams)) == (1 if later < 300 else 2)


@pytest.mark.parametrize(
    ("team", "code", "words"), [(7, 0, "is 'Escalations'"), (99, 1, "does not exist")]
)
def test_policy_validate_checks_every_team_id_in_chatwoot(
    chatwoot, tmp_path, monkeypatch, team, code, words
):
    import io

    import yaml

    from support_pipeline_ops.cli import main
    from tests.support import SHIPPED_POLICY

    data = yaml.safe_load(SHIPPED_POLICY.read_text())
    data["escalation"]["team_id"] = team
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CHATWOOT_API_TOKEN", chatwoot.token)
    out = io.StringIO()
    assert main(["policy", "validate", str(path), "--chatwoot-url", chatwoot.url], out=out) == code
    [line] = [x for x in out.getvalue().splitlines() if x.startswith("Teams:")]
    assert line.startswith(f"Teams: account 1: escalation.team_id {team} ") and words in line


# ---- smaller facts the fake models -----------------------------------------------------------
def test_a_new_message_moves_the_conversations_updated_at_without_a_webhook(chatwoot):
    """Message#refresh_conversation_activity!: an update_all of last_activity_at and
    updated_at (no conversation_updated webhook)."""
    conversation = chatwoot.conversation(1, 1)
    chatwoot.take_webhooks()
    before = conversation.updated_at
    note = chatwoot.add_agent_message(1, 1, "nota interna", private=True)  # changes no state
    assert conversation.updated_at == conversation.last_activity_at > before
    assert [w["event"] for w in chatwoot.take_webhooks()] == ["message_created"]
    assert note["created_at"] == int(conversation.updated_at)


def test_a_conversation_webhook_embeds_the_last_chat_message_only(chatwoot):
    """Conversations::EventDataPresenter#push_data: messages.chat.last (no private note, no
    activity)."""
    customer = chatwoot.add_customer_message(1, 1, "¿hay envío?")
    chatwoot.add_agent_message(1, 1, "nota interna", private=True)
    chatwoot.take_webhooks()
    chatwoot.set_status(1, 1, "pending")
    changed = [w for w in chatwoot.take_webhooks() if w["event"] != "message_created"]
    assert changed and all(
        [m["id"] for m in webhook["messages"]] == [customer["id"]] for webhook in changed
    )


@pytest.mark.parametrize(
    ("muted", "bot", "status"),
    [(False, False, "open"), (False, True, "pending"), (True, False, "resolved")],
)
def test_a_customer_message_reopens_as_chatwoot_does(pipeline, chatwoot, muted, bot, status):
    """Message#reopen_conversation: a muted conversation stays resolved; a resolved one opens,
    or becomes pending when its inbox has an active bot. The pipeline records what it is told."""
    conversation = chatwoot.conversation(1, 1)
    conversation.muted, conversation.bot_inbox = muted, bot
    chatwoot.set_status(1, 1, "resolved")
    chatwoot.take_webhooks()
    chatwoot.add_customer_message(1, 1, "sigue sin llegar")
    assert conversation.status == status
    for i, webhook in enumerate(chatwoot.take_webhooks()):
        assert pipeline.post(webhook, delivery_id=f"reopen-{i}")[0] == 202
    pipeline.drain()
    record = pipeline.store().get_record("1", "1")
    assert record["status"] == status
    assert int(record.get("reopened_count") or 0) == (0 if muted else 1)


def test_more_than_200_messages_a_minute_is_refused_and_dead_lettered_not_retried(chatwoot):
    """Message#prevent_message_flood: the 201st message within a minute is a 422."""
    from support_pipeline.processing.errors import PermanentError

    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    clock = [1_800_000_000.0]
    chatwoot._time_source = lambda: clock[0]  # Chatwoot's clock stands still: one minute
    for i in range(200):
        chatwoot.add_agent_message(1, 1, f"m{i}")
    with pytest.raises(PermanentError, match="returned 422"):
        client.create_private_note("1", "1", "one too many", "flood-1")
    clock[0] += 61
    assert client.create_private_note("1", "1", "a minute later", "flood-2")["id"]


# ---- agent-bot retries -------------------------------------------------------------------------
def test_an_agent_bot_retry_after_our_500_is_taken_once(pipeline, monkeypatch):
    """AgentBots::WebhookJob retries a 500 with the same X-Chatwoot-Delivery: ingest's 500 for
    its own fault is what makes that retry happen, and the retry is one event, however many
    of the tries reached the queue."""
    payload = incoming("Hola, ¿cuánto tarda el envío?", 501, NOW, status="open")
    real_send = pipeline.sqs.send_message
    tries = []

    def queue_down_once(**kwargs):
        tries.append(kwargs)
        if len(tries) == 1:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError"}}, "SendMessage")
        return real_send(**kwargs)

    monkeypatch.setattr(pipeline.sqs, "send_message", queue_down_once)
    service = pipeline.ingest()
    assert pipeline.post(payload, service=service, delivery_id="bot-1")[0] == 500
    assert pipeline.post(payload, service=service, delivery_id="bot-1")[0] == 202  # 3 s later
    # A third try whose first answer was lost after it was queued (a timeout): queued twice.
    assert pipeline.post(payload, service=service, delivery_id="bot-1")[0] == 202
    pipeline.drain()
    timeline = [i for i in pipeline.store().timeline("1", "1") if i.get("message_id") == "501"]
    assert len(timeline) == 1
    assert pipeline.telemetry.total("EventDuplicate") == 1
    assert pipeline.messages(pipeline.dlq_url) == []


def test_setting_a_team_auto_assigns_an_online_member_as_chatwoot_does(pipeline, chatwoot):
    """AssignmentHandler#ensure_assignee_is_from_team: ``self.assignee ||=
    find_assignee_from_team`` when the team allows auto-assignment; Chatwoot then sends the
    change as a conversation_updated (which the pipeline records like any other)."""
    chatwoot.teams[("1", 7)].online = {3}
    chatwoot.take_webhooks()
    escalate(pipeline, chatwoot, escalating(410))
    assert (chatwoot.conversation(1, 1).team_id, chatwoot.conversation(1, 1).assignee_id) == (7, 3)
    [changed] = [
        w
        for w in chatwoot.take_webhooks()
        if w["event"] == "conversation_updated" and w["meta"].get("team")
    ]
    assert changed["meta"]["assignee"]["id"] == 3 and changed["meta"]["team"]["id"] == 7
