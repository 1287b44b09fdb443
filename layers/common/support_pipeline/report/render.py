"""The report's outputs: JSON, CSV, Markdown, a self-contained HTML page, and a short summary.

Markdown and HTML are rendered from one document model (sections of paragraphs, tables and
charts), so both say the same. A number that misses its target is marked in words and with a
sign (⚠), never by colour alone: the page is also printed in black and white.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from support_pipeline.report import charts
from support_pipeline.report.compute import CSV_COLUMNS, PRIORITIES

MISS = "⚠"
MINUS = "\u2212"
TARGET_NAMES = {
    "first_response": "First response",
    "next_response": "Next response",
    "resolution": "Resolution",
}
OUTCOME_NAMES = {
    "sent_as_is": "sent as is",
    "edited": "edited",
    "replaced": "replaced",
    "rejected": "rejected",
    "expired": "expired",
    "superseded": "superseded",
}
GRADE_NAMES = {"tone": "Tone", "accuracy": "Accuracy", "policy": "Policy"}


# ---- formatting ------------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    seconds = round(float(seconds))
    sign = MINUS if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{sign}{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d {hours} h"


def value_text(value: Any, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "percent":
        return f"{value:.1f} %"
    if unit == "seconds":
        return duration(value)
    if unit == "score":
        return f"{value:.2f}"
    if unit == "ratio":
        return f"{value:.2f}"
    return f"{int(value):,}"


def count_row(label: str, metric: dict[str, Any]) -> list[Cell]:
    """A row of a by-reason or by-team count table: label, this period, previous, change."""
    return [
        Cell(label),
        Cell(value_text(metric["value"], "count"), number=True),
        Cell(value_text(metric["previous"], "count"), number=True),
        Cell(change_text(metric), number=True),
    ]


def change_text(metric: dict[str, Any]) -> str:
    change, unit = metric.get("change"), metric.get("unit", "count")
    if metric.get("previous") is None:
        return "—"
    if change is None:
        return "—"
    if change == 0:
        return "no change"
    sign = "+" if change > 0 else MINUS
    size = abs(change)
    if unit == "percent":
        return f"{sign}{size:.1f} pts"
    if unit == "seconds":
        return f"{sign}{duration(size)}"
    if unit in ("score", "ratio"):
        return f"{sign}{size:.2f}"
    return f"{sign}{int(size):,}"


def target_text(metric: dict[str, Any]) -> str:
    target = metric.get("target")
    if target is None:
        return ""
    sign = "≥" if metric.get("better", "higher") == "higher" else "≤"
    return f"{sign} {value_text(target, metric.get('unit', 'count'))}"


def missed(metric: dict[str, Any]) -> bool:
    return metric.get("meets_target") is False


def local_time(epoch: float | None, zone: Any) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(float(epoch), UTC).astimezone(zone).strftime("%a %Y-%m-%d %H:%M")


# ---- the document model ----------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    miss: bool = False
    link: str | None = None
    number: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    empty: str = "Nothing to show."


@dataclass
class Paragraph:
    text: str
    kind: str = "text"  # text | note | miss


@dataclass
class Chart:
    svg: str
    caption: str


Block = Table | Paragraph | Chart


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


def metric_cells(metric: dict[str, Any], detail: str = "") -> list[Cell]:
    """This period, the previous one, the change and the target of one number."""
    unit = metric.get("unit", "count")
    now = value_text(metric.get("value"), unit) + (f" {detail}" if detail else "")
    if missed(metric):
        now = f"{MISS} {now} (misses target)"
    return [
        Cell(now, miss=missed(metric), number=True),
        Cell(value_text(metric.get("previous"), unit), number=True),
        Cell(change_text(metric), number=True),
        Cell(target_text(metric), number=True),
    ]


COMPARE_HEADER = ["", "This period", "Previous", "Change", "Target"]


def compare_table(rows: list[tuple[str, dict[str, Any], str]], caption: str = "") -> Table:
    return Table(
        COMPARE_HEADER,
        [[Cell(label), *metric_cells(metric, detail)] for label, metric, detail in rows],
        caption,
    )


def team_name(account: str, team: str | None, accounts: list[str]) -> str:
    name = f"team {team}" if team else "no team"
    return f"{name} (account {account})" if len(accounts) > 1 else name


def build_document(data: dict[str, Any]) -> tuple[str, list[str], list[Section]]:
    """Title, lead lines and sections, shared by Markdown and HTML."""
    from zoneinfo import ZoneInfo

    period, previous = data["period"], data["previous_period"]
    zone = ZoneInfo(period["timezone"])
    accounts = list(data.get("accounts") or [])
    title = f"Support report {period['label']}"
    lead = [
        f"Period: {period['first_day']} 00:00 to {period['end'][:10]} 00:00 "
        f"({period['timezone']}), {period['hours']:g} hours, "
        f"{len(period['days'])} days. Compared with {previous['label']} "
        f"({previous['first_day']} to {previous['last_day']}).",
        f"Accounts: {', '.join(accounts) or 'none yet'}. "
        f"Conversations with activity: {data['conversations']}. Generated {data['generated_at']}.",
    ]
    lead += [f"Note: the {change}." for change in period.get("clock_changes") or []]
    sections = [
        _notes(data),
        _sla(data, zone, accounts),
        _escalations(data, accounts),
        _volume(data, accounts),
        _csat(data),
        _drafts(data),
        _health(data),
        _chatwoot(data),
    ]
    return title, lead, [s for s in sections if s.blocks]


def _notes(data: dict[str, Any]) -> Section:
    section = Section("notes", "Read this first")
    section.blocks = [Paragraph(note, "note") for note in data.get("notes") or []]
    return section


def _sla(data: dict[str, Any], zone: Any, accounts: list[str]) -> Section:
    sla = data["sla"]
    goal = sla["goal_percent"]
    section = Section("sla", "SLA adherence")
    section.blocks.append(
        Paragraph(
            f"A target counts in the period it was met, or in the period it went overdue. "
            f"Goal: {goal:g} % met (the report's goal, ReportSlaGoalPercent). Times are in "
            "business time; the p90 in the policy's own measure is compared with the "
            "policy's threshold for each priority."
        )
    )
    chart_groups = []
    for target, name in TARGET_NAMES.items():
        overall = sla["targets"][target]["all"]["met_percent"]
        chart_groups.append(
            (
                name,
                [
                    charts.Bar(
                        "this period",
                        overall["value"],
                        value_text(overall["value"], "percent"),
                        "miss" if missed(overall) else "now",
                    ),
                    charts.Bar(
                        "previous",
                        overall["previous"],
                        value_text(overall["previous"], "percent"),
                        "before",
                    ),
                ],
            )
        )
    section.blocks.append(
        Chart(
            charts.bars(
                "chart-sla",
                "SLA adherence by target",
                f"Percent of targets met this period and the previous one; goal {goal:g} %.",
                chart_groups,
                maximum=100,
                target=goal,
                target_label=f"goal {goal:g} %",
            ),
            f"Targets met, this period against the previous one; the dashed line is the "
            f"{goal:g} % goal.",
        )
    )
    for target, name in TARGET_NAMES.items():
        block = sla["targets"][target]
        overall = block["all"]
        judged = overall["judged"]["value"]
        section.blocks.append(Paragraph(f"{name}", "subheading"))
        if not judged and not overall["judged"]["previous"]:
            section.blocks.append(
                Paragraph(f"No {name.lower()} target was met or missed in either period.", "note")
            )
            continue
        section.blocks.append(
            compare_table(
                [
                    ("Targets judged", overall["judged"], ""),
                    (
                        "Met",
                        overall["met_percent"],
                        f"({overall['met']} of {judged})" if judged else "",
                    ),
                    ("Median (business time)", overall["median_business_seconds"], ""),
                    ("p90 (business time)", overall["p90_business_seconds"], ""),
                ]
            )
        )
        if overall["unanswered_past_due"]:
            section.blocks.append(
                Paragraph(
                    f"{overall['unanswered_past_due']} missed target(s) had no answer by the end "
                    "of the period: they are not in the median and p90.",
                    "note",
                )
            )
        rows = []
        for priority in PRIORITIES:
            stats = block["by_priority"][priority]
            if not stats["judged"]["value"] and not stats["judged"]["previous"]:
                continue
            rows.append(
                [
                    Cell(priority),
                    Cell(value_text(stats["judged"]["value"], "count"), number=True),
                    metric_cells(stats["met_percent"])[0],
                    Cell(change_text(stats["met_percent"]), number=True),
                    Cell(duration(stats["median_business_seconds"]["value"]), number=True),
                    Cell(duration(stats["p90_business_seconds"]["value"]), number=True),
                    metric_cells(stats["p90_policy_seconds"])[0],
                    Cell(
                        f"{duration(stats['threshold_seconds'])} "
                        f"({'business' if stats['measure'] == 'business' else 'wall clock'})",
                        number=True,
                    ),
                ]
            )
        section.blocks.append(
            Table(
                [
                    "Priority",
                    "Judged",
                    "Met",
                    "Change",
                    "Median",
                    "p90",
                    "p90 (policy's measure)",
                    "Threshold",
                ],
                rows,
                f"{name} by priority",
            )
        )
        team_rows = [
            [
                Cell(team_name(t["account_id"], t["team_id"], accounts)),
                Cell(value_text(t["judged"]["value"], "count"), number=True),
                metric_cells(t["met_percent"])[0],
                Cell(change_text(t["met_percent"]), number=True),
                Cell(duration(t["median_business_seconds"]["value"]), number=True),
                Cell(duration(t["p90_business_seconds"]["value"]), number=True),
            ]
            for t in block["by_team"]
            if t["judged"]["value"]
        ]
        if team_rows:
            section.blocks.append(
                Table(
                    ["Team", "Judged", "Met", "Change", "Median", "p90"],
                    team_rows,
                    f"{name} by team",
                )
            )
    breaches = sla["breaches"]
    section.blocks.append(Paragraph("Missed targets by conversation", "subheading"))
    rows = []
    for breach in breaches:
        for miss in breach["missed"]:
            rows.append(
                [
                    Cell(
                        f"{breach['account_id']}/{breach['conversation_id']}"
                        if len(accounts) > 1
                        else f"#{breach['conversation_id']}",
                        link=breach.get("link"),
                    ),
                    Cell(breach["priority"]),
                    Cell(team_name(breach["account_id"], breach["team_id"], accounts)),
                    Cell(TARGET_NAMES[miss["target"]], miss=True),
                    Cell(local_time(miss["due_at"], zone)),
                    Cell(
                        local_time(miss["answered_at"], zone)
                        if miss["answered_at"] is not None
                        else "not by the end of the period"
                    ),
                    Cell(
                        duration(miss["late_business_seconds"])
                        if miss["late_business_seconds"] is not None
                        else "—",
                        number=True,
                    ),
                ]
            )
    section.blocks.append(
        Table(
            [
                "Conversation",
                "Priority",
                "Team",
                "Missed",
                "Due",
                "Answered",
                "Late by (business)",
            ],
            rows,
            "",
            "No target was missed in this period.",
        )
    )
    return section


def _escalations(data: dict[str, Any], accounts: list[str]) -> Section:
    esc = data["escalations"]
    section = Section("escalations", "Escalations")
    section.blocks.append(
        compare_table(
            [
                ("Escalations", esc["escalations"], ""),
                ("Conversations escalated", esc["conversations_escalated"], ""),
                (
                    "Escalation rate (of conversations with activity)",
                    esc["rate_percent"],
                    "",
                ),
            ]
        )
    )
    if esc["by_reason"]:
        section.blocks.append(
            Chart(
                charts.bars(
                    "chart-escalations",
                    "Escalations by reason",
                    "Escalations by reason, this period and the previous one.",
                    [
                        (
                            r["reason"].replace("_", " "),
                            [
                                charts.Bar("this period", r["value"], str(r["value"])),
                                charts.Bar(
                                    "previous",
                                    r["previous"],
                                    value_text(r["previous"], "count"),
                                    "before",
                                ),
                            ],
                        )
                        for r in esc["by_reason"]
                    ],
                ),
                "Escalations by reason (an escalation with two reasons counts for both).",
            )
        )
    section.blocks.append(
        Table(
            ["Reason", "This period", "Previous", "Change"],
            [count_row(r["reason"].replace("_", " "), r) for r in esc["by_reason"]],
            "By reason",
            "No escalation in either period.",
        )
    )
    section.blocks.append(
        Table(
            ["Team", "This period", "Previous", "Change"],
            [
                count_row(team_name(t["account_id"], t["team_id"], accounts), t)
                for t in esc["by_team"]
            ],
            "By team (the team that had the conversation when it was escalated)",
            "No escalation in either period.",
        )
    )
    return section


VOLUME_LABELS = {
    "opened": "Conversations opened",
    "resolved": "Resolutions",
    "reopened": "Reopenings",
    "active_conversations": "Conversations with activity",
    "messages_in": "Messages in (customers)",
    "messages_out": "Messages out (agents and bots, public)",
    "private_notes": "Private notes",
}


def _volume(data: dict[str, Any], accounts: list[str]) -> Section:
    volume = data["volume"]
    section = Section("volume", "Volume")
    section.blocks.append(
        compare_table([(label, volume[name], "") for name, label in VOLUME_LABELS.items()])
    )
    days = volume["daily"]
    section.blocks.append(
        Chart(
            charts.lines(
                "chart-volume",
                "Daily volume",
                "Conversations opened and resolved, and messages in and out, per local day.",
                [f"{d['weekday']} {d['date'][5:]}" for d in days],
                [
                    ("opened", "s1", [d["opened"] for d in days]),
                    ("resolved", "s2", [d["resolved"] for d in days]),
                    ("messages in", "s3", [d["messages_in"] for d in days]),
                    ("messages out", "s4", [d["messages_out"] for d in days]),
                ],
            ),
            "Per local day in the policy's time zone.",
        )
    )
    section.blocks.append(
        Table(
            ["Day", "Opened", "Resolved", "Messages in", "Messages out"],
            [
                [
                    Cell(f"{d['weekday']} {d['date']}"),
                    *(
                        Cell(str(d[n]), number=True)
                        for n in ("opened", "resolved", "messages_in", "messages_out")
                    ),
                ]
                for d in days
            ],
            "Per day",
        )
    )
    section.blocks.append(
        Table(
            ["Inbox", "Opened", "Resolved", "Messages in", "Messages out"],
            [
                [
                    Cell(
                        (f"inbox {i['inbox_id']}" if i["inbox_id"] else "unknown inbox")
                        + (f" (account {i['account_id']})" if len(accounts) > 1 else "")
                    ),
                    *(
                        Cell(str(i[n]), number=True)
                        for n in ("opened", "resolved", "messages_in", "messages_out")
                    ),
                ]
                for i in volume["by_inbox"]
            ],
            "By inbox",
            "No conversation or message in this period.",
        )
    )
    return section


def _csat(data: dict[str, Any]) -> Section:
    csat = data["csat"]
    section = Section("csat", "Customer satisfaction (CSAT)")
    section.blocks.append(
        compare_table([("Answers", csat["responses"], ""), ("Mean rating (1-5)", csat["mean"], "")])
    )
    before = csat.get("previous_distribution")
    section.blocks.append(
        Table(
            ["Rating", "This period", "Previous"],
            [
                [
                    Cell(f"{score} ★"),
                    Cell(str(csat["distribution"][score]), number=True),
                    Cell("—" if before is None else str(before[score]), number=True),
                ]
                for score in ("5", "4", "3", "2", "1")
            ],
            "Distribution",
        )
    )
    if not csat["responses"]["value"]:
        section.blocks.append(Paragraph("No CSAT answer in this period.", "note"))
    return section


def _drafts(data: dict[str, Any]) -> Section:
    drafts = data["drafts"]
    section = Section("drafts", "Reply drafts")
    rows = [("Drafted (decided in the period)", drafts["drafted"], "")]
    rows += [
        (f"  {OUTCOME_NAMES[name].capitalize()}", metric, "")
        for name, metric in drafts["outcomes"].items()
    ]
    rows += [
        ("Not drafted (no confident draft)", drafts["not_drafted"], ""),
        ("Median edit ratio (1 = sent as is)", drafts["median_edit_ratio"], ""),
        ("Median time to approval (sent as is)", drafts["median_seconds_to_approval"], ""),
        ("Drafts graded", drafts["graded"], ""),
    ]
    rows += [
        (f"Mean {GRADE_NAMES[grade].lower()} grade", metric, "")
        for grade, metric in drafts["grades"].items()
    ]
    section.blocks.append(compare_table(rows))
    outcomes = drafts["outcomes"]
    if drafts["drafted"]["value"] or drafts["drafted"]["previous"]:
        section.blocks.append(
            Chart(
                charts.bars(
                    "chart-drafts",
                    "Draft outcomes",
                    "How drafts ended, this period and the previous one.",
                    [
                        (
                            OUTCOME_NAMES[name],
                            [
                                charts.Bar("this period", m["value"], str(m["value"])),
                                charts.Bar(
                                    "previous",
                                    m["previous"],
                                    value_text(m["previous"], "count"),
                                    "before",
                                ),
                            ],
                        )
                        for name, m in outcomes.items()
                    ],
                ),
                "Draft outcomes.",
            )
        )
    else:
        section.blocks.append(Paragraph("No draft was decided in either period.", "note"))
    return section


HEALTH_LABELS = {
    "webhooks_accepted": "Webhooks accepted",
    "webhooks_rejected": "Webhooks rejected",
    "processed": "Events processed",
    "retried": "Retries",
    "dead_lettered": "Sent to the DLQ",
    "redriven": "Redriven from the DLQ",
    "reconciled": "Recovered by the reconciler (deliveries Chatwoot never made)",
}


def _health(data: dict[str, Any]) -> Section:
    health = data["pipeline_health"]
    section = Section("health", "Pipeline health")
    depth = health.get("dlq_depth_now")
    section.blocks.append(
        Paragraph(
            "DLQ depth now: "
            + ("not available" if depth is None else f"{depth} message(s)")
            + ("" if not depth else f" {MISS} (see the runbook: dlq-not-empty)"),
            "miss" if depth else "text",
        )
    )
    if not health.get("available"):
        section.blocks.append(Paragraph(str(health.get("note")), "note"))
        return section
    section.blocks.append(Paragraph(str(health.get("note")), "text"))
    section.blocks.append(
        compare_table([(label, health[name], "") for name, label in HEALTH_LABELS.items()])
    )
    for name in ("webhooks_rejected", "retried", "dead_lettered"):
        reasons = health[name].get("by_reason") or []
        if reasons:
            section.blocks.append(
                Table(
                    ["Reason", "This period", "Previous", "Change"],
                    [count_row(r["reason"], r) for r in reasons],
                    f"{HEALTH_LABELS[name]} by reason",
                )
            )
    return section


def _chatwoot(data: dict[str, Any]) -> Section:
    chatwoot = data["chatwoot"]
    section = Section("chatwoot", "Chatwoot's own numbers")
    kind = "text" if chatwoot["available"] else "note"
    section.blocks.append(Paragraph(str(chatwoot["note"]), kind))
    for account in chatwoot["accounts"]:
        if account.get("status") != "ok":
            section.blocks.append(
                Paragraph(f"Account {account['account_id']}: {account['note']}", "note")
            )
            continue
        rows = []
        for row in account["comparisons"]:
            seconds = row["metric"].startswith("avg_")
            show: Callable[[Any], str] = duration if seconds else (lambda v: value_text(v, "count"))
            rows.append(
                [
                    Cell(row["label"]),
                    Cell(show(row["chatwoot"]), number=True),
                    Cell(show(row["ours"]), number=True),
                    Cell(
                        f"{MISS} disagrees" if row["disagrees"] else "agrees",
                        miss=row["disagrees"],
                    ),
                    Cell(row["why"] or ""),
                ]
            )
        section.blocks.append(
            Table(
                ["", "Chatwoot", "Ours", "", "Why they may differ"],
                rows,
                f"Account {account['account_id']}",
            )
        )
    return section


# ---- Markdown --------------------------------------------------------------------------------
def _md_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.miss and not text.startswith(MISS):
        text = f"**{text}**"
    return f"[{text}]({cell.link})" if cell.link else text


def to_markdown(data: dict[str, Any]) -> str:
    title, lead, sections = build_document(data)
    out = [f"# {title}", "", *[f"{line}  " for line in lead], ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                if block.kind == "subheading":
                    out += [f"### {block.text}", ""]
                elif block.kind in ("note", "miss"):
                    out += [f"> {block.text}", ""]
                else:
                    out += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    out += [f"**{block.caption}**", ""]
                if not block.rows:
                    out += [f"_{block.empty}_", ""]
                    continue
                out.append("| " + " | ".join(h or " " for h in block.header) + " |")
                out.append(
                    "| "
                    + " | ".join(
                        "---:" if i and _numeric(block, i) else "---"
                        for i in range(len(block.header))
                    )
                    + " |"
                )
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                out.append("")
            # charts are for the HTML page; their numbers are in the tables
    out.append(f"{MISS} marks a number that misses its target.")
    return "\n".join(out) + "\n"


def _numeric(table: Table, index: int) -> bool:
    return all(row[index].number for row in table.rows if index < len(row))


# ---- HTML ------------------------------------------------------------------------------------
STYLE = """
:root{--ink:#1d232b;--muted:#5b6570;--line:#d9dee3;--now:#2f6db5;--before:#aab6c3;
--miss:#b3261e;--good:#1b7f4b;--bg:#fff}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
main{max-width:980px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2em 0 .4em}h2{font-size:1.2rem;margin:1.6em 0 .5em;
border-bottom:2px solid var(--line);padding-bottom:.2em}h3{font-size:1.02rem;margin:1.2em 0 .4em}
p{margin:.4em 0}.lead{color:var(--muted);font-size:.92rem}
.note{background:#f4f6f8;border-left:4px solid var(--before);padding:.5em .8em}
.miss{color:var(--miss);font-weight:600}
.table-wrap{overflow-x:auto;margin:.4em 0 1em;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9rem}
caption{text-align:left;font-weight:600;padding:.3em 0;color:var(--muted)}
th,td{padding:.35em .5em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600;white-space:nowrap}th.num{text-align:right}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
figure{margin:.6em 0 1.2em}figcaption{color:var(--muted);font-size:.85rem}
svg.chart{display:block;width:100%;max-width:760px;height:auto;font-size:13px}
svg .bar.now{fill:var(--now)}svg .bar.before{fill:var(--before)}svg .bar.miss{fill:var(--miss)}
svg .target{stroke:var(--ink);stroke-width:1.5;stroke-dasharray:5 4}
svg .targetlabel,svg .legend,svg .axis,svg .label{fill:var(--muted)}
svg .group{font-weight:600;fill:var(--ink)}svg .value{fill:var(--ink)}
svg .nodata{fill:var(--muted);font-style:italic}
svg .grid{stroke:var(--line)}svg .line{fill:none;stroke-width:2.2}
svg .s1{stroke:#2f6db5;fill:#2f6db5}svg .s2{stroke:#1b7f4b;fill:#1b7f4b}
svg .s3{stroke:#c07a00;fill:#c07a00}svg .s4{stroke:#7b4fb3;fill:#7b4fb3}
svg polyline.line{fill:none}
nav ul{display:flex;flex-wrap:wrap;gap:.3em 1em;padding:0;list-style:none;font-size:.9rem}
a{color:var(--now)}
footer{margin-top:2em;color:var(--muted);font-size:.85rem}
@media (max-width:600px){body{font-size:14px}main{padding:10px}th,td{padding:.3em .35em}}
@media print{
 @page{margin:14mm}
 body{font-size:10.5pt;color:#000}main{max-width:none;padding:0}nav{display:none}
 a{color:#000;text-decoration:none}
 .table-wrap{overflow:visible}
 table,figure,.note{break-inside:avoid;page-break-inside:avoid}
 h2,h3{break-after:avoid;page-break-after:avoid}
 .miss{color:#000;text-decoration:underline}
 svg .bar.now{fill:#555}svg .bar.before{fill:#bbb}svg .bar.miss{fill:#000}
 .note{background:none;border-left:2px solid #000}
}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _html_cell(cell: Cell, tag: str = "td") -> str:
    classes = " ".join(c for c in ("num" if cell.number else "", "miss" if cell.miss else "") if c)
    attr = f' class="{classes}"' if classes else ""
    text = escape(cell.text)
    if cell.link:
        text = f'<a href="{escape(cell.link)}">{text}</a>'
    return f"<{tag}{attr}>{text}</{tag}>"


def to_html(data: dict[str, Any]) -> str:
    title, lead, sections = build_document(data)
    body: list[str] = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="lead">{escape(line)}</p>' for line in lead]
    body.append(
        "<nav><ul>"
        + "".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in sections)
        + "</ul></nav>"
    )
    for section in sections:
        body.append(f'<section id="{section.id}"><h2>{escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Paragraph):
                if block.kind == "subheading":
                    body.append(f"<h3>{escape(block.text)}</h3>")
                else:
                    css = {"note": ' class="note"', "miss": ' class="note miss"'}.get(
                        block.kind, ""
                    )
                    body.append(f"<p{css}>{escape(block.text)}</p>")
            elif isinstance(block, Chart):
                body.append(
                    f"<figure>{block.svg}<figcaption>{escape(block.caption)}</figcaption></figure>"
                )
            else:
                if not block.rows:
                    caption = f"<strong>{escape(block.caption)}</strong>: " if block.caption else ""
                    body.append(f'<p class="note">{caption}{escape(block.empty)}</p>')
                    continue
                rows = "".join(
                    "<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows
                )
                head = "".join(
                    _html_cell(Cell(h, number=bool(i) and _numeric(block, i)), "th")
                    for i, h in enumerate(block.header)
                )
                caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
                body.append(
                    f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
                    f"<tbody>{rows}</tbody></table></div>"
                )
        body.append("</section>")
    body.append(
        f"<footer><p>{MISS} marks a number that misses its target. Numbers come from the "
        "pipeline's stored records (report.json has them all; report.csv has one row per "
        "conversation).</p></footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# ---- JSON, CSV, summary --------------------------------------------------------------------
def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_safe(row.get(k, "")) for k in CSV_COLUMNS})
    return out.getvalue()


def _csv_safe(value: Any) -> Any:
    """Cells a spreadsheet would read as a formula get a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def summary_text(data: dict[str, Any], link: str | None) -> str:
    """A few lines for the SNS message (and an e-mail subject's worth in the first)."""
    period = data["period"]
    volume, sla, csat, drafts = data["volume"], data["sla"], data["csat"], data["drafts"]
    first = sla["targets"]["first_response"]["all"]["met_percent"]
    lines = [
        f"Support report {period['label']} ({period['timezone']}, "
        f"{period['first_day']} to {period['last_day']})",
        "",
        f"Conversations opened: {value_text(volume['opened']['value'], 'count')} "
        f"({change_text(volume['opened'])}); resolved: "
        f"{value_text(volume['resolved']['value'], 'count')}.",
        f"First responses within SLA: {value_text(first['value'], 'percent')}"
        + (f" {MISS} goal {first['target']:g} %" if missed(first) else "")
        + f"; missed targets: {sum(len(b['missed']) for b in sla['breaches'])}.",
        f"Escalations: {value_text(data['escalations']['escalations']['value'], 'count')}"
        f" ({value_text(data['escalations']['rate_percent']['value'], 'percent')} of "
        "conversations with activity).",
        f"CSAT: {value_text(csat['mean']['value'], 'score')} from "
        f"{value_text(csat['responses']['value'], 'count')} answer(s).",
        f"Drafts: {value_text(drafts['drafted']['value'], 'count')} decided, "
        f"{value_text(drafts['outcomes']['sent_as_is']['value'], 'count')} sent as is.",
    ]
    health = data["pipeline_health"]
    depth = health.get("dlq_depth_now")
    lines.append("DLQ now: " + ("not available" if depth is None else f"{depth} message(s)") + ".")
    disagreements = [
        f"account {a['account_id']}: "
        + ", ".join(r["label"] for r in a["comparisons"] if r["disagrees"])
        for a in data["chatwoot"]["accounts"]
        if a.get("disagreements")
    ]
    if disagreements:
        lines.append(f"{MISS} Differs from Chatwoot's own report ({'; '.join(disagreements)}).")
    lines += [f"Note: {note}" for note in data.get("notes") or []]
    if link:
        lines += ["", f"Full report: {link}"]
    return "\n".join(lines) + "\n"
