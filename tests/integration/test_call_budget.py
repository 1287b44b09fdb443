"""What one processed event costs in DynamoDB calls, on the realistic mix (a count is stable;
a time is not). docs/benchmarks.md has the same figures from `make bench-docs`."""

from support_pipeline.drafts.knowledge import KnowledgeDrafter
from support_pipeline.policy import load_default_policy
from support_pipeline_ops.measure import counting
from tests.support import NOW, incoming, support_mix

BUDGET_PER_EVENT = 4  # DynamoDB calls per processed event, at most


def test_the_mix_costs_at_most_four_dynamodb_calls_per_event(pipeline):
    policy = load_default_policy()  # the shipped policy: drafts on, knowledge drafter
    drafter = KnowledgeDrafter(policy.drafts.knowledge)
    consumer = pipeline.consumer(policy=policy, drafters=lambda inbox: drafter)
    for i, payload in enumerate(support_mix(10)):
        assert pipeline.post(payload, delivery_id=f"mix-{i}")[0] == 202
    with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
        events = pipeline.drain(consumer)
        pipeline.end_delays()
        events += pipeline.drain(consumer)
    assert events >= 60
    per_event = sum(calls.values()) / events
    assert per_event <= BUDGET_PER_EVENT, (per_event, dict(calls))
    # no read-modify-write of a record without a transaction, no timeline queries, no scans
    assert "Scan" not in calls and "Query" not in calls
    assert calls["TransactWriteItems"] == 60  # one per webhook: record + timeline together


def test_a_repeated_delivery_costs_two_reads_and_does_nothing_else(pipeline):
    [first, *_] = support_mix(1)
    consumer = pipeline.consumer(policy=load_default_policy())
    assert pipeline.post(first, delivery_id="a")[0] == 202
    pipeline.drain(consumer)
    assert pipeline.post(first, delivery_id="b")[0] == 202  # Chatwoot sends it again
    with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
        assert pipeline.drain(consumer) == 1
    assert dict(calls) == {"GetItem": 2, "TransactWriteItems": 1}
    assert pipeline.telemetry.total("EventDuplicate") == 1


def test_a_sweep_with_nothing_due_costs_the_same_for_10_or_40_open_conversations(pipeline):
    from support_pipeline.sla import SlaSweep

    policy = load_default_policy()
    costs = []
    for total in (10, 40):
        for conversation in range(len(costs) * 100 + 1, len(costs) * 100 + total + 1):
            payload = incoming("Hola", conversation, NOW, conversation, status="open")
            assert pipeline.post(payload, delivery_id=f"open-{conversation}")[0] == 202
        pipeline.drain(pipeline.consumer(policy=policy))
        support = pipeline.support(None, policy)
        sweep = SlaSweep(
            support.sla, pipeline.telemetry, clock=pipeline.clock, drafts=support.drafts
        )
        with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
            result = sweep.run(NOW + 60)  # a minute in: nothing is at risk yet
        assert result["conversations"] == 0
        costs.append(sum(calls.values()))
    assert costs[0] == costs[1] <= 6, costs


# Each action the pipeline takes in Chatwoot: the ledger's read, its claim, where to search from
# if the answer is lost, and done (docs/architecture.md, "The action ledger").
LEDGER_CALLS_PER_ACTION = 4


def test_live_each_action_in_chatwoot_adds_the_ledgers_four_calls_and_no_more(pipeline, chatwoot):
    """The budget above is the dry run's (the issue's measurement); live, the events cost the
    same and every action taken in Chatwoot adds exactly the ledger's calls."""
    from support_pipeline.chatwoot.client import ChatwootClient

    policy = load_default_policy()
    drafter = KnowledgeDrafter(policy.drafts.knowledge)
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)
    for conversation in range(2, 11):
        chatwoot.add_conversation(1, conversation, labels=["billing"])
    consumer = pipeline.consumer(chatwoot=client, policy=policy, drafters=lambda inbox: drafter)
    # The mix, and conversations where the customer is still waiting when the burst window
    # ends: those get a draft note.
    question = "¿Cuánto tarda el envío a Cali?"
    waiting = [
        incoming(
            question,
            chatwoot.add_customer_message(1, c, question)["id"],
            NOW + 20_000,
            c,
            status="open",
        )
        for c in range(1, 11)
    ]
    pipeline.clock.now = NOW + 20_001  # after the mix, as the last questions come in
    for i, payload in enumerate(support_mix(10) + waiting):
        assert (
            pipeline.post(payload, delivery_id=f"live-{i}", timestamp=pipeline.clock.now)[0] == 202
        )
    with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
        events = pipeline.drain(consumer)
        pipeline.end_delays()
        events += pipeline.drain(consumer)
    taken = [c for c in chatwoot.calls if c.method == "POST"]
    assert taken, "the mix should make the pipeline act in Chatwoot (draft notes)"
    per_event = (sum(calls.values()) - LEDGER_CALLS_PER_ACTION * len(taken)) / events
    assert per_event <= BUDGET_PER_EVENT, (per_event, len(taken), dict(calls))
