"""Learning signals from drafts made by the real processor: the export, its days, the knowledge
gaps, the weekly function writing to S3, and `support-pipeline signals ... / drafts list`.

Drafts come from the same honest stand-in drafter as tests/integration/test_drafts.py (keyword
answers with a confidence); everything else is real: ingest, the queue and its delays, the
consumer, the draft store, the fake Chatwoot over HTTP, moto.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import pytest
import requests

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.drafts.store import DraftStore
from support_pipeline.signals import FIELDS, signal_records, week_window
from support_pipeline.sla import SlaSweep
from support_pipeline.store import ConversationStore
from support_pipeline_ops import signals_cli
from support_pipeline_ops.cli import main
from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.lambda_shim import LocalContext
from support_pipeline_ops.local.stack import LocalStack, free_port
from tests.integration.test_drafts import ANSWERS, POLICY, CannedDrafter
from tests.support import NOW, ROOT, agent_message, incoming, load_handler

ZONE = ZoneInfo("America/Bogota")  # the shipped policy's zone: UTC-5, no DST
CLI = Path(sys.executable).with_name("support-pipeline")


def local(text: str) -> float:
    """Epoch of a local time in the policy's zone, ``"2026-09-26 23:59:30"``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


@pytest.fixture
def drafter():
    return CannedDrafter()


@pytest.fixture
def world(pipeline, chatwoot, drafter):
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token)

    class World:
        deliveries = 0
        message_id = 1000

        def consumer(self):
            return pipeline.consumer(chatwoot=client, policy=POLICY, drafters=lambda inbox: drafter)

        def now(self) -> float:
            return pipeline.clock.now

        def at(self, epoch: float) -> World:
            pipeline.clock.now = epoch
            return self

        def post(self, *payloads):
            for payload in payloads:
                World.deliveries += 1
                delivery = f"sig-{World.deliveries}"
                status, body = pipeline.post(
                    payload, delivery_id=delivery, timestamp=pipeline.clock.now
                )
                assert status == 202, body
            pipeline.drain(self.consumer())

        def _id(self) -> int:
            World.message_id += 1
            return World.message_id

        def ask(self, text, conversation):
            """A customer's turn; the burst window passes and the drafter runs."""
            if (str(1), str(conversation)) not in chatwoot.conversations:
                chatwoot.add_conversation(1, conversation)
            chatwoot.add_customer_message(1, conversation, text)
            self.post(incoming(text, self._id(), pipeline.clock.now, conversation, status="open"))
            pipeline.end_delays()
            pipeline.drain(self.consumer())

        def note(self, content, conversation, agent_id=3):
            payload = agent_message(
                content, self._id(), pipeline.clock.now, private=True, conversation_id=conversation
            )
            # Written in Chatwoot: the note has Chatwoot's id, after the draft note it answers.
            payload["id"] = chatwoot.add_agent_message(
                1, conversation, content, private=True, user_id=agent_id
            )["id"]
            payload["sender"]["id"] = agent_id
            self.post(payload)

        def reply(self, content, conversation, agent_id=4):
            payload = agent_message(
                content, self._id(), pipeline.clock.now, conversation_id=conversation, status="open"
            )
            payload["sender"]["id"] = agent_id
            self.post(payload)

        def csat(self, rating, conversation):
            survey = incoming("", self._id(), pipeline.clock.now, conversation, status="resolved")
            survey.update(
                event="message_updated", message_type="template", content_type="input_csat"
            )
            survey["content_attributes"] = {
                "submitted_values": {"csat_survey_response": {"rating": rating}}
            }
            survey["conversation"]["messages"][0]["updated_at"] = pipeline.clock.now + 1
            self.post(survey)

        def expire(self):
            support = pipeline.support(client, POLICY)
            SlaSweep(
                support.sla, pipeline.telemetry, clock=pipeline.clock, drafts=support.drafts
            ).run(pipeline.clock.now)

        def drafts(self, conversation):
            return self.draft_store().of_conversation("1", str(conversation))

        def draft_store(self):
            return DraftStore(
                pipeline.dynamodb, pipeline.stack.physical["ConversationsTable"], ZONE
            )

        def records(self, since: float, until: float):
            return signal_records(
                pipeline.store(),
                self.draft_store(),
                datetime.fromtimestamp(since, UTC),
                datetime.fromtimestamp(until, UTC),
                ZONE,
            )

    return World()


