"""The SLA sweep under the conditions that break a naive one: two sweeps at once, a sweep that
runs out of time, a conversation deleted in Chatwoot."""

import threading

import pytest

from support_pipeline import deadline
from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.sla import SWEEP_LEASE, SlaSweep
from tests.integration.test_exactly_once import SlowNetwork
from tests.integration.test_sla import CREATED, HOUR, POLICY
from tests.support import Clock, incoming


@pytest.fixture
def open_conversations(pipeline, chatwoot):
    """Customers waiting in conversations 1..n, none answered."""

    def make(n):
        for conversation in range(1, n + 1):
            if conversation != 1:
                chatwoot.add_conversation(1, conversation, labels=["billing"])
            payload = incoming(
                "Hola", conversation, CREATED + 10, conversation_id=conversation, status="open"
            )
            assert pipeline.post(payload, delivery_id=f"c{conversation}")[0] == 202
        pipeline.drain(pipeline.consumer(policy=POLICY))

    return make


def sweep_with(pipeline, chatwoot, clock=None, session=None, stop_seconds=10.0):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token, session=session)
    support = pipeline.support(client, POLICY)
    return SlaSweep(
        support.sla, pipeline.telemetry, clock=clock or pipeline.clock, stop_seconds=stop_seconds
    )


def at_risk_notes(chatwoot, conversation):
    return [n for n in chatwoot.notes(1, conversation) if n.startswith("SLA at risk")]


def test_two_sweeps_at_once_flag_each_target_once(pipeline, chatwoot, open_conversations):
    open_conversations(3)
    start = threading.Barrier(2)
    results = []

    def run():
        sweep = sweep_with(pipeline, chatwoot)
        start.wait(timeout=10)
        results.append(sweep.run(CREATED + 0.85 * HOUR))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r["at_risk"] for r in results) == 3
    for conversation in (1, 2, 3):
        assert len(at_risk_notes(chatwoot, conversation)) == 1


def test_a_sweep_waits_out_the_lease_of_one_that_died(pipeline, chatwoot, open_conversations):
    open_conversations(1)
    store = pipeline.store()
    assert store.acquire_lease(SWEEP_LEASE, "dead-sweep", pipeline.clock() + 600, pipeline.clock())
    assert sweep_with(pipeline, chatwoot).run(CREATED + 0.85 * HOUR)["skipped"] == 1
    assert chatwoot.notes(1, 1) == []
    pipeline.clock.advance(601)
    assert sweep_with(pipeline, chatwoot).run(CREATED + 0.86 * HOUR)["at_risk"] == 1


def test_a_sweep_out_of_time_stops_and_the_next_resumes_where_it_stopped(
    pipeline, chatwoot, open_conversations
):
    open_conversations(10)
    clock = Clock()
    network = SlowNetwork(clock, latency=1.0)  # each at-risk flag: 4 calls, 4 s
    sweeps = []
    for _ in range(3):
        sweep = sweep_with(pipeline, chatwoot, clock=clock, session=network, stop_seconds=5)
        started = clock()
        with deadline.running_until(deadline.Deadline(started + 20, clock)):
            sweeps.append(sweep.run(CREATED + 0.85 * HOUR))
        assert clock() - started <= 20
        clock.advance(300)  # the next scheduled sweep
    assert [s["at_risk"] for s in sweeps] == [4, 4, 2]
    # the second sweep starts at conversation 5; the third finishes 9 and 10, then wraps
    assert [s["left_for_next_sweep"] for s in sweeps] == [6, 6, 0]
    for conversation in range(1, 11):
        assert len(at_risk_notes(chatwoot, conversation)) == 1, conversation


def test_a_conversation_deleted_in_chatwoot_stops_being_swept(
    pipeline, chatwoot, open_conversations
):
    open_conversations(2)
    chatwoot.delete_conversation(1, 1)
    result = sweep_with(pipeline, chatwoot).run(CREATED + 1.1 * HOUR)
    assert (result["gone"], result["breached"], result["failed"]) == (1, 1, 0)
    record = pipeline.store().get_record("1", "1")
    assert record["status"] == "deleted" and "open_account" not in record
    assert [r["conversation_id"] for r in pipeline.store().open_conversations("1")] == ["2"]
    calls = len(chatwoot.calls)
    again = sweep_with(pipeline, chatwoot).run(CREATED + 1.2 * HOUR)
    assert (again["conversations"], again["failed"]) == (1, 0)
    assert len(chatwoot.calls) == calls  # conversation 1 is not asked about again


def test_a_404_from_a_misconfigured_chatwoot_forgets_nothing(
    pipeline, chatwoot, open_conversations
):
    open_conversations(1)
    chatwoot.fail("GET", "/labels", 404)
    chatwoot.fail("GET", "", 404)
    chatwoot.fail("GET", "/api/v1/profile", 404)  # the API itself is not where we think
    result = sweep_with(pipeline, chatwoot).run(CREATED + 1.1 * HOUR)
    assert (result["gone"], result["failed"]) == (0, 1)
    assert pipeline.store().get_record("1", "1")["status"] == "open"
    assert sweep_with(pipeline, chatwoot).run(CREATED + 1.2 * HOUR)["breached"] == 1
