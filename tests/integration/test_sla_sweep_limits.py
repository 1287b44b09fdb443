"""The SLA sweep under the conditions that break a naive one: two sweeps at once, a sweep that
runs out of time, a conversation deleted in Chatwoot."""

import threading

import pytest
import requests

from support_pipeline import deadline
from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.sla import SWEEP_LEASE, SlaSweep
from tests.integration.test_exactly_once import SlowNetwork
from tests.integration.test_sla import CREATED, HOUR, POLICY
from tests.support import Clock, agent_message, incoming


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
    # what a sweep did not reach is still due, and earliest: the next one starts there
    assert [s["left_for_next_sweep"] for s in sweeps] == [6, 2, 0]
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
    assert (again["conversations"], again["failed"]) == (0, 0)  # nothing is due
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


def test_a_reply_between_the_sweeps_claim_and_its_label_leaves_no_stale_label(
    pipeline, chatwoot, monkeypatch
):
    from support_pipeline.sla import SlaService
    from tests.support import agent_message

    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    def post(payload):
        assert pipeline.post(payload, delivery_id=f"p{payload['id']}")[0] == 202
        pipeline.drain(pipeline.consumer(chatwoot=client, policy=POLICY))

    post(incoming("Hola", 1, CREATED + 10, status="open"))
    original = SlaService._at_risk
    replied = []

    def reply_lands_first(self, record, clock):
        if not replied:  # another Lambda handles the agent's reply right now
            replied.append(True)
            post(agent_message("Hola, ¿en qué te ayudo?", 2, CREATED + 0.86 * HOUR, status="open"))
        return original(self, record, clock)

    monkeypatch.setattr(SlaService, "_at_risk", reply_lands_first)
    sweep_with(pipeline, chatwoot).run(CREATED + 0.87 * HOUR)
    monkeypatch.setattr(SlaService, "_at_risk", original)
    for hours in (0.9, 1.5, 3):
        sweep_with(pipeline, chatwoot).run(CREATED + hours * HOUR)
    assert "sla-at-risk" not in chatwoot.conversation(1, 1).labels


def test_a_flag_left_pending_by_a_dead_sweep_is_not_acted_on_once_the_target_was_met(
    pipeline, chatwoot, open_conversations, monkeypatch
):
    from support_pipeline.sla import SlaService
    from tests.support import agent_message

    open_conversations(1)

    def die(self, record, clock):
        raise SystemExit("the sweep's Lambda was killed")

    monkeypatch.setattr(SlaService, "_at_risk", die)
    with pytest.raises(SystemExit):
        sweep_with(pipeline, chatwoot).run(CREATED + 0.85 * HOUR)
    monkeypatch.undo()
    reply = agent_message("Hola, ¿en qué te ayudo?", 2, CREATED + 0.9 * HOUR, status="open")
    assert pipeline.post(reply, delivery_id="reply")[0] == 202
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    pipeline.drain(pipeline.consumer(chatwoot=client, policy=POLICY))
    pipeline.clock.advance(3600)  # the dead sweep's lease lapses
    sweep_with(pipeline, chatwoot).run(CREATED + 1.0 * HOUR)
    assert chatwoot.notes(1, 1) == [] and "sla-at-risk" not in chatwoot.conversation(1, 1).labels


def test_a_breach_recorded_in_dry_run_is_acted_on_once_the_pipeline_is_live(
    pipeline, chatwoot, open_conversations
):
    from support_pipeline.sla import SlaSweep

    open_conversations(1)  # dry run: no Chatwoot configured yet
    dry = pipeline.support(None, POLICY)
    assert SlaSweep(dry.sla, pipeline.telemetry).run(CREATED + 1.1 * HOUR)["breached"] == 1
    assert chatwoot.notes(1, 1) == []
    pipeline.clock.advance(3600)
    result = sweep_with(pipeline, chatwoot).run(CREATED + 1.2 * HOUR)
    assert result["breached"] == 1
    assert [n for n in chatwoot.notes(1, 1) if n.startswith("Escalated")]
    assert sweep_with(pipeline, chatwoot).run(CREATED + 1.3 * HOUR)["breached"] == 0


def test_a_404_page_in_front_of_chatwoot_closes_nothing_even_on_a_warm_sweep(
    pipeline, chatwoot, open_conversations
):
    open_conversations(3)
    sweep = sweep_with(pipeline, chatwoot)
    sweep.sla.actions.client.identity()  # warm: the profile was asked before
    chatwoot.proxy_error(404, times=1000)  # a proxy or maintenance page answers everything
    result = sweep.run(CREATED + 1.1 * HOUR)
    assert (result["gone"], result["failed"]) == (0, 3)
    assert len(pipeline.store().open_conversations("1")) == 3


