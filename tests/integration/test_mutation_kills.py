"""Tests that kill mutants `make mutate` found surviving in the approval path and the action
ledger (docs/testing.md, "Mutation testing").

Each test names the mutant it kills and asserts real outcomes: what the customer received in
the fake Chatwoot, the draft and ledger items in DynamoDB. The world is test_approval_gate's.
"""

from __future__ import annotations

import dataclasses

import pytest

from support_pipeline.actions import Action
from support_pipeline.policy import load_default_policy
from tests.integration.test_approval_gate import drafter, world  # noqa: F401 (fixtures)


def test_a_reply_already_posted_is_finished_even_when_an_agent_writes_after_it(
    pipeline,
    world,  # noqa: F811 (test_approval_gate's fixture, imported above)
    chatwoot,
):
    """service.py _answered_before_sending: `search_after is not None` -> `is None`.

    The approved reply was posted but its answer was lost (a 502 after Chatwoot created it);
    an agent then writes to the customer and that webhook arrives before the retry. The retry
    must find its own reply in Chatwoot and record the draft as sent, not claim it was never
    sent because a person answered (the customer did get it)."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    chatwoot.fail("POST", "/messages", 502, acted=True)  # created, but the client saw a 502
    world.deliver(world.note("/send"))
    pipeline.drain(world.consumer())  # the /send's retry waits, invisible
    pipeline.clock.advance(60)
    world.deliver(world.reply("Anything else?"))
    pipeline.drain(world.consumer())  # only the agent's reply: the retry is not visible yet
    world.process(cycles=4)

    [draft] = world.drafts()
    assert chatwoot.public_messages(1, 1) == [draft["text"], "Anything else?"]
    assert draft["status"] == "sent_as_is"
    assert not any("was not sent" in note for note in chatwoot.notes(1, 1))
    assert world.dead_lettered() == []


def test_an_action_cannot_be_changed_once_made():
    """actions.py: `@dataclass(frozen=True)` on Action -> `frozen=False`.

    What the ledger claims is what is posted: an Action's fields cannot be reassigned, so no
    code path can point it at another conversation or action id between the claim and the
    call to Chatwoot."""
    action = Action("1", "2", "draft:1:2:d-abcdef/send", "public_reply", {"content": "hi"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.conversation_id = "3"  # type: ignore[misc]
    assert action.conversation_key.endswith("#2")


class _NoteMaybeSent:
    """A Chatwoot whose POST of a note fails so that the note may or may not exist."""

    def __init__(self, error):
        self.error = error

    def latest_message_id(self, account_id, conversation_id):
        return 7

    def create_private_note(self, account_id, conversation_id, content, action_id):
        raise self.error


@pytest.mark.parametrize("error", ["502", "no answer"])
def test_a_note_that_may_have_been_sent_is_not_looked_for_before_120_seconds(pipeline, error):
    """actions.py: `MAYBE_SENT_HOLD_SECONDS = 120.0` -> 121.0 / 119.0 (tests that import the
    constant cannot see a change to it), and run's `except (NoAnswerError, ServerError)` with
    either one replaced (the claim released, not held). The hold is the documented 120 s: a
    retry 119.5 s after the 502 or the timeout finds the claim still held; one at 120.5 s
    takes it over."""
    from support_pipeline.actions import ActionLedger, ActionRunner
    from support_pipeline.chatwoot.client import NoAnswerError, ServerError

    failure = (
        ServerError("chatwoot_5xx", "502 from the proxy")
        if error == "502"
        else NoAnswerError("chatwoot_timeout", "no answer")
    )
    ledger = ActionLedger(
        pipeline.dynamodb, pipeline.stack.physical["ActionsTable"], clock=pipeline.clock
    )
    runner = ActionRunner(ledger, _NoteMaybeSent(failure), pipeline.telemetry)
    note = Action("1", "1", "note:hold", "private_note", {"content": "Escalated."})
    with pytest.raises(type(failure)):
        runner.run(note)
    assert ledger.get(note)["search_after"] == 7

    pipeline.clock.advance(119.5)
    assert ledger.claim(note) is None  # still held: the request may still be landing
    pipeline.clock.advance(1.0)
    taken = ledger.claim(note)
    assert taken is not None and taken.previous["search_after"] == 7


def test_an_action_done_by_another_worker_meanwhile_is_already_done_not_retried(pipeline):
    """actions.py run: `if now and now.get("status") == DONE` -> `if not now and ...`.

    The first read saw nothing (another worker finished just after it): the claim fails, the
    second read finds the action done, and it is reported done. No retry, no Chatwoot call."""
    from support_pipeline.actions import ActionLedger, ActionRunner

    class StaleFirstRead(ActionLedger):
        reads = 0

        def get(self, action):
            StaleFirstRead.reads += 1
            return None if StaleFirstRead.reads == 1 else super().get(action)

    ledger = StaleFirstRead(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    note = Action("1", "1", "note:race", "private_note", {"content": "Escalated."})
    claim = ledger.claim(note)
    assert claim is not None and ledger.record_done(note, claim.owner, {"message_id": 9})

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"Chatwoot called: {name}")

    runner = ActionRunner(ledger, NoCalls(), pipeline.telemetry)
    assert runner.run(note) == "already_done"
    assert ledger.get(note)["status"] == "done"


def test_a_send_for_a_draft_note_whose_answer_was_lost_is_obeyed(
    pipeline,
    world,  # noqa: F811 (test_approval_gate's fixture, imported above)
    chatwoot,
):
    """service.py _seen_before: `if note_id is None and search_after is not None` ->
    `if not note_id is None and ...`.

    Chatwoot created the draft note but its answer was lost (502): the ledger has no message
    id for it yet, only where to look. The agent reads the note and writes /send before the
    note's retry: the note is found in Chatwoot, before the /send, and the draft is sent."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process(cycles=1)  # the turn is taken in; its draft is due after the quiet period
    chatwoot.fail("POST", "/messages", 502, acted=True)  # the note exists; its answer is lost
    world.process(cycles=1)
    [draft] = world.drafts()
    assert draft["text"] in world.draft_notes()[0]

    world.deliver(world.note("/send"))
    pipeline.drain(world.consumer())  # the note's own retry is not visible yet
    assert chatwoot.public_messages(1, 1) == [draft["text"]]
    [sent] = world.drafts()
    assert sent["status"] == "sent_as_is"


