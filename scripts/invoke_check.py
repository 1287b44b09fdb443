"""`make invoke`: run each built function on each of its events/ without Docker, against moto.

Proves the `sam build` artifact carries its dependencies: every invocation runs in a separate
`python3.13 -I -S` process whose import path holds only the built function, its built layer and
the packages the Lambda runtime itself provides (boto3 and what boto3 needs), never the dev
environment. Resources come from template.yaml on a moto server; ingest events are re-signed
with the secret stored there. Exits non-zero on any unexpected answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common"))

from support_pipeline.chatwoot.signature import sign  # noqa: E402
from support_pipeline_ops.local import template as cfn  # noqa: E402
from support_pipeline_ops.local.fake_chatwoot import FakeChatwoot  # noqa: E402
from support_pipeline_ops.local.stack import free_port  # noqa: E402

# What the Lambda python3.13 runtime ships besides the standard library.
RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3"]
# Chatwoot's time for the reconciler sample: a conversation the pipeline never heard of, whose
# customer wrote at 02:20 (the sample runs at 02:30, after the processor samples' conversation).
RECONCILE_CHATWOOT_AT = 1790475600.0
# Drafts decided in ISO week 2026-W39 (Bogota), before the signals sample exports that week.
SIGNALS_WEEK = "2026-W39"
SIGNALS_DECIDED_AT = 1790262000.0  # 2026-09-24T15:00:00Z: Thursday 10:00 in Bogota


def functions_and_folders(template: dict) -> dict[str, str]:
    """Every function of the template and its events/ folder (named after its CodeUri), with
    the queue-fed ones after the others, so the sweep finds what the processor wrote."""
    found = {
        name: Path(str(spec["Properties"]["CodeUri"])).name
        for name, spec in template["Resources"].items()
        if spec.get("Type") == "AWS::Serverless::Function"
    }
    return dict(sorted(found.items(), key=lambda item: ORDER.get(item[1], len(ORDER))))


ORDER = {"ingest": 0, "processor": 1, "sla_sweep": 2, "signals_export": 3, "weekly_report": 4}


def runtime_dir(target: Path) -> Path:
    """Copy the runtime-provided packages out of this environment (no download)."""
    site = Path(boto3.__file__).resolve().parent.parent
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target


def resign(event_path: Path, secret: str, scratch: Path) -> Path:
    event = json.loads(event_path.read_text())
    headers = event.get("headers") or {}
    if "x-chatwoot-signature" in headers:
        body = event["body"].encode()
        now = int(time.time())
        headers["x-chatwoot-timestamp"] = str(now)
        headers["x-chatwoot-signature"] = sign(secret, now, body)
    out = scratch / event_path.name
    out.write_text(json.dumps(event))
    return out


def invoke(
    python: str,
    build: Path,
    function: str,
    handler: str,
    event: Path,
    env: dict[str, str],
    runtime: Path,
    timeout: int,
) -> dict:
    spec = {
        "function_dir": str(build / function),
        "layer_dir": str(build / "CommonLayer" / "python"),
        "runtime_dir": str(runtime),
        "function_name": function,
        "handler": handler,
        "event": str(event),
        "timeout": timeout,
    }
    process = subprocess.run(
        [python, "-I", "-S", str(ROOT / "scripts" / "lambda_runner.py"), json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in process.stdout.splitlines():
        if line.startswith("INVOKE-RESULT "):
            result: dict = json.loads(line[len("INVOKE-RESULT ") :])
            return result
    raise RuntimeError(
        f"{function} on {event.name} crashed (exit {process.returncode}):\n{process.stderr[-3000:]}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", default=".aws-sam/build")
    parser.add_argument("--python", default=shutil.which("python3.13") or sys.executable)
    args = parser.parse_args()
    build = (ROOT / args.build_dir).resolve()
    template_path = (
        build / "template.yaml" if (build / "template.yaml").exists() else ROOT / "template.yaml"
    )
    template = cfn.load(template_path)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    chatwoot = FakeChatwoot(clock=lambda: RECONCILE_CHATWOOT_AT).start()
    failures = 0
    try:
        endpoint = f"http://127.0.0.1:{port}"
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "invoke-check",
            "AWS_SECRET_ACCESS_KEY": "invoke-check",
            "AWS_DEFAULT_REGION": cfn.REGION,
            "AWS_REGION": cfn.REGION,
            "AWS_LAMBDA_FUNCTION_NAME": "invoke-check",
        }
        clients = {
            name: boto3.client(
                name,
                endpoint_url=endpoint,
                region_name=cfn.REGION,
                aws_access_key_id="x",
                aws_secret_access_key="x",  # noqa: S106 - moto accepts any credentials
            )
            for name in ("sqs", "dynamodb", "s3", "ssm", "sns")
        }
        secret = secrets.token_urlsafe(24)
        stack = cfn.provision(
            template, clients, stack_name="invoke-check", secrets={"WebhookSecretParamName": secret}
        )
        with tempfile.TemporaryDirectory() as scratch_name:
            scratch = Path(scratch_name)
            runtime = runtime_dir(scratch / "lambda-runtime")
            for function, folder in functions_and_folders(cfn.load(ROOT / "template.yaml")).items():
                if folder == "signals_export":
                    seed_decided_drafts(endpoint, stack)
                properties = template["Resources"][function]["Properties"]
                env = {**base_env, **stack.function_environment(function)}
                if folder == "reconciler":
                    env |= seed_chatwoot(chatwoot, stack, clients)
                timeout = int(stack.resolve(properties.get("Timeout", 30)))
                for event_path in sorted((ROOT / "events" / folder).glob("*.json")):
                    event = resign(event_path, secret, scratch)
                    try:
                        result = invoke(
                            args.python,
                            build,
                            function,
                            properties["Handler"],
                            event,
                            env,
                            runtime,
                            timeout,
                        )
                        problem = check(folder, event_path.name, result, stack, clients)
                    except RuntimeError as crash:  # report it and go on with the other events
                        result, problem = {"answer": {}}, str(crash)
                    label = f"{function:<21} {event_path.name:<36}"
                    if problem:
                        failures += 1
                        print(f"FAIL {label} {problem}")
                    else:
                        print(f"ok   {label} {summary(result['answer'])}")
    finally:
        server.stop()
        chatwoot.stop()
    print(
        f"\ninvoke check: {failures} failed"
        if failures
        else "\ninvoke check: all built functions ran on their events"
    )
    return 1 if failures else 0


def seed_decided_drafts(endpoint: str, stack: cfn.Stack) -> None:
    """Two drafts of account 1 decided in week 39: one sent as is, one turn with no draft."""
    from zoneinfo import ZoneInfo

    from support_pipeline.drafts.store import DraftStore
    from support_pipeline.store import ConversationStore

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=cfn.REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",  # noqa: S106 - moto accepts any credentials
    )
    table = stack.physical["ConversationsTable"]
    ConversationStore(dynamodb, table).register_account("1")
    drafts = DraftStore(
        dynamodb, table, ZoneInfo("America/Bogota"), clock=lambda: SIGNALS_DECIDED_AT
    )
    base = {"account_id": "1", "drafter": "knowledge", "language": "es", "sources": []}
    sent = {
        **base,
        "draft_id": "d-invok1",
        "conversation_id": "41",
        "question": "¿Cuánto tarda el envío?",
        "text": "De 2 a 4 días hábiles.",
        "confidence": 0.8,
        "status": "pending",
    }
    drafts.create(sent)
    drafts.decide(
        {**sent, "created_epoch": SIGNALS_DECIDED_AT},
        "sent_as_is",
        {"final_text": sent["text"], "approver_id": "3", "edit_distance": 0, "edit_ratio": 1.0},
    )
    drafts.create(
        {
            **base,
            "draft_id": "d-invok2",
            "conversation_id": "42",
            "question": "¿Pueden grabar un nombre en la pulsera?",
            "text": None,
            "confidence": 0.05,
            "status": "no_draft",
        }
    )


def seed_chatwoot(chatwoot: FakeChatwoot, stack: cfn.Stack, clients: dict) -> dict[str, str]:
    """A Chatwoot holding a conversation whose webhooks never arrived; the environment that
    points the built reconciler at it (a loopback fake speaks http) with its token stored."""
    chatwoot.add_conversation(1, 5)
    chatwoot.add_customer_message(1, 5, "Hola, ¿siguen abiertos?")
    clients["ssm"].put_parameter(
        Name=stack.parameters["ChatwootApiTokenParamName"],
        Value=chatwoot.token,
        Type="SecureString",
        Overwrite=True,
    )
    return {"CHATWOOT_BASE_URL": chatwoot.url, "CHATWOOT_ALLOW_HTTP": "true"}


def summary(answer: dict) -> str:
    if "statusCode" in answer:
        return f"HTTP {answer['statusCode']} {answer.get('body', '')[:60]}"
    return json.dumps(answer)


def check(folder: str, name: str, result: dict, stack: cfn.Stack, clients: dict) -> str | None:
    answer = result["answer"]
    if result["site_packages_modules"]:
        return "imported modules from a site-packages directory"
    if folder == "ingest":
        status = answer.get("statusCode", 0)
        wanted = "4xx" if name.startswith("rejected_") else "2xx"
        ok = 400 <= status < 500 if wanted == "4xx" else 200 <= status < 300
        return None if ok else f"expected {wanted}, got {status}: {answer.get('body')}"
    if folder == "signals_export":
        # The sample is Monday 2026-09-28 06:00 UTC: last week is 2026-W39, with the two drafts
        # seed_decided_drafts decided in it. Grouping the gap needs the layer's stemmer.
        keys = [f"signals/{SIGNALS_WEEK}.jsonl", f"signals/{SIGNALS_WEEK}-gaps.json"]
        wanted = {"no_draft": 1, "sent_as_is": 1}
        if answer.get("keys") != keys or answer.get("outcomes") != wanted:
            return f"unexpected export {answer}"
        bucket = stack.physical["PayloadBucket"]
        body = clients["s3"].get_object(Bucket=bucket, Key=keys[0])["Body"].read()
        ids = [json.loads(line)["draft_id"] for line in body.decode().splitlines()]
        gaps = json.loads(clients["s3"].get_object(Bucket=bucket, Key=keys[1])["Body"].read())
        if ids != ["d-invok1", "d-invok2"] or len(gaps["groups"]) != 1:
            return f"unexpected signals files: {ids}, {len(gaps['groups'])} gap group(s)"
    if folder not in ORDER:  # a function this check has no specific expectations of
        return None
    if folder == "reconciler":
        # The sample runs at 02:30: the conversation Chatwoot has and the pipeline never heard
        # of comes back as its message and its state, marked reconciled.
        if (answer.get("messages"), answer.get("states"), answer.get("complete")) != (1, 1, 1):
            return f"unexpected reconcile result {answer}"
        queue = stack.physical["EventsQueue"]
        found = (
            clients["sqs"]
            .receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
            .get("Messages", [])
        )
        keys = sorted(
            m["MessageAttributes"]["dedupe_key"]["StringValue"]
            for m in found
            if "reconciled" in m.get("MessageAttributes", {})
        )
        wanted = ["conversation_updated:1:5:", "message_created:1:"]
        if len(keys) != 2 or not all(k.startswith(w) for k, w in zip(keys, wanted, strict=True)):
            return f"unexpected replays on EventsQueue: {keys}"
        return None
    if folder == "sla_sweep":
        # Runs after the processor samples: their open conversation is swept, in dry-run mode.
        if answer.get("failed") or answer.get("conversations", 0) < 1:
            return f"unexpected sweep result {answer}"
        actions = clients["dynamodb"].scan(TableName=stack.physical["ActionsTable"])["Items"]
        return None if actions else "the sweep recorded no (dry-run) action"
    if folder == "weekly_report":
        # Runs last: the processor samples' conversation is in 2026-W39 (the scheduled sample).
        keys = answer.get("keys") or {}
        if not keys.get("report.html") or not answer.get("message_id"):
            return f"no report stored or announced: {answer}"
        bucket = stack.physical["PayloadBucket"]
        body = clients["s3"].get_object(Bucket=bucket, Key=keys["report.json"])["Body"].read()
        report = json.loads(body)
        if name.startswith("scheduled") and report.get("conversations", 0) < 1:
            return "the scheduled week's report counted no conversation"
        return None
    if answer.get("batchItemFailures"):
        return f"batch item failures: {answer['batchItemFailures']}"
    if name.startswith("poison"):
        dlq = clients["sqs"].get_queue_attributes(
            QueueUrl=stack.physical["EventsDLQ"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        return None if int(dlq) >= 1 else "poison record did not reach the DLQ"
    table = stack.physical["ConversationsTable"]
    item = clients["dynamodb"].get_item(
        TableName=table, Key={"pk": {"S": "CONV#1#1"}, "sk": {"S": "RECORD"}}
    )
    return None if "Item" in item else "no conversation record written"


if __name__ == "__main__":
    sys.exit(main())
