"""`support-pipeline actions list` and `policy validate`, and the support settings."""

import io
import json

import pytest
import yaml

from support_pipeline.config import ConfigError, SupportSettings
from support_pipeline_ops.cli import main
from tests.support import NOW, SHIPPED_POLICY, incoming, policy_with


def cli(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_actions_list_shows_dry_runs_per_conversation_and_overall(pipeline, monkeypatch):
    monkeypatch.setenv("ACTIONS_TABLE", pipeline.stack.physical["ActionsTable"])
    assert pipeline.post(incoming("I want a refund", 1, NOW))[0] == 202
    assert pipeline.post(incoming("I want a refund", 2, NOW, conversation_id=2))[0] == 202
    pipeline.drain(pipeline.consumer(policy=policy_with(**{"escalation.team_id": 7})))
    code, text = cli("actions", "list", "--account", "1", "--conversation", "1", "--json")
    assert code == 0
    items = json.loads(text)
    assert {i["conversation_id"] for i in items} == {"1"}
    assert {i["status"] for i in items} == {"dry_run"}
    assert len(json.loads(cli("actions", "list", "--json")[1])) == 2 * len(items)
    code, table = cli("actions", "list")
    notes = [line for line in table.splitlines() if "private_note" in line]
    assert notes and all("dry_run" in line for line in notes)
    # the reason and the note's first meaningful line, not its header
    assert all("Escalated by the support pipeline:" not in line for line in notes)
    note = next(i for i in items if i["kind"] == "private_note")
    assert note["reason"] and note["reason"] in notes[0]
    first_reason = note["detail"]["content"].splitlines()[1].removeprefix("- ")
    assert first_reason in notes[0]
    # --json keeps everything: the whole note, header included
    assert note["detail"]["content"].startswith("Escalated by the support pipeline:")
    assert cli("actions", "list", "--conversation", "1")[0] == 2  # needs --account


@pytest.mark.parametrize(("account", "conversation"), [("1", "abc"), ("x", "1")])
def test_actions_list_with_an_id_that_is_no_chatwoot_id_says_so_in_one_line(
    account, conversation, pipeline, monkeypatch, capsys
):
    monkeypatch.setenv("ACTIONS_TABLE", pipeline.stack.physical["ActionsTable"])
    code, text = cli("actions", "list", "--account", account, "--conversation", conversation)
    assert code == 2 and text == ""
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("support-pipeline: ") and "Traceback" not in line


def test_policy_validate_names_the_bad_field(tmp_path, capsys):
    code, text = cli("policy", "validate")
    assert code == 0 and "valid" in text
    bad = yaml.safe_load(SHIPPED_POLICY.read_text())
    bad["sla"]["at_risk_fraction"] = 2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli("policy", "validate", str(path))[0] == 2
    assert "sla.at_risk_fraction must be between 0 and 1" in capsys.readouterr().err


def test_a_chatwoot_url_without_a_token_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match="CHATWOOT_API_TOKEN_PARAM"):
        SupportSettings.from_env({"CHATWOOT_BASE_URL": "https://chatwoot.example.test"})
    with pytest.raises(ConfigError, match="https://"):
        SupportSettings.from_env(
            {"CHATWOOT_BASE_URL": "chatwoot.example.test", "CHATWOOT_API_TOKEN_PARAM": "/t"}
        )
    assert SupportSettings.from_env({}).dry_run


def test_a_note_summary_skips_headers_and_references():
    from support_pipeline_ops.conversations_cli import first_meaningful_line

    assert first_meaningful_line("Escalated:\n- customer asks for a refund\n\nref: sp-1") == (
        "customer asks for a refund"
    )
    assert first_meaningful_line("SLA at risk: due 12:00.") == "SLA at risk: due 12:00."
    assert first_meaningful_line("Header only:") == "Header only:"
    assert first_meaningful_line("") == ""


def test_a_note_summary_is_what_the_pipeline_notes_say_not_their_headers():
    from support_pipeline.drafts.service import DraftService
    from support_pipeline.escalation import Escalator, Reason
    from support_pipeline_ops.conversations_cli import action_summary

    def summary(content: str) -> str:
        return action_summary({"kind": "private_note", "detail": {"content": content}})

    draft = {
        "draft_id": "d-1",
        "drafter": "knowledge",
        "text": "Los envíos tardan 3 días.\nTe avisamos al salir.",
        "confidence": 0.8,
        "sources": [{"title": "Envíos", "ref": ""}],
    }
    note = DraftService._note(draft)
    assert note.startswith("Draft reply d-1 · 80% confident · knowledge: Envíos")
    assert summary(note) == "Los envíos tardan 3 días."
    escalator = Escalator(policy_with(**{"escalation.team_id": 7}), None, None)
    refund = escalator.note([Reason("refund", "customer asks for a refund")])
    assert summary(refund) == "customer asks for a refund"
    breach = escalator.note([Reason("sla_breach", "SLA breached: the first response was due")])
    assert summary(breach) == "SLA breached: the first response was due"
