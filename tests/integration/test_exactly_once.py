"""Exactly once under the conditions that break it: lost answers, two workers, a deadline.

Chatwoot is the fake over real HTTP, which behaves like Chatwoot where it matters here: it keeps
only known ``content_attributes``, pages messages by 20 (100 after an id), and can carry out a
call and hang up without answering. AWS is moto, with DynamoDB's writes made atomic as DynamoDB's
are (tests/support.py), so two threads race exactly as two Lambda instances would.
"""

import threading
import time

import pytest
import requests

from support_pipeline.actions import Action, ActionLedger, ActionRunner
from support_pipeline.chatwoot.client import ChatwootClient, reference_in
from support_pipeline.escalation import STATE
from support_pipeline.store import ConversationStore
from support_pipeline_ops.local import lambda_shim
from tests.overlap import Rendezvous
from tests.support import NOW, Clock, incoming, policy_with

POLICY = policy_with(
    **{
        "escalation.team_id": 7,
        "escalation.rules.unanswered_messages.enabled": False,
    }
)


def client_for(chatwoot, session=None):
    return ChatwootClient(chatwoot.url, lambda: chatwoot.token, session=session)


def escalation_notes(chatwoot, conversation=1):
    return [n for n in chatwoot.notes(1, conversation) if n.startswith("Escalated")]


class SlowNetwork(requests.Session):
    """Each call takes ``latency`` seconds of ``clock``. A call whose read timeout is shorter
    still reaches Chatwoot, which acts on it; the client gives up at its timeout (ReadTimeout):
    what a slow server looks like from the client."""

    def __init__(self, clock, latency):
        super().__init__()
        self.clock = clock
        self.latency = latency

    def request(self, method, url, **kwargs):
        _, read = kwargs["timeout"]
        response = super().request(method, url, **kwargs)
        if self.latency > read:
            self.clock.advance(read)
            raise requests.ReadTimeout(f"no answer within {read:.2f} s")
        self.clock.advance(self.latency)
        return response


class VirtualContext(lambda_shim.LocalContext):
    """A Lambda context whose remaining time runs on the test's clock."""

    def __init__(self, clock, seconds):
        super().__init__(function_name="processor", timeout_seconds=int(seconds))
        self.clock = clock
        self.deadline = clock() + seconds

    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - self.clock()) * 1000))


def test_a_note_whose_answer_was_lost_is_found_after_25_more_messages_not_posted_twice(
    pipeline, chatwoot
):
    chatwoot.lose_answer("POST", "/messages")
    assert pipeline.post(incoming("quiero un reembolso", 101, NOW))[0] == 202
    pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))
    [posted] = escalation_notes(chatwoot)  # Chatwoot has it; the pipeline never heard back
    assert pipeline.telemetry.total("EventRetried") == 1
    for i in range(25):  # the customer keeps writing while the event backs off
        chatwoot.add_customer_message(1, 1, f"¿hola? {i}")
    assert posted not in [m["content"] for m in chatwoot.conversation(1, 1).messages[-20:]]

    pipeline.clock.advance(300)  # the backoff; the claim's lease has lapsed by now
    pipeline.make_visible()  # the redelivery
    pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))

    assert escalation_notes(chatwoot) == [posted]
    assert len(chatwoot.calls_to("POST", "/messages", ok_only=False)) == 1
    [note] = [a for a in pipeline.support().ledger.list("1", "1") if a["kind"] == "private_note"]
    assert note["status"] == "done" and note["result"]["recovered"] is True
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.messages(pipeline.dlq_url) == []


def test_a_redelivery_while_the_first_attempt_still_holds_the_note_does_not_post(
    pipeline, chatwoot
):
    chatwoot.lose_answer("POST", "/messages")
    assert pipeline.post(incoming("quiero un reembolso", 111, NOW))[0] == 202
    pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))
    pipeline.make_visible()  # back before the lease lapsed: the note may still be landing
    pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))
    assert pipeline.telemetry.total("ActionContended") == 1
    assert len(chatwoot.calls_to("POST", "/messages", ok_only=False)) == 1
    pipeline.clock.advance(300)
    pipeline.make_visible()
    pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))
    assert len(escalation_notes(chatwoot)) == 1


