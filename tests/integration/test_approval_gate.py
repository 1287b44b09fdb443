"""The approval gate under faults (issue: the approval gate, proven under faults).

Each test is one way the promise broke before: a customer gets only the text an agent saw in a
draft note before writing ``/send``, approved by a signed delivery from an agent, once, and not
after a person already answered. Everything is real but the drafter, which words its answer
differently on every call (as a model or an edited knowledge base would): the processor, moto,
the action ledger and the fake Chatwoot over HTTP. Agents' notes and replies are written in
the fake first, so they carry Chatwoot's own ids and order.
"""

from __future__ import annotations

import json

import pytest

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.drafts.base import DraftResult, Source
from support_pipeline.drafts.store import DraftStore
from tests.support import SECRET, agent_message, attributes_of, incoming, policy_with

POLICY = policy_with(
    **{
        "escalation.rules.unanswered_messages.enabled": False,
        "escalation.rules.vip_contact.enabled": False,
        "drafts.quiet_after_agent_reply": "10m",
    }
)


class WordingDrafter:
    """A confident answer, worded anew on every call: a second call shows as other text."""

    name = "knowledge"

    def __init__(self) -> None:
        self.calls = 0

    def draft(self, context):
        self.calls += 1
        return DraftResult(
            "knowledge",
            f"Shipping takes 2 to 4 business days (wording {self.calls}).",
            0.9,
            "en",
            (Source("Shipping"),),
        )


@pytest.fixture
def drafter():
    return WordingDrafter()


@pytest.fixture
def world(pipeline, chatwoot, drafter):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    class World:
        deliveries = 0

        def consumer(self):
            return pipeline.consumer(chatwoot=client, policy=POLICY, drafters=lambda i: drafter)

        def deliver(self, *payloads, **kwargs):
            for payload in payloads:
                World.deliveries += 1
                kwargs.setdefault("delivery_id", f"gate-{World.deliveries}")
                kwargs.setdefault("timestamp", pipeline.clock.now)
                status, body = pipeline.post(payload, **kwargs)
                assert status == 202, body
                kwargs.pop("delivery_id")

        def process(self, cycles=3):
            """Time passes: retries come back, delayed events are due, all is processed."""
            for _ in range(cycles):
                pipeline.clock.advance(300)
                pipeline.make_visible()
                pipeline.drain(self.consumer())

        def customer(self, text, conversation=1):
            """The customer writes in Chatwoot; its webhook is returned, not delivered."""
            written = chatwoot.add_customer_message(1, conversation, text)
            return incoming(text, written["id"], pipeline.clock.now, conversation, status="open")

        def note(self, content, agent_id=3, conversation=1, sender_type="user"):
            """An agent writes a private note in Chatwoot; its webhook is returned."""
            written = chatwoot.add_agent_message(
                1, conversation, content, private=True, user_id=agent_id
            )
            payload = agent_message(
                content, written["id"], pipeline.clock.now, private=True, status="open"
            )
            payload["sender"].update(id=agent_id, type=sender_type)
            return payload

        def reply(self, content, agent_id=3, conversation=1):
            """An agent answers the customer in Chatwoot; its webhook is returned."""
            written = chatwoot.add_agent_message(1, conversation, content, user_id=agent_id)
            payload = agent_message(content, written["id"], pipeline.clock.now, status="open")
            payload["sender"]["id"] = agent_id
            return payload

        def drafts(self):
            store = DraftStore(
                pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], POLICY.zone
            )
            return store.of_conversation("1", "1")

        def draft_notes(self):
            return [n for n in chatwoot.notes(1, 1) if n.startswith("Draft reply")]

        def dead_lettered(self):
            return pipeline.messages(pipeline.dlq_url)

    return World()


def test_a_retried_turn_posts_the_stored_draft_and_never_asks_the_drafter_again(
    world, chatwoot, drafter
):
    world.deliver(world.customer("how long does shipping take?"))
    world.process(cycles=1)
    # The first attempt stores the draft, then Chatwoot refuses the note (429): it retries.
    chatwoot.fail("POST", "/messages", 429)
    world.process(cycles=4)
    [draft] = world.drafts()
    [note] = world.draft_notes()
    assert drafter.calls == 1
    assert draft["text"] == "Shipping takes 2 to 4 business days (wording 1)."
    assert draft["text"] in note

    world.deliver(world.note("/send"))
    world.process()
    assert chatwoot.public_messages(1, 1) == [draft["text"]]  # what the agent read, verbatim
    assert world.dead_lettered() == []


