"""`support-pipeline signals export | gaps` and `support-pipeline drafts list`.

Drafts live in the ConversationsTable; these commands read them as the operator (the export and
the gaps over the ``ByAccountDay`` index, day by day; pending drafts from ``PendingDrafts``).
The export and the gaps hold customer text: the point of a learning dataset. They go to the
file or the terminal the operator names, never to a log; an export file is created readable by
its owner only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from support_pipeline import aws
from support_pipeline.drafts.store import NO_DRAFT, OUTCOMES, PENDING, DraftStore
from support_pipeline.signals import (
    EXPORTED_OUTCOMES,
    GAP_THRESHOLD,
    decided_drafts,
    knowledge_gaps,
    signal_records,
    to_jsonl,
)
from support_pipeline.store import ConversationStore
from support_pipeline_ops.cli import UsageError

clock = time.time  # tests move it
STATUSES = (PENDING, *OUTCOMES, NO_DRAFT, "decided")
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Item attributes that are keys and bookkeeping, not what an operator asked about.
_INTERNAL = {
    "pk",
    "sk",
    "kind",
    "created_key",
    "created_epoch",
    "pending_account",
    "account_day",
    "occurred_key",
    "expires_at",
}


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    """The ``signals`` and ``drafts`` sub-commands, on the CLI's parser."""
    when = argparse.ArgumentParser(add_help=False)
    when.add_argument(
        "--timezone",
        help="time zone of YYYY-MM-DD dates and of the days shown (default: the shipped "
        "support policy's)",
    )
    when.add_argument("--account", help="one Chatwoot account id (default: every account)")

    signals = commands.add_parser("signals", help="learning signals from the drafts")
    signals_commands = signals.add_subparsers(dest="signals_command", required=True)
    export = signals_commands.add_parser(
        "export",
        parents=[where, when],
        help="one JSON line per decided draft: question, draft, final text, outcome, grades",
    )
    export.add_argument(
        "--since", required=True, help="7d, 24h, 30m, 2w ago, or a local date YYYY-MM-DD"
    )
    export.add_argument(
        "--until", help="same forms; a date counts whole (default: now)", default=None
    )
    export.add_argument("--out", required=True, help="FILE.jsonl, or - for standard output")
    gaps = signals_commands.add_parser(
        "gaps",
        parents=[where, when],
        help="questions with no draft or a replaced draft, grouped: articles to write",
    )
    gaps.add_argument("--since", default="30d", help="as for export (default: 30d)")
    gaps.add_argument("--until", default=None, help="as for export (default: now)")
    gaps.add_argument("--json", action="store_true", help="machine-readable output")

    drafts = commands.add_parser("drafts", help="reply drafts and their outcomes")
    drafts_commands = drafts.add_subparsers(dest="drafts_command", required=True)
    listing = drafts_commands.add_parser(
        "list", parents=[where, when], help="drafts awaiting approval, or decided ones"
    )
    listing.add_argument(
        "--status",
        choices=STATUSES,
        default=PENDING,
        help="pending (default): what awaits an agent; an outcome, or decided: all of them",
    )
    listing.add_argument(
        "--since", default=None, help="as for signals export (default: 7d; pending: all)"
    )
    listing.add_argument("--until", default=None, help="as for signals export (default: now)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")


# ---- arguments ----------------------------------------------------------------------------
def zone_of(name: str | None) -> tuple[ZoneInfo, str]:
    """The named zone, or the shipped support policy's."""
    if not name:
        from support_pipeline.policy import load_default_policy

        name = load_default_policy().timezone
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown time zone {name!r}") from None


def parse_when(option: str, text: str, now: float, zone: tzinfo, end: bool = False) -> datetime:
    """``7d`` / ``24h`` / ``30m`` / ``2w`` before ``now``, or a local date ``YYYY-MM-DD``
    (its start; with ``end``, the start of the next day: the date counts whole)."""
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:
        seconds = int(duration[1]) * _UNITS[duration[2]]
        return datetime.fromtimestamp(now - seconds, UTC)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option}: expected 7d, 24h, 30m, 2w or a date YYYY-MM-DD, got {text!r}"
        ) from None
    if end:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def window(
    args: argparse.Namespace, zone: tzinfo, default_since: str | None
) -> tuple[datetime, datetime]:
    now = clock()
    since_text = args.since or default_since
    if since_text is None:
        raise UsageError("--since is required")
    since = parse_when("--since", since_text, now, zone)
    until = (
        parse_when("--until", args.until, now, zone, end=True)
        if args.until
        else datetime.fromtimestamp(now, UTC)
    )
    if until <= since:
        raise UsageError(f"nothing between --since {since_text} and --until {args.until or 'now'}")
    return since, until


def _account(args: argparse.Namespace) -> str | None:
    account = args.account
    if account is not None and not (account.isdigit() and not account.startswith("0")):
        raise UsageError(
            f"--account must be a Chatwoot account id (a positive integer), got {account!r}"
        )
    return str(account) if account else None


def _stores(table: str, zone: ZoneInfo, region: str | None) -> tuple[ConversationStore, DraftStore]:
    dynamodb = aws.resource("dynamodb", aws.CLI_CONFIG, region_name=region)
    return ConversationStore(dynamodb, table), DraftStore(dynamodb, table, zone)