def test_a_reply_found_in_chatwoot_is_logged_and_counted_as_recovered(
    pipeline,
    world,  # noqa: F811 (test_approval_gate's fixture, imported above)
    chatwoot,
    pipeline_logs,
):
    """actions.py run: `"action taken" if outcome == DONE else "action found already done in
    Chatwoot"` -> `if not outcome == DONE` (the operator reads these: a recovered reply is
    not a second one). The retry after a lost answer logs and counts a recovery."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    chatwoot.fail("POST", "/messages", 502, acted=True)  # created, but the client saw a 502
    world.deliver(world.note("/send"))
    world.process(cycles=4)
    [draft] = world.drafts()
    assert chatwoot.public_messages(1, 1) == [draft["text"]]
    assert pipeline.telemetry.counts[("ActionRecovered", "public_reply")] == 1
    assert pipeline.telemetry.counts[("ActionTaken", "public_reply")] == 0
    [found] = [
        line
        for line in pipeline_logs.getvalue().splitlines()
        if "action found already done in Chatwoot" in line
    ]
    assert "public_reply" in found  # the reply, not the draft note (which was taken)
    # actions.py run `if not self.ledger.record_done(...)` -> `if ...`, and record_done's
    # `return True` -> `return False`: no claim was lost, so nothing says one was
    assert "action claim lost" not in pipeline_logs.getvalue()


def test_an_action_cancelled_by_another_worker_meanwhile_is_cancelled_not_retried(pipeline):
    """actions.py run: `if now and now.get("status") == CANCELLED` -> `if not now and ...`.

    As above, with the other worker's outcome "cancelled" (a person answered after /send):
    the reply is reported cancelled at once, never retried, nothing posted."""
    from support_pipeline.actions import CANCELLED, ActionLedger, ActionRunner

    class StaleFirstRead(ActionLedger):
        reads = 0

        def get(self, action):
            StaleFirstRead.reads += 1
            return None if StaleFirstRead.reads == 1 else super().get(action)

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"Chatwoot called: {name}")

    ledger = StaleFirstRead(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    reply = Action(
        "1",
        "1",
        "draft:1:1:d-abcdef/send",
        "public_reply",
        {"content": "hi", "draft_id": "d-abcdef", "after_message_id": 5},
    )
    claim = ledger.claim(reply)
    assert claim is not None
    assert ledger.record_done(reply, claim.owner, {"answered_by_message_id": 6}, CANCELLED)

    assert ActionRunner(ledger, NoCalls(), pipeline.telemetry).run(reply) == CANCELLED
    assert ledger.get(reply)["status"] == CANCELLED


def test_a_claim_outlives_the_invocation_that_holds_it_by_5_seconds(pipeline):
    """actions.py: `LEASE_MARGIN_SECONDS = 5.0` -> 4.0 / 6.0 (the constant is imported by
    nothing that could see it). A claim taken with 30 s of the invocation left is held until
    35 s: another worker cannot take it at 34.5 s, and can at 35.5 s."""
    from support_pipeline import deadline
    from support_pipeline.actions import ActionLedger

    clock = pipeline.clock
    ledger = ActionLedger(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"], clock=clock)
    note = Action("1", "1", "note:lease", "private_note", {"content": "Escalated."})
    with deadline.running_until(deadline.Deadline(clock() + 30, clock)):
        assert ledger.claim(note) is not None
    clock.advance(34.5)
    assert ledger.claim(note) is None
    clock.advance(1.0)
    assert ledger.claim(note) is not None


def test_in_a_dry_run_a_send_typed_the_second_its_draft_was_made_approves_it(
    pipeline,
    drafter,  # noqa: F811 (test_approval_gate's fixture, imported above)
):
    """service.py _seen_before (dry run): `made <= typed_at` -> `made < typed_at`.

    Without Chatwoot there is no note to order by: a draft made by the time the /send was
    typed (the same second included) is the one the agent meant."""
    from support_pipeline.drafts.store import DraftStore
    from tests.integration.test_approval_gate import POLICY
    from tests.support import agent_message, incoming

    consumer = pipeline.consumer(policy=POLICY, drafters=lambda inbox: drafter)
    ask = incoming("how long does shipping take?", 231, pipeline.clock.now, 1, status="open")
    assert pipeline.post(ask)[0] == 202
    pipeline.drain(consumer)
    pipeline.end_delays()
    pipeline.drain(consumer)
    store = DraftStore(
        pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], POLICY.zone
    )
    [draft] = store.of_conversation("1", "1")
    send = agent_message("/send", 232, float(draft["created_epoch"]), private=True)
    send["sender"].update(id=3, type="user")
    assert pipeline.post(send, delivery_id="dry-send")[0] == 202
    pipeline.drain(consumer)

    [decided] = store.of_conversation("1", "1")
    assert decided["status"] == "sent_as_is"
    [reply] = [a for a in pipeline.support().ledger.list("1", "1") if a["kind"] == "public_reply"]
    assert reply["status"] == "dry_run" and reply["detail"]["content"] == draft["text"]


class _RateLimited:
    """A Chatwoot that answers the note's POST with 429: nothing was created."""

    def latest_message_id(self, account_id, conversation_id):
        return 7

    def create_private_note(self, account_id, conversation_id, content, action_id):
        from support_pipeline.processing.errors import TransientError

        raise TransientError("chatwoot_throttled", "429")