def test_a_late_bare_send_never_approves_a_draft_posted_after_it_was_typed(world, chatwoot):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    [first] = world.drafts()
    send = world.note("/send")  # typed now; its webhook is delayed (a backoff, a replay)
    world.deliver(world.customer("and to Cali?"))  # supersedes the first draft
    world.process()
    assert [d["status"] for d in world.drafts()] == ["superseded", "pending"]

    world.deliver(send)  # the /send finally arrives: it meant the first draft
    world.process()
    assert chatwoot.public_messages(1, 1) == []
    assert [d["status"] for d in world.drafts()] == ["superseded", "pending"]
    assert chatwoot.notes(1, 1)[-1].startswith(
        f"Draft {first['draft_id']} was already superseded by a newer customer message"
    )
    assert world.dead_lettered() == []


def test_an_explicit_send_of_a_draft_whose_note_came_after_it_is_refused(world, chatwoot):
    from support_pipeline.drafts.store import draft_id_for

    question = world.customer("how long does shipping take?")
    # Draft ids are derived from the turn: one could be typed before its note exists.
    draft_id = draft_id_for("1", "1", str(question["id"]))
    early = world.note(f"/send {draft_id}")
    world.deliver(question)
    world.process()
    world.deliver(early)
    world.process()
    assert chatwoot.public_messages(1, 1) == []
    assert [d["status"] for d in world.drafts()] == ["pending"]
    assert "was not in the conversation when you wrote /send" in chatwoot.notes(1, 1)[-1]


def test_a_reply_retried_after_a_502_is_not_sent_when_an_agent_answered_meanwhile(
    pipeline, world, chatwoot
):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    # The public reply's POST gets a 502 from the proxy, and nothing was created.
    chatwoot.fail("POST", "/messages", 502)
    world.deliver(world.note("/send"))
    pipeline.drain(world.consumer())
    assert chatwoot.public_messages(1, 1) == []
    assert len(chatwoot.calls_to("POST", "/messages", ok_only=False)) == 2  # the note, the 502
    # The agent, seeing nothing go out, answers by hand; that webhook is lost upstream.
    world.reply("It takes about 3 days!")
    world.process(cycles=4)
    assert chatwoot.public_messages(1, 1) == ["It takes about 3 days!"]
    [draft] = world.drafts()
    assert draft["status"] == "replaced"
    assert any("was not sent" in note for note in chatwoot.notes(1, 1))
    assert [c.body["content"] for c in chatwoot.calls_to("POST", "/messages")][-1].startswith(
        f"Draft {draft['draft_id']} was not sent"
    )
    assert world.dead_lettered() == []


def test_a_reply_whose_answer_was_lost_is_found_and_not_sent_twice(pipeline, world, chatwoot):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    chatwoot.fail("POST", "/messages", 502, acted=True)  # created, but the client saw a 502
    world.deliver(world.note("/send"))
    pipeline.drain(world.consumer())
    world.reply("Anything else?")  # a person writes after the reply went out
    world.process(cycles=4)
    [draft] = world.drafts()
    assert chatwoot.public_messages(1, 1) == [draft["text"], "Anything else?"]
    assert draft["status"] == "sent_as_is"


@pytest.mark.parametrize(
    ("who", "sender_type", "agent_id"),
    [("an agent bot", "agent_bot", 3), ("the pipeline's own user", "user", 900)],
)
def test_a_send_not_written_by_an_agent_user_approves_nothing(
    world, chatwoot, who, sender_type, agent_id
):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    world.deliver(world.note("/send", agent_id=agent_id, sender_type=sender_type))
    world.process()
    assert chatwoot.public_messages(1, 1) == [], who
    assert [d["status"] for d in world.drafts()] == ["pending"]


def test_a_customer_typing_send_approves_nothing(world, chatwoot):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    world.deliver(world.customer("/send"))
    world.process()
    assert chatwoot.public_messages(1, 1) == []


