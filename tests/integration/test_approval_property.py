"""Nothing reaches a customer without the approval it needs, whatever happens (issue 15).

A model-based test (Hypothesis ``RuleBasedStateMachine``) over the real consumer, moto and the
fake Chatwoot (tests/integration/approval_world.py says what is modelled and states the five
rules). Steps: a customer writes (any language, any length); the drafter answers (a different
wording per call, or a canned answer shared by drafts); an agent writes ``/send``,
``/send <id>``, ``/reject``, ``/grade``, an edited reply or a reply of their own, or deletes a
``/send``; forged approvals (a contact's, an agent bot's, the pipeline user's own ``/send``,
unsigned ``?token=`` posts, made up or copied); Chatwoot faults on any call (429, 5xx before or
after acting, a lost answer after the message was created); any webhook delivered now, late,
twice (same or new delivery id) or lost, and the reconciler replaying what was lost; two
workers on one record or on two records at once; the pause switch; days passing and the expiry
sweep. The steps around an approval also come as one step (an approval and what happens around
it), so that most examples reach one. After every step the five rules are checked against the
fake's messages.

CI runs it derandomised: 30 examples of up to 20 steps, under a minute on 2 cores (a failure
then spends a few minutes shrinking), and replays every counterexample the search has found
(``FOUND``: add the next one there). ``make fuzz`` runs a long random search
(``FUZZ_EXAMPLES``, ``FUZZ_STEPS``, ``SEED``) and prints the shrunk counterexample.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.integration.approval_world import AGENTS, World

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
FUZZ_STEPS = int(os.environ.get("FUZZ_STEPS") or 0)

# Any language, any length: short questions, scripts other than Latin, emoji, control
# characters SQS refuses (ingest parks those bodies in S3), and the occasional long message.
QUESTIONS = st.sampled_from(
    [
        "¿Cuánto tarda el envío a Medellín?",
        "Where is my order? I still have no tracking number",
        "配送にはどのくらいかかりますか？",  # noqa: RUF001 - a Japanese question mark
        "متى يصل طلبي؟",
        "hola",
        "/send",
    ]
)
# A long message is a short text repeated: a few thousand drawn characters would use up the
# example's budget and end it after a handful of steps.
LONG_TEXT = st.builds(
    lambda text, times: text * times, st.text(min_size=1, max_size=12), st.integers(40, 400)
)
CUSTOMER_TEXT = st.one_of(QUESTIONS, st.text(min_size=1, max_size=60), LONG_TEXT)
AGENT_TEXT = st.one_of(
    st.sampled_from(["Te lo envío hoy mismo.", "Looking into it now.", "👍"]),
    st.text(min_size=1, max_size=60).filter(lambda t: t.strip()),
)
AGENT = st.sampled_from(AGENTS)
# What happens to the webhooks of what a person wrote: mostly Chatwoot delivers them and the
# pipeline does its work at once ("settle"), or after its retries ("later"); or they stay in
# flight for a later step to deliver or lose, or arrive "late", after what the next steps do.
THEN = st.sampled_from(["settle", "settle", "later", "in flight", "late"])
PICK = st.integers(min_value=0, max_value=50)
# Chatwoot's faults, armed for the next calls of their kind (after ``after`` good ones).
FAULTS = (
    "429 on a POST",
    "500 on a POST",
    "502 on a POST",
    "502 after the POST acted",
    "504 after the POST acted",
    "answer lost after the POST acted",
    "429 on a read",
    "502 on a read",
    "proxy 502 on every call",
)
MAYBE_FAULT = st.one_of(st.none(), st.none(), st.sampled_from(FAULTS))
AFTER = st.integers(0, 3)
# A fault armed just before a /send is written meets the first call of its kind that the
# /send makes: the read of Chatwoot's messages before the reply, or the reply's POST.
FAULT_ON_THE_REPLY = st.sampled_from([None, None, *FAULTS])
# Around an approval: which draft the /send names, what happened just before it was written,
# what becomes of its webhook, and whether the pipeline gets to finish (with its retries).
WHICH = st.sampled_from(["bare", "bare", "the latest shown", "any shown"])
BEFORE = st.sampled_from(
    [
        "nothing",
        "nothing",
        "a day passes",
        "the customer writes",
        "the customer writes, its webhook lost",
    ]
)
DELIVERY = st.sampled_from(["settle", "in flight", "late", "lost", "two workers"])
AFTERWARDS = st.sampled_from(["settle", "later", "later", "wait"])
# What else happens while an approval is on its way.
MEANWHILE = st.sampled_from(
    [
        "nothing",
        "a person answers",
        "a person answers",
        "a person answers, its webhook lost",
        "a person answers, its webhook late",
        "the customer writes",
        "another /send",
        "a /reject",
        "a day passes",
        "the /send is deleted",
    ]
)
# Swarm testing: each example turns on some of these families of steps only, so an example
# spends its steps on a few kinds of trouble together instead of a thin mix of all of them.
FEATURES = ("faults", "lost", "late", "redelivered", "workers", "pause", "days", "canned")


def has(feature: str) -> Callable[[Any], Any]:
    """Run this rule only in examples that turned ``feature`` on."""
    return precondition(lambda machine: feature in machine.features)


class ApprovalMachine(RuleBasedStateMachine):
    """People act in Chatwoot; deliveries, faults, time and workers do what they may."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.features: frozenset[str] = frozenset()

    def teardown(self) -> None:
        # What the example reached, for --hypothesis-show-statistics.
        try:
            for line in self.world.reached():
                event(line)
        finally:
            self.world.close()

    # ---- a conversation with a draft awaiting approval -------------------------------------
    @initialize(text=CUSTOMER_TEXT, features=st.frozensets(st.sampled_from(FEATURES)))
    def a_customer_asks_and_a_draft_is_posted(self, text: str, features: frozenset[str]) -> None:
        self.features = features
        self.world.drafter.canned = "canned" in features
        self.world.customer_writes(text)
        self.world.settle()

    # ---- people in Chatwoot ----------------------------------------------------------------
    def _then(self, then: str) -> None:
        if then in ("late", "in flight", "lost") and "late" not in self.features:
            then = "settle"
        if then == "settle":
            self.world.settle()
        elif then == "later":
            self.world.settle(retries=True)
        elif then == "late":
            self.world.delay(self.world.last_taken)
        elif then == "lost":
            self.world.lose_all(self.world.last_taken)

    def _fault(self, fault: str | None, after: int, times: int = 1) -> None:
        """Chatwoot (or the proxy before it) fails the next such call, ``after`` good ones."""
        if fault is None:
            return
        fake = self.world.fake
        status = int(fault.split()[0]) if fault[0].isdigit() else 0
        if fault.startswith("proxy"):
            fake.proxy_error(502, times=times + after)
        elif fault.endswith("read"):
            fake.fail("GET", "/messages", status, times=times, after=after)
        elif fault.startswith("answer lost"):
            fake.lose_answer("POST", "/messages", times=times, after=after)
        else:
            fake.fail("POST", "/messages", status, times, after, acted="acted" in fault)

    def _write_send(self, who: str, command: str, agent: int, pick: int) -> int | None:
        """``command`` written by ``who``: an agent (the only one who may approve), an agent
        bot, the pipeline's own user or a contact in Chatwoot; or an unsigned ``?token=`` post
        of a made-up /send note, or of a copy of a real /send note's body (a replay). The id
        of the message it is in Chatwoot, if it is there."""
        world = self.world
        if who == "agent":
            return world.agent_writes(command, agent, private=True)["id"]
        if who == "agent bot":
            return world.bot_writes(command, private=True)["id"]
        if who == "pipeline user":
            return world.agent_writes(command, world.fake.actor_id, private=True)["id"]
        if who == "contact":
            return world.customer_writes(command)["id"]
        real = [
            d
            for d in world.delivered + world.in_flight + world.late + world.lost
            if d.payload.get("event") == "message_created"
            and str(d.payload.get("content") or "").startswith("/send")
        ]
        if who == "unsigned copy" and real:
            payload = real[pick % len(real)].payload
        else:
            payload = world.forged_send(command, None)
        world.last_taken = []
        world.post_unsigned(payload)
        return None

    # An approval and what happens around it, in one step: most of the rules are about this
    # moment, so an example gets to it often (the single steps below get there too, slower).
    @rule(
        agent=AGENT,
        which=WHICH,
        pick=PICK,
        before=BEFORE,
        fault=FAULT_ON_THE_REPLY,
        delivery=DELIVERY,
        meanwhile=MEANWHILE,
        then=AFTERWARDS,
    )
    def an_agent_approves_while_things_happen(
        self,
        agent: int,
        which: str,
        pick: int,
        before: str,
        fault: str | None,
        delivery: str,
        meanwhile: str,
        then: str,
    ) -> None:
        self._approval("agent", agent, which, pick, before, fault, delivery, meanwhile, then)

    # The same rule twice: Hypothesis picks rules evenly, and this one matters most.
    @rule(
        agent=AGENT,
        which=WHICH,
        pick=PICK,
        before=BEFORE,
        fault=FAULT_ON_THE_REPLY,
        delivery=DELIVERY,
        meanwhile=MEANWHILE,
        then=AFTERWARDS,
    )
    def another_agent_approves_while_things_happen(
        self,
        agent: int,
        which: str,
        pick: int,
        before: str,
        fault: str | None,
        delivery: str,
        meanwhile: str,
        then: str,
    ) -> None:
        self._approval("agent", agent, which, pick, before, fault, delivery, meanwhile, then)

    @rule(
        who=st.sampled_from(["agent bot", "pipeline user", "contact", "unsigned", "unsigned copy"]),
        which=WHICH,
        pick=PICK,
        before=BEFORE,
        fault=FAULT_ON_THE_REPLY,
        delivery=DELIVERY,
        meanwhile=MEANWHILE,
        then=AFTERWARDS,
    )
    def someone_who_may_not_approve_writes_send(
        self,
        who: str,
        which: str,
        pick: int,
        before: str,
        fault: str | None,
        delivery: str,
        meanwhile: str,
        then: str,
    ) -> None:
        """An agent bot's /send note, the pipeline user's own, a contact's "/send", or an
        unsigned ``?token=`` post: a made-up /send note, or a copy of a real one's body."""
        self._approval(who, AGENTS[0], which, pick, before, fault, delivery, meanwhile, then)

    def _approval(
        self,
        who: str,
        agent: int,
        which: str,
        pick: int,
        before: str,
        fault: str | None,
        delivery: str,
        meanwhile: str,
        then: str,
    ) -> None:
        world = self.world
        if before == "a day passes":
            world.time_passes(25 * 3600)
        elif before.startswith("the customer writes"):
            world.customer_writes("Perdona, otra cosa: ¿hacen envíos a Cali?")
            if before.endswith("lost"):
                world.lose_all(world.last_taken)
            world.settle()
        shown = world.shown_drafts()
        command = "/send"
        if which != "bare" and shown:
            named = shown[-1] if which == "the latest shown" else shown[pick % len(shown)]
            command += " " + named[0]
        self._fault(fault, 0)
        written = self._write_send(who, command, agent, pick)
        sent = world.last_taken
        if delivery == "settle":
            world.settle()
        elif delivery == "two workers":  # its record taken by two processors at once
            world.deliver_these(sent)
            world.two_workers(same_record=True)
        elif delivery == "late":
            world.delay(sent)
        elif delivery == "lost":
            world.lose_all(sent)
        if meanwhile.startswith("a person answers"):
            world.agent_writes("Ya te respondo yo por aquí.", AGENTS[0], private=False)
            if meanwhile.endswith("lost"):
                world.lose_all(world.last_taken)
            elif meanwhile.endswith("late"):
                world.delay(world.last_taken)
        elif meanwhile == "the customer writes":
            world.customer_writes("¿y a Cali también?")
        elif meanwhile == "another /send":
            world.agent_writes("/send", AGENTS[-1], private=True)
        elif meanwhile == "a /reject":
            world.agent_writes("/reject ya no", AGENTS[0], private=True)
        elif meanwhile == "a day passes":
            world.time_passes(25 * 3600)
        elif meanwhile == "the /send is deleted" and written is not None:
            world.agent_deletes(written)
        if then == "settle":
            world.settle()
        elif then == "later":
            world.settle(retries=True)
            if world.lost or world.late:
                world.deliver_late()
                world.reconcile()
                world.settle(retries=True)

    @rule(text=CUSTOMER_TEXT, fault=MAYBE_FAULT, after=AFTER, then=THEN)
    def a_customer_writes_and_a_draft_follows(
        self, text: str, fault: str | None, after: int, then: str
    ) -> None:
        """The customer writes; the draft's note may meet a fault of Chatwoot."""
        self._fault(fault, after)
        self.world.customer_writes(text)
        self._then(then)

    @rule(text=CUSTOMER_TEXT, then=THEN)
    def customer_writes(self, text: str, then: str) -> None:
        self.world.customer_writes(text)
        self._then(then)

    @rule(agent=AGENT, then=THEN)
    def agent_sends(self, agent: int, then: str) -> None:
        self.world.agent_writes("/send", agent, private=True)
        self._then(then)

    @rule(agent=AGENT, then=THEN)
    def agent_sends_again(self, agent: int, then: str) -> None:
        self.world.agent_writes("/send", agent, private=True)
        self._then(then)

    @rule(agent=AGENT, pick=PICK, known=st.booleans(), then=THEN)
    def agent_sends_a_named_draft(self, agent: int, pick: int, known: bool, then: str) -> None:
        shown = self.world.shown_drafts()
        draft_id = shown[pick % len(shown)][0] if shown and known else "d-zzzzzz"
        self.world.agent_writes(f"/send {draft_id}", agent, private=True)
        self._then(then)

    @rule(agent=AGENT, pick=PICK, named=st.booleans(), then=THEN)
    def agent_rejects(self, agent: int, pick: int, named: bool, then: str) -> None:
        shown = self.world.shown_drafts()
        target = f" {shown[pick % len(shown)][0]}" if shown and named else ""
        self.world.agent_writes(f"/reject{target} no es lo que preguntó", agent, private=True)
        self._then(then)

    @rule(agent=AGENT, then=THEN)
    def agent_grades(self, agent: int, then: str) -> None:
        self.world.agent_writes("/grade tone=4 accuracy=3 policy=5 ok", agent, private=True)
        self._then(then)

    @rule(agent=AGENT, pick=PICK, then=THEN)
    def agent_sends_an_edited_draft(self, agent: int, pick: int, then: str) -> None:
        shown = self.world.shown_drafts()
        if not shown:
            return
        note_text = shown[pick % len(shown)][1]
        body = note_text.split("\n\n", 1)[-1].split("\n\nReply in a private note:")[0]
        self.world.agent_writes(body.replace("días", "semanas", 1) + " Saludos.", agent, False)
        self._then(then)

    @rule(agent=AGENT, text=AGENT_TEXT, private=st.booleans(), then=THEN)
    def agent_writes_in_their_own_words(
        self, agent: int, text: str, private: bool, then: str
    ) -> None:
        """A reply to the customer, or a note between agents."""
        self.world.agent_writes(text, agent, private=private)
        self._then(then)

    # ---- deliveries ------------------------------------------------------------------------
    @precondition(lambda machine: machine.world.in_flight)
    @rule(pick=PICK)
    def a_webhook_arrives(self, pick: int) -> None:
        """Any webhook in flight (not necessarily the oldest: late ones arrive out of order)."""
        self.world.deliver(pick)

    @precondition(lambda machine: machine.world.in_flight)
    @rule()
    def every_webhook_in_flight_arrives(self) -> None:
        self.world.deliver_all()

    @precondition(lambda machine: machine.world.late)
    @rule(then=THEN)
    def the_late_webhooks_arrive(self, then: str) -> None:
        self.world.deliver_late()
        self._then(then)

    @has("redelivered")
    @rule(pick=PICK, same_id=st.booleans())
    def a_past_webhook_arrives_again(self, pick: int, same_id: bool) -> None:
        self.world.redeliver(pick, same_id)

    @has("lost")
    @precondition(lambda machine: machine.world.in_flight)
    @rule(pick=PICK)
    def a_webhook_is_lost(self, pick: int) -> None:
        self.world.lose(pick)

    @has("lost")
    @rule()
    def the_reconciler_runs(self) -> None:
        self.world.reconcile()

    # ---- the pipeline's side ---------------------------------------------------------------
    @rule()
    def the_queue_is_processed(self) -> None:
        self.world.process()

    @rule(seconds=st.sampled_from([1, 11, 121, 301]))
    def time_passes(self, seconds: int) -> None:
        self.world.time_passes(seconds)

    @has("days")
    @rule(hours=st.sampled_from([23, 25]))
    def hours_pass(self, hours: int) -> None:
        """Past the drafts' expiry (24 h), or nearly."""
        self.world.time_passes(hours * 3600)

    @rule(retries=st.booleans())
    def everything_settles(self, retries: bool) -> None:
        self.world.settle(retries)

    @has("workers")
    @rule(same_record=st.booleans())
    def two_workers_at_once(self, same_record: bool) -> None:
        self.world.two_workers(same_record)

    @has("pause")
    @rule(mode=st.sampled_from(["off", "off", "actions", "consume"]))
    def the_pause_switch_flips(self, mode: str) -> None:
        self.world.pause(mode)

    @has("days")
    @rule()
    def the_sweep_runs(self) -> None:
        self.world.sweep()

    # ---- Chatwoot's faults -----------------------------------------------------------------
    @has("faults")
    @rule(fault=st.sampled_from(FAULTS), after=AFTER, times=st.integers(1, 2))
    def chatwoot_fails(self, fault: str, after: int, times: int) -> None:
        """The next ``times`` such calls after ``after`` good ones fail."""
        self._fault(fault, after, times)

    # ---- the five rules --------------------------------------------------------------------
    @invariant()
    def every_public_message_had_the_approval_it_needed(self) -> None:
        self.world.steps += 1
        found = self.world.violations()
        if found:
            note("Chatwoot's conversation:\n" + self.world.transcript())
            note("What reached the pipeline:\n  " + "\n  ".join(self.world.log[-60:]))
        assert not found, "\n".join(found)