def test_a_claim_is_given_back_when_chatwoot_refuses_the_call(pipeline):
    """actions.py run: `except BaseException:` (release the claim) -> an exception nothing
    raises. A 429 created nothing: the claim is released so the retry need not wait out the
    lease (60 s, or the rest of the invocation)."""
    from support_pipeline.actions import ActionLedger, ActionRunner
    from support_pipeline.processing.errors import TransientError

    ledger = ActionLedger(
        pipeline.dynamodb, pipeline.stack.physical["ActionsTable"], clock=pipeline.clock
    )
    note = Action("1", "1", "note:429", "private_note", {"content": "Escalated."})
    with pytest.raises(TransientError):
        ActionRunner(ledger, _RateLimited(), pipeline.telemetry).run(note)
    pipeline.clock.advance(1)
    taken = ledger.claim(note)
    assert taken is not None and taken.previous["attempts"] == 1
    # actions.py claim: `ADD attempts :one` with `":one": 1` -> 2: attempts count attempts
    assert ledger.get(note)["attempts"] == 2


def test_a_label_change_waits_out_the_whole_lock_wait_before_retrying(pipeline):
    """actions.py _change_labels: `waited = 0.0` -> `1.0` (gave up after half the wait).
    Another worker holds the conversation's label lock: the runner waits lock_wait_seconds
    (2 s, in 0.1 s steps) before it gives up and the event retries."""
    from support_pipeline.actions import LABEL_LOCK, ActionLedger, ActionRunner
    from support_pipeline.processing.errors import TransientError

    ledger = ActionLedger(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    action = Action("1", "1", "a/labels", "add_labels", {"labels": ["escalated"]})
    assert ledger.lock(action.conversation_key, LABEL_LOCK, "another worker")
    slept: list[float] = []

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"Chatwoot called: {name}")

    runner = ActionRunner(ledger, NoCalls(), pipeline.telemetry, sleep=slept.append)
    with pytest.raises(TransientError, match="label_lock"):
        runner.run(action)
    assert sum(slept) == pytest.approx(2.0, abs=0.11)