def test_an_unsigned_post_never_carries_a_command(pipeline, world, chatwoot):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    send = world.note("/send")
    service = pipeline.ingest(accept_url_token=True)
    status, _ = pipeline.post(send, service=service, headers={}, query=f"token={SECRET}")
    assert status == 202  # accepted by URL token: recorded, but never a command
    world.process()
    assert chatwoot.public_messages(1, 1) == []
    assert [d["status"] for d in world.drafts()] == ["pending"]
    assert pipeline.telemetry.total("DraftCommandUnsigned") == 1


def test_an_unsigned_post_of_a_pipeline_event_is_refused_and_a_signed_one_dead_lettered(
    pipeline, world
):
    forged = {
        "event": "draft_due",
        "account": {"id": 1},
        "conversation": {"id": 1},
        "message_id": 5,
    }
    service = pipeline.ingest(accept_url_token=True)
    status, body = pipeline.post(
        forged, service=service, headers={}, query=f"token={SECRET}", timestamp=pipeline.clock.now
    )
    assert status == 401 and "pipeline's own events" in body["reason"]
    assert pipeline.messages(pipeline.queue_url) == []

    assert pipeline.post(forged)[0] == 202  # signed: taken in, never run
    world.process(cycles=1)
    [dead] = world.dead_lettered()
    assert attributes_of(dead)["error_type"] == "forged_event"
    assert world.drafts() == []


def test_a_huge_customer_message_is_drafted_from_chatwoot_and_nothing_is_lost(
    pipeline, world, chatwoot, drafter
):
    text = "😀" * 150_000  # Chatwoot takes up to 150,000 characters
    # Chatwoot's JSON keeps UTF-8 as it is (Rails does not escape it): about 1.2 MB here.
    body = json.dumps(world.customer(text), ensure_ascii=False).encode()
    assert len(body) > 1_048_576
    world.deliver(body)
    pipeline.drain(world.consumer())
    pipeline.end_delays()
    [due] = pipeline.messages(pipeline.queue_url)  # the scheduled draft_due
    assert len(due["Body"]) < 1000 and "😀" not in json.dumps(json.loads(due["Body"]))
    world.process()
    [draft] = world.drafts()
    assert draft["status"] == "pending" and len(draft["question"]) == 4000
    assert world.dead_lettered() == []
    assert pipeline.messages(pipeline.queue_url) == []


def test_a_request_aws_will_never_accept_is_permanent():
    from botocore.exceptions import ClientError

    from support_pipeline.processing.errors import classify

    too_long = ClientError(
        {"Error": {"Code": "InvalidParameterValue", "Message": "Message must be shorter"}},
        "SendMessage",
    )
    failure = classify(too_long)
    assert failure.permanent and failure.error_type == "aws_rejected"


def test_an_unsigned_post_never_escalates_by_command(pipeline, world, chatwoot):
    escalate = world.note("/escalate the customer threatens to leave")
    service = pipeline.ingest(accept_url_token=True)
    status, _ = pipeline.post(
        escalate, service=service, headers={}, query=f"token={SECRET}", timestamp=pipeline.clock.now
    )
    assert status == 202
    world.process()
    assert [n for n in chatwoot.notes(1, 1) if n.startswith("Escalated")] == []
    assert chatwoot.calls_to("POST", "/assignments") == []

    world.deliver(escalate)  # the same note, signed: obeyed
    world.process()
    assert any(n.startswith("Escalated by the support pipeline") for n in chatwoot.notes(1, 1))


# ---- found by review: what only Chatwoot can confirm ---------------------------------------
@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("missing", "no such message"),  # a signed delivery naming a message Chatwoot lacks
        ("other agent", "written by someone else"),  # the payload names another user
        ("deleted", "deleted"),  # the agent deleted the /send before it was done
        ("public", "not an agent's private note"),  # Chatwoot holds a public reply there
    ],
)
def test_a_send_is_obeyed_only_as_chatwoot_holds_it(world, chatwoot, forge, why):
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    if forge == "public":
        written = chatwoot.add_agent_message(1, 1, "/send", user_id=3)
        send = world.note("/send")
        chatwoot.conversation(1, 1).messages.remove(
            next(m for m in chatwoot.conversation(1, 1).messages if m["id"] == send["id"])
        )
        send["id"] = written["id"]
    else:
        send = world.note("/send")
    if forge == "missing":
        send["id"] = 10**9
    elif forge == "other agent":
        send["sender"]["id"] = 424242
    elif forge == "deleted":
        chatwoot.delete_message(1, 1, send["id"])
    world.deliver(send)
    world.process()
    assert chatwoot.public_messages(1, 1) == ([] if forge != "public" else ["/send"])
    assert [d["status"] for d in world.drafts()] == ["pending"]
    assert f"({why}): nothing was done" in chatwoot.notes(1, 1)[-1]


