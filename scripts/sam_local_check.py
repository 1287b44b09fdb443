"""`make sam-local` (inner part): the built functions in Lambda containers, through SAM itself.

Started by scripts/sam-local.sh once Docker runs and the Lambda base image is present. Runs a
moto server where the containers reach it (the Docker bridge's gateway address), creates the
template's queues, tables, bucket and secret on it, then:

1. `sam local invoke` of every function of the template on every sample in its events/ folder
   (events/<CodeUri folder name>/*.json), with an env-vars file made from events/env.json that
   points the functions at that moto server; each answer is checked (status codes, batch item
   failures, the sweep's counts) together with what reached the queues, the DLQ and the tables.
2. `sam local start-api`: the API samples posted over real HTTP through SAM's API emulation
   (signed ones freshly signed), plus bad posts (tampered body, stale timestamp, wrong method);
   accepted ones must reach the queue, bad ones get their 4xx and enqueue nothing.

Functions and events/ folders are discovered from template.yaml, never listed here. Exits 1
with a one-line reason on the first kind of failure it cannot get past, else prints a summary.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common"))
sys.path.insert(0, str(ROOT / "tools"))

import yaml  # noqa: E402

from support_pipeline.chatwoot.signature import sign  # noqa: E402
from support_pipeline.config import KNOWLEDGE_SAMPLES_ENV  # noqa: E402
from support_pipeline_ops.local import template as cfn  # noqa: E402
from support_pipeline_ops.queues import queue_depth  # noqa: E402

STACK_NAME = "support-pipeline-local"  # the names events/env.json was written for
KIND_ORDER = {"api": 0, "sqs": 1, "schedule": 2, "other": 3}
EVENT_KINDS = {
    "Api": "api",
    "HttpApi": "api",
    "SQS": "sqs",
    "Schedule": "schedule",
    "ScheduleV2": "schedule",
}
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"


class CheckError(Exception):
    """A failure that stops the run: its message is the one-line reason."""


# ---- discovery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    folder: str  # events/<folder>, named after functions/<folder> (CodeUri)
    kind: str  # api | sqs | schedule | other
    events: tuple[Path, ...]
    api_routes: tuple[tuple[str, str], ...] = ()  # (method, path)


def trigger_kind(properties: Mapping[str, Any]) -> str:
    kinds = {
        EVENT_KINDS.get(str(event.get("Type")), "other")
        for event in (properties.get("Events") or {}).values()
    }
    for kind in sorted(kinds, key=KIND_ORDER.__getitem__):
        return kind
    return "other"


def api_routes(properties: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    routes = []
    for event in (properties.get("Events") or {}).values():
        if EVENT_KINDS.get(str(event.get("Type"))) == "api":
            spec = event.get("Properties") or {}
            routes.append((str(spec.get("Method", "ANY")).upper(), str(spec.get("Path", "/"))))
    return tuple(routes)


def discover(
    template: Mapping[str, Any], events_dir: Path
) -> tuple[list[LocalFunction], list[str]]:
    """Every function of the template with its samples, in invocation order, and the problems:
    an events/ folder no function owns, or a function without samples."""
    functions = []
    problems = []
    owned = set()
    for logical_id, spec in template.get("Resources", {}).items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        properties = spec.get("Properties") or {}
        code_uri = properties.get("CodeUri")
        if not isinstance(code_uri, str):
            problems.append(f"{logical_id} has no local CodeUri")
            continue
        folder = Path(code_uri).name
        owned.add(folder)
        events = tuple(sorted((events_dir / folder).glob("*.json")))
        if not events:
            problems.append(f"{logical_id} has no sample event in events/{folder}/")
        functions.append(
            LocalFunction(
                logical_id,
                folder,
                trigger_kind(properties),
                events,
                api_routes(properties),
            )
        )
    for folder in sorted(p.name for p in events_dir.iterdir() if p.is_dir()):
        if folder not in owned:
            problems.append(f"events/{folder}/ belongs to no function of the template")
    functions.sort(key=lambda f: (KIND_ORDER[f.kind], f.logical_id))
    return functions, problems


# ---- the env-vars file and the local template ----------------------------------------------


def env_vars_file(
    sample: Mapping[str, Mapping[str, str]],
    resolved: Mapping[str, Mapping[str, str]],
    endpoint: str,
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """events/env.json with every function's variables resolved for this moto server.

    The template's resolved values win (queue URLs carry this server's address); a function or
    variable the sample file lacks is reported, so events/env.json can be kept in step."""
    notes = []
    out: dict[str, dict[str, str]] = {}
    for function, variables in resolved.items():
        own = dict(sample.get(function) or {})
        if function not in sample:
            notes.append(f"events/env.json has no entry for {function}")
        else:
            missing = sorted(set(variables) - set(own))
            if missing:
                notes.append(f"events/env.json lacks {', '.join(missing)} for {function}")
        out[function] = {**own, **variables, ENDPOINT_VARIABLE: endpoint}
    return out, notes


def local_template(built: Mapping[str, Any], timeout: int | None = None) -> dict[str, Any]:
    """The built template, with AWS_ENDPOINT_URL and KNOWLEDGE_SAMPLES declared for every
    function.

    SAM passes a function only the variables its template declares, so without this the
    env-vars file could not point boto3 at moto, nor let drafts use the layer's sample articles
    (events/env.json says ``allow``). Only the copy sam local runs carries them.
    ``timeout``: every function's timeout, for emulated runs (qemu makes a cold start some 50
    times slower than the deployed timeouts allow)."""
    template = json.loads(json.dumps(built))
    function = template.setdefault("Globals", {}).setdefault("Function", {})
    variables = function.setdefault("Environment", {}).setdefault("Variables", {})
    variables[ENDPOINT_VARIABLE] = ""
    variables[KNOWLEDGE_SAMPLES_ENV] = ""  # deployed: never set (docs/drafters.md)
    if timeout is not None:
        for spec in template.get("Resources", {}).values():
            if spec.get("Type") == "AWS::Serverless::Function":
                spec.setdefault("Properties", {})["Timeout"] = timeout
    return template


def artifact_dirs(built: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(folder in the build, where Lambda puts it) for every function and layer."""
    dirs = []
    for spec in built.get("Resources", {}).values():
        properties = spec.get("Properties") or {}
        if spec.get("Type") == "AWS::Serverless::Function" and isinstance(
            properties.get("CodeUri"), str
        ):
            dirs.append((properties["CodeUri"], "/var/task"))
        elif spec.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(
            properties.get("ContentUri"), str
        ):
            dirs.append((properties["ContentUri"], "/opt"))
    return dirs