def test_a_send_with_no_draft_in_the_conversation_is_answered(world, chatwoot):  # noqa: F811
    """service.py agent_note: `... to " + {...}[command.name] + "."` -> `- "."` (a TypeError:
    the event retried to the DLQ). The agent is told there is nothing to send."""
    world.deliver(world.note("/send"))
    world.process()
    assert chatwoot.notes(1, 1)[-1].startswith(
        "There is no pending draft in this conversation to send."
    )
    assert chatwoot.public_messages(1, 1) == []
    assert world.dead_lettered() == []


def test_a_worker_that_lost_its_claim_cannot_record_where_to_search(pipeline):
    """actions.py _update_owned: on ConditionalCheckFailed `return False` -> `return True`
    (a worker whose claim was taken over would go on to post: twice in Chatwoot)."""
    from support_pipeline.actions import ActionLedger

    ledger = ActionLedger(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    note = Action("1", "1", "note:owner", "private_note", {"content": "Escalated."})
    assert ledger.claim(note) is not None
    assert ledger.remember_search_start(note, "a worker whose claim lapsed", 5) is False
    assert "search_after" not in ledger.get(note)


def test_an_agent_pasting_the_draft_as_their_own_reply_is_a_person_answering(
    pipeline,
    world,  # noqa: F811 (test_approval_gate's fixture, imported above)
    chatwoot,
):
    """client.py reply_or_answer: `mine and ours is None and content == ...` -> `mine or
    (...)` took a person's message with the draft's text for the pipeline's own reply."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    [draft] = world.drafts()
    chatwoot.fail("POST", "/messages", 502)  # the public reply's POST: nothing created
    world.deliver(world.note("/send"))
    pipeline.drain(world.consumer())
    world.reply(draft["text"])  # the agent pastes the draft as their own reply
    world.process(cycles=4)
    assert chatwoot.public_messages(1, 1) == [draft["text"]]  # once: the agent's
    [decided] = world.drafts()
    assert decided["status"] == "replaced"


def test_a_grade_without_a_draft_id_grades_the_latest_draft(
    world,  # noqa: F811 (test_approval_gate's fixture, imported above)
):
    """service.py agent_note: `/grade` without an id, `posted[-1]` -> `posted[0]` graded the
    oldest draft of the conversation."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    world.deliver(world.customer("and to Cali?"))
    world.process()
    world.deliver(world.note("/grade tone=5 accuracy=4 policy=3 clear"))
    world.process()
    first, latest = world.drafts()
    assert latest["grade_comment"] == "clear"
    assert "grade_comment" not in first


POLICY_ZONE = load_default_policy().zone


def test_every_read_the_approval_rule_rests_on_is_strongly_consistent(pipeline, monkeypatch):
    """moto's reads are always consistent, so only the request shows it: the approval, the
    draft and the ledger entry are read with ConsistentRead (an eventually consistent read
    could miss an approval just written and refuse the reply, or miss a done entry)."""
    from support_pipeline.actions import ActionLedger
    from support_pipeline.drafts.store import DraftStore

    settings = pipeline.processor_settings()
    drafts = DraftStore(pipeline.dynamodb, settings.conversations_table, POLICY_ZONE)
    ledger = ActionLedger(pipeline.dynamodb, settings.actions_table)
    seen = []
    for table in (drafts._table, ledger._table):
        real = table.get_item

        def spy(_real=real, **kwargs):
            seen.append(kwargs.get("ConsistentRead"))
            return _real(**kwargs)

        monkeypatch.setattr(table, "get_item", spy)
    drafts.approval("1", "1", "d-234567")
    drafts.get("1", "1", "d-234567")
    ledger.get(Action("1", "1", "a-1", "private_note"))
    assert seen == [True, True, True]


def test_in_a_dry_run_a_send_typed_before_its_draft_was_made_approves_nothing(
    pipeline,
    drafter,  # noqa: F811
):
    """service.py _seen_before (dry run): `created_epoch or 0` -> `and 0` (every draft made
    "at 0", so any /send would reach it)."""
    from support_pipeline.drafts.store import DraftStore
    from tests.integration.test_approval_gate import POLICY
    from tests.support import agent_message, incoming

    consumer = pipeline.consumer(policy=POLICY, drafters=lambda inbox: drafter)
    ask = incoming("how long does shipping take?", 241, pipeline.clock.now, 1, status="open")
    assert pipeline.post(ask)[0] == 202
    pipeline.drain(consumer)
    pipeline.end_delays()
    pipeline.drain(consumer)
    store = DraftStore(
        pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], POLICY.zone
    )
    [draft] = store.of_conversation("1", "1")
    send = agent_message("/send", 242, float(draft["created_epoch"]) - 10, private=True)
    send["sender"].update(id=3, type="user")
    assert pipeline.post(send, delivery_id="dry-send-early")[0] == 202
    pipeline.drain(consumer)
    [still] = store.of_conversation("1", "1")
    assert still["status"] == "pending"