def test_a_customer_writing_while_the_drafter_works_supersedes_the_draft_before_its_note(
    pipeline, world, chatwoot, drafter
):
    """The drafter takes seconds (a model): a follow-up recorded meanwhile makes the draft for
    the old turn stale; its note is never posted, and the follow-up's draft covers the turn."""
    real = drafter.draft

    def slow(context):
        answer = real(context)
        if drafter.calls == 1:  # while the first draft is being written
            world.deliver(world.customer("and to Cali?"))
            pipeline.drain(world.consumer())
        return answer

    drafter.draft = slow
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    first, second = world.drafts()
    assert (first["status"], second["status"]) == ("superseded", "pending")
    [note] = world.draft_notes()
    assert second["draft_id"] in note and first["draft_id"] not in note
    world.deliver(world.note("/send"))
    world.process()
    assert chatwoot.public_messages(1, 1) == [second["text"]]


def test_the_configured_actor_is_the_pipeline_when_the_token_has_no_profile(
    pipeline, chatwoot, drafter
):
    """An agent bot's token has no profile (GET /api/v1/profile is 401): the policy's actor
    says who the pipeline is, and the reply path uses it too."""
    from tests.support import policy_with

    policy = policy_with(
        **{
            "escalation.rules.unanswered_messages.enabled": False,
            "escalation.rules.vip_contact.enabled": False,
            "actor.id": chatwoot.actor_id,
            "actor.type": "user",
        }
    )
    chatwoot.fail("GET", "/api/v1/profile", 401, times=1000)
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    def run():
        pipeline.clock.advance(300)
        pipeline.make_visible()
        pipeline.drain(
            pipeline.consumer(chatwoot=client, policy=policy, drafters=lambda i: drafter)
        )

    written = chatwoot.add_customer_message(1, 1, "how long does shipping take?")
    question = incoming(
        "how long does shipping take?", written["id"], pipeline.clock.now, 1, status="open"
    )
    assert pipeline.post(question, timestamp=pipeline.clock.now)[0] == 202
    run()
    run()
    [draft] = DraftStore(
        pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], policy.zone
    ).of_conversation("1", "1")
    note = chatwoot.add_agent_message(1, 1, "/send", private=True, user_id=3)
    send = agent_message("/send", note["id"], pipeline.clock.now, private=True, status="open")
    send["sender"]["id"] = 3
    assert pipeline.post(send, delivery_id="actor-send", timestamp=pipeline.clock.now)[0] == 202
    run()
    assert chatwoot.public_messages(1, 1) == [draft["text"]]
    assert pipeline.messages(pipeline.dlq_url) == []


def test_a_canned_reply_another_approval_posted_is_not_taken_for_this_one(pipeline, chatwoot):
    """Two approvals of the same text: after this /send, the pipeline's message with that text
    that the ledger records as *another* reply's is not this reply's; this one is posted."""
    from support_pipeline.actions import Action
    from support_pipeline.chatwoot.client import content_digest

    text = "Shipping takes 2 to 4 business days."
    command = chatwoot.add_agent_message(1, 1, "/send d-bbbbbb", private=True, user_id=3)
    other = chatwoot.add_agent_message(1, 1, text, user_id=chatwoot.actor_id)  # d-aaaaaa's
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    support = pipeline.support(client)
    runner = support.actions
    runner.approval_of = lambda a, c, d: {"digest": content_digest(text)}
    first = Action(
        "1",
        "1",
        "draft:1:1:d-aaaaaa/send",
        "public_reply",
        {"content": text, "draft_id": "d-aaaaaa", "after_message_id": 1},
    )
    claim = runner.ledger.claim(first)
    runner.ledger.record_done(first, claim.owner, {"message_id": other["id"]})
    mine = Action(
        "1",
        "1",
        "draft:1:1:d-bbbbbb/send",
        "public_reply",
        {"content": text, "draft_id": "d-bbbbbb", "after_message_id": command["id"]},
    )
    assert runner.run(mine) == "done"
    assert chatwoot.public_messages(1, 1) == [text, text]


