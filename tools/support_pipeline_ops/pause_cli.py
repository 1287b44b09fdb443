"""`support-pipeline pause [actions|consume] | resume | status`: the pause switch, no deployment.

The switch is one SSM parameter (template Parameter ``PauseParamName``, stack Output of the
same name, default ``/support-pipeline/pause``) that the processor and the SLA sweep read at most
every ``PauseCacheSeconds``:

- ``pause actions``: events are recorded, nothing is done in Chatwoot; what an event still had
  to do there is done after ``resume`` (support_pipeline/pause.py says exactly what).
- ``pause consume``: nothing is processed; events wait on EventsQueue (as delayed fresh copies,
  so none is ever dead-lettered for the pause). With ``--stop-trigger`` (AWS, ``--stack``) the
  processor's SQS event source mapping is disabled too, for a processor that cannot even start.
- ``resume``: the switch goes back to ``off`` (and a disabled event source mapping is enabled).

Each change is written with who made it, when and why in the parameter's description, and SSM
keeps every version (``aws ssm get-parameter-history``). Works on the local stack through
``AWS_ENDPOINT_URL`` like every other command.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from support_pipeline import aws
from support_pipeline.pause import ACTIONS, CONSUME, DEFAULT_PARAMETER, OFF, parse_mode
from support_pipeline_ops.queues import queue_depth

Clients = Callable[[str], Any]
PROCESSOR = "ProcessorFunction"
EFFECT = {
    OFF: "running: events are processed and acted on in Chatwoot",
    ACTIONS: "paused (actions): events are recorded; nothing is done in Chatwoot; the SLA sweep "
    "waits; what an event still has to do in Chatwoot is done after resume",
    CONSUME: "paused (consume): nothing is processed; events wait on EventsQueue, none is lost "
    "or dead-lettered; the SLA sweep waits",
}


class PauseUsageError(Exception):
    """Something the operator can fix."""


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    pause = commands.add_parser(
        "pause", parents=[where], help="stop acting in Chatwoot (actions) or consuming (consume)"
    )
    pause.add_argument(
        "mode",
        nargs="?",
        choices=(ACTIONS, CONSUME),
        default=ACTIONS,
        help="actions (default): record events, do nothing in Chatwoot; consume: leave every "
        "event on the queue",
    )
    pause.add_argument("--reason", default="", help="why (kept with the switch; say a ticket)")
    pause.add_argument(
        "--stop-trigger",
        action="store_true",
        help="consume only, with --stack: also disable the processor's SQS event source mapping",
    )
    commands.add_parser("resume", parents=[where], help="end a pause: process and act again")
    status = commands.add_parser("status", parents=[where], help="is the pipeline paused?")
    status.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, out: TextIO, clients: Clients | None = None) -> int:
    clients = clients or _clients(args.region)
    cloudformation = clients("cloudformation") if args.stack else None
    stack = _Stack(args.stack, cloudformation)
    name = stack.output("PauseParamName") or os.environ.get("PAUSE_PARAM") or DEFAULT_PARAMETER
    ssm = clients("ssm")
    if args.command == "status":
        return _status(args, out, ssm, name, stack, clients)
    if args.command == "pause":
        if args.stop_trigger and (args.mode != CONSUME or not args.stack):
            raise PauseUsageError(
                "--stop-trigger goes with `pause consume --stack NAME` (the event source "
                "mapping is found in the stack; the local stack has none)"
            )
        mode = args.mode
        note = args.reason or "no reason given"
    else:
        mode, note = OFF, "resumed"
    who = _caller(clients)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ssm.put_parameter(
        Name=name,
        Value=mode,
        Type="String",
        Overwrite=True,
        Description=f"{mode} since {at} by {who}: {note}"[:1024],
    )
    out.write(f"{name} = {mode}: {EFFECT[mode]}.\n")
    wait = stack.parameter("PauseCacheSeconds") or "30"
    out.write(f"The processor and the sweep see it within {wait} s (PauseCacheSeconds).\n")
    if args.stack:
        lambda_client = clients("lambda")
        for uuid in stack.event_source_mappings():
            if mode == CONSUME and args.stop_trigger:
                lambda_client.update_event_source_mapping(UUID=uuid, Enabled=False)
                out.write(f"Disabled the processor's event source mapping {uuid}.\n")
            elif mode == OFF:
                state = lambda_client.get_event_source_mapping(UUID=uuid).get("State", "")
                if state in ("Disabled", "Disabling"):
                    lambda_client.update_event_source_mapping(UUID=uuid, Enabled=True)
                    out.write(f"Enabled the processor's event source mapping {uuid} again.\n")
    if mode == OFF:
        delay = stack.parameter("PausedEventDelaySeconds") or "60"
        out.write(
            f"Held events come back within {delay} s (PausedEventDelaySeconds) and are "
            "processed once each; the next SLA sweep acts on what is due now.\n"
        )
    return 0


def _status(
    args: argparse.Namespace, out: TextIO, ssm: Any, name: str, stack: _Stack, clients: Clients
) -> int:
    try:
        found = ssm.get_parameter(Name=name)["Parameter"]
        value, changed = str(found["Value"]), found.get("LastModifiedDate")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ParameterNotFound":
            raise
        value, changed = "", None
    mode, known = parse_mode(value)
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])
    description = next(
        (p.get("Description", "") for p in described.get("Parameters", []) if p["Name"] == name),
        "",
    )
    report: dict[str, Any] = {
        "parameter": name,
        "value": value,
        "mode": mode,
        "effect": EFFECT[mode] + ("" if known else f" (the value {value!r} is no mode)"),
        "changed": changed.isoformat() if isinstance(changed, datetime) else changed,
        "note": description,
        "event_source_mappings": {},
        "queues": {},
    }
    if args.stack:
        lambda_client = clients("lambda")
        for uuid in stack.event_source_mappings():
            state = lambda_client.get_event_source_mapping(UUID=uuid).get("State", "")
            report["event_source_mappings"][uuid] = state
    report["queues"] = _depths(clients("sqs"), stack)
    if args.json:
        json.dump(report, out, indent=2, default=str)
        out.write("\n")
        return 0
    out.write(f"{name} = {value or '(not set)'}: {report['effect']}.\n")
    if isinstance(changed, datetime):
        out.write(f"  changed {report['changed']} ({since(changed)} ago)\n")
    if description:
        out.write(f"  {description}\n")
    for uuid, state in report["event_source_mappings"].items():
        out.write(f"  processor event source mapping {uuid}: {state}\n")
    for queue, depth in report["queues"].items():
        out.write(
            f"  {queue}: {depth['waiting']} waiting, {depth['in_flight']} in flight, "
            f"{depth['delayed']} delayed\n"
        )
    return 0


def _depths(sqs: Any, stack: _Stack) -> dict[str, dict[str, int]]:
    """EventsQueue and EventsDLQ counts, when the queues are known (stack or environment)."""
    urls = {
        "EventsQueue": stack.output("EventsQueueUrl") or os.environ.get("EVENTS_QUEUE_URL", ""),
        "EventsDLQ": stack.output("EventsDLQUrl") or os.environ.get("EVENTS_DLQ_URL", ""),
    }
    depths = {}
    for queue, url in urls.items():
        if not url:
            continue
        depths[queue] = queue_depth(sqs, url)._asdict()
    return depths


class _Stack:
    """What the CLI reads of a deployed stack (nothing without ``--stack``)."""

    def __init__(self, name: str | None, cloudformation: Any | None) -> None:
        self.name = name
        self._cloudformation = cloudformation
        self._described: dict[str, Any] | None = None

    def _describe(self) -> dict[str, Any]:
        if self._described is None:
            if not self.name or self._cloudformation is None:
                self._described = {}
            else:
                try:
                    stacks = self._cloudformation.describe_stacks(StackName=self.name)["Stacks"]
                except (ClientError, BotoCoreError) as error:
                    raise PauseUsageError(f"cannot read stack {self.name!r}: {error}") from None
                self._described = stacks[0]
        return self._described

    def output(self, key: str) -> str:
        for output in self._describe().get("Outputs", []):
            if output["OutputKey"] == key:
                return str(output["OutputValue"])
        return ""

    def parameter(self, key: str) -> str:
        for parameter in self._describe().get("Parameters", []):
            if parameter["ParameterKey"] == key:
                return str(parameter.get("ParameterValue", ""))
        return ""

    def event_source_mappings(self) -> list[str]:
        """The processor's SQS event source mappings (SAM names them ProcessorFunction<Event>)."""
        if not self.name or self._cloudformation is None:
            return []
        found: list[str] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"StackName": self.name}
            if token:
                request["NextToken"] = token
            page = self._cloudformation.list_stack_resources(**request)
            found.extend(
                str(r["PhysicalResourceId"])
                for r in page.get("StackResourceSummaries", [])
                if r["ResourceType"] == "AWS::Lambda::EventSourceMapping"
                and r["LogicalResourceId"].startswith(PROCESSOR)
                and r.get("PhysicalResourceId")
            )
            token = page.get("NextToken")
            if not token:
                return found


def _caller(clients: Clients) -> str:
    """Who is changing the switch (the caller's ARN), for the parameter's description."""
    try:
        return str(clients("sts").get_caller_identity()["Arn"])
    except Exception:  # the change matters more than its note
        return os.environ.get("USER", "unknown")


def _clients(region: str | None) -> Clients:
    made: dict[str, Any] = {}

    def get(service: str) -> Any:
        if service not in made:
            made[service] = aws.client(service, aws.CLI_CONFIG, region_name=region)
        return made[service]

    return get


def since(changed: datetime | None, now: float | None = None) -> str:
    """'12 min' since a LastModifiedDate (for people reading the status)."""
    if changed is None:
        return ""
    seconds = max(0, int((now or time.time()) - changed.timestamp()))
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