def test_a_command_without_a_chatwoot_message_id_reaches_no_draft(
    pipeline,
    world,  # noqa: F811
    chatwoot,
):
    """service.py _seen_before: `if not command_id.isdigit(): return False` -> True. A command
    with no message id of Chatwoot's cannot be ordered against the notes: never guessed. (The
    processor dead-letters a message event without an id before any handler runs, so this
    guard is the second wall; it is asked directly.)"""
    from support_pipeline.chatwoot.client import ChatwootClient
    from tests.integration.test_approval_gate import POLICY

    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    [draft] = world.drafts()
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    service = pipeline.support(client, POLICY).drafts
    later = str(int(chatwoot.conversation(1, 1).messages[-1]["id"]) + 1)
    assert service._seen_before(draft, later, None) is True  # the control: a later message
    assert service._seen_before(draft, "delivery:gate-9", None) is False


def test_a_send_reads_chatwoot_once_when_its_note_is_known(world, chatwoot):  # noqa: F811
    """service.py _seen_before: `note_id is None and search_after` -> `or` (the note would be
    looked for in Chatwoot although the ledger knows its id): the command read back, and one
    read of the messages after the /send, no more."""
    world.deliver(world.customer("how long does shipping take?"))
    world.process()
    send = world.note("/send")
    before = len(chatwoot.calls)
    world.deliver(send)
    world.process(cycles=1)
    reads = [c for c in chatwoot.calls[before:] if (c.method, c.suffix) == ("GET", "/messages")]
    [note] = [
        m["id"]
        for m in chatwoot.conversation(1, 1).messages
        if str(m.get("content", "")).startswith("Draft reply")
    ]
    assert [c.query for c in reads] == [
        {"after": str(send["id"] - 1)},  # the command, as Chatwoot holds it
        {"after": str(send["id"])},  # a person's answer, or this reply, after it
        {"after": str(note)},  # did the customer write between the note and the /send?
    ]
    assert len(chatwoot.public_messages(1, 1)) == 1