def test_a_send_written_after_the_draft_expired_is_refused_before_the_sweep_marks_it(
    pipeline, world, chatwoot
):
    """Found by the property test: drafts expire after drafts.expire_after, but the sweep marks
    them only when it runs; a /send written in between must not reach the customer."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    [draft] = world.drafts()
    pipeline.clock.advance(POLICY.drafts.expire_after + 1)
    send = world.note("/send")
    send["created_at"] = float(draft["created_epoch"]) + POLICY.drafts.expire_after + 1
    world.deliver(send)
    world.process(cycles=1)
    assert chatwoot.public_messages(1, 1) == []
    assert [d["status"] for d in world.drafts()] == ["expired"]
    assert chatwoot.notes(1, 1)[-1].startswith(f"Draft {draft['draft_id']} was already expired")


def test_a_slow_draft_superseded_late_leaves_the_newer_drafts_mark(
    pipeline, world, chatwoot, drafter
):
    """Found by review: the first turn's model is slow; the follow-up's draft is posted
    meanwhile. Superseding the slow draft must not clear the newer draft's pending mark, or
    the newer draft would never be superseded and a later /send would send it stale."""
    real = drafter.draft

    def slow(context):
        answer = real(context)
        if drafter.calls == 1:
            world.deliver(world.customer("and to Cali?"))
            pipeline.drain(world.consumer())
            pipeline.clock.advance(30)
            pipeline.end_delays()
            pipeline.drain(world.consumer())  # the follow-up's draft: note posted
        return answer

    drafter.draft = slow
    world.deliver(world.customer("how long does shipping take?"))
    world.process(cycles=3)
    first, second = world.drafts()
    assert (first["status"], second["status"]) == ("superseded", "pending")
    assert pipeline.store().get_record("1", "1")["pending_draft_id"] == second["draft_id"]
    world.deliver(world.customer("actually, cancel my order"))  # supersedes the second
    send = world.note("/send")  # typed before the third draft's note
    world.process(cycles=1)
    world.deliver(send)
    world.process()
    assert [d["status"] for d in world.drafts()][:2] == ["superseded", "superseded"]
    assert chatwoot.public_messages(1, 1) == []


def test_an_approval_from_a_dry_run_sends_nothing_after_going_live(pipeline, chatwoot):
    """Found by review: a /send handled while the pipeline ran without Chatwoot left a dry-run
    reply in the ledger; redriven after going live, it must not post (its note was never in
    Chatwoot, so no agent saw that text there)."""
    from support_pipeline.actions import Action
    from support_pipeline.chatwoot.client import content_digest
    from support_pipeline.processing.errors import PermanentError

    reply = Action(
        "1",
        "1",
        "draft:1:1:d-cccccc/send",
        "public_reply",
        {"content": "Hola", "draft_id": "d-cccccc", "after_message_id": 1},
    )
    assert pipeline.support().actions.run(reply) == "dry_run"
    live = pipeline.support(ChatwootClient(chatwoot.url, lambda: chatwoot.token)).actions
    live.approval_of = lambda a, c, d: {"digest": content_digest("Hola")}
    with pytest.raises(PermanentError, match="approved in a dry run"):
        live.run(reply)
    assert chatwoot.calls_to("POST", "/messages", ok_only=False) == []


def test_a_customer_message_between_the_note_and_the_send_cancels_it_even_unseen(world, chatwoot):
    """Found by review: the customer wrote after the draft's note and before /send, but that
    webhook is late or lost, so the draft still looks pending. Chatwoot's messages say the
    turn moved on: nothing is sent and the agent is told."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    [draft] = world.drafts()
    world.customer("actually, to Cali please")  # in Chatwoot; its webhook never comes
    world.deliver(world.note("/send"))
    world.process()
    assert chatwoot.public_messages(1, 1) == []
    assert [d["status"] for d in world.drafts()] == ["superseded"]
    assert chatwoot.notes(1, 1)[-1].startswith(
        f"Draft {draft['draft_id']} was not sent: the customer wrote again"
    )