@pytest.fixture
def cli(pipeline, monkeypatch):
    """`support-pipeline` through main(), pointed at the pipeline's table, run a second after
    the clock (after whatever the test did last)."""
    monkeypatch.setenv("CONVERSATIONS_TABLE", pipeline.stack.physical["ConversationsTable"])
    monkeypatch.setattr(signals_cli, "clock", lambda: pipeline.clock.now + 1)

    def run(*argv):
        out = io.StringIO()
        return main(list(argv), out=out), out.getvalue()

    return run


def by_outcome(lines):
    found = {}
    for line in lines:
        found.setdefault(line["outcome"], []).append(line)
    return found


# ---- the export ------------------------------------------------------------------------------
def test_every_decided_draft_is_one_export_line_with_its_outcome_and_signal(world, cli, tmp_path):
    start = NOW
    world.at(start).ask("¿Cuánto tarda el envío?", 1)
    world.at(start + 60).note("/send", 1)
    world.at(start + 90).note("/grade tone=5 accuracy=4 policy=5 claro y exacto", 1)
    world.at(start + 600).csat(5, 1)

    world.at(start + 700).ask("¿Qué tallas de anillo tienen?", 2)
    edited = "Las tallas de anillo van del 4 al 10; te ayudamos a medirla."
    world.at(start + 820).reply(edited, 2)

    world.at(start + 900).ask("Hi, how long does shipping take?", 3)
    replaced = "Let me check with the warehouse and call you back today."
    world.at(start + 960).reply(replaced, 3)

    world.at(start + 1000).ask("¿hacen envío a Cali?", 4)
    world.at(start + 1030).note("/reject no cubrimos Cali", 4)

    world.at(start + 1100).ask("¿El envío tiene costo?", 5)

    world.at(start + 1200).ask("Quisiera que envuelvan el collar para regalo", 6)
    world.at(start + 1300).reply("¡Claro! Lo envolvemos sin costo con una tarjeta.", 6)

    world.at(start + 1400).ask("¿envío a Pasto?", 7)
    world.at(start + 1500).ask("¿y qué tallas tienen?", 7)  # before anyone decided

    world.at(start + 1100 + 24 * 3600 + 60).expire()  # conversation 5's draft, undecided

    lines = world.records(start - 3600, start + 2 * 86400)
    outcomes = by_outcome(lines)
    assert {o: len(v) for o, v in outcomes.items()} == {
        "sent_as_is": 1,
        "edited": 1,
        "replaced": 1,
        "rejected": 1,
        "expired": 1,
        "no_draft": 1,
        "superseded": 1,
    }
    assert all(tuple(line) == FIELDS for line in lines)

    (sent,) = outcomes["sent_as_is"]
    assert sent["question"] == "¿Cuánto tarda el envío?"
    assert sent["draft"] == sent["final_text"] == ANSWERS["envio"][0]
    assert sent["approver"] == "3" and sent["edit_ratio"] == 1.0 and sent["edit_distance"] == 0
    assert sent["grades"] == {"tone": 5, "accuracy": 4, "policy": 5}
    assert sent["grade_comment"] == "claro y exacto" and sent["csat"] == 5
    assert sent["seconds_to_decision"] == 60.0
    assert sent["drafter"] == "knowledge" and sent["confidence"] == 0.82
    assert sent["sources"] == [{"title": "Envíos", "ref": ""}] and sent["language"] == "es"
    assert (sent["account_id"], sent["conversation_id"]) == ("1", "1")

    (edit,) = outcomes["edited"]
    assert edit["final_text"] == edited and edit["draft"] == ANSWERS["talla"][0]
    assert edit["edit_distance"] == 1 and 0.9 < edit["edit_ratio"] < 1 and edit["approver"] == "4"
    assert edit["csat"] is None and edit["grades"] is None

    (swap,) = outcomes["replaced"]
    assert swap["final_text"] == replaced and swap["edit_ratio"] < 0.6
    assert swap["language"] == "en" and swap["approver"] == "4"

    (rejected,) = outcomes["rejected"]
    assert rejected["rejection_reason"] == "no cubrimos Cali" and rejected["approver"] == "3"
    assert rejected["final_text"] is None

    (expired,) = outcomes["expired"]
    assert expired["approver"] is None and expired["seconds_to_decision"] >= 86400

    (gap,) = outcomes["no_draft"]
    assert gap["draft"] is None and gap["confidence"] == 0.05
    assert gap["final_text"] == "¡Claro! Lo envolvemos sin costo con una tarjeta."

    (superseded,) = outcomes["superseded"]
    assert superseded["question"] == "¿envío a Pasto?" and superseded["approver"] is None
    # the newer turn's draft waits for an agent: not decided, not exported
    assert [d["status"] for d in world.drafts(7)] == ["superseded", "pending"]

    # The CLI writes the same lines, readable by its owner only.
    path = tmp_path / "signals.jsonl"
    code, said = cli("signals", "export", "--since", "7d", "--out", str(path))
    assert code == 0 and said.startswith("Wrote 7 decided draft(s) from ")
    assert "1 edited" in said and str(path) in said
    assert [json.loads(row) for row in path.read_text().splitlines()] == lines
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, text = cli("signals", "export", "--since", "7d", "--out", "-", "--account", "1")
    assert code == 0 and [json.loads(row) for row in text.splitlines()] == lines
    code, text = cli("signals", "export", "--since", "7d", "--out", "-", "--account", "2")
    assert code == 0 and text == ""