def prepare_build(build: Path, copy: Path, timeout: int | None) -> Path:
    """A copy of the build with its bytecode compiled on the host (as the paths Lambda uses)
    and the local template; the build itself stays as sam built it."""
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(build, copy, symlinks=True)
    built = cfn.load(copy / "template.yaml")
    for folder, target in artifact_dirs(built):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j0",
                "--invalidation-mode",
                "unchecked-hash",
                "-s",
                str(copy / folder),
                "-p",
                target,
                str(copy / folder),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    path = copy / "template.sam-local.yaml"
    path.write_text(yaml.safe_dump(local_template(built, timeout), sort_keys=False))
    return path


# ---- the world as moto sees it ---------------------------------------------------------------


@dataclass
class Snapshot:
    queues: dict[str, int] = field(default_factory=dict)  # logical id -> messages held
    dead_letter: set[str] = field(default_factory=set)  # logical ids of the DLQs
    tables: dict[str, int] = field(default_factory=dict)  # logical id -> items
    # Messages that arrived during the step, taken off their queue by the check (so a message is
    # received once: receives count towards the queue's redrive to the DLQ).
    taken: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def work_queued(self) -> int:
        return sum(n for q, n in self.queues.items() if q not in self.dead_letter)

    def dead_lettered(self) -> int:
        return sum(n for q, n in self.queues.items() if q in self.dead_letter)

    def items(self) -> int:
        return sum(self.tables.values())


def dead_letter_queues(template: Mapping[str, Any]) -> set[str]:
    targets = set()
    for spec in template.get("Resources", {}).values():
        if spec.get("Type") == "AWS::SQS::Queue":
            redrive = (spec.get("Properties") or {}).get("RedrivePolicy") or {}
            target = redrive.get("deadLetterTargetArn")
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                get_att = target["Fn::GetAtt"]
                targets.add(get_att[0] if isinstance(get_att, list) else get_att.split(".")[0])
    return targets