class FailingFor(requests.Session):
    """Chatwoot's calls for some conversations time out (the client's whole read timeout goes
    by on the injected clock); the others answer, each taking 0.1 s."""

    def __init__(self, clock: Clock, failing: set[int]) -> None:
        super().__init__()
        self.clock = clock
        self.failing = failing

    def request(self, method, url, **kwargs):
        if any(f"/conversations/{c}/" in url for c in self.failing):
            _, read = kwargs["timeout"]
            self.clock.advance(read)
            raise requests.ReadTimeout("no answer")
        response = super().request(method, url, **kwargs)
        self.clock.advance(0.1)
        return response


def test_conversations_that_keep_failing_go_last_and_never_starve_the_others(
    pipeline, chatwoot, open_conversations
):
    open_conversations(8)  # all due at once; 1-4 come first by id
    clock = Clock()
    network = FailingFor(clock, failing={1, 2, 3, 4})
    runs = []
    for i in range(3):
        sweep = sweep_with(pipeline, chatwoot, clock=clock, session=network, stop_seconds=10)
        # room for about three timeouts per sweep: today's failures alone would fill it
        with deadline.running_until(deadline.Deadline(clock() + 40, clock)):
            runs.append(sweep.run(CREATED + 0.85 * HOUR + i * 60))
        clock.advance(300)
    assert [c for c in range(5, 9) if at_risk_notes(chatwoot, c)] == [5, 6, 7, 8]
    assert runs[0]["failed"] >= 1 and runs[1]["at_risk"] == 4  # the second sweep reached them
    failures = {
        c: pipeline.store().get_record("1", str(c)).get("sweep_failures") for c in range(1, 9)
    }
    assert all(failures[c] for c in (1, 2, 3)) and not any(failures[c] for c in range(5, 9))
    # Chatwoot answers again: the failed ones are flagged once, and their count is cleared.
    network.failing.clear()
    assert sweep_with(pipeline, chatwoot).run(CREATED + 0.9 * HOUR)["at_risk"] == 4
    assert all(len(at_risk_notes(chatwoot, c)) == 1 for c in range(1, 9))
    assert not any(
        pipeline.store().get_record("1", str(c)).get("sweep_failures") for c in range(1, 9)
    )


def test_a_reply_recorded_while_the_sweep_works_keeps_the_next_moment_it_set(pipeline, chatwoot):
    """The sweep moves next_due on only if the record is still the one it acted on: otherwise a
    new clock the processor started meanwhile (a reply, then a new question) would never be due."""
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    def post(*payloads):
        for payload in payloads:
            status, _ = pipeline.post(
                payload, delivery_id=f"race-{payload['id']}", timestamp=pipeline.clock.now
            )
            assert status == 202
        pipeline.drain(pipeline.consumer(chatwoot=client, policy=POLICY))

    post(incoming("Hola", 1, CREATED + 10, status="open"))
    at = CREATED + 1.1 * HOUR  # the first response is breached
    pipeline.clock.now = at
    support = pipeline.support(client, POLICY)
    act = support.sla.sweep_conversation

    def meanwhile(record, now):
        done = act(record, now)
        post(
            agent_message("Hola, ya miro", 2, at + 1, status="open"),
            incoming("¿Y mi pedido?", 3, at + 2, status="open"),
        )
        return done

    support.sla.sweep_conversation = meanwhile
    assert SlaSweep(support.sla, pipeline.telemetry).run(at)["breached"] == 1
    record = pipeline.store().get_record("1", "1")
    # the next response's clock, as the processor set it, not one computed from the old record
    assert record["next_due"] == support.sla.next_due(record)
    assert record["next_due"] < at + 2 * HOUR
    # and it is swept when it comes: the next response is flagged at risk, then breached
    notes_before = len(chatwoot.notes(1, 1))
    later = pipeline.support(client, POLICY)
    found = [
        SlaSweep(later.sla, pipeline.telemetry).run(moment)
        for moment in sorted({record["next_due"], record["next_due"] + HOUR})
    ]
    assert sum(r["at_risk"] + r["breached"] for r in found) >= 1
    assert len(chatwoot.notes(1, 1)) > notes_before
