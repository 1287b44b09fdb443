"""Drafts only from a knowledge source the team configured (issue 15, part 8).

The layer ships sample articles of a fictional store. The real processor handler, configured by
template.yaml's environment against moto, drafts nothing from them: without a knowledge source a
customer's question gets no draft note and no draft item, and the log says why. With articles in
an S3 bucket (the policy's ``drafts.knowledge.s3_uri``) it drafts from those; with the local
stack's setting (``KNOWLEDGE_SAMPLES=allow``) from the samples.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import yaml

from support_pipeline.actions import ActionLedger
from support_pipeline.drafts.store import DraftStore
from support_pipeline.policy import load_default_policy
from support_pipeline_ops.cli import main
from support_pipeline_ops.local.lambda_shim import LocalContext, poll_once
from tests.support import ROOT, SHIPPED_POLICY, incoming, load_handler, new_pipeline

QUESTION = "Hola, ¿cuánto tarda el envío de un anillo a Medellín?"
POLICY_PARAM = "/support-pipeline/support-policy"
BUCKET = "acme-support-kb-part8"
PREFIX = "kb/"
# The team's own article: nothing like it is among the samples.
ARTICLE = """# Envíos

## ¿Cuánto tarda el envío de un anillo?

Tu anillo llega a Medellín y a toda Colombia en 3 días hábiles con Servientrega.
"""


def processor(pipeline, monkeypatch, **extra: str):
    """functions/processor/app.py with the ProcessorFunction environment template.yaml gives it
    (plus ``extra``), built afresh."""
    monkeypatch.delenv("KNOWLEDGE_SAMPLES", raising=False)
    for name, value in {
        **pipeline.stack.function_environment("ProcessorFunction"),
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    app = load_handler("processor")
    monkeypatch.setattr(app, "_consumer", None)
    return app


def deliver(pipeline, app, payload, delivery_id: str) -> None:
    """A webhook through ingest, then the processor until the queue is empty, the burst
    window's delayed events included."""
    assert pipeline.post(payload, delivery_id=delivery_id)[0] == 202
    for _ in range(5):
        pipeline.end_delays()
        received, failed = poll_once(
            pipeline.sqs,
            pipeline.queue_url,
            pipeline.queue_arn,
            app.handler,
            context_factory=lambda: LocalContext(function_name="processor"),
        )
        assert failed == 0
        if received == 0 and pipeline.delayed() == 0:
            return
    raise AssertionError("the queue did not empty")


def question(text: str = QUESTION, message_id: int = 501):
    return incoming(text, message_id, time.time(), status="open")


def drafts_of(pipeline) -> list[dict]:
    table = pipeline.stack.physical["ConversationsTable"]
    zone = load_default_policy().zone
    return DraftStore(pipeline.dynamodb, table, zone).of_conversation("1", "1")


def draft_notes(pipeline) -> list[str]:
    """The private notes the processor posted (dry runs: the template sets no Chatwoot URL)."""
    ledger = ActionLedger(pipeline.dynamodb, pipeline.stack.physical["ActionsTable"])
    return [
        a["detail"]["content"]
        for a in ledger.list("1", "1")
        if a["kind"] == "private_note" and a["detail"]["content"].startswith("Draft reply")
    ]


def test_the_template_gives_no_function_leave_to_draft_from_the_samples(pipeline):
    assert "KNOWLEDGE_SAMPLES" not in (ROOT / "template.yaml").read_text(encoding="utf-8")
    functions = [
        name
        for name, spec in pipeline.stack.template["Resources"].items()
        if spec["Type"] == "AWS::Serverless::Function"
    ]
    assert "ProcessorFunction" in functions and "SlaSweepFunction" in functions
    for function in functions:
        assert "KNOWLEDGE_SAMPLES" not in pipeline.stack.function_environment(function)
    # sam local invoke's settings and the local stack may (they run on the samples)
    local = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    assert local["ProcessorFunction"]["KNOWLEDGE_SAMPLES"] == "allow"