def attribute_values(message: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: str(value.get("StringValue", ""))
        for name, value in (message.get("MessageAttributes") or {}).items()
    }


def snapshot(
    stack: cfn.Stack, clients: Mapping[str, Any], dlqs: set[str], before: Snapshot | None = None
) -> Snapshot:
    """Messages per queue and items per table; after a step (``before`` given), the messages
    that arrived are taken off their queues and kept for the checks."""
    shot = Snapshot(dead_letter=set(dlqs))
    for name in stack.resources("AWS::SQS::Queue"):
        url = stack.physical[name]
        shot.queues[name] = queue_depth(clients["sqs"], url).total
        if before is not None and shot.queues[name] > before.queues.get(name, 0):
            shot.taken[name] = take(clients["sqs"], url)
    for name in stack.resources("AWS::DynamoDB::Table"):
        shot.tables[name] = clients["dynamodb"].scan(
            TableName=stack.physical[name], Select="COUNT"
        )["Count"]
    return shot


def take(sqs: Any, url: str, rounds: int = 10) -> list[dict[str, str]]:
    """Receive and delete every visible message of a queue; their attributes."""
    taken = []
    for _ in range(rounds):
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        for message in got:
            taken.append(attribute_values(message))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return taken


# ---- the checks ------------------------------------------------------------------------------


