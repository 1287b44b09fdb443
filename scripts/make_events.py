"""Write events/<function>/*.json (for `sam local invoke -e` and `make invoke`) from the fixtures.

Ingest events carry a placeholder signature; `scripts/invoke_check.py` re-signs them with the
secret it stores in the local SSM parameter (signatures expire after 300 s, so a committed one
would be stale anyway). Run: .venv/bin/python scripts/make_events.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common"))

from support_pipeline.chatwoot import payload as cw  # noqa: E402
from support_pipeline_ops.local import lambda_shim  # noqa: E402
from support_pipeline_ops.local import template as cfn  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"
PLACEHOLDER = "sha256=" + "0" * 64  # re-signed at invoke time


def fixture_body(name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / f"{name}.json").read_text())).encode()


def ingest_event(body: bytes, delivery: str, signed: bool = True) -> dict:
    headers = {"content-type": "application/json", "x-chatwoot-delivery": delivery}
    if signed:
        headers |= {"x-chatwoot-signature": PLACEHOLDER, "x-chatwoot-timestamp": "0"}
    return lambda_shim.http_api_event("POST", "/webhooks/chatwoot", headers, body)


def sqs_record(name: str, index: int, body: bytes | None = None) -> dict:
    body = body if body is not None else fixture_body(name)
    payload = json.loads(body)
    attributes = {
        "event": payload.get("event", ""),
        "delivery_id": f"sample-{index}",
        "dedupe_key": cw.dedupe_key(payload, f"sample-{index}", body, signed=True),
        "received_at": "2026-09-27T02:16:40.000Z",
        "account_id": cw.account_id(payload) or "",
        "conversation_id": cw.conversation_id(payload) or "",
        "signed": "true",
    }
    message = {
        "MessageId": f"00000000-0000-4000-8000-00000000000{index}",
        "ReceiptHandle": f"sample-receipt-handle-{index}",
        "Body": body.decode(),
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1790475400000"},
        "MessageAttributes": {
            k: {"StringValue": v, "DataType": "String"} for k, v in attributes.items() if v
        },
    }
    return lambda_shim.sqs_event(
        [message], f"arn:aws:sqs:{cfn.REGION}:{cfn.ACCOUNT_ID}:support-pipeline-local-events"
    )["Records"][0]


def write(path: Path, event: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(event, indent=2) + "\n")
    print(path.relative_to(ROOT))


def main() -> None:
    events = ROOT / "events"
    write(
        events / "ingest" / "message_created.json",
        ingest_event(fixture_body("message_created_incoming"), "sample-1"),
    )
    write(
        events / "ingest" / "conversation_status_changed.json",
        ingest_event(fixture_body("conversation_status_changed_resolved"), "sample-2"),
    )
    write(
        events / "ingest" / "rejected_unsigned.json",
        ingest_event(fixture_body("message_created_incoming"), "sample-3", signed=False),
    )
    write(events / "ingest" / "rejected_not_json.json", ingest_event(b"{not json", "sample-4"))
    names = [
        "message_created_incoming",
        "message_created_outgoing_agent",
        "conversation_status_changed_resolved",
    ]
    # A second conversation left waiting, open: the sweep sample finds it.
    waiting = json.loads(fixture_body("message_created_incoming"))
    waiting["id"] = 7
    waiting["conversation"].update(id=2, status="open")
    waiting["conversation"]["messages"][0].update(id=7, conversation_id=2)
    records = [sqs_record(name, i) for i, name in enumerate(names, start=1)]
    records.append(sqs_record("waiting", len(records) + 1, body=json.dumps(waiting).encode()))
    write(events / "processor" / "conversation_batch.json", {"Records": records})
    write(
        events / "processor" / "poison_to_dlq.json",
        {
            "Records": [
                sqs_record(
                    "poison", 9, body=b'{"event": "conversation_updated", "account": {"id": 1}}'
                )
            ]
        },
    )

    write(
        events / "sla_sweep" / "scheduled.json",
        {
            "version": "0",
            "id": "00000000-0000-4000-8000-000000000099",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": cfn.ACCOUNT_ID,
            "time": "2026-09-28T17:30:00Z",
            "region": cfn.REGION,
            "resources": [
                f"arn:aws:events:{cfn.REGION}:{cfn.ACCOUNT_ID}:rule/support-pipeline-local-sweep"
            ],
            "detail": {},
        },
    )

    write(
        events / "signals_export" / "scheduled.json",
        {
            "version": "0",
            "id": "00000000-0000-4000-8000-000000000098",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": cfn.ACCOUNT_ID,
            "time": "2026-09-28T06:00:00Z",  # Monday: the export of 2026-W39
            "region": cfn.REGION,
            "resources": [
                f"arn:aws:events:{cfn.REGION}:{cfn.ACCOUNT_ID}:rule/support-pipeline-local-signals"
            ],
            "detail": {},
        },
    )
    # The weekly report: as EventBridge Scheduler invokes it on Monday 28 September 2026 at
    # 09:00 in Bogota (it reports on the week before, 2026-W39), and a manual backfill.
    write(
        events / "weekly_report" / "scheduled.json",
        {"source": "aws.scheduler", "scheduled_time": "2026-09-28T14:00:00Z"},
    )
    write(events / "weekly_report" / "backfill_week.json", {"week": "2026-W38"})

    write(
        events / "reconciler" / "scheduled.json",
        {
            "version": "0",
            "id": "00000000-0000-4000-8000-000000000097",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": cfn.ACCOUNT_ID,
            # A quarter of an hour after the processor samples' conversation: the reconciler's
            # first run looks back one period, so it checks that conversation.
            "time": "2026-09-27T02:30:00Z",
            "region": cfn.REGION,
            "resources": [
                f"arn:aws:events:{cfn.REGION}:{cfn.ACCOUNT_ID}:rule/support-pipeline-local-reconcile"
            ],
            "detail": {},
        },
    )

    stack = cfn.Stack(
        name="support-pipeline-local",
        template=cfn.load(ROOT / "template.yaml"),
        parameters=cfn.parameter_defaults(cfn.load(ROOT / "template.yaml")),
    )
    for logical in ("EventsQueue", "EventsDLQ"):
        queue = f"support-pipeline-local-{'events' if logical == 'EventsQueue' else 'events-dlq'}"
        stack.physical[logical] = f"http://127.0.0.1:5005/{cfn.ACCOUNT_ID}/{queue}"
        stack.attributes[(logical, "QueueName")] = queue
    for logical in ("ConversationsTable", "ActionsTable"):
        stack.physical[logical] = f"support-pipeline-local-{logical}"
    stack.physical["PayloadBucket"] = "support-pipeline-local-payloadbucket"
    stack.physical["ReportTopic"] = (
        f"arn:aws:sns:{cfn.REGION}:{cfn.ACCOUNT_ID}:support-pipeline-local-ReportTopic"
    )
    env = {
        fn: stack.function_environment(fn)
        for fn in (
            "IngestFunction",
            "ProcessorFunction",
            "SlaSweepFunction",
            "SignalsExportFunction",
            "WeeklyReportFunction",
            "ReconcilerFunction",
            "HealthProbeFunction",
        )
    }
    write(events / "env.json", env)


if __name__ == "__main__":
    main()