# The counterexamples the search found (shrunk), replayed as they are on every run: the
# derandomised sample above is small and changes whenever a strategy does; these do not.
Q = "¿Cuánto tarda el envío a Medellín?"
AROUND = {"which": "bare", "pick": 0, "before": "nothing", "fault": None}
AROUND |= {"delivery": "settle", "meanwhile": "nothing", "then": "settle"}
FOUND: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "rule 2: an unsigned ?token= post carrying /send": [
        ("someone_who_may_not_approve_writes_send", {**AROUND, "who": "unsigned"}),
    ],
    "rule 1: the note shows one drafter call, /send sends another": [
        ("chatwoot_fails", {"fault": "502 on a POST", "after": 0, "times": 1}),
        ("customer_writes", {"text": "hola", "then": "later"}),
        ("agent_sends", {"agent": 3, "then": "settle"}),
    ],
    "rule 1: a late bare /send approves a draft posted after it was typed": [
        ("agent_rejects", {"agent": 3, "pick": 0, "named": False, "then": "settle"}),
        ("agent_sends", {"agent": 3, "then": "late"}),
        ("customer_writes", {"text": "hola", "then": "settle"}),
        ("the_late_webhooks_arrive", {"then": "settle"}),
    ],
    "rule 4: a 502 on the reply, a person answers, the retry sends": [
        ("chatwoot_fails", {"fault": "502 on a POST", "after": 0, "times": 1}),
        ("agent_sends", {"agent": 3, "then": "settle"}),
        (
            "agent_writes_in_their_own_words",
            {"agent": 1, "text": "Te respondo yo", "private": False, "then": "later"},
        ),
    ],
    "rule 4: paused, the person's answer's webhook lost, resumed": [
        ("the_pause_switch_flips", {"mode": "actions"}),
        ("agent_sends", {"agent": 3, "then": "settle"}),
        (
            "agent_writes_in_their_own_words",
            {"agent": 1, "text": "Te respondo yo", "private": False, "then": "in flight"},
        ),
        ("a_webhook_is_lost", {"pick": 0}),
        ("the_pause_switch_flips", {"mode": "off"}),
        ("everything_settles", {"retries": True}),
    ],
    "rule 5: a /send written after expire_after, before the sweep": [
        ("an_agent_approves_while_things_happen", {**AROUND, "agent": 1, "before": "a day passes"}),
    ],
    "rule 5: the customer wrote after the note, its webhook lost": [
        (
            "an_agent_approves_while_things_happen",
            {**AROUND, "agent": 3, "before": "the customer writes, its webhook lost"},
        ),
    ],
    "rule 2: a /send deleted before its late webhook arrived": [
        (
            "an_agent_approves_while_things_happen",
            {**AROUND, "agent": 3, "delivery": "late", "meanwhile": "the /send is deleted"},
        ),
        ("the_late_webhooks_arrive", {"then": "later"}),
    ],
}


@pytest.mark.parametrize("steps", FOUND.values(), ids=FOUND.keys())
def test_what_the_search_found_stays_fixed(steps: list[tuple[str, dict[str, Any]]]) -> None:
    machine = ApprovalMachine()
    try:
        machine.a_customer_asks_and_a_draft_is_posted(text=Q, features=frozenset(FEATURES))
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            found = machine.world.violations()
            assert not found, "\n".join(found) + "\n" + machine.world.transcript()
    finally:
        machine.world.close()


ApprovalMachine.TestCase.settings = settings(
    max_examples=FUZZ_EXAMPLES or 30,
    stateful_step_count=FUZZ_STEPS or 20,
    derandomize=not FUZZ_EXAMPLES,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestApproval = ApprovalMachine.TestCase