def error_of(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return f"answer is not a JSON object: {str(answer)[:120]}"
    if "errorType" in answer or "errorMessage" in answer:
        return f"the function failed: {answer.get('errorType')}: {answer.get('errorMessage')}"
    return None


def new_messages(after: Snapshot, dead_letter: bool = False) -> list[dict[str, str]]:
    return [
        message
        for queue, messages in after.taken.items()
        if (queue in after.dead_letter) == dead_letter
        for message in messages
    ]


def check_http(
    status: int, sample: str, delivery: str | None, before: Snapshot, after: Snapshot
) -> str | None:
    """A webhook answer: refusals (rejected_* samples, bad posts) are 4xx and enqueue nothing;
    accepted ones are 202 with exactly one new message carrying their delivery id, signed."""
    grown = after.work_queued() - before.work_queued()
    if sample.startswith("rejected_") or sample.startswith("bad_"):
        if not 400 <= status < 500:
            return f"expected a 4xx, got {status}"
        return None if grown == 0 else f"a refused post enqueued {grown} message(s)"
    if status == 200:  # an ignored event: answered, not enqueued
        return None if grown == 0 else f"an ignored event enqueued {grown} message(s)"
    if status != 202:
        return f"expected 202 (queued), got {status}"
    if grown != 1:
        return f"expected one new message on the queue, found {grown}"
    added = new_messages(after)
    if delivery and not any(m.get("delivery_id") == delivery for m in added):
        return f"no queued message carries delivery id {delivery}"
    if any(m.get("signed") != "true" for m in added):
        return "the queued message is not marked signed=true"
    return None


def check_answer(
    function: LocalFunction,
    sample: str,
    answer: Any,
    before: Snapshot,
    after: Snapshot,
    delivery: str | None = None,
) -> str | None:
    """What one `sam local invoke` answered, against what changed on moto meanwhile."""
    if function.kind == "api":
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return error_of(answer) or f"no statusCode in the answer: {str(answer)[:120]}"
        return check_http(int(answer["statusCode"]), sample, delivery, before, after)
    problem = error_of(answer)
    if problem:
        return problem
    if function.kind == "sqs":
        if answer.get("batchItemFailures") != []:
            return f"batch item failures: {answer.get('batchItemFailures', 'missing')}"
        dead = after.dead_lettered() - before.dead_lettered()
        if sample.startswith("poison"):
            if dead < 1:
                return "the poison record did not reach the DLQ"
            added = new_messages(after, dead_letter=True)
            if added and not all(m.get("error_type") and m.get("error_reason") for m in added):
                return "a dead-lettered message carries no error_type/error_reason"
            return None
        if dead:
            return f"{dead} message(s) dead-lettered from a good batch"
        if after.items() <= before.items():
            return "the batch wrote nothing to the tables"
        return None
    counts = {k: v for k, v in answer.items() if isinstance(v, int) and not isinstance(v, bool)}
    if counts.get("failed"):
        return f"{counts['failed']} failed in {answer}"
    if isinstance(answer, dict) and "period" in answer:  # the weekly report: announced
        if not answer.get("keys") or not answer.get("message_id"):
            return f"the report was not written and announced: {answer}"
        return None
    if "conversations" in counts:  # the SLA sweep: it saw the processed conversation
        if counts["conversations"] < 1:
            return f"the sweep saw no conversation: {answer}"
        if after.items() <= before.items():
            return "the sweep recorded no (dry-run) action"
    return None


def summary(answer: Any) -> str:
    if isinstance(answer, dict) and "statusCode" in answer:
        return f"HTTP {answer['statusCode']} {str(answer.get('body', ''))[:60]}"
    return json.dumps(answer)[:100]


# ---- running sam -----------------------------------------------------------------------------


@dataclass
class Sam:
    executable: str
    template: Path
    env_vars: Path
    parameter_overrides: list[str]
    log: Path

    def common(self) -> list[str]:
        args = [
            "--template-file",
            str(self.template),
            "--env-vars",
            str(self.env_vars),
            "--skip-pull-image",
        ]
        if self.parameter_overrides:
            args += ["--parameter-overrides", " ".join(self.parameter_overrides)]
        return args

    def invoke(self, function: str, event: Path, timeout: int = 600) -> tuple[Any, float]:
        started = time.monotonic()
        process = subprocess.run(
            [self.executable, "local", "invoke", function, "--event", str(event), *self.common()],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        elapsed = time.monotonic() - started
        with self.log.open("a") as log:
            log.write(f"==== sam local invoke {function} {event.name} ({elapsed:.1f} s)\n")
            log.write(process.stderr + "\n---- stdout\n" + process.stdout + "\n")
        lines = [line for line in process.stdout.splitlines() if line.strip()]
        if process.returncode != 0 or not lines:
            tail = " | ".join(process.stderr.strip().splitlines()[-3:])
            raise CheckError(
                f"sam local invoke {function} on {event.name} exited {process.returncode}: {tail}"
            )
        try:
            return json.loads(lines[-1]), elapsed
        except json.JSONDecodeError as exc:
            raise CheckError(
                f"{function} on {event.name}: answer is not JSON: {lines[-1][:120]}"
            ) from exc


# ---- events ----------------------------------------------------------------------------------


def signed_copy(event: dict[str, Any], secret: str, now: int | None = None) -> dict[str, Any]:
    """The sample with a fresh signature where it carries one (placeholders in the repo)."""
    event = json.loads(json.dumps(event))
    headers = event.get("headers") or {}
    if "x-chatwoot-signature" in headers:
        stamp = int(time.time()) if now is None else now
        headers["x-chatwoot-timestamp"] = str(stamp)
        headers["x-chatwoot-signature"] = sign(secret, stamp, event.get("body", "").encode())
    return event


def bad_posts(event: dict[str, Any], secret: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(name, method, headers, body) of posts that must be refused, built from a good sample."""
    body = str(event.get("body", "")).encode()
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k != "content-length"}
    now = int(time.time())
    good = {
        **headers,
        "x-chatwoot-timestamp": str(now),
        "x-chatwoot-signature": sign(secret, now, body),
    }
    stale_at = now - 3600
    return [
        ("bad_tampered_body", "POST", good, body.replace(b"}", b', "x": 1}', 1)),
        (
            "bad_stale_timestamp",
            "POST",
            {
                **headers,
                "x-chatwoot-timestamp": str(stale_at),
                "x-chatwoot-signature": sign(secret, stale_at, body),
            },
            body,
        ),
        (
            "bad_wrong_secret",
            "POST",
            {**good, "x-chatwoot-signature": sign("not-it", now, body)},
            body,
        ),
        (
            "bad_unsigned",
            "POST",
            {k: v for k, v in headers.items() if not k.startswith("x-chatwoot-s")},
            body,
        ),
        ("bad_method_get", "GET", {}, b""),
    ]


# ---- start-api -------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def http(
    method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float = 300
) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - http on loopback only
        url, data=body or None, headers=dict(headers), method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_for_api(
    host: str, port: int, process: subprocess.Popen[bytes], seconds: float = 180
) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise CheckError(f"sam local start-api exited {process.returncode} before serving")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise CheckError(f"sam local start-api did not listen on {host}:{port} within {seconds:.0f} s")


# ---- main ------------------------------------------------------------------------------------


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: its gateway, else the subnet's first host
    (Docker 20.10 leaves Gateway out of the default bridge's IPAM config)."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise CheckError(f"cannot read Docker's bridge network: {out.stderr.strip()[:200]}")
    for config in json.loads(out.stdout or "[]") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
        if config.get("Subnet") and ":" not in config["Subnet"]:
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    raise CheckError("Docker's bridge network has no IPv4 subnet")


def phase(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    import boto3
    from moto.server import ThreadedMotoServer

    build = (ROOT / args.build_dir).resolve()
    if not (build / "template.yaml").is_file():
        raise CheckError(f"no built template at {build}/template.yaml: run sam build first")
    source = cfn.load(ROOT / "template.yaml")
    functions, problems = discover(source, ROOT / "events")
    if problems:
        raise CheckError("; ".join(problems))
    if args.only:
        functions = [f for f in functions if f.logical_id in args.only]

    bind = args.bind or bridge_gateway()
    port = free_port(bind)
    endpoint = f"http://{bind}:{port}"
    phase(f"moto server on {endpoint} (the containers reach it there)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=bind, port=port, verbose=False)
    server.start()
    scratch = Path(tempfile.mkdtemp(prefix="sam-local-"))
    log = ROOT / args.log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    invoked = posted = 0
    failures: list[str] = []
    try:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(
            AWS_ACCESS_KEY_ID="sam-local",
            AWS_SECRET_ACCESS_KEY="sam-local",  # noqa: S106 - moto accepts any credentials
            AWS_DEFAULT_REGION=cfn.REGION,
            AWS_REGION=cfn.REGION,
        )
        clients = {
            name: boto3.client(name, endpoint_url=endpoint, region_name=cfn.REGION)
            for name in ("sqs", "dynamodb", "s3", "ssm", "sns")  # sns: topics are created
        }
        secret = secrets.token_urlsafe(24)
        stack = cfn.provision(
            source,
            clients,
            stack_name=STACK_NAME,
            overrides=dict(o.split("=", 1) for o in args.parameter_override),
            secrets={"WebhookSecretParamName": secret},
        )
        dlqs = dead_letter_queues(source)
        resolved = {
            logical_id: stack.function_environment(logical_id)
            for logical_id, spec in source["Resources"].items()
            if spec.get("Type") == "AWS::Serverless::Function"
        }
        sample_env = json.loads((ROOT / "events" / "env.json").read_text())
        env, notes = env_vars_file(sample_env, resolved, endpoint)
        for note in notes:
            print(f"note: {note} (the template's values are used)")
        env_path = scratch / "env.json"
        env_path.write_text(json.dumps(env, indent=2))
        timeout = args.emulated_timeout if args.emulated else None
        template_path = prepare_build(build, ROOT / args.work_dir / "build", timeout)
        if timeout:
            print(f"note: arm64 runs under qemu here; each function gets {timeout} s locally")
        sam = Sam(args.sam, template_path, env_path, list(args.parameter_override), log)

        phase(
            f"sam local invoke: {sum(len(f.events) for f in functions)} events of "
            f"{len(functions)} functions ({', '.join(f.logical_id for f in functions)})"
        )
        for function in functions:
            for event_path in function.events:
                event = signed_copy(json.loads(event_path.read_text()), secret)
                fresh = scratch / f"{function.folder}-{event_path.name}"
                fresh.write_text(json.dumps(event))
                before = snapshot(stack, clients, dlqs)
                label = f"{function.logical_id:<20} {event_path.name:<34}"
                try:
                    answer, elapsed = sam.invoke(function.logical_id, fresh)
                except (CheckError, subprocess.TimeoutExpired) as exc:
                    failures.append(f"{function.logical_id} {event_path.name}: {exc}")
                    print(f"FAIL {label} {exc}", flush=True)
                    continue
                invoked += 1
                after = snapshot(stack, clients, dlqs, before)
                delivery = (event.get("headers") or {}).get("x-chatwoot-delivery")
                problem = check_answer(function, event_path.stem, answer, before, after, delivery)
                if problem:
                    failures.append(f"{function.logical_id} {event_path.name}: {problem}")
                    print(f"FAIL {label} {problem}", flush=True)
                else:
                    print(f"ok   {label} {elapsed:5.1f} s  {summary(answer)}", flush=True)

        api_functions = [f for f in functions if f.kind == "api" and f.api_routes]
        if api_functions and not args.skip_api:
            posted = start_api(sam, api_functions, secret, stack, clients, dlqs, failures, log)
    finally:
        server.stop()

    if failures:
        print(f"\nsam local: {len(failures)} failed; details in {args.log}")
        for failure in failures:
            print(f"  - {failure}")
        raise CheckError(failures[0])
    print(
        f"\nsam local: {invoked} invocations and {posted} API posts checked, all as expected "
        f"(log: {args.log})"
    )
    print(f"{invoked + posted} passed, 0 failed")
    return 0


def start_api(
    sam: Sam,
    functions: Iterable[LocalFunction],
    secret: str,
    stack: cfn.Stack,
    clients: Mapping[str, Any],
    dlqs: set[str],
    failures: list[str],
    log: Path,
) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    phase(f"sam local start-api on {base}: signed and bad posts over HTTP")
    with log.open("a") as out:
        out.write("==== sam local start-api\n")
        out.flush()
        process = subprocess.Popen(
            [
                sam.executable,
                "local",
                "start-api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                # One container per function, reused: a cold start once, as Lambda reuses
                # a warm environment.
                "--warm-containers",
                "LAZY",
                *sam.common(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    posted = 0
    try:
        wait_for_api("127.0.0.1", port, process)
        for function in functions:
            _method, path = function.api_routes[0]
            url = base + path
            posts = []
            for event_path in function.events:
                sample = json.loads(event_path.read_text())
                event = signed_copy(sample, secret)
                headers = {k: v for k, v in (event.get("headers") or {}).items()}
                posts.append(
                    (event_path.stem, "POST", headers, str(event.get("body", "")).encode())
                )
            good = next(
                (
                    json.loads(p.read_text())
                    for p in function.events
                    if not p.stem.startswith("rejected_")
                ),
                None,
            )
            if good is not None:
                posts += bad_posts(good, secret)
            for name, verb, headers, body in posts:
                before = snapshot(stack, clients, dlqs)
                started = time.monotonic()
                status, text = http(verb, url, headers, body)
                elapsed = time.monotonic() - started
                posted += 1
                after = snapshot(stack, clients, dlqs, before)
                delivery = headers.get("x-chatwoot-delivery")
                problem = check_http(status, name, delivery, before, after)
                label = f"{verb:<4} {path:<22} {name:<30}"
                if problem:
                    failures.append(f"start-api {name}: {problem} ({text[:80]})")
                    print(f"FAIL {label} {problem}: {text[:80]}", flush=True)
                else:
                    print(f"ok   {label} {elapsed:5.1f} s  HTTP {status} {text[:50]}", flush=True)
    finally:
        stop(process)
    return posted


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop sam local start-api by its own process group: Ctrl-C, then SIGKILL after 15 s (its
    warm container is then removed by scripts/sam-local.sh, or with the daemon)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build-dir", default=".aws-sam/build")
    parser.add_argument("--sam", default=str(ROOT / ".venv-tools" / "bin" / "sam"))
    parser.add_argument("--bind", help="address for moto (default: the Docker bridge's gateway)")
    parser.add_argument(
        "--parameter-override",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter for sam and the local resources (e.g. Architecture=x86_64)",
    )
    parser.add_argument("--only", action="append", help="only this function (repeatable)")
    parser.add_argument("--skip-api", action="store_true", help="no sam local start-api")
    parser.add_argument("--emulated", action="store_true", help="the containers run under qemu")
    parser.add_argument("--emulated-timeout", type=int, default=180)
    parser.add_argument("--work-dir", default=".cache/sam-local")
    parser.add_argument("--log", default=".cache/sam-local/sam-local.log")
    args = parser.parse_args(argv)
    # SIGTERM (from scripts/sam-local.sh on its way out) unwinds like Ctrl-C: start-api and
    # moto are stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        return run(args)
    except CheckError as error:
        print(f"sam-local: FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