@pytest.mark.parametrize("same_message", [False, True], ids=["two-messages", "one-message-twice"])
def test_two_workers_on_one_conversation_give_one_escalation_note(
    pipeline, chatwoot, same_message, monkeypatch
):
    first = incoming("quiero un reembolso", 201, NOW)
    second = first if same_message else incoming("¡quiero mi reembolso ya!", 202, NOW + 1)
    assert pipeline.post(first, delivery_id="a")[0] == 202
    assert pipeline.post(second, delivery_id="b")[0] == 202
    # Both workers have read the escalation state (no reason claimed yet) and computed their
    # claims; neither writes until both are there, so the conditional write is contested.
    inside = Rendezvous(2)
    update_state = ConversationStore.update_state

    def contested(self, account, conversation, name, change, *args, **kwargs):
        if name == STATE:
            change = inside.before(change)
        return update_state(self, account, conversation, name, change, *args, **kwargs)

    monkeypatch.setattr(ConversationStore, "update_state", contested)
    start = threading.Barrier(2)

    def worker():
        consumer = pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY)
        start.wait(timeout=10)
        lambda_shim.poll_once(
            pipeline.sqs, pipeline.queue_url, pipeline.queue_arn, consumer.handle_batch, 1
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    inside.assert_overlapped()
    for _ in range(5):  # whatever lost a race backs off and comes back
        pipeline.clock.advance(300)
        pipeline.make_visible()
        pipeline.drain(pipeline.consumer(chatwoot=client_for(chatwoot), policy=POLICY))

    assert len(escalation_notes(chatwoot)) == 1
    escalations = [i for i in pipeline.store().timeline("1", "1") if i["kind"] == "escalation"]
    assert len(escalations) == 1
    assert sorted(chatwoot.conversation(1, 1).labels) == ["billing", "escalated"]
    assert len(chatwoot.calls_to("POST", "/labels")) == 1
    assert len(chatwoot.calls_to("POST", "/toggle_priority")) == 1
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.messages(pipeline.dlq_url) == []


def test_against_a_chatwoot_taking_1s_per_call_each_batch_returns_before_its_4s_deadline(
    pipeline, chatwoot
):
    clock = Clock()
    pipeline.clock = clock
    for conversation in (1, 2, 3):
        chatwoot.add_conversation(1, conversation, labels=["billing"])
        assert (
            pipeline.post(
                incoming("necesito un abogado", 300 + conversation, NOW, conversation),
                delivery_id=f"d{conversation}",
            )[0]
            == 202
        )
    network = SlowNetwork(clock, latency=1.0)
    consumer = pipeline.consumer(
        chatwoot=client_for(chatwoot, network), policy=POLICY, record_start_seconds=1
    )
    invocations = []
    for _ in range(40):
        started = clock()
        received, _ = lambda_shim.poll_once(
            pipeline.sqs,
            pipeline.queue_url,
            pipeline.queue_arn,
            consumer.handle_batch,
            batch_size=10,
            context_factory=lambda: VirtualContext(clock, 4.0),
        )
        if received == 0:
            if not pipeline._in_flight():
                break
        else:
            invocations.append(clock() - started)
        clock.advance(30)  # backoff; a kept lease lapses meanwhile
        pipeline.make_visible()

    assert invocations and max(invocations) <= 4.0
    for conversation in (1, 2, 3):
        assert len(escalation_notes(chatwoot, conversation)) == 1, conversation
        labels = chatwoot.conversation(1, conversation).labels
        assert sorted(labels) == ["billing", "escalated"]
    assert pipeline.messages(pipeline.queue_url) == []
    assert pipeline.messages(pipeline.dlq_url) == []
    assert pipeline.telemetry.total("EventDeferred") >= 1


def test_a_dry_run_entry_does_not_block_the_real_action_once_live(pipeline, chatwoot):
    support = pipeline.support()
    action = Action("1", "1", "esc:1:1:x/private_note", "private_note", {"content": "Nota"})
    assert ActionRunner(support.ledger, None, pipeline.telemetry).run(action) == "dry_run"
    live = ActionRunner(support.ledger, client_for(chatwoot), pipeline.telemetry)
    assert live.run(action) == "done"
    assert live.run(action) == "already_done"
    [note] = chatwoot.notes(1, 1)
    assert reference_in(note)
    assert support.ledger.get(action)["status"] == "done"


def test_concurrent_label_changes_by_two_workers_both_stick(pipeline, chatwoot):
    chatwoot.conversation(1, 1).labels = ["billing", "sla-at-risk"]

    class SlowAfterRead(requests.Session):
        """A gap between reading the labels and writing them: where a race would bite."""

        def request(self, method, url, **kwargs):
            response = super().request(method, url, **kwargs)
            if method == "GET" and url.endswith("/labels"):
                time.sleep(0.15)
            return response

    ledger = ActionLedger(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    actions = [
        Action("1", "1", "a/labels", "add_labels", {"labels": ["escalated"]}),
        Action("1", "1", "b/labels", "remove_labels", {"labels": ["sla-at-risk"]}),
    ]
    start = threading.Barrier(2)

    def worker(action):
        runner = ActionRunner(ledger, client_for(chatwoot, SlowAfterRead()), pipeline.telemetry)
        start.wait(timeout=10)
        runner.run(action)

    threads = [threading.Thread(target=worker, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(chatwoot.conversation(1, 1).labels) == ["billing", "escalated"]
    assert {ledger.get(a)["status"] for a in actions} == {"done"}


def test_an_event_not_started_on_its_last_delivery_goes_back_as_a_fresh_copy(pipeline):
    assert pipeline.post(incoming("hola", 401, NOW))[0] == 202
    for _ in range(7):  # seven deliveries that came to nothing
        pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, VisibilityTimeout=0)
    clock = Clock()
    consumer = pipeline.consumer(policy=POLICY)
    received, failed = lambda_shim.poll_once(
        pipeline.sqs,
        pipeline.queue_url,
        pipeline.queue_arn,
        consumer.handle_batch,
        context_factory=lambda: VirtualContext(clock, 1.0),  # less than the 5 s to start one
    )
    assert (received, failed) == (1, 0)
    [copy] = pipeline.messages(pipeline.queue_url)
    assert copy["Attributes"]["ApproximateReceiveCount"] == "1"  # counted from the peek only
    assert copy["MessageAttributes"]["dedupe_key"]["StringValue"] == "message_created:1:401"
    assert pipeline.store().get_record("1", "1") is None  # nothing was done yet
    pipeline.drain(consumer)
    assert pipeline.store().get_record("1", "1")["last_incoming_at"] == NOW
    assert pipeline.messages(pipeline.queue_url) == pipeline.messages(pipeline.dlq_url) == []


def test_deferrals_use_no_attempt_so_a_later_failure_still_gets_its_retries(pipeline):
    assert pipeline.post(incoming("hola", 411, NOW))[0] == 202
    clock = Clock()
    consumer = pipeline.consumer(policy=POLICY)
    for _ in range(7):  # seven invocations too short to start it
        lambda_shim.poll_once(
            pipeline.sqs,
            pipeline.queue_url,
            pipeline.queue_arn,
            consumer.handle_batch,
            context_factory=lambda: VirtualContext(clock, 1.0),
        )
    assert pipeline.telemetry.total("EventDeferred") == 7
    from support_pipeline.store import ConversationStore

    real = ConversationStore.get_record
    failures = []

    def throttled_once(self, *args):
        if not failures:
            failures.append(1)
            raise ConnectionError("DynamoDB throttled")
        return real(self, *args)

    ConversationStore.get_record = throttled_once
    try:
        pipeline.drain(consumer)  # one real attempt fails: it backs off, not to the DLQ
    finally:
        ConversationStore.get_record = real
    assert pipeline.messages(pipeline.dlq_url) == []
    pipeline.make_visible()
    pipeline.drain(consumer)
    assert pipeline.store().get_record("1", "1")["last_incoming_at"] == NOW