def _local(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _one_line(text: Any, limit: int) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ---- commands -----------------------------------------------------------------------------
def run(args: argparse.Namespace, table: str, out: TextIO) -> int:
    zone, zone_name = zone_of(args.timezone)
    account = _account(args)
    if args.command == "drafts":
        return drafts_list(args, table, zone, zone_name, account, out)
    if args.signals_command == "export":
        return export(args, table, zone, zone_name, account, out)
    return gaps(args, table, zone, zone_name, account, out)


def export(
    args: argparse.Namespace,
    table: str,
    zone: ZoneInfo,
    zone_name: str,
    account: str | None,
    out: TextIO,
) -> int:
    since, until = window(args, zone, None)
    store, drafts = _stores(table, zone, args.region)
    lines = signal_records(store, drafts, since, until, zone, account)
    body = to_jsonl(lines)
    outcomes = Counter(line["outcome"] for line in lines)
    summary = (
        f"{len(lines)} decided draft(s) from {_local(since, zone)} to {_local(until, zone)} "
        f"({zone_name})"
        + (": " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) if lines else "")
    )
    if args.out == "-":
        out.write(body.decode())
        print(summary, file=sys.stderr)
        return 0
    path = Path(args.out)
    try:
        # Customer text: readable by its owner only, like any file of personal data.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    out.write(f"Wrote {summary} to {path}.\n")
    return 0


def gaps(
    args: argparse.Namespace,
    table: str,
    zone: ZoneInfo,
    zone_name: str,
    account: str | None,
    out: TextIO,
) -> int:
    since, until = window(args, zone, "30d")
    store, drafts = _stores(table, zone, args.region)
    groups = knowledge_gaps(signal_records(store, drafts, since, until, zone, account))
    questions = sum(group["count"] for group in groups)
    if args.json:
        json.dump(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "timezone": zone_name,
                "threshold": GAP_THRESHOLD,
                "questions": questions,
                "groups": groups,
            },
            out,
            indent=2,
            ensure_ascii=False,
        )
        out.write("\n")
        return 0
    span = f"{_local(since, zone)} to {_local(until, zone)} ({zone_name})"
    if not groups:
        out.write(f"No knowledge gaps from {span}: every question got a draft that was kept.\n")
        return 0
    out.write(
        f"Knowledge gaps from {span}: {questions} question(s) with no draft or a replaced "
        f"draft, in {len(groups)} group(s), largest first.\n"
    )
    for number, group in enumerate(groups, 1):
        kinds = ", ".join(
            f"{group[kind]} {label}"
            for kind, label in (("no_draft", "no draft"), ("replaced", "replaced"))
            if group[kind]
        )
        out.write(
            f"\n{number}. {group['count']} question(s) like "
            f"{_one_line(group['representative'], 120)!r}\n"
            f"   {kinds}; words: {', '.join(group['terms'])}\n"
        )
        for example in group["examples"][:3]:
            out.write(f"   - {_one_line(example['question'], 120)!r}\n")
            answer = example.get("answer")
            out.write(
                f"     agent: {_one_line(answer, 200)!r}\n"
                if answer
                else "     agent: (no answer recorded)\n"
            )
    return 0


def drafts_list(
    args: argparse.Namespace,
    table: str,
    zone: ZoneInfo,
    zone_name: str,
    account: str | None,
    out: TextIO,
) -> int:
    store, drafts = _stores(table, zone, args.region)
    accounts = [account] if account else store.accounts()
    items: list[dict[str, Any]] = []
    if args.status == PENDING:
        since = window(args, zone, None)[0] if args.since else None
        for account_id in accounts:
            for item in drafts.pending(account_id):
                created = item.get("created_epoch")
                if since is None or (created is not None and created >= since.timestamp()):
                    items.append(item)
        items.sort(key=lambda d: str(d.get("created_key") or ""))
    else:
        since, until = window(args, zone, "7d")
        outcomes = EXPORTED_OUTCOMES if args.status == "decided" else (args.status,)
        for account_id in accounts:
            items.extend(
                decided_drafts(store, drafts, since, until, zone, account_id, outcomes=outcomes)
            )
    shown = [{k: v for k, v in item.items() if k not in _INTERNAL} for item in items]
    if args.json:
        json.dump(shown, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
        return 0
    if not shown:
        what = "pending" if args.status == PENDING else args.status.replace("_", " ")
        out.write(f"No {what} drafts.\n")
        return 0
    _draft_table(shown, args.status == PENDING, zone, out)
    return 0


def _draft_table(items: Iterable[dict[str, Any]], pending: bool, zone: tzinfo, out: TextIO) -> None:
    def local(stamp: Any) -> str:
        if not stamp:
            return ""
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return _local(moment, zone)

    rows = [
        {
            ("CREATED" if pending else "DECIDED"): local(
                item.get("created_at" if pending else "decided_at")
            ),
            "STATUS": str(item.get("status") or ""),
            "CONVERSATION": f"{item.get('account_id')}/{item.get('conversation_id')}",
            "DRAFT": str(item.get("draft_id") or ""),
            "CONFIDENCE": (
                f"{float(item['confidence']):.2f}"
                if isinstance(item.get("confidence"), int | float)
                else ""
            ),
            "DRAFTER": str(item.get("drafter") or ""),
            "QUESTION": _one_line(item.get("question"), 60),
        }
        for item in items
    ]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
    out.write("  ".join(c.ljust(widths[c]) for c in columns[:-1]) + "  QUESTION\n")
    for row in rows:
        out.write(
            "  ".join(row[c].ljust(widths[c]) for c in columns[:-1]) + f"  {row['QUESTION']}\n"
        )
