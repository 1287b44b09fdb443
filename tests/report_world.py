"""A hand-computed support week (2026-W39 in America/Bogota) and the week before it.

The stored data is written by the pipeline's own writers: Chatwoot payloads go through the
processor's router (conversation record and timeline, SLA outcomes, escalations, CSAT), the
SLA sweep runs at two moments (breaches and their escalations), and drafts are created and
decided with the draft store, all on a moved clock. test_report.py checks every number the
report computes from it against the values worked out by hand in the comments below.

Business hours (the shipped policy): Mon-Fri 08:00-18:00, Sat 09:00-13:00, zone UTC-5.

W39 (Mon 21 - Sun 27 September 2026):
- C1 inbox 1, team 5, high: created Mon 09:00, customer 1001 Mon 09:00, agent 1002 Mon 09:30
  (first response 30 min, met; target 1 h), resolved Mon 11:00 (resolution 2 h, met; 1 d),
  CSAT 5 at Mon 11:10, customer 1003 Thu 10:00 (reopened), agent 1004 Thu 10:10 (next response
  10 min, met; 2 h), resolved again Thu 10:30 (the resolution keeps its first verdict: met).
- C2 inbox 1, team 5, urgent: created Tue 10:00, customer 2001 Tue 10:00; the sweep at Tue
  10:20 records the first response breached (due 10:15) and escalates (sla_breach); agent 2002
  Tue 10:40 (first response 40 min, missed, 25 min late), customer 2003 Tue 11:00, agent 2004
  Tue 11:20 (next response 20 min, met; 30 min). Never resolved: the sweep at Sat 12:00 records
  the resolution breached (4 h wall, due Tue 14:00) and escalates again.
- C3 inbox 2, no team, no priority: created Wed 17:30, customer 3001 Wed 17:30 asking for a
  refund and a human (escalated: asks_for_human), agent 3002 Thu 08:30 (first response 1 h of
  business time over the night, met; 4 h), resolved Thu 09:00 (15 h 30 min wall, met; 3 d).
  CSAT 2 at Thu 09:05 changed to 3 at Thu 09:20 (delivered newest first): one answer, 3.
- C4 inbox 2, team 6, medium: created Fri 16:00, customer 4001 Fri 16:00, never answered: the
  sweep at Sat 12:00 records the first response breached (4 h business, due Sat 11:00) and
  escalates.
- Drafts: C1 sent as is (created Mon 09:05, sent 09:30: 1,500 s; graded 5/4/5), C2 edited
  (ratio 0.8), C2 replaced (ratio 0.2; graded 4/4/4), C3 rejected, C4 expired (Sat), C3 no
  draft (Thu 08:00).

W38 (Mon 14 - Sun 20): C5 inbox 1, team 5, high: created Mon 10:00, customer 5001, agent 5002
at 10:20 (first response met), resolved 15:00 (met), CSAT 4; one draft sent as is (780 s).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from support_pipeline.chatwoot import payload as cw
from support_pipeline.drafts.store import DraftStore
from support_pipeline.processing.router import EventContext
from support_pipeline.sla import SlaSweep
from support_pipeline.wiring import build_router
from tests.support import Pipeline, agent_message, incoming, policy_with, status_changed

ZONE = ZoneInfo("America/Bogota")
POLICY = policy_with()
WEEK = "2026-W39"
DAYS = {"Mon": 21, "Tue": 22, "Wed": 23, "Thu": 24, "Fri": 25, "Sat": 26, "Sun": 27}


def at(day: str, hhmm: str, week: int = 39) -> float:
    """Epoch of a local time in W39 (or W38 with ``week=38``)."""
    number = DAYS[day] - (7 if week == 38 else 0)
    return datetime.fromisoformat(f"2026-09-{number:02d}T{hhmm}").replace(tzinfo=ZONE).timestamp()


def conversation(created: float, inbox: int, team: int | None, priority: str | None) -> dict:
    """The conversation fields every payload of one conversation carries."""
    return {
        "created_at": created,
        "inbox_id": inbox,
        "priority": priority,
        "meta": {
            "team": {"id": team, "name": f"Team {team}"} if team else None,
            "sender": {"id": 1, "type": "contact", "custom_attributes": {}},
        },
        "labels": [],
    }


class World:
    """Feeds the week through the real writers."""

    def __init__(self, pipeline: Pipeline, policy: Any = POLICY) -> None:
        self.pipeline = pipeline
        self.policy = policy
        self.support = pipeline.support(policy=policy)
        self.router = build_router(self.support, clock=pipeline.clock)
        self.drafts = DraftStore(
            pipeline.dynamodb,
            pipeline.stack.physical["ConversationsTable"],
            policy.zone,
            clock=pipeline.clock,
        )
        self.sweeper = SlaSweep(self.support.sla, pipeline.telemetry, clock=pipeline.clock)

    def send(self, payload: dict[str, Any], when: float) -> dict[str, Any]:
        self.pipeline.clock.now = when
        event = str(payload["event"])
        key = cw.dedupe_key(payload, None, b"", signed=True)
        return self.router.dispatch(EventContext(event, payload, key, received_at=cw.iso(when)))

    def customer(self, cid: int, mid: int, when: float, conv: dict, text: str = "Hello") -> None:
        self.send(incoming(text, mid, when, conversation_id=cid, status="open", **conv), when)

    def agent(self, cid: int, mid: int, when: float, conv: dict, first_reply: float) -> None:
        payload = agent_message(
            "Here you are", mid, when, conversation_id=cid, status="open", **conv
        )
        payload["conversation"]["first_reply_created_at"] = first_reply
        self.send(payload, when)

    def status(self, cid: int, status: str, when: float, conv: dict, first_reply: float) -> None:
        fields = {k: v for k, v in conv.items()}
        self.send(
            status_changed(status, when, conversation_id=cid, **fields)
            | {"first_reply_created_at": first_reply},
            when,
        )

    def csat(self, cid: int, mid: int, rating: int, when: float, conv: dict) -> None:
        payload = incoming("", mid, when, conversation_id=cid, status="resolved", **conv)
        payload.update(event="message_updated", message_type="template", content_type="input_csat")
        payload["content_attributes"] = {
            "submitted_values": {"csat_survey_response": {"rating": rating}}
        }
        payload["conversation"]["messages"][0]["updated_at"] = when
        self.send(payload, when)

    def sweep(self, when: float) -> dict[str, int]:
        self.pipeline.clock.now = when
        return self.sweeper.run(when)

    def draft(
        self,
        cid: int,
        number: int,
        created: float,
        outcome: str,
        decided: float | None = None,
        fields: dict[str, Any] | None = None,
        grades: dict[str, int] | None = None,
    ) -> None:
        clock = self.pipeline.clock
        clock.now = created
        draft_id = f"d-test{number}"
        self.drafts.create(
            {
                "account_id": "1",
                "conversation_id": str(cid),
                "draft_id": draft_id,
                "status": outcome if outcome == "no_draft" else "pending",
                "text": "A suggested reply",
                "turn_message_id": str(number),
            }
        )
        if outcome == "no_draft":
            return
        clock.now = decided if decided is not None else created
        stored = self.drafts.get("1", str(cid), draft_id)
        assert stored is not None
        decided_draft = self.drafts.decide(stored, outcome, fields or {})
        assert decided_draft is not None
        if grades:
            self.drafts.annotate(decided_draft, {"grades": grades})


def build_week(pipeline: Pipeline) -> World:
    """Write W38 and W39 as described in the module docstring."""
    world = World(pipeline)
    # ---- W38: C5 ----
    c5 = conversation(at("Mon", "10:00", 38), 1, 5, "high")
    world.customer(5, 5001, at("Mon", "10:00", 38), c5)
    world.agent(5, 5002, at("Mon", "10:20", 38), c5, at("Mon", "10:20", 38))
    world.status(5, "resolved", at("Mon", "15:00", 38), c5, at("Mon", "10:20", 38))
    world.csat(5, 5003, 4, at("Mon", "15:10", 38), c5)
    world.draft(
        5, 50, at("Mon", "10:05", 38), "sent_as_is", at("Mon", "10:18", 38), {"edit_ratio": 1.0}
    )

    # ---- W39 ----
    c1 = conversation(at("Mon", "09:00"), 1, 5, "high")
    c2 = conversation(at("Tue", "10:00"), 1, 5, "urgent")
    c3 = conversation(at("Wed", "17:30"), 2, None, None)
    c4 = conversation(at("Fri", "16:00"), 2, 6, "medium")
    first1, first2, first3 = at("Mon", "09:30"), at("Tue", "10:40"), at("Thu", "08:30")

    world.customer(1, 1001, at("Mon", "09:00"), c1)
    world.draft(
        1,
        1,
        at("Mon", "09:05"),
        "sent_as_is",
        at("Mon", "09:30"),
        {"edit_ratio": 1.0},
        {"tone": 5, "accuracy": 4, "policy": 5},
    )
    world.agent(1, 1002, first1, c1, first1)
    world.status(1, "resolved", at("Mon", "11:00"), c1, first1)
    world.csat(1, 1005, 5, at("Mon", "11:10"), c1)

    world.customer(2, 2001, at("Tue", "10:00"), c2)
    world.draft(2, 2, at("Tue", "10:05"), "edited", at("Tue", "10:40"), {"edit_ratio": 0.8})
    assert world.sweep(at("Tue", "10:20"))["breached"] == 1
    world.agent(2, 2002, first2, c2, first2)
    world.customer(2, 2003, at("Tue", "11:00"), c2)
    world.draft(
        2,
        3,
        at("Tue", "11:02"),
        "replaced",
        at("Tue", "11:20"),
        {"edit_ratio": 0.2},
        {"tone": 4, "accuracy": 4, "policy": 4},
    )
    world.agent(2, 2004, at("Tue", "11:20"), c2, first2)

    world.customer(3, 3001, at("Wed", "17:30"), c3, "I want a refund, let me talk to a human")
    world.draft(3, 4, at("Wed", "17:31"), "rejected", at("Wed", "17:40"))
    world.draft(3, 6, at("Thu", "08:00"), "no_draft")
    world.agent(3, 3002, first3, c3, first3)
    world.status(3, "resolved", at("Thu", "09:00"), c3, first3)
    world.csat(3, 3004, 3, at("Thu", "09:20"), c3)  # the changed answer arrives first
    world.csat(3, 3004, 2, at("Thu", "09:05"), c3)

    world.customer(1, 1003, at("Thu", "10:00"), c1)  # reopens C1
    world.agent(1, 1004, at("Thu", "10:10"), c1, first1)
    world.status(1, "resolved", at("Thu", "10:30"), c1, first1)

    world.customer(4, 4001, at("Fri", "16:00"), c4)
    world.draft(4, 5, at("Fri", "16:01"), "expired", at("Sat", "16:02"))
    assert world.sweep(at("Sat", "12:00"))["breached"] == 2  # C2's resolution, C4's response
    return world


def chatwoot_week(fake: Any) -> None:
    """Chatwoot's own reporting data for W38 and W39: one more conversation than we saw (its
    webhooks were lost), and far more incoming messages (a bot inbox that sends no webhook)."""
    fake.add_report_conversation(
        1, at("Mon", "10:00", 38), at("Mon", "10:20", 38), at("Mon", "15:00", 38)
    )
    fake.add_report_conversation(1, at("Mon", "09:00"), at("Mon", "09:30"), at("Mon", "11:00"))
    fake.reports["1"].events.append(
        ("conversation_resolved", at("Thu", "10:30"), at("Thu", "10:30") - at("Mon", "09:00"))
    )
    fake.add_report_conversation(1, at("Tue", "10:00"), at("Tue", "10:40"))
    fake.add_report_conversation(1, at("Wed", "17:30"), at("Thu", "08:30"), at("Thu", "09:00"))
    fake.add_report_conversation(1, at("Fri", "16:00"))
    fake.add_report_conversation(1, at("Fri", "12:00"))  # we never saw this one
    fake.add_report_message(1, "incoming", at("Wed", "12:00"), count=20)
    fake.add_report_message(1, "outgoing", at("Wed", "12:00"), count=5)
    fake.add_report_message(1, "incoming", at("Mon", "10:00", 38))
    fake.add_report_message(1, "outgoing", at("Mon", "10:20", 38))


def put_metrics(cloudwatch: Any) -> None:
    """The functions' EMF counts as CloudWatch would hold them, for W38, W39 and W40."""

    def put(name: str, value: float, when: float, service: str, reason: str | None = None) -> None:
        dimensions = [{"Name": "service", "Value": service}]
        if reason is not None:
            dimensions.insert(0, {"Name": "reason", "Value": reason})
        cloudwatch.put_metric_data(
            Namespace="SupportPipeline",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": dimensions,
                    "Value": value,
                    "Unit": "Count",
                    "Timestamp": datetime.fromtimestamp(when, ZONE),
                }
            ],
        )

    put("WebhookAccepted", 25, at("Tue", "10:00"), "ingest")
    put("WebhookAccepted", 15, at("Thu", "12:00"), "ingest")
    put("WebhookAccepted", 10, at("Mon", "12:00", 38), "ingest")
    put("WebhookAccepted", 99, at("Mon", "10:00") + 7 * 86400, "ingest")  # W40: not counted
    put("WebhookRejected", 3, at("Wed", "12:00"), "ingest", "signature mismatch")
    put("WebhookRejected", 1, at("Wed", "12:00", 38), "ingest", "not json")
    put("EventProcessed", 38, at("Thu", "12:00"), "processor")
    put("EventProcessed", 10, at("Mon", "12:00", 38), "processor")
    put("EventRetried", 2, at("Fri", "12:00"), "processor", "chatwoot_unavailable")
    put("EventDeadLettered", 1, at("Fri", "12:05"), "processor", "chatwoot_rejected")
    put("EventRedriven", 1, at("Sat", "09:00"), "ops")
    put("EventsReconciled", 2, at("Sat", "10:00"), "reconciler")