def test_ledger_entries_expire_exactly_after_their_retention(pipeline):
    """actions.py: `retention_days * 86400` -> 86401 / 86399."""
    from support_pipeline.actions import ActionLedger

    ledger = ActionLedger(
        pipeline.dynamodb,
        pipeline.stack.physical["ActionsTable"],
        clock=pipeline.clock,
        retention_days=90,
    )
    action = Action("1", "1", "a-expiry", "private_note", {"content": "x"})
    assert ledger.record_dry_run(action)
    assert int(ledger.get(action)["expires_at"]) == int(pipeline.clock.now + 90 * 86400)


def test_a_worker_whose_claim_was_taken_over_learns_it_when_recording_done(pipeline):
    """actions.py record_done: the lost-claim `return False` -> True (the runner would not know
    another worker now holds the action, and would log it as its own)."""
    from support_pipeline.actions import ActionLedger

    ledger = ActionLedger(
        pipeline.dynamodb, pipeline.stack.physical["ActionsTable"], clock=pipeline.clock
    )
    action = Action("1", "1", "a-taken", "private_note", {"content": "x"})
    first = ledger.claim(action)
    assert first is not None
    pipeline.clock.advance(3600)  # the first worker's lease lapsed
    second = ledger.claim(action)
    assert second is not None and second.owner != first.owner
    assert ledger.record_done(action, first.owner, {"message_id": 1}) is False
    assert ledger.record_done(action, second.owner, {"message_id": 1}) is True


@pytest.mark.parametrize("approval", [None, {"digest": "not-this-text"}])
def test_the_client_sends_nothing_public_without_a_matching_stored_approval(chatwoot, approval):
    """client.py create_public_reply: `approval is None or digest != ...` -> `and` (no stored
    approval at all would be sent)."""
    from support_pipeline.chatwoot.client import ChatwootClient
    from support_pipeline.processing.errors import PermanentError

    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    with pytest.raises(PermanentError, match="no stored approval matches"):
        client.create_public_reply("1", "1", "Hola", "d-234567", lambda a, c, d: approval)
    assert chatwoot.calls_to("POST", "/messages", ok_only=False) == []
    assert chatwoot.public_messages(1, 1) == []


def test_a_note_by_the_pipeline_or_a_bot_reply_after_the_send_is_no_persons_answer(chatwoot):
    """client.py reply_or_answer: `private or not outgoing` -> `and`, and `not mine and user`
    -> `or`: a private note, or an agent bot's public message, after the /send is not a person
    answering the customer."""
    from support_pipeline.chatwoot.client import ChatwootClient

    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    command = chatwoot.add_agent_message(1, 1, "/send", private=True, user_id=3)
    chatwoot.add_agent_message(1, 1, "nota de otra agente", private=True, user_id=4)
    chatwoot.add_bot_message(1, 1, "Un momento, por favor")
    ours, person = client.reply_or_answer("1", "1", "Hola", command["id"])
    assert (ours, person) == ([], None)
    answer = chatwoot.add_agent_message(1, 1, "Te respondo yo", user_id=4)
    assert client.reply_or_answer("1", "1", "Hola", command["id"])[1]["id"] == answer["id"]
