"""The weekly report's numbers, checked against a week worked out by hand (tests/report_world.py),
a DST week, an empty week, a week with no SLA data and a first week; read without a scan."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import botocore.client
import pytest

from support_pipeline.chatwoot.client import ChatwootClient
from support_pipeline.config import SupportSettings
from support_pipeline.report.builder import Report, ReportBuilder
from support_pipeline.report.health import HealthReader
from support_pipeline.report.period import Period
from support_pipeline.report.settings import ReportSettings
from tests.report_world import (
    POLICY,
    WEEK,
    World,
    at,
    build_week,
    chatwoot_week,
    conversation,
    put_metrics,
)
from tests.support import policy_with


def settings_for(pipeline, chatwoot_url: str = "") -> ReportSettings:
    return ReportSettings(
        conversations_table=pipeline.stack.physical["ConversationsTable"],
        payload_bucket=pipeline.stack.physical["PayloadBucket"],
        events_dlq_url=pipeline.dlq_url,
        support=SupportSettings(
            chatwoot_base_url=chatwoot_url, chatwoot_api_token_param="/x" if chatwoot_url else ""
        ),
    )


def build(pipeline, week: str = WEEK, policy=POLICY, chatwoot=None, health=True) -> Report:
    reader = (
        HealthReader(
            boto3.client("cloudwatch", region_name="us-east-1"),
            pipeline.sqs,
            pipeline.dlq_url,
            clock=pipeline.clock,
        )
        if health
        else None
    )
    client = ChatwootClient(chatwoot.url, lambda: chatwoot.token) if chatwoot else None
    return ReportBuilder(
        pipeline.store(),
        policy,
        settings_for(pipeline, chatwoot.url if chatwoot else ""),
        reader,
        client,
        clock=pipeline.clock,
    ).build(Period.iso_week(week, policy.zone))


@pytest.fixture
def week(pipeline, chatwoot):
    build_week(pipeline)
    chatwoot_week(chatwoot)
    put_metrics(boto3.client("cloudwatch", region_name="us-east-1"))
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody="{}")  # one in the DLQ now
    return build(pipeline, chatwoot=chatwoot)


def values(metric: dict[str, Any]) -> tuple[Any, Any]:
    return metric["value"], metric["previous"]


# ---- SLA ------------------------------------------------------------------------------------
def test_first_response_adherence_and_business_times(week):
    first = week.data["sla"]["targets"]["first_response"]
    overall = first["all"]
    # C1 met (30 min), C2 missed (40 min), C3 met (1 h over the night), C4 missed (unanswered).
    assert values(overall["judged"]) == (4, 1)
    assert (overall["met"], overall["missed"], overall["unanswered_past_due"]) == (2, 2, 1)
    assert values(overall["met_percent"]) == (50.0, 100.0)
    assert overall["met_percent"]["target"] == 95.0
    assert overall["met_percent"]["meets_target"] is False
    assert values(overall["median_business_seconds"]) == (2400, 1200)  # of 1800, 2400, 3600
    assert values(overall["p90_business_seconds"]) == (3600, 1200)
    by_priority = first["by_priority"]
    assert by_priority["high"]["met_percent"]["value"] == 100.0
    assert by_priority["high"]["p90_policy_seconds"]["target"] == 3600  # 1 h target
    assert by_priority["high"]["p90_policy_seconds"]["meets_target"] is True
    assert by_priority["urgent"]["met_percent"]["value"] == 0.0
    assert by_priority["urgent"]["p90_policy_seconds"]["value"] == 2400
    assert by_priority["urgent"]["p90_policy_seconds"]["meets_target"] is False  # over 15 min
    assert by_priority["medium"]["met_percent"]["value"] == 0.0
    assert by_priority["medium"]["median_business_seconds"]["value"] is None  # never answered
    assert by_priority["none"]["median_business_seconds"]["value"] == 3600
    assert by_priority["low"]["met_percent"]["value"] is None  # no data, not 100 %
    teams = {(t["account_id"], t["team_id"]): t for t in first["by_team"]}
    assert teams[("1", "5")]["met_percent"]["value"] == 50.0  # C1 met, C2 missed
    assert teams[("1", "6")]["met_percent"]["value"] == 0.0
    assert teams[("1", None)]["met_percent"]["value"] == 100.0


def test_next_response_and_resolution(week):
    targets = week.data["sla"]["targets"]
    nxt = targets["next_response"]["all"]
    assert values(nxt["judged"]) == (2, 0)
    assert values(nxt["met_percent"]) == (100.0, None)  # W38 had none: no data, not 100 %
    assert values(nxt["median_business_seconds"]) == (900, None)  # of 600 and 1200
    assert nxt["p90_business_seconds"]["value"] == 1200
    resolution = targets["resolution"]["all"]
    # C1 met on Monday (its late second resolution keeps the first verdict), C3 met, C2 overdue.
    assert values(resolution["judged"]) == (3, 1)
    assert (resolution["met"], resolution["unanswered_past_due"]) == (2, 1)
    assert resolution["met_percent"]["value"] == 66.7
    assert resolution["median_business_seconds"]["value"] == 6300  # of 5400 and 7200
    assert resolution["p90_business_seconds"]["value"] == 7200
    assert resolution["p90_policy_seconds"]["value"] == 55800  # wall clock: C3's 15 h 30 min
    assert resolution["measure"] == "wall"


def test_breaches_are_listed_by_conversation_with_a_link(week, chatwoot):
    breaches = week.data["sla"]["breaches"]
    assert [(b["conversation_id"], [m["target"] for m in b["missed"]]) for b in breaches] == [
        ("2", ["first_response", "resolution"]),
        ("4", ["first_response"]),
    ]
    c2 = breaches[0]
    assert c2["link"] == f"{chatwoot.url}/app/accounts/1/conversations/2"
    first = c2["missed"][0]
    assert (first["due_at"], first["answered_at"]) == (at("Tue", "10:15"), at("Tue", "10:40"))
    assert first["late_business_seconds"] == 1500
    assert c2["missed"][1]["answered_at"] is None
    assert breaches[1]["missed"][0]["due_at"] == at("Sat", "11:00")


# ---- escalations, volume, CSAT, drafts ------------------------------------------------------
def test_escalations_by_reason_and_team_and_the_rate(week):
    esc = week.data["escalations"]
    assert values(esc["escalations"]) == (4, 0)
    assert values(esc["conversations_escalated"]) == (3, 0)
    assert values(esc["rate_percent"]) == (75.0, 0.0)  # 3 of 4 conversations; W38 0 of 1
    assert [(r["reason"], r["value"]) for r in esc["by_reason"]] == [
        ("sla_breach", 3),
        ("asks_for_human", 1),
    ]
    assert {(t["team_id"], t["value"]) for t in esc["by_team"]} == {("5", 2), ("6", 1), (None, 1)}


def test_volume_daily_and_by_inbox(week):
    volume = week.data["volume"]
    assert {name: values(volume[name]) for name in ("opened", "resolved", "reopened")} == {
        "opened": (4, 1),
        "resolved": (3, 1),  # C1 twice, C3
        "reopened": (1, 0),
    }
    assert values(volume["messages_in"]) == (6, 1)
    assert values(volume["messages_out"]) == (5, 1)
    assert values(volume["private_notes"]) == (0, 0)
    assert values(volume["active_conversations"]) == (4, 1)
    daily = [
        (d["opened"], d["resolved"], d["messages_in"], d["messages_out"]) for d in volume["daily"]
    ]
    assert daily == [
        (1, 1, 1, 1),
        (1, 0, 2, 2),
        (1, 0, 1, 0),
        (0, 2, 1, 2),
        (1, 0, 1, 0),
        (0, 0, 0, 0),
        (0, 0, 0, 0),
    ]
    assert volume["daily"][0]["date"] == "2026-09-21"
    assert volume["by_inbox"] == [
        {
            "account_id": "1",
            "inbox_id": "1",
            "opened": 2,
            "resolved": 2,
            "messages_in": 4,
            "messages_out": 4,
        },
        {
            "account_id": "1",
            "inbox_id": "2",
            "opened": 2,
            "resolved": 1,
            "messages_in": 2,
            "messages_out": 1,
        },
    ]


def test_csat_counts_one_answer_per_survey(week):
    csat = week.data["csat"]
    assert values(csat["responses"]) == (2, 1)  # C1's 5, C3's 3 (changed from 2)
    assert values(csat["mean"]) == (4.0, 4.0)
    assert csat["distribution"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert csat["previous_distribution"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}


def test_draft_outcomes_ratios_and_grades_against_the_policy(week):
    drafts = week.data["drafts"]
    assert values(drafts["drafted"]) == (5, 1)
    assert {k: v["value"] for k, v in drafts["outcomes"].items()} == {
        "sent_as_is": 1,
        "edited": 1,
        "replaced": 1,
        "rejected": 1,
        "expired": 1,
        "superseded": 0,
    }
    assert values(drafts["not_drafted"]) == (1, 0)
    assert values(drafts["median_edit_ratio"]) == (0.8, 1.0)  # of 1.0, 0.8, 0.2
    assert values(drafts["median_seconds_to_approval"]) == (1500, 780)
    grades = drafts["grades"]
    assert (grades["tone"]["value"], grades["tone"]["target"]) == (4.5, 4.5)
    assert grades["tone"]["meets_target"] is True
    assert (grades["accuracy"]["value"], grades["accuracy"]["meets_target"]) == (4.0, False)
    assert (grades["policy"]["value"], grades["policy"]["meets_target"]) == (4.5, False)
    assert grades["policy"]["previous"] is None  # nothing graded in W38


# ---- pipeline health and Chatwoot ------------------------------------------------------------
def test_pipeline_health_sums_the_functions_metrics_over_the_period(week):
    health = week.data["pipeline_health"]
    assert health["available"] is True
    assert values(health["webhooks_accepted"]) == (40, 10)  # W40's 99 is not counted
    assert values(health["webhooks_rejected"]) == (3, 1)
    assert [
        (r["reason"], r["value"], r["previous"]) for r in health["webhooks_rejected"]["by_reason"]
    ] == [
        ("not json", 0, 1),
        ("signature mismatch", 3, 0),
    ]
    assert values(health["processed"]) == (38, 10)
    assert values(health["retried"]) == (2, 0)
    assert values(health["dead_lettered"]) == (1, 0)
    assert values(health["redriven"]) == (1, 0)
    assert values(health["reconciled"]) == (2, 0)  # the reconciler's EventsReconciled
    assert health["dlq_depth_now"] == 1


def test_without_metrics_health_says_not_available_rather_than_zero(pipeline):
    build_week(pipeline)
    health = build(pipeline).data["pipeline_health"]
    assert health["available"] is False
    assert "not available here" in health["note"].lower()
    assert "webhooks_accepted" not in health
    assert health["dlq_depth_now"] == 0


def test_chatwoot_numbers_beside_ours_and_the_large_disagreement_flagged(week):
    [account] = week.data["chatwoot"]["accounts"]
    assert account["status"] == "ok"
    rows = {r["metric"]: r for r in account["comparisons"]}
    assert (rows["conversations_count"]["chatwoot"], rows["conversations_count"]["ours"]) == (5, 4)
    assert rows["conversations_count"]["disagrees"] is False  # within the slack
    assert rows["incoming_messages_count"]["disagrees"] is True  # 20 against our 6
    assert "lost" in rows["incoming_messages_count"]["why"]
    assert rows["outgoing_messages_count"]["disagrees"] is False
    assert (rows["resolutions_count"]["chatwoot"], rows["resolutions_count"]["ours"]) == (3, 3)
    # Wall-clock means as Chatwoot defines them: (1800 + 2400 + 54000) / 3 and
    # (7200 + 55800 + 264600) / 3, on both sides.
    assert rows["avg_first_response_time"]["ours"] == 19400
    assert rows["avg_first_response_time"]["chatwoot"] == 19400
    assert rows["avg_resolution_time"]["ours"] == rows["avg_resolution_time"]["chatwoot"] == 109200
    assert account["disagreements"] == ["incoming_messages_count"]
    assert account["chatwoot_previous"]["conversations_count"] == 1
    assert account["ours_previous"]["conversations_count"] == 1


def test_a_chatwoot_that_refuses_reports_is_explained_not_fatal(pipeline, chatwoot):
    build_week(pipeline)
    chatwoot.reports_allowed = False
    [account] = build(pipeline, chatwoot=chatwoot).data["chatwoot"]["accounts"]
    assert account["status"] == "refused" and "administrator" in account["note"]


def test_no_chatwoot_configured_means_nothing_to_compare(pipeline):
    build_week(pipeline)
    section = build(pipeline).data["chatwoot"]
    assert section["available"] is False and section["accounts"] == []


# ---- outputs --------------------------------------------------------------------------------
def test_the_csv_has_one_row_per_conversation_of_the_week(week, chatwoot):
    rows = list(csv.DictReader(io.StringIO(week.files()["report.csv"].decode())))
    assert [r["conversation_id"] for r in rows] == ["1", "2", "3", "4"]
    c1, c2, c3, c4 = rows
    assert c1["opened_at"] == "2026-09-21T09:00-05:00"
    assert c1["first_response_business_seconds"] == "1800"
    assert (c1["first_response_sla"], c1["resolution_sla"], c1["csat"]) == ("met", "met", "5")
    assert (c1["next_response_met"], c1["reopened_count"]) == ("1", "1")
    assert c1["draft_outcomes"] == "sent_as_is"
    assert (c2["first_response_sla"], c2["resolution_sla"]) == ("missed", "missed")
    assert c2["escalation_reasons"] == "sla_breach" and c2["draft_outcomes"] == "edited;replaced"
    assert c2["link"] == f"{chatwoot.url}/app/accounts/1/conversations/2"
    assert c3["escalation_reasons"] == "asks_for_human" and c3["csat"] == "3"
    assert c3["first_response_business_seconds"] == "3600"
    assert c3["resolution_business_seconds"] == "5400"
    assert (c4["first_response_sla"], c4["first_response_at"], c4["status"]) == (
        "missed",
        "",
        "open",
    )


def test_json_markdown_and_html_say_the_same(week, chatwoot):
    files = week.files()
    data = json.loads(files["report.json"])
    assert data["schema"] == "support-pipeline/report" and data["schema_version"] == 1
    assert data["period"]["label"] == "2026-W39" and data["period"]["hours"] == 168
    markdown, html = files["report.md"].decode(), files["report.html"].decode()
    assert "# Support report 2026-W39" in markdown
    assert "⚠ 50.0 % (2 of 4) (misses target)" in markdown
    assert "⚠ 50.0 % (2 of 4) (misses target)" in html
    for chart in ("chart-sla", "chart-volume", "chart-escalations", "chart-drafts"):
        assert f'id="{chart}"' in html
    # Self-contained: no script, no source to fetch; links go to sections or into Chatwoot.
    assert "<script" not in html and "src=" not in html and "url(" not in html
    assert "@import" not in html
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("#") or href.startswith(f"{chatwoot.url}/app/accounts/1/"), href


def test_the_report_reads_by_key_and_never_scans(pipeline, monkeypatch):
    build_week(pipeline)
    calls: list[tuple[str, dict[str, Any]]] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((operation, params))
        return original(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    build(pipeline, health=False)
    operations = {op for op, _ in calls}
    assert operations <= {"Query", "GetItem"}, operations
    queries = [p for op, p in calls if op == "Query"]
    by_day = [q for q in queries if q.get("IndexName") == "ByAccountDay"]
    assert len(by_day) == 14  # one per account and day: the 7 days and the 7 before
    assert all(q.get("IndexName") in (None, "ByAccountDay") for q in queries)


# ---- hard weeks -----------------------------------------------------------------------------
def test_an_empty_week_is_a_clear_report_with_no_fake_percentages(pipeline):
    report = build(pipeline, week="2026-W41")
    data = report.data
    assert data["has_previous"] is False and data["conversations"] == 0
    assert any("Nothing was recorded in this period" in n for n in data["notes"])
    for target in data["sla"]["targets"].values():
        assert target["all"]["met_percent"]["value"] is None
        assert target["all"]["judged"]["value"] == 0
    assert data["volume"]["opened"]["value"] == 0 and data["volume"]["opened"]["previous"] is None
    assert data["escalations"]["rate_percent"]["value"] is None
    assert data["csat"]["mean"]["value"] is None
    assert data["drafts"]["median_edit_ratio"]["value"] is None
    html = report.files()["report.html"].decode()
    assert "100.0 %" not in html and "no data" in html
    assert report.files()["report.csv"].decode().count("\n") == 1  # the header only
    assert "Nothing was recorded" in report.summary()


def test_a_first_week_has_no_comparison_and_says_why(pipeline):
    world = World(pipeline)
    conv = conversation(at("Mon", "09:00"), 1, 5, "high")
    world.customer(1, 1001, at("Mon", "09:00"), conv)
    world.agent(1, 1002, at("Mon", "09:20"), conv, at("Mon", "09:20"))
    data = build(pipeline).data
    assert data["has_previous"] is False
    assert any("no comparison" in n for n in data["notes"])
    first = data["sla"]["targets"]["first_response"]["all"]
    assert values(first["met_percent"]) == (100.0, None)
    assert first["met_percent"]["change"] is None
    assert values(data["volume"]["opened"]) == (1, None)


def test_a_week_with_conversations_but_no_sla_data(pipeline):
    world = World(pipeline)
    conv = conversation(at("Mon", "09:00"), 1, 5, "high")
    world.customer(1, 1001, at("Mon", "09:00"), conv)  # nobody answers, no sweep ran
    data = build(pipeline).data
    assert data["volume"]["opened"]["value"] == 1
    assert any("No SLA target was met or missed" in n for n in data["notes"])
    assert all(t["all"]["met_percent"]["value"] is None for t in data["sla"]["targets"].values())
    assert data["sla"]["breaches"] == []


NEW_YORK = ZoneInfo("America/New_York")
DST_POLICY = policy_with(timezone="America/New_York")


def ny(day: str, hhmm: str, fold: int = 0) -> float:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=NEW_YORK, fold=fold).timestamp()


def test_a_dst_week_has_169_hours_and_local_days(pipeline):
    """2026-W44 in New York: clocks go back at 02:00 on Sunday 1 November."""
    world = World(pipeline, DST_POLICY)
    # Two conversations at 01:30 on Sunday: before and after the clocks went back.
    for cid, fold in ((1, 0), (2, 1)):
        created = ny("2026-11-01", "01:30", fold)
        world.customer(cid, 100 + cid, created, conversation(created, 1, None, None))
    # Just outside the week on both sides (local time).
    before = ny("2026-10-25", "23:30")
    world.customer(3, 103, before, conversation(before, 1, None, None))
    after = ny("2026-11-02", "00:30")
    world.customer(4, 104, after, conversation(after, 1, None, None))
    # Resolved a day later on the clock: 25 hours of wall time across the change.
    opened = ny("2026-10-31", "12:00")
    conv = conversation(opened, 1, None, None)
    world.customer(5, 105, opened, conv)
    world.agent(5, 106, ny("2026-10-31", "12:30"), conv, ny("2026-10-31", "12:30"))
    world.status(5, "resolved", ny("2026-11-01", "12:00"), conv, ny("2026-10-31", "12:30"))

    report = build(pipeline, week="2026-W44", policy=DST_POLICY)
    data = report.data
    period = data["period"]
    assert period["hours"] == 169 and len(period["days"]) == 7
    assert period["start"] == "2026-10-26T00:00:00-04:00"
    assert period["end"] == "2026-11-02T00:00:00-05:00"
    assert period["clock_changes"] == ["clocks went back 1 h on 2026-11-01 (that day had 25 hours)"]
    daily = {d["date"]: d["opened"] for d in data["volume"]["daily"]}
    assert daily["2026-11-01"] == 2 and daily["2026-10-31"] == 1 and sum(daily.values()) == 3
    assert data["volume"]["opened"]["previous"] == 1  # Sunday 25 October, 23:30
    resolution = data["sla"]["targets"]["resolution"]["all"]
    assert resolution["p90_policy_seconds"]["value"] == 25 * 3600  # wall clock
    assert resolution["median_business_seconds"]["value"] == 3600  # Saturday 12:00-13:00
    first = data["sla"]["targets"]["first_response"]["all"]
    assert first["median_business_seconds"]["value"] == 1800
    rows = list(csv.DictReader(io.StringIO(report.files()["report.csv"].decode())))
    assert [r["opened_at"] for r in rows if r["conversation_id"] in ("1", "2")] == [
        "2026-11-01T01:30-04:00",
        "2026-11-01T01:30-05:00",
    ]
    assert "clocks went back" in report.files()["report.md"].decode()
