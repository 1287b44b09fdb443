"""`support-pipeline conversations list | show`: what the pipeline knows and did, per conversation.

``show`` reads one conversation with queries only (its record, its SLA and escalation state and
its timeline share one partition of the ConversationsTable; its actions are one partition of
the ActionsTable). ``list`` reads the registered accounts (one partition) and, per account, the
sparse ``OpenConversations`` index: open, pending and snoozed conversations, with queries only;
``--all`` adds resolved ones with a paged scan of the table that stops at ``--limit`` records.

:func:`conversation_view` builds the data and :func:`render_conversation_html` turns it into a
self-contained page, so the local stack can serve the same view.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, TextIO

from boto3.dynamodb.conditions import Attr

from support_pipeline.actions import DRY_RUN, ActionLedger
from support_pipeline.business_time import BusinessCalendar
from support_pipeline.chatwoot.payload import iso
from support_pipeline.escalation import STATE as ESCALATION_STATE
from support_pipeline.escalation import episode_of, escalated_now
from support_pipeline.policy import SupportPolicy
from support_pipeline.sla import STATE as SLA_STATE
from support_pipeline.sla import compute_clocks, marks_from_timeline
from support_pipeline.store import RECORD_SK, ConversationStore, from_dynamo, key_id

# Storage keys that say nothing to a person (they are how the record is indexed).
INDEX_FIELDS = frozenset(
    {"pk", "sk", "open_account", "waiting_since_key", "due_account", "account_day", "occurred_key"}
)
# Record fields a person reads first, in this order; the rest follow in --json.
RECORD_FIELDS = (
    "status",
    "priority",
    "inbox_id",
    "assignee_id",
    "team_id",
    "labels",
    "created_at",
    "waiting_since",
    "first_reply_created_at",
    "resolved_at",
    "reopened_count",
    "last_event_at",
)
TIME_FIELDS = frozenset(
    {
        "created_at",
        "waiting_since",
        "first_reply_created_at",
        "resolved_at",
        "last_event_at",
        "snoozed_until",
        "next_due",
    }
)
DEFAULT_LIMIT = 200


@dataclass(frozen=True)
class Tables:
    """Where a pipeline keeps its conversations and its actions."""

    dynamodb: Any  # a boto3 DynamoDB resource
    conversations: str
    actions: str


def when(epoch: Any) -> str | None:
    """An epoch as UTC ISO text; None stays None."""
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        return iso(float(epoch))
    return None


def conversation_view(
    tables: Tables,
    account: str,
    conversation: str,
    policy: SupportPolicy | None = None,
    now: float | None = None,
) -> dict[str, Any] | None:
    """Everything about one conversation, as plain JSON-ready data; None if it is unknown.

    Queries only: the record, states and timeline are one partition, the actions another.
    """
    account, conversation = key_id(account, "account"), key_id(conversation, "conversation")
    if policy is None:
        from support_pipeline.policy import load_policy

        policy = load_policy(os.environ.get("SUPPORT_POLICY_PARAM") or None)
    now = time.time() if now is None else now
    store = ConversationStore(tables.dynamodb, tables.conversations)
    record = store.get_record(account, conversation)
    if record is None:
        return None
    timeline = store.timeline(account, conversation)
    sla_state, _ = store.get_state(account, conversation, SLA_STATE)
    escalation_state, _ = store.get_state(account, conversation, ESCALATION_STATE)
    actions = ActionLedger(tables.dynamodb, tables.actions).list(account, conversation)

    marks = record.get("message_marks")
    if marks is None:
        marks = marks_from_timeline(timeline)
    clocks = compute_clocks(record, marks, policy, BusinessCalendar.from_policy(policy))
    claims = dict(escalation_state.get("escalated") or {})
    return {
        "account_id": account,
        "conversation_id": conversation,
        "generated_at": iso(now),
        "record": {
            key: (when(value) or value) if key in TIME_FIELDS else value
            for key, value in record.items()
            if key not in INDEX_FIELDS
        },
        "sla": {
            "policy": str(policy.source),
            "timezone": str(policy.timezone),
            "next_due": when(record.get("next_due")),
            "clocks": [
                {
                    "target": clock.target,
                    "state": clock.state(now),
                    "started_at": when(clock.started_at),
                    "at_risk_at": when(clock.at_risk_at),
                    "due_at": when(clock.due_at),
                    "met_at": when(clock.met_at),
                    "threshold_seconds": clock.threshold_seconds,
                    "business_hours_only": clock.business_only,
                }
                for clock in clocks
            ],
            "flags": sla_state,
        },
        "escalation": {
            "episode": episode_of(record),
            "escalated": escalated(record),
            "escalated_episode": record.get("escalated_episode"),
            "claims": [
                {
                    "reason": key.removeprefix("dry:").split(":", 1)[-1],
                    "episode": key.removeprefix("dry:").split(":", 1)[0],
                    "dry_run": key.startswith("dry:"),
                    "escalation_id": owner,
                }
                for key, owner in sorted(claims.items())
            ]
            if isinstance(claims, dict)
            else [],
        },
        "timeline": [
            {key: value for key, value in item.items() if key not in INDEX_FIELDS}
            for item in timeline
        ],
        "actions": [
            {**item, "summary": action_summary(item)}
            for item in actions
            if isinstance(item.get("action_id"), str)
        ],
        "dry_run": any(item.get("status") == DRY_RUN for item in actions),
    }


def action_summary(item: dict[str, Any]) -> str:
    """One line for an action: a note's first meaningful line (not its header, not its
    reference), else what it changes."""
    detail = item.get("detail") or {}
    content = detail.get("content")
    if isinstance(content, str):
        return first_meaningful_line(content)
    return json.dumps(detail, sort_keys=True, default=str)


# A draft note's header (drafts.service.DraftService._note): "Draft reply d-1 · 80% confident ·
# knowledge: Envíos".
_DRAFT_HEADER = re.compile(r"^Draft reply \S+ · \d+% confident · ")


def first_meaningful_line(text: str) -> str:
    """The first line that says something: headers (``...:``, a draft note's), reference lines
    and list bullets' markers are skipped; the header alone when nothing else is there."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.endswith(":") or line.startswith("ref: ") or _DRAFT_HEADER.match(line):
            continue
        return line.removeprefix("- ").strip()
    return lines[0] if lines else ""


def escalated(record: dict[str, Any]) -> bool:
    """Escalated in its current episode, for real or in a dry run (a reopened conversation
    starts a new episode, unescalated)."""
    return escalated_now(record, dry_run=False) or escalated_now(record, dry_run=True)


def conversation_list(
    tables: Tables, account: str | None = None, include_closed: bool = False, limit: int = 200
) -> tuple[list[dict[str, Any]], bool]:
    """Conversation records, one row each, and whether the listing is complete.

    Open, pending and snoozed ones come from the accounts' ``OpenConversations`` index
    (queries). ``include_closed`` reads the rest with a paged scan that stops after ``limit``
    records, so it says whether it saw everything.
    """
    store = ConversationStore(tables.dynamodb, tables.conversations)
    accounts = [key_id(account, "account")] if account else store.accounts()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for found in accounts:
        for record in store.open_conversations(found):
            rows[(record["account_id"], record["conversation_id"])] = record
    complete = True
    if include_closed:
        table = tables.dynamodb.Table(tables.conversations)
        condition: Any = Attr("sk").eq(RECORD_SK)
        if account:
            condition = condition & Attr("account_id").eq(key_id(account, "account"))
        kwargs: dict[str, Any] = {"FilterExpression": condition}
        seen = 0
        while True:
            page = table.scan(**kwargs)
            for item in page.get("Items", []):
                record = from_dynamo(item)
                rows.setdefault((record["account_id"], record["conversation_id"]), record)
                seen += 1
            if "LastEvaluatedKey" not in page:
                break
            if seen >= limit:
                complete = False
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    listed = [
        {
            "account_id": record["account_id"],
            "conversation_id": record["conversation_id"],
            "status": record.get("status"),
            "priority": record.get("priority"),
            "waiting_since": when(record.get("waiting_since")),
            "next_due": when(record.get("next_due")),
            "escalated": escalated(record),
            "last_event_at": when(record.get("last_event_at")),
        }
        for record in rows.values()
    ]
    listed.sort(key=lambda row: (int(row["account_id"]), int(row["conversation_id"])))
    return listed, complete


# ---- rendering --------------------------------------------------------------------------------


def render_list(rows: list[dict[str, Any]], out: TextIO) -> None:
    columns = ["account_id", "conversation_id", "status", "priority", "next_due", "escalated"]
    heads = ["ACCOUNT", "CONVERSATION", "STATUS", "PRIORITY", "NEXT SLA MOMENT", "ESCALATED"]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(heads)]
    out.write("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def render_conversation_text(view: dict[str, Any], out: TextIO) -> None:
    """The view for a terminal: record, SLA clocks, escalation, timeline, actions."""
    record = view["record"]
    out.write(f"Conversation {view['account_id']}/{view['conversation_id']}\n")
    for field in RECORD_FIELDS:
        if field in record:
            out.write(f"  {field:<24}{_cell(record[field])}\n")
    sla = view["sla"]
    out.write(f"\nSLA clocks ({sla['timezone']}; next moment {_cell(sla['next_due'])})\n")
    if not sla["clocks"]:
        out.write("  none running\n")
    for clock in sla["clocks"]:
        out.write(
            f"  {clock['target']:<16}{clock['state']:<10}started {clock['started_at']}  "
            f"at risk {clock['at_risk_at']}  due {clock['due_at']}  met {_cell(clock['met_at'])}\n"
        )
    escalation = view["escalation"]
    out.write(f"\nEscalation: {'escalated' if escalation['escalated'] else 'not escalated'}")
    out.write(f" (episode {escalation['episode']})\n")
    for claim in escalation["claims"]:
        dry = " (dry run)" if claim["dry_run"] else ""
        out.write(f"  {claim['reason']:<24}episode {claim['episode']}{dry}\n")
    out.write(f"\nTimeline ({len(view['timeline'])})\n")
    for item in view["timeline"]:
        out.write(f"  {item.get('occurred_at', '')}  {timeline_line(item)}\n")
    out.write(f"\nActions ({len(view['actions'])})\n")
    if not view["actions"]:
        out.write("  none\n")
    for action in view["actions"]:
        out.write(
            f"  {action.get('created_at', '')}  {action.get('status', ''):<8} "
            f"{action.get('kind', ''):<14} {action.get('reason') or '-':<16} {action['summary']}\n"
        )
    if view["dry_run"]:
        out.write("\nDry run: the actions above were recorded, not taken in Chatwoot.\n")


def timeline_line(item: dict[str, Any]) -> str:
    """One timeline item in words: the event, whose message, or what the pipeline did."""
    event = str(item.get("event") or item.get("kind") or "")
    parts = [event]
    if item.get("message_id"):
        who = item.get("sender_type") or item.get("message_type") or ""
        private = " private" if item.get("private") else ""
        parts.append(f"message {item['message_id']} ({who}{private})")
    if item.get("reasons"):
        parts.append("reasons: " + ", ".join(str(r) for r in item["reasons"]))
    if item.get("status") and item.get("kind", "event") == "event":
        parts.append(f"status {item['status']}")
    return "  ".join(parts)


PAGE_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;max-width:70rem;color:#1d2330}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.8rem;border-bottom:1px solid #d8dce3}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .6rem;
border-bottom:1px solid #eceef2;vertical-align:top}th{background:#f5f6f8}
.state-breached,.state-missed{color:#b3261e;font-weight:600}.state-at_risk{color:#a15c00}
.state-met{color:#1e7b34}.dry{background:#fff6d6;padding:.5rem .8rem;border-radius:4px}
pre{white-space:pre-wrap;margin:0;font:inherit}
"""


def render_conversation_html(view: dict[str, Any]) -> str:
    """The view as a self-contained HTML page (inline style, no scripts, every value escaped)."""
    e = html.escape
    record = view["record"]
    title = f"Conversation {view['account_id']}/{view['conversation_id']}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1><p>As of {e(view['generated_at'])}.</p>",
    ]
    if view["dry_run"]:
        parts.append("<p class='dry'>Dry run: actions were recorded, not taken in Chatwoot.</p>")
    parts.append("<h2>Record</h2><table>")
    for field in RECORD_FIELDS:
        if field in record:
            parts.append(f"<tr><th>{e(field)}</th><td>{e(_cell(record[field]))}</td></tr>")
    parts.append("</table>")
    sla = view["sla"]
    parts.append(
        f"<h2>SLA clocks</h2><p>Time zone {e(sla['timezone'])}; next moment "
        f"{e(_cell(sla['next_due']))}.</p><table><tr><th>target</th><th>state</th>"
        "<th>started</th><th>at risk</th><th>due</th><th>met</th></tr>"
    )
    for clock in sla["clocks"]:
        parts.append(
            f"<tr><td>{e(clock['target'])}</td>"
            f"<td class='state-{e(clock['state'])}'>{e(clock['state'])}</td>"
            + "".join(
                f"<td>{e(_cell(clock[k]))}</td>" for k in ("started_at", "at_risk_at", "due_at")
            )
            + f"<td>{e(_cell(clock['met_at']))}</td></tr>"
        )
    parts.append("</table>")
    escalation = view["escalation"]
    state = "escalated" if escalation["escalated"] else "not escalated"
    parts.append(f"<h2>Escalation</h2><p>{state} (episode {e(str(escalation['episode']))})</p><ul>")
    for claim in escalation["claims"]:
        dry = " (dry run)" if claim["dry_run"] else ""
        parts.append(f"<li>{e(claim['reason'])}, episode {e(claim['episode'])}{dry}</li>")
    parts.append("</ul><h2>Timeline</h2><table><tr><th>when</th><th>what</th></tr>")
    for item in view["timeline"]:
        parts.append(
            f"<tr><td>{e(str(item.get('occurred_at', '')))}</td>"
            f"<td>{e(timeline_line(item))}</td></tr>"
        )
    parts.append(
        "</table><h2>Actions</h2><table><tr><th>when</th><th>status</th><th>kind</th>"
        "<th>reason</th><th>what</th></tr>"
    )
    for action in view["actions"]:
        content = (action.get("detail") or {}).get("content")
        what = content if isinstance(content, str) else action["summary"]
        parts.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(action.get(k) or '-'))}</td>"
                for k in ("created_at", "status", "kind", "reason")
            )
            + f"<td><pre>{e(what)}</pre></td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "".join(parts)


# ---- the command line -------------------------------------------------------------------------


def add_commands(commands: Any, where: argparse.ArgumentParser) -> None:
    """``conversations list`` and ``conversations show`` under ``support-pipeline``."""
    conversations = commands.add_parser(
        "conversations", help="what the pipeline knows and did, per conversation"
    )
    sub = conversations.add_subparsers(dest="conversations_command", required=True)
    listing = sub.add_parser(
        "list", parents=[where], help="open conversations (queries); --all adds resolved ones"
    )
    listing.add_argument("--account", help="one Chatwoot account id")
    listing.add_argument(
        "--all",
        action="store_true",
        help="also resolved and deleted ones (a paged scan that stops at --limit records)",
    )
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="records --all reads at most"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = sub.add_parser(
        "show",
        parents=[where],
        help="record, SLA clocks, escalation, timeline and actions of one conversation",
    )
    show.add_argument("account", help="Chatwoot account id")
    show.add_argument("conversation", help="conversation id (per account)")
    show.add_argument(
        "--policy",
        help="support policy YAML for the SLA clocks (default: $SUPPORT_POLICY_PARAM in SSM, "
        "else the shipped one)",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--html", action="store_true", help="a self-contained HTML page")


class NotFound(Exception):
    """The conversation is not in the table."""


def run(args: argparse.Namespace, tables: Tables, out: TextIO) -> int:
    if args.conversations_command == "list":
        rows, complete = conversation_list(tables, args.account, args.all, args.limit)
        if args.json:
            json.dump({"conversations": rows, "complete": complete}, out, indent=2)
            out.write("\n")
            return 0
        if rows:
            render_list(rows, out)
        else:
            out.write("No open conversations." if not args.all else "No conversations.")
            out.write("\n")
        if not complete:
            out.write(f"Stopped after {args.limit} records; raise --limit to see more.\n")
        return 0
    policy = None
    if args.policy:
        from pathlib import Path

        from support_pipeline.policy import PolicyError, parse_policy_text
        from support_pipeline_ops.cli import UsageError

        try:
            text = Path(args.policy).read_text(encoding="utf-8")
            policy = parse_policy_text(text, args.policy)
        except (PolicyError, OSError) as error:  # no such file, not YAML, not a policy
            raise UsageError(" ".join(str(error).split())) from None  # YAML's spans lines
    view = conversation_view(tables, args.account, args.conversation, policy)
    if view is None:
        raise NotFound(f"no conversation {args.account}/{args.conversation} in the table")
    if args.json:
        json.dump(view, out, indent=2, default=str)
        out.write("\n")
    elif args.html:
        out.write(render_conversation_html(view))
    else:
        render_conversation_text(view, out)
    return 0
