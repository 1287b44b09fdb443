"""`support-pipeline reconcile`: what the scheduled reconciler does, now, by hand.

Runs the same code as ReconcilerFunction with the operator's credentials, against AWS or the
local stack: asks Chatwoot what changed, compares it with the records, and replays what is
missing onto EventsQueue (marked ``reconciled``; the processor does the rest). ``--since``
looks further back than the checkpoint, e.g. after a long outage; ``--account`` narrows it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from typing import Any, TextIO
from urllib.parse import urlsplit

from support_pipeline import aws
from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.chatwoot.payload import canonical_id, to_epoch
from support_pipeline.reconcile import ReconcileError, Reconciler
from support_pipeline.store import ConversationStore
from support_pipeline.telemetry import RecordingTelemetry
from support_pipeline_ops.cli import UsageError

clock = time.time  # tests move it
# The parameter's name (the template's default), not a secret.
TOKEN_PARAM = "/support-pipeline/chatwoot-api-token"  # noqa: S105  # nosec B105
# The template's defaults (ReconcilerRateMinutes, ReconcilerOverlapSeconds).
RATE_SECONDS = 15 * 60
OVERLAP_SECONDS = 120
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        parents=[where],
        help="replay the Chatwoot events the pipeline never received (the reconciler, now)",
    )
    reconcile.add_argument(
        "--account",
        action="append",
        help="a Chatwoot account id; repeatable (default: every account the pipeline knows)",
    )
    reconcile.add_argument(
        "--since",
        help="check from then: 30m, 6h, 3d, 1w ago, or an ISO-8601 time (default: each "
        "account's checkpoint)",
    )
    reconcile.add_argument(
        "--chatwoot-url",
        default=os.environ.get("CHATWOOT_BASE_URL", ""),
        help="your Chatwoot (default: $CHATWOOT_BASE_URL); https, or http on this machine",
    )
    reconcile.add_argument(
        "--token-param",
        default=TOKEN_PARAM,
        help="SSM parameter with the API token, read when $CHATWOOT_API_TOKEN is not set "
        f"(default: {TOKEN_PARAM})",
    )
    reconcile.add_argument("--json", action="store_true", help="machine-readable output")


def since_epoch(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    found = _DURATION.match(value.strip())
    if found:
        return now - int(found.group(1)) * _UNITS[found.group(2)]
    moment = to_epoch(value)
    if moment is None or not re.search(r"[T:-]", value):
        raise UsageError(f"--since {value!r}: say 30m, 6h, 3d, 1w or an ISO-8601 time")
    return moment


def run(args: argparse.Namespace, table: str, queue_url: str, out: TextIO) -> int:
    url = (args.chatwoot_url or "").rstrip("/")
    parts = urlsplit(url)
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not local:
        raise UsageError(
            "say which Chatwoot: --chatwoot-url https://... or CHATWOOT_BASE_URL "
            "(plain http only on this machine, for the local stack)"
        )
    accounts = None
    if args.account:
        accounts = [canonical_id(a) for a in args.account]
        if any(a is None for a in accounts):
            raise UsageError("--account takes Chatwoot account ids (positive integers)")
    token = os.environ.get("CHATWOOT_API_TOKEN", "")
    if not token:
        ssm = aws.client("ssm", aws.CLI_CONFIG, region_name=args.region)
        answer = ssm.get_parameter(Name=args.token_param, WithDecryption=True)
        token = str(answer["Parameter"]["Value"])
    now = clock()
    reconciler = Reconciler(
        store=ConversationStore(
            aws.resource("dynamodb", aws.CLI_CONFIG, region_name=args.region), table
        ),
        client=ChatwootClient(url, lambda: token),
        sqs=aws.client("sqs", aws.CLI_CONFIG, region_name=args.region),
        queue_url=queue_url,
        telemetry=RecordingTelemetry(),
        rate_seconds=RATE_SECONDS,
        overlap_seconds=OVERLAP_SECONDS,
        clock=clock,
    )
    try:
        totals = reconciler.run(
            now,
            accounts=[str(a) for a in accounts] if accounts else None,
            since=since_epoch(args.since, now),
        )
    except ReconcileError as error:
        raise UsageError(f"reconcile failed: {error}") from None
    stopped = totals.get("stopped") or {}
    if args.json:
        json.dump(totals, out, indent=2)
        out.write("\n")
        return 1 if stopped else 0
    later = (
        f"; {totals['deferred']} too recent, left for the next run" if totals["deferred"] else ""
    )
    out.write(
        f"{totals['accounts']} account(s), {totals['complete']} done; "
        f"{totals['conversations']} conversation(s) checked; replayed {totals['messages']} "
        f"message(s) and {totals['states']} conversation state(s){later}.\n"
    )
    for account, reason in sorted(stopped.items()):
        out.write(f"account {account} stopped ({reason}): run it again later\n")
    return 1 if stopped else 0
