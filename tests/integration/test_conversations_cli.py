"""`support-pipeline conversations list | show` over a real pipeline run on moto (dry run)."""

import io
import json
from html.parser import HTMLParser

import pytest

from support_pipeline.sla import SlaSweep
from support_pipeline_ops.cli import main
from support_pipeline_ops.conversations_cli import (
    Tables,
    conversation_view,
    render_conversation_html,
)
from tests.integration.test_sla import CREATED, HOUR, POLICY  # wall-clock targets
from tests.support import NOW, fixture, incoming


def cli(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def ran(pipeline, monkeypatch):
    """Conversation 1/1: the captured messages, then an SLA sweep past its first-response due
    time. Conversation 1/2: a customer asks for a refund (escalated). Conversation 1/3: the
    captured conversation resolved. All in dry run, as the local stack runs."""
    monkeypatch.setenv("CONVERSATIONS_TABLE", pipeline.stack.physical["ConversationsTable"])
    monkeypatch.setenv("ACTIONS_TABLE", pipeline.stack.physical["ActionsTable"])
    payloads = [
        incoming("Hola, necesito ayuda con mi pedido", 1, CREATED + 10, status="open"),
        incoming("I want a refund now", 11, NOW, conversation_id=2, status="open"),
    ]
    resolved = fixture("conversation_status_changed_resolved")
    resolved["id"] = 3
    payloads.append(resolved)
    for i, payload in enumerate(payloads):
        assert pipeline.post(payload, delivery_id=f"c-{i}", timestamp=pipeline.clock.now)[0] == 202
    pipeline.drain(pipeline.consumer(policy=POLICY))
    pipeline.clock.now = CREATED + 2 * HOUR
    SlaSweep(pipeline.support(None, POLICY).sla, pipeline.telemetry).run(pipeline.clock.now)
    return pipeline


def tables(pipeline):
    return Tables(
        pipeline.dynamodb,
        pipeline.stack.physical["ConversationsTable"],
        pipeline.stack.physical["ActionsTable"],
    )


def test_show_has_record_sla_clocks_escalation_timeline_and_dry_run_actions(ran):
    view = conversation_view(tables(ran), "1", "1", POLICY, now=CREATED + 2 * HOUR)
    assert view["record"]["status"] == "open"
    first = next(c for c in view["sla"]["clocks"] if c["target"] == "first_response")
    assert first["state"] == "breached" and first["met_at"] is None
    assert first["due_at"] == "2026-09-27T03:14:11.000Z"  # created + 1 h
    assert [item["event"] for item in view["timeline"]][:1] == ["message_created"]
    kinds = {(a["kind"], a["status"]) for a in view["actions"]}
    assert ("private_note", "dry_run") in kinds and view["dry_run"]
    assert all("pk" not in item for item in view["timeline"])

    escalated = conversation_view(tables(ran), "1", "2", POLICY, now=NOW)
    assert escalated["escalation"]["escalated"]
    assert [c["reason"] for c in escalated["escalation"]["claims"]] == ["asks_for_human"]
    assert all(c["dry_run"] for c in escalated["escalation"]["claims"])
    assert conversation_view(tables(ran), "1", "99", POLICY) is None


def test_show_uses_queries_only(ran, monkeypatch):
    table_class = type(ran.dynamodb.Table(ran.stack.physical["ConversationsTable"]))

    def no_scan(*args, **kwargs):
        raise AssertionError("show must not scan")

    monkeypatch.setattr(table_class, "scan", no_scan)
    assert conversation_view(tables(ran), "1", "1", POLICY)["record"]


def test_show_on_the_command_line_text_json_and_html(ran, capsys):
    code, text = cli("conversations", "show", "1", "2")
    assert code == 0
    for heading in (
        "Conversation 1/2",
        "SLA clocks",
        "Escalation: escalated",
        "Timeline (",
        "Actions (",
    ):
        assert heading in text
    assert "asks_for_human" in text and "Dry run:" in text
    code, data = cli("conversations", "show", "1", "2", "--json")
    view = json.loads(data)
    assert {a["status"] for a in view["actions"]} == {"dry_run"}
    assert view["actions"][0]["detail"]  # --json keeps everything
    code, page = cli("conversations", "show", "1", "2", "--html")
    assert code == 0 and page.startswith("<!doctype html>")
    assert cli("conversations", "show", "1", "99")[0] == 2
    assert "no conversation 1/99" in capsys.readouterr().err
    assert cli("conversations", "show", "1", "x#1")[0] == 2
    assert "not a positive integer" in capsys.readouterr().err


def test_list_shows_open_conversations_and_all_with_a_limit(ran):
    code, data = cli("conversations", "list", "--json")
    listing = json.loads(data)
    assert listing["complete"]
    assert [(r["account_id"], r["conversation_id"]) for r in listing["conversations"]] == [
        ("1", "1"),
        ("1", "2"),
    ]
    everything = json.loads(cli("conversations", "list", "--all", "--json")[1])
    assert ("1", "3", "resolved") in {
        (r["account_id"], r["conversation_id"], r["status"]) for r in everything["conversations"]
    }
    code, table = cli("conversations", "list", "--account", "1")
    assert code == 0 and table.splitlines()[0].split()[:3] == ["ACCOUNT", "CONVERSATION", "STATUS"]
    assert cli("conversations", "list", "--account", "2")[1] == "No open conversations.\n"


def test_the_page_is_self_contained_and_escapes_what_it_shows(ran):
    view = conversation_view(tables(ran), "1", "2", POLICY, now=NOW)
    view["actions"][0]["detail"] = {"content": "<script>alert(1)</script>"}
    page = render_conversation_html(view)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "src=" not in page and "href=" not in page  # nothing fetched from elsewhere

    class Tags(HTMLParser):
        seen: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.seen.append(tag)

    parser = Tags()
    parser.feed(page)
    assert {"html", "h1", "table", "style"} <= set(parser.seen)


@pytest.mark.parametrize(
    ("name", "text"), [("missing.yaml", None), ("bad.yaml", "timezone: [unclosed\n")]
)
def test_show_with_an_unusable_policy_says_why_in_one_line(
    name, text, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CONVERSATIONS_TABLE", "conversations")
    monkeypatch.setenv("ACTIONS_TABLE", "actions")
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")

    code, shown = cli("conversations", "show", "1", "1", "--policy", str(path))

    assert code == 2 and shown == ""
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("support-pipeline: ") and name in line