def test_a_decision_just_before_local_midnight_belongs_to_that_local_day(world, cli):
    world.at(local("2026-09-26 23:58:00")).ask("¿Cuánto tarda el envío?", 1)
    world.at(local("2026-09-26 23:59:30")).note("/send", 1)  # 04:59:30 UTC on the 27th
    world.at(local("2026-09-26 23:59:40")).ask("¿Qué tallas de anillo tienen?", 2)
    world.at(local("2026-09-27 00:00:30")).note("/send", 2)

    (first,) = world.drafts(1)
    assert first["decided_at"].startswith("2026-09-27T04:59:30")  # UTC: already the 27th
    assert first["account_day"] == "1#2026-09-26"  # the support team's day
    (second,) = world.drafts(2)
    assert second["account_day"] == "1#2026-09-27"

    saturday = world.records(local("2026-09-26 00:00:00"), local("2026-09-27 00:00:00"))
    sunday = world.records(local("2026-09-27 00:00:00"), local("2026-09-28 00:00:00"))
    assert [line["conversation_id"] for line in saturday] == ["1"]
    assert [line["conversation_id"] for line in sunday] == ["2"]

    def exported(*window):
        code, text = cli("signals", "export", *window, "--out", "-")
        assert code == 0
        return [json.loads(row)["conversation_id"] for row in text.splitlines()]

    assert exported("--since", "2026-09-26", "--until", "2026-09-26") == ["1"]
    assert exported("--since", "2026-09-27", "--until", "2026-09-27") == ["2"]
    assert exported("--since", "2026-09-26", "--until", "2026-09-27") == ["1", "2"]
    # in UTC both decisions are on the 27th
    assert exported("--since", "2026-09-27", "--until", "2026-09-27", "--timezone", "UTC") == [
        "1",
        "2",
    ]