def test_deployed_without_a_knowledge_source_a_question_gets_no_draft_and_the_log_says_why(
    pipeline, monkeypatch, pipeline_logs
):
    app = processor(pipeline, monkeypatch)
    deliver(pipeline, app, question(), "no-kb-1")
    assert draft_notes(pipeline) == []
    assert drafts_of(pipeline) == []  # not even a "no_draft" learning signal
    lines = [json.loads(x) for x in pipeline_logs.getvalue().splitlines() if x.startswith("{")]
    [said] = [x for x in lines if x["message"] == "drafts off: no knowledge source configured"]
    assert said["level"] == "WARNING" and said["off_for"] == ["default"]
    assert "drafts.knowledge.s3_uri" in said["drafts"]
    assert "Medellín" not in pipeline_logs.getvalue()  # ids and outcomes, never customer text


def test_deployed_with_articles_in_s3_drafts_from_them(aws, monkeypatch):
    pipeline = new_pipeline(
        {
            "SupportPolicyParamName": POLICY_PARAM,
            "DraftsKnowledgeBucket": BUCKET,
            "DraftsKnowledgePrefix": PREFIX,
        }
    )
    s3 = pipeline.clients["s3"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}es/envios.md", Body=ARTICLE.encode())
    policy = yaml.safe_load(SHIPPED_POLICY.read_text(encoding="utf-8"))
    policy["drafts"]["knowledge"]["s3_uri"] = f"s3://{BUCKET}/{PREFIX}"
    pipeline.clients["ssm"].put_parameter(
        Name=POLICY_PARAM, Value=yaml.safe_dump(policy), Type="String", Overwrite=True
    )
    app = processor(pipeline, monkeypatch)
    deliver(pipeline, app, question(), "kb-1")
    [draft] = drafts_of(pipeline)
    assert draft["status"] == "pending" and draft["drafter"] == "knowledge"
    assert draft["sources"] == [{"title": "Envíos", "ref": f"s3://{BUCKET}/{PREFIX}es/envios.md"}]
    [note] = draft_notes(pipeline)
    assert "3 días hábiles con Servientrega" in note


def test_with_the_local_stacks_setting_drafts_come_from_the_samples(pipeline, monkeypatch):
    app = processor(pipeline, monkeypatch, KNOWLEDGE_SAMPLES="allow")
    deliver(pipeline, app, question("buenas, cuanto tarda el envio?"), "samples-1")
    [draft] = drafts_of(pipeline)
    assert draft["status"] == "pending"
    assert draft["sources"][0]["ref"] == "es/envios.md"  # a sample article
    assert len(draft_notes(pipeline)) == 1


def test_policy_validate_says_drafts_are_off_when_deployed_until_a_source_is_set(tmp_path):
    out = io.StringIO()
    assert main(["policy", "validate"], out=out) == 0
    assert (
        "Drafts when deployed: off: no knowledge source configured (set drafts.knowledge.s3_uri"
        in out.getvalue()
    )
    policy = yaml.safe_load(SHIPPED_POLICY.read_text(encoding="utf-8"))
    policy["drafts"]["knowledge"]["s3_uri"] = "s3://acme-kb/kb/"
    path = Path(tmp_path) / "policy.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    out = io.StringIO()
    assert main(["policy", "validate", str(path)], out=out) == 0
    assert "Drafts when deployed: knowledge over s3://acme-kb/kb/." in out.getvalue()


@pytest.mark.parametrize("value", ["yes", "true", "samples"])
def test_only_allow_lets_a_process_use_the_samples(value):
    from support_pipeline.config import ConfigError, SupportSettings

    assert SupportSettings.from_env({"KNOWLEDGE_SAMPLES": "allow"}).knowledge_samples
    assert not SupportSettings.from_env({}).knowledge_samples
    with pytest.raises(ConfigError, match="KNOWLEDGE_SAMPLES must be allow or unset"):
        SupportSettings.from_env({"KNOWLEDGE_SAMPLES": value})