# ---- knowledge gaps ----------------------------------------------------------------------------
def test_questions_without_a_good_draft_are_grouped_by_topic_with_the_agents_answers(world, cli):
    world.at(NOW)
    for conversation, question in (
        (11, "¿Pueden envolver el anillo para regalo?"),
        (12, "¿Tienen envoltura de regalo?"),
        (13, "¿Hacen paquete de regalo?"),
        (14, "¿Tienen tienda física en Bogotá?"),
        (15, "¿Dónde queda su tienda?"),
        (16, "Do you ship to Canada?"),
        (17, "Hola"),
    ):
        world.at(world.now() + 60).ask(question, conversation)
    world.at(world.now() + 60).reply("Sí, envolvemos gratis con lazo y tarjeta.", 11)
    world.at(world.now() + 60).reply("Con gusto: papel kraft y lazo dorado.", 13)
    world.at(world.now() + 60).ask("Hi, how long does shipping to Canada take?", 18)
    world.at(world.now() + 60).reply("We do not ship to Canada yet, sorry!", 18)
    assert world.drafts(18)[0]["outcome"] == "replaced"

    code, text = cli("signals", "gaps", "--since", "1d", "--json")
    assert code == 0
    report = json.loads(text)
    groups = report["groups"]
    assert [g["count"] for g in groups] == [3, 2, 2]  # "Hola" has nothing to write about
    gift, *others = groups
    assert {e["question"] for e in gift["examples"]} == {
        "¿Pueden envolver el anillo para regalo?",
        "¿Tienen envoltura de regalo?",
        "¿Hacen paquete de regalo?",
    }
    assert sorted(gift["answers"]) == [
        "Con gusto: papel kraft y lazo dorado.",
        "Sí, envolvemos gratis con lazo y tarjeta.",
    ]
    assert "regalo" in gift["terms"] and gift["no_draft"] == 3
    canada = next(g for g in others if "canada" in g["terms"])
    assert (canada["no_draft"], canada["replaced"]) == (1, 1)
    assert canada["answers"] == ["We do not ship to Canada yet, sorry!"]
    store = next(g for g in others if g is not canada)
    assert {e["conversation_id"] for e in store["examples"]} == {"14", "15"}
    assert report["questions"] == 7 and report["threshold"] == 0.3

    code, text = cli("signals", "gaps", "--since", "1d")
    assert code == 0
    assert "7 question(s) with no draft or a replaced draft, in 3 group(s)" in text
    assert "1. 3 question(s) like '" in text
    assert "agent: 'Sí, envolvemos gratis con lazo y tarjeta.'" in text
    assert "agent: (no answer recorded)" in text


# ---- drafts list -------------------------------------------------------------------------------
def test_drafts_list_shows_what_awaits_approval_and_decided_ones_by_status(world, cli):
    world.at(NOW).ask("¿Cuánto tarda el envío?", 21)
    world.at(NOW + 60).ask("¿Qué tallas de anillo tienen?", 22)
    world.at(NOW + 120).ask("¿hacen envío a Cali?", 23)
    world.at(NOW + 180).note("/send", 23)

    code, text = cli("drafts", "list")
    assert code == 0
    header, *rows = text.splitlines()
    assert header.split() == [
        "CREATED",
        "STATUS",
        "CONVERSATION",
        "DRAFT",
        "CONFIDENCE",
        "DRAFTER",
        "QUESTION",
    ]
    assert [row.split()[2:5] for row in rows] == [
        ["pending", "1/21", world.drafts(21)[0]["draft_id"]],
        ["pending", "1/22", world.drafts(22)[0]["draft_id"]],
    ]
    assert rows[0].startswith("2026-09-26 21:16") and rows[0].endswith("¿Cuánto tarda el envío?")

    code, text = cli("drafts", "list", "--json")
    items = json.loads(text)
    assert [i["conversation_id"] for i in items] == ["21", "22"]
    assert all(i["status"] == "pending" and "pk" not in i for i in items)

    code, text = cli("drafts", "list", "--status", "sent_as_is", "--since", "1d", "--json")
    assert code == 0 and [i["conversation_id"] for i in json.loads(text)] == ["23"]
    code, text = cli("drafts", "list", "--status", "rejected")
    assert code == 0 and text == "No rejected drafts.\n"
    assert cli("drafts", "list", "--account", "2") == (0, "No pending drafts.\n")
    code, text = cli("drafts", "list", "--since", "3m")  # created in the last 3 minutes
    assert [row.split()[3] for row in text.splitlines()[1:]] == ["1/22"]


def test_missing_settings_and_bad_arguments_are_one_line_errors(pipeline, monkeypatch, capsys):
    monkeypatch.delenv("CONVERSATIONS_TABLE", raising=False)
    out = io.StringIO()
    assert main(["signals", "export", "--since", "7d", "--out", "-"], out=out) == 2
    assert main(["drafts", "list"], out=out) == 2
    error = capsys.readouterr().err
    assert (
        error.splitlines()
        == [
            "support-pipeline: missing setting: the pipeline (--stack NAME or "
            "SUPPORT_PIPELINE_STACK, or CONVERSATIONS_TABLE as `support-pipeline local` prints "
            "them)"
        ]
        * 2
    )
    monkeypatch.setenv("CONVERSATIONS_TABLE", pipeline.stack.physical["ConversationsTable"])
    for argv, message in (
        (["signals", "gaps", "--since", "last week"], "--since: expected 7d, 24h"),
        (["signals", "gaps", "--since", "1d", "--until", "3d"], "nothing between --since 1d"),
        (["drafts", "list", "--account", "01"], "--account must be a Chatwoot account id"),
        (["signals", "gaps", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["signals", "export", "--since", "7d", "--out", "/nonexistent/x.jsonl"], "cannot write"),
    ):
        assert main(argv, out=out) == 2, argv
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("support-pipeline: ") and message in line, line
    assert out.getvalue() == ""


# ---- the weekly function -----------------------------------------------------------------------
def test_the_weekly_function_writes_last_weeks_lines_and_gaps_to_fixed_keys(
    world, pipeline, monkeypatch
):
    world.at(local("2026-09-27 23:58:00")).ask("¿Cuánto tarda el envío?", 31)
    world.at(local("2026-09-27 23:59:30")).note("/send", 31)  # Sunday: week 39
    world.at(local("2026-09-27 23:59:40")).ask("¿Tienen envoltura de regalo?", 32)  # a gap
    world.at(local("2026-09-28 00:00:30")).ask("¿Qué tallas de anillo tienen?", 33)
    world.at(local("2026-09-28 00:01:00")).note("/send", 33)  # Monday: week 40

    for name, value in pipeline.stack.function_environment("SignalsExportFunction").items():
        monkeypatch.setenv(name, value)
    app = load_handler("signals_export")
    event = {
        "time": "2026-09-28T06:00:00Z",
        "source": "aws.events",
        "detail-type": "Scheduled Event",
    }
    answer = app.handler(event, LocalContext("signals-export"))
    assert answer["week"] == "2026-W39" and answer["lines"] == 2
    assert answer["outcomes"] == {"no_draft": 1, "sent_as_is": 1}
    assert answer["keys"] == ["signals/2026-W39.jsonl", "signals/2026-W39-gaps.json"]
    assert "envío" not in json.dumps(answer)  # counts and keys, no customer text

    s3 = pipeline.clients["s3"]
    bucket = pipeline.stack.physical["PayloadBucket"]

    def objects():
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="signals/").get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def read(key):
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    assert objects() == ["signals/2026-W39-gaps.json", "signals/2026-W39.jsonl"]
    lines = [json.loads(row) for row in read("signals/2026-W39.jsonl").splitlines()]
    assert [(line["conversation_id"], line["outcome"]) for line in lines] == [
        ("31", "sent_as_is"),
        ("32", "no_draft"),
    ]
    assert lines[0]["question"] == "¿Cuánto tarda el envío?"
    gaps = json.loads(read("signals/2026-W39-gaps.json"))
    since, until = week_window("2026-W39", ZONE)
    assert (gaps["since"], gaps["until"]) == (since.isoformat(), until.isoformat())
    assert gaps["since"] == "2026-09-21T00:00:00-05:00" and gaps["timezone"] == "America/Bogota"
    assert [g["representative"] for g in gaps["groups"]] == ["¿Tienen envoltura de regalo?"]

    # A re-run (a replayed event) writes the same keys again; another week, its own.
    assert app.handler(event, LocalContext("signals-export"))["keys"] == answer["keys"]
    assert objects() == ["signals/2026-W39-gaps.json", "signals/2026-W39.jsonl"]
    later = app.handler({**event, "week": "2026-W40"}, LocalContext("signals-export"))
    assert later["lines"] == 1 and later["outcomes"] == {"sent_as_is": 1}
    assert len(objects()) == 4
    body = read("signals/2026-W40.jsonl")
    assert json.loads(body)["conversation_id"] == "33"
    with pytest.raises(ValueError, match="2026-W39"):
        app.handler({**event, "week": "last"}, LocalContext("signals-export"))


# ---- as a real command, against the local stack's moto server ----------------------------------
@pytest.fixture
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield port
    finally:
        server.stop()


def test_signals_export_and_drafts_list_as_real_commands_with_the_local_stacks_exports(
    moto_server, tmp_path
):
    endpoint = f"http://127.0.0.1:{moto_server}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    clients = {
        name: boto3.client(
            name,
            endpoint_url=endpoint,
            region_name=cfn.REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        for name in ("sqs", "dynamodb", "s3", "ssm")
    }
    stack = cfn.provision(
        cfn.load(ROOT / "template.yaml"),
        clients,
        stack_name="support-pipeline-local",
        secrets={"WebhookSecretParamName": "server-test-secret"},
    )
    local_stack = LocalStack(
        template_path=ROOT / "template.yaml", secret="x", moto_port=moto_server, stack=stack
    )
    exports = local_stack.exports()
    assert exports["CONVERSATIONS_TABLE"] == stack.physical["ConversationsTable"]

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=cfn.REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    table = stack.physical["ConversationsTable"]
    ConversationStore(dynamodb, table).register_account("1")
    at = local("2026-09-24 10:00:00")
    drafts = DraftStore(dynamodb, table, ZONE, clock=lambda: at)
    base = {"account_id": "1", "drafter": "knowledge", "language": "es", "sources": []}
    drafts.create(
        {
            **base,
            "draft_id": "d-aaaaaa",
            "conversation_id": "5",
            "status": "no_draft",
            "question": "¿Hacen grabados?",
            "text": None,
            "confidence": 0.1,
        }
    )
    drafts.create(
        {
            **base,
            "draft_id": "d-bbbbbb",
            "conversation_id": "6",
            "status": "pending",
            "question": "¿Cuánto tarda el envío?",
            "text": "2 a 4 días.",
            "confidence": 0.8,
        }
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(exports)
    path = tmp_path / "w39.jsonl"
    done = subprocess.run(
        [
            str(CLI),
            "signals",
            "export",
            "--since",
            "2026-09-21",
            "--until",
            "2026-09-27",
            "--out",
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "Wrote 1 decided draft(s) from 2026-09-21 00:00 to 2026-09-28 00:00"
    )
    (line,) = [json.loads(row) for row in path.read_text().splitlines()]
    assert (line["draft_id"], line["outcome"], line["question"]) == (
        "d-aaaaaa",
        "no_draft",
        "¿Hacen grabados?",
    )
    done = subprocess.run(
        [str(CLI), "drafts", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "d-bbbbbb" in done.stdout and "d-aaaaaa" not in done.stdout

    env.pop("CONVERSATIONS_TABLE")
    done = subprocess.run(
        [str(CLI), "drafts", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(
        "CONVERSATIONS_TABLE as `support-pipeline local` prints them)"
    )
