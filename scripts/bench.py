"""`make bench`: measure the numbers docs/benchmarks.md reports, with a progress line per step
on stderr. Results go to .bench/results.md (untracked); `--write-docs` (`make bench-docs`) also
rewrites docs/benchmarks.md.

1. Cold import of the ingest handler module against `import boto3` alone (target <= 1.3x),
   each in a fresh interpreter, median of N runs.
2. Warm ingest handler time per request, with a stubbed queue client (no network).
3. Processor throughput: events per second through the real consumer under moto (in-process).
4. Knowledge drafter: index build time for a generated knowledge base of 1,000 articles, and
   warm draft latency per message (median, p95) once the index is built, for FTS5 and for the
   pure-Python fallback. `--only knowledge` runs just this one and prints its section.
5. Weekly report: build time for a week of 1,000 conversations (and 1,000 the week before)
   stored as the pipeline stores them, under moto in-process. `--only report` prints it.
6. Local stack end to end (scripts/bench_local.py): `support-pipeline local` under the load
   command's mix through its HTTP front; `--only local --write-docs` rewrites only
   that section (between its markers) and docs/measurements/local-stack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "common"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SupportPipeline")

IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)


def cold_import(module: str, extra_path: str | None, runs: int) -> float:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_SNIPPET.format(module=module)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(float(out.strip()))
    return statistics.median(samples) * 1000


class StubQueue:
    """Accepts send_message like SQS would, without a network."""

    def __init__(self) -> None:
        self.sent = 0

    def send_message(self, **_: object) -> dict[str, str]:
        self.sent += 1
        return {"MessageId": str(self.sent)}


def warm_ingest(requests: int) -> dict[str, float]:
    from tests.support import SECRET, fixture, webhook_event

    from support_pipeline.config import IngestSettings
    from support_pipeline.ingest import IngestService, WebhookRequest, WebhookSecrets
    from support_pipeline.telemetry import RecordingTelemetry

    clock = lambda: 1790475400.0  # noqa: E731 - the fixtures' time, so signatures are fresh
    queue = StubQueue()
    service = IngestService(
        settings=IngestSettings(
            events_queue_url="https://stub/queue",
            webhook_secret_param="/stub",  # noqa: S106 - a parameter name, not a secret
        ),
        sqs=queue,
        secrets=WebhookSecrets(lambda force: SECRET, clock=clock),
        telemetry=RecordingTelemetry(),
        clock=clock,
    )
    event = webhook_event(fixture("message_created_incoming"))
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    for _ in range(50):
        service.handle(WebhookRequest.from_api_gateway(event))
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        answer = service.handle(WebhookRequest.from_api_gateway(event))
        samples.append((time.perf_counter() - start) * 1e6)
        assert answer.status == 202
    samples.sort()
    return {
        "requests": requests,
        "mean_us": statistics.fmean(samples),
        "p50_us": samples[len(samples) // 2],
        "p99_us": samples[int(len(samples) * 0.99)],
    }


def processor_throughput(events: int) -> dict[str, float]:
    from moto import mock_aws
    from tests.support import fixture, new_pipeline

    with mock_aws():
        pipeline = new_pipeline()
        service = pipeline.ingest()
        base = fixture("message_created_incoming")
        for i in range(events):
            payload = json.loads(json.dumps(base))
            payload["id"] = 10_000 + i
            payload["conversation"]["id"] = 1 + i % 50
            status, _ = pipeline.post(payload, service=service, delivery_id=f"bench-{i}")
            assert status == 202
        consumer = pipeline.consumer()
        start = time.perf_counter()
        processed = pipeline.drain(consumer, max_batches=events)
        elapsed = time.perf_counter() - start
        assert processed == events, processed
        assert pipeline.messages(pipeline.dlq_url) == []
    return {"events": events, "seconds": elapsed, "events_per_second": events / elapsed}


def calls_per_event(conversations: int) -> dict[str, Any]:
    """DynamoDB calls per processed event on the realistic mix, by operation (botocore hooks)."""
    from moto import mock_aws
    from tests.support import new_pipeline, support_mix

    from support_pipeline.drafts.knowledge import KnowledgeDrafter
    from support_pipeline.policy import load_default_policy
    from support_pipeline_ops.measure import counting

    with mock_aws():
        pipeline = new_pipeline()
        policy = load_default_policy()
        drafter = KnowledgeDrafter(policy.drafts.knowledge)
        consumer = pipeline.consumer(policy=policy, drafters=lambda inbox: drafter)
        payloads = support_mix(conversations)
        for i, payload in enumerate(payloads):
            assert pipeline.post(payload, delivery_id=f"mix-{i}")[0] == 202
        with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
            events = pipeline.drain(consumer, max_batches=10_000)
            pipeline.end_delays()
            events += pipeline.drain(consumer, max_batches=10_000)
    total = sum(calls.values())
    return {
        "conversations": conversations,
        "webhooks": len(payloads),
        "events": events,
        "calls": total,
        "per_event": total / events,
        "by_operation": dict(sorted(calls.items())),
    }


def sweep_costs(sizes: list[int]) -> list[dict[str, Any]]:
    """Calls and time of one SLA sweep over ``size`` open conversations, none due and 1% due."""
    from moto import mock_aws
    from tests.support import NOW, incoming, new_pipeline

    from support_pipeline.conversations import extract_facts, merge
    from support_pipeline.policy import load_default_policy
    from support_pipeline.processing.router import EventContext
    from support_pipeline.sla import SlaSweep
    from support_pipeline.store import RECORD_SK, conversation_pk
    from support_pipeline_ops.measure import counting

    policy = load_default_policy()
    rows = []
    for size in sizes:
        for due_share in (0.0, 0.01):
            with mock_aws():
                pipeline = new_pipeline()
                support = pipeline.support(None, policy)
                table = pipeline.dynamodb.Table(pipeline.stack.physical["ConversationsTable"])
                pipeline.store().register_account("1")
                due_count = int(size * due_share)
                with table.batch_writer() as batch:
                    for n in range(1, size + 1):
                        # the due ones were opened two days ago: their first response is late
                        at = NOW - 2 * 86400 if n <= due_count else NOW - 60
                        payload = incoming("Hola", n, at, n, status="open", created_at=at)
                        facts = extract_facts(EventContext("message_created", payload, f"k{n}"), at)
                        record = merge(None, facts)
                        record.update(support.sla.due_fields(record))
                        record.update(pk=conversation_pk("1", str(n)), sk=RECORD_SK, revision=1)
                        batch.put_item(Item=to_dynamo_item(record))
                sweep = SlaSweep(support.sla, pipeline.telemetry, drafts=support.drafts)
                with counting(pipeline.clients["dynamodb"], pipeline.dynamodb) as calls:
                    start = time.perf_counter()
                    result = sweep.run(NOW)
                    seconds = time.perf_counter() - start
                assert result["conversations"] == due_count, (result, due_count)
            rows.append(
                {
                    "open": size,
                    "due": due_count,
                    "calls": sum(calls.values()),
                    "seconds": seconds,
                    "by_operation": dict(sorted(calls.items())),
                }
            )
    return rows


def to_dynamo_item(record: dict[str, Any]) -> dict[str, Any]:
    from support_pipeline.store import to_dynamo

    return {k: v for k, v in to_dynamo(record).items() if v is not None}


def render_sweep(rows: list[dict[str, Any]]) -> str:
    lines = "\n".join(
        f"| {r['open']:,} | {r['due']} | {r['calls']} | {r['seconds']:.2f} |" for r in rows
    )
    return f"""## 5. SLA sweep cost

One sweep (dry run, shipped policy) over open conversations written straight into moto, with
none due and with 1% due (opened two days ago, first response late). Calls counted at botocore.

| open conversations | due | DynamoDB calls | seconds (moto) |
| ---: | ---: | ---: | ---: |
{lines}

With nothing due a sweep makes the same few calls (the sweep lease, the accounts list, one
`DueConversations` query per account, the pending-drafts query, the lease release) whatever the
number of open conversations. Each due conversation adds its own work: its record read again
before acting and after (the index lags; the move is conditional on what was read), the SLA
state, the actions, and one write moving its next due moment on. Before the due index, a sweep
read every open conversation and its timeline: 9 + 2.7 calls per open conversation on every run.

"""


def render_calls(c: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {op} | {n} | {n / c['events']:.2f} |" for op, n in c["by_operation"].items()
    )
    return f"""## 4. DynamoDB calls per processed event

The realistic mix, through the real processor under moto with the shipped policy (drafts on,
knowledge drafter, dry run): {c["conversations"]} conversations, each three customer messages,
two agent replies and one resolution ({c["webhooks"]} webhooks), plus the pipeline's own
`draft_due` events: {c["events"]} events in all. Counted at botocore by operation; a test
(tests/integration/test_call_budget.py) holds the budget of 4.

| operation | calls | per event |
| --- | ---: | ---: |
{rows}
| **all** | **{c["calls"]}** | **{c["per_event"]:.2f}** |

Per webhook event: one consistent `GetItem` of the conversation record and one
`TransactWriteItems` (the merged record, the event's timeline item, which is its dedupe record,
and for a new conversation the account's registration), then one `UpdateItem` marking the event
handled. A person's reply or a resolution adds a `PutItem` per SLA target it met. Nothing else
reads: SLA clocks and the unanswered-messages rule use marks kept on the record, and the
record is shared between handlers. Before this, the same mix cost 8.4 calls per event.

"""


SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "no", "ri", "gan", "pe", "dor", "li", "ta"]


def generated_knowledge_base(folder: Path, articles: int, seed: int = 7) -> list[tuple[str, str]]:
    """``articles`` Markdown files (half Spanish, half English) in ``folder``, written from the
    example knowledge base's words plus invented product words; returns (language, question)
    pairs drawn from their passages."""
    import random
    import re

    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    shipped = ROOT / "layers" / "common" / "support_pipeline" / "knowledge"
    words = {
        lang: re.findall(
            r"[^\W\d_]{2,}", "\n".join(p.read_text() for p in (shipped / lang).glob("*.md"))
        )
        for lang in ("es", "en")
    }
    invented = [
        "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(3000)
    ]

    def word(lang: str) -> str:
        if rng.random() < 0.7:
            return rng.choice(words[lang])
        return invented[min(int(rng.paretovariate(1.2)) - 1, len(invented) - 1)]

    def phrase(lang: str, n: int) -> str:
        return " ".join(word(lang) for _ in range(n))

    questions = []
    for i in range(articles):
        lang = "es" if i % 2 == 0 else "en"
        sections = []
        for _ in range(4):
            paragraphs = [phrase(lang, rng.randint(40, 70)) + "." for _ in range(2)]
            sections.append(
                f"## {phrase(lang, rng.randint(2, 4)).capitalize()}\n\n" + "\n\n".join(paragraphs)
            )
            if rng.random() < 0.06:
                asked = " ".join(rng.sample(paragraphs[0].split(), 4))
                questions.append((lang, f"Hola, ¿{asked}?" if lang == "es" else f"Hi, {asked}?"))
        text = f"# {phrase(lang, rng.randint(3, 5)).capitalize()}\n\n" + "\n\n".join(sections)
        path = folder / lang / f"article-{i:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return questions


def knowledge_drafter(articles: int, questions: int, builds: int) -> dict[str, Any]:
    import tempfile

    from support_pipeline.drafts import knowledge
    from support_pipeline.drafts.base import DraftContext, KnowledgeSettings

    results: dict[str, Any] = {"articles": articles, "questions": questions, "builds": builds}
    knowledge.clear_cache()
    start = time.perf_counter()
    shipped = knowledge.load_index(KnowledgeSettings())
    results["shipped_build_ms"] = (time.perf_counter() - start) * 1000
    results["shipped_articles"] = shipped.articles
    results["fts5_available"] = knowledge.fts5_available()
    with tempfile.TemporaryDirectory() as tmp:
        asked = generated_knowledge_base(Path(tmp), articles)
        asked = (asked * (questions // max(1, len(asked)) + 1))[:questions]
        settings = KnowledgeSettings(path=tmp, max_passages=3)
        backends = ["fts5", "python"] if knowledge.fts5_available() else ["python"]
        for backend in backends:
            times = []
            for _ in range(builds):
                knowledge.clear_cache()  # a fresh process: no index, no stem memo
                start = time.perf_counter()
                index = knowledge.load_index(settings, backend=backend)
                times.append(time.perf_counter() - start)
            drafter = knowledge.KnowledgeDrafter(settings, backend=backend)
            contexts = [
                DraftContext("1", str(i), q, language=lang if i % 2 else None)
                for i, (lang, q) in enumerate(asked)
            ]
            for context in contexts[:20]:
                drafter.draft(context)
            samples = []
            drafted = 0
            for context in contexts:
                start = time.perf_counter()
                result = drafter.draft(context)
                samples.append((time.perf_counter() - start) * 1000)
                drafted += result.text is not None
            samples.sort()
            results[backend] = {
                "passages": index.passages,
                "build_s": statistics.median(times),
                "draft_p50_ms": statistics.median(samples),
                "draft_p95_ms": samples[int(len(samples) * 0.95)],
                "draft_max_ms": samples[-1],
                "drafted": drafted,
            }
    knowledge.clear_cache()
    return results


def render_knowledge(k: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {backend} | {k[backend]['passages']} | {k[backend]['build_s']:.2f} "
        f"| {k[backend]['draft_p50_ms']:.2f} | {k[backend]['draft_p95_ms']:.2f} "
        f"| {k[backend]['draft_max_ms']:.2f} |"
        for backend in ("fts5", "python")
        if backend in k
    )
    return f"""## 6. Knowledge drafter

Index build (median of {k["builds"]}, each as in a fresh process: parse, stem, index) for a
generated knowledge base of {k["articles"]:,} Markdown articles (half Spanish, half English, four
sections each), and warm draft latency (language, stems, search, compose) over {k["questions"]}
questions drawn from its passages. The shipped example knowledge base ({k["shipped_articles"]}
articles) builds in {k["shipped_build_ms"]:.0f} ms. FTS5 available here: {k["fts5_available"]}.

| backend | passages | build s | draft p50 ms | draft p95 ms | draft max ms |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}

"""


def seed_report_weeks(table: Any, conversations: int, zone: Any) -> None:
    """Two weeks of stored items in the pipeline's shapes: per conversation a record, six
    messages, first-response and resolution outcomes, a draft; some escalations and CSAT."""
    import random
    from datetime import timedelta

    from support_pipeline.chatwoot.payload import iso
    from support_pipeline.store import account_day, timeline_sk, to_dynamo

    rng = random.Random(11)  # noqa: S311 - invented data, not security
    monday = datetime(2026, 9, 14, tzinfo=zone)  # W38, then W39
    with table.batch_writer() as batch:  # seeding the bench's table, not the report
        for n in range(1, 2 * conversations + 1):
            week = 0 if n <= conversations else 1
            created = (monday + timedelta(days=7 * week + rng.random() * 6.5)).timestamp()
            first = created + rng.randint(60, 6 * 3600)
            resolved = first + rng.randint(600, 2 * 86400)
            cid, pk = str(n), f"CONV#1#{n}"
            team, priority = str(rng.choice([5, 6, 7])), rng.choice(["high", "medium", "none"])

            def put(
                item: dict[str, Any],
                at: float,
                key: str,
                pk: str = pk,
                cid: str = cid,
                team: str = team,
                priority: str = priority,
            ) -> None:
                batch.put_item(
                    Item=to_dynamo(
                        {
                            "pk": pk,
                            "sk": timeline_sk(iso(at), key),
                            "account_id": "1",
                            "conversation_id": cid,
                            "occurred_at": iso(at),
                            "account_day": account_day("1", at, zone),
                            "occurred_key": f"{iso(at)}#{cid}",
                            "team_id": team,
                            "priority": priority,
                            **item,
                        }
                    )
                )

            batch.put_item(
                Item=to_dynamo(
                    {
                        "pk": pk,
                        "sk": "RECORD",
                        "account_id": "1",
                        "conversation_id": cid,
                        "created_at": created,
                        "first_reply_created_at": first,
                        "status": "resolved",
                        "status_points": [[created, "open"], [resolved, "resolved"]],
                        "resolved_at": resolved,
                        "priority": priority,
                        "team_id": team,
                        "inbox_id": str(rng.choice([1, 2])),
                        "reopened_count": 0,
                    }
                )
            )
            for m in range(6):
                at = created + m * (first - created + 60)
                kind = "incoming" if m % 2 == 0 else "outgoing"
                put(
                    {
                        "kind": "event",
                        "event": "message_created",
                        "message_id": f"{n}{m}",
                        "message_type": kind,
                        "private": False,
                        "sender_type": "Contact" if kind == "incoming" else "User",
                    },
                    at,
                    f"m:{n}:{m}",
                )
            for target, met_at, limit in (
                ("first_response", first, 4 * 3600),
                ("resolution", resolved, 3 * 86400),
            ):
                put(
                    {
                        "kind": "sla_outcome",
                        "event": "sla_outcome",
                        "target": target,
                        "met": met_at - created <= limit,
                        "due_at": iso(created + limit),
                        "started_at": iso(created),
                        "measured_seconds": int(met_at - created),
                        "threshold_seconds": limit,
                        "business_only": target == "first_response",
                    },
                    met_at,
                    f"o:{n}:{target}",
                )
            if rng.random() < 0.2:
                put({"kind": "escalation", "reasons": ["asks_for_human"]}, created + 5, f"e:{n}")
            put(
                {
                    "kind": "draft",
                    "outcome": rng.choice(["sent_as_is", "edited", "replaced", "rejected"]),
                    "edit_ratio": round(rng.random(), 2),
                    "seconds_to_decision": rng.randint(30, 3000),
                },
                first,
                f"d:{n}",
            )
            if rng.random() < 0.3:
                put({"kind": "csat", "rating": rng.randint(1, 5)}, resolved + 60, f"c:{n}")
        batch.put_item(Item={"pk": "ACCOUNTS", "sk": "ACCOUNT#1", "account_id": "1"})


class MemoryStore:
    """The store's read calls over items held in memory: the report's own cost, no AWS."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.days: dict[str, list[dict[str, Any]]] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.timelines: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in sorted(items, key=lambda i: str(i.get("occurred_key", ""))):
            key = (str(item.get("account_id")), str(item.get("conversation_id")))
            if item["sk"] == "RECORD":
                self.records[key] = item
            elif str(item["sk"]).startswith("EVENT#"):
                self.timelines.setdefault(key, []).append(item)
            if "account_day" in item:
                self.days.setdefault(str(item["account_day"]), []).append(item)

    def accounts(self) -> list[str]:
        return ["1"]

    def events_on_day(self, account: str, day: str) -> list[dict[str, Any]]:
        return list(self.days.get(f"{account}#{day}", []))

    def get_record(self, account: str, conversation: str) -> dict[str, Any] | None:
        return self.records.get((account, conversation))

    def timeline(self, account: str, conversation: str) -> list[dict[str, Any]]:
        return list(self.timelines.get((account, conversation), []))


def report_build(conversations: int, runs: int = 3) -> dict[str, Any]:
    """The report of a week of ``conversations`` conversations: once against moto (with the
    AWS calls it makes counted), then its own computing and rendering over the same items in
    memory (median of ``runs``)."""
    from collections import Counter

    import boto3
    from moto import mock_aws

    from support_pipeline.policy import load_default_policy
    from support_pipeline.report.builder import ReportBuilder
    from support_pipeline.report.period import Period
    from support_pipeline.report.settings import ReportSettings
    from support_pipeline.store import ConversationStore, from_dynamo
    from support_pipeline_ops.local import template as cfn

    policy = load_default_policy()
    week = Period.iso_week("2026-W39", policy.zone)
    with mock_aws():
        clients = {n: boto3.client(n) for n in ("sqs", "dynamodb", "s3", "ssm")}
        stack = cfn.provision(cfn.load(ROOT / "template.yaml"), clients, stack_name="bench")
        name = stack.physical["ConversationsTable"]
        dynamodb = boto3.resource("dynamodb")
        seed_report_weeks(dynamodb.Table(name), conversations, policy.zone)
        calls: Counter[str] = Counter()
        dynamodb.meta.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: calls.update([model.name])
        )
        settings = ReportSettings(conversations_table=name)
        started = time.perf_counter()
        report = ReportBuilder(ConversationStore(dynamodb, name), policy, settings).build(week)
        moto_s = time.perf_counter() - started
        made = dict(calls)
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {}
        while True:  # the bench copies its table into memory; the report never scans
            page = dynamodb.Table(name).scan(**request)
            items += [from_dynamo(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    memory = MemoryStore(items)
    build_s, render_s = [], []
    for _ in range(runs):
        started = time.perf_counter()
        report = ReportBuilder(memory, policy, settings).build(week)  # type: ignore[arg-type]
        build_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        files = report.files()
        render_s.append(time.perf_counter() - started)
    return {
        "conversations": conversations,
        "rows": len(report.rows),
        "moto_s": moto_s,
        "calls": made,
        "compute_s": statistics.median(build_s),
        "render_s": statistics.median(render_s),
        "html_kib": len(files["report.html"]) / 1024,
        "runs": runs,
    }


def render_report(r: dict[str, Any]) -> str:
    calls = r["calls"]
    return f"""## 7. Weekly report

The report of one week with {r["conversations"]:,} conversations (and as many the week before,
for the comparison), stored as the pipeline stores them: a record, six messages, first-response
and resolution outcomes and a draft each, some escalations and CSAT answers.

| conversations | CSV rows | DynamoDB calls | computing s | rendering s | report.html KiB |
| ---: | ---: | --- | ---: | ---: | ---: |
| {r["conversations"]:,} | {r["rows"]:,} | {calls.get("Query", 0)} Query, \
{calls.get("GetItem", 0):,} GetItem | {r["compute_s"]:.2f} | {r["render_s"]:.2f} | \
{r["html_kib"]:.0f} |

Computing and rendering are the report's own cost (median of {r["runs"]}, over the same items held
in memory). The reads are 14 day queries (pages of up to 1 MB) and one GetItem per
conversation of both weeks: at DynamoDB's few milliseconds a call, about ten seconds for this
week, well inside `WeeklyReportTimeoutSeconds`. Against in-process moto, whose queries over an
index cost seconds each, the whole build took {r["moto_s"]:.0f} s: a floor for regression
tracking, not a production figure.

"""


def render(results: dict) -> str:
    cold, warm, proc = results["cold_import"], results["warm_ingest"], results["processor"]
    verdict = "meets" if cold["ratio"] <= 1.3 else "MISSES"
    calls_section = render_calls(results["calls"]) if "calls" in results else ""
    calls_section += render_sweep(results["sweep"]) if "sweep" in results else ""
    knowledge_section = render_knowledge(results["knowledge"]) if "knowledge" in results else ""
    report_section = render_report(results["report"]) if "report" in results else ""
    return f"""# Benchmarks

Measured by `make bench-docs` (scripts/bench.py --write-docs), which rewrites this file. Numbers
are from one run on the machine named below; compare runs on the same machine only.

- Machine: {results["machine"]}
- Python: {results["python"]}
- Date: {results["date"]}

## 1. Cold import of the ingest handler

Fresh interpreter per sample, median of {cold["runs"]} runs: `import boto3` alone against
`import app` for functions/ingest (which itself needs boto3, Powertools Logger and Metrics and
the ingest code; the processor's libraries are never imported by ingest).

| what | median ms |
| --- | ---: |
| `import boto3` | {cold["boto3_ms"]:.1f} |
| ingest handler module | {cold["ingest_ms"]:.1f} |
| ratio (target <= 1.3x) | {cold["ratio"]:.2f}x ({verdict} the target) |

## 2. Warm ingest, per request

The real `IngestService` (signature check, JSON parse, dedupe key, attributes) with a stubbed
queue client, after 50 warm-up requests; {warm["requests"]} signed `message_created` deliveries.

| mean µs | p50 µs | p99 µs |
| ---: | ---: | ---: |
| {warm["mean_us"]:.0f} | {warm["p50_us"]:.0f} | {warm["p99_us"]:.0f} |

This excludes the SendMessage round trip (a few ms inside AWS), which dominates on Lambda.

## 3. Processor throughput under moto

{proc["events"]} queued `message_created` events over 50 conversations, drained through the real
consumer (Powertools batch, conversation record and timeline in one transaction, SLA,
escalation and draft handlers) by the local poller in batches of 10, all against in-process
moto.

| events | seconds | events/second |
| ---: | ---: | ---: |
| {proc["events"]} | {proc["seconds"]:.2f} | {proc["events_per_second"]:.0f} |

moto is far slower than DynamoDB and SQS per call, so this is a floor for regression tracking,
not a production capacity figure. Actions run as dry runs.

{calls_section}{knowledge_section}{report_section}## Reproduce

```
make bench            # installs .venv if needed, measures; results in .bench/results.md
make bench-docs       # the same, and rewrites docs/benchmarks.md (commit it on purpose)
.venv/bin/python scripts/bench.py --runs 21 --requests 5000 --events 500   # more samples
.venv/bin/python scripts/bench.py --only knowledge   # the knowledge drafter alone, printed
.venv/bin/python scripts/bench.py --only calls       # DynamoDB calls per event, printed
.venv/bin/python scripts/bench.py --only sweep       # SLA sweep cost at 100/1,000/10,000
.venv/bin/python scripts/bench.py --only report      # the weekly report alone, printed
.venv/bin/python scripts/bench.py --only local --write-docs  # local stack alone, into the docs
```
"""


KEPT_MARKER = (
    "<!-- Sections below are measured by other steps (CI, sam local); make bench keeps them. -->"
)


def kept_sections(target: Path) -> str:
    """What follows KEPT_MARKER in the current file: numbers this script does not measure."""
    text = target.read_text() if target.exists() else ""
    at = text.find(KEPT_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


def cold_imports(runs: int) -> dict[str, Any]:
    boto3_ms = cold_import("boto3", None, runs)
    ingest_path = os.pathsep.join(
        [str(ROOT / "functions" / "ingest"), str(ROOT / "layers" / "common")]
    )
    ingest_ms = cold_import("app", ingest_path, runs)
    return {
        "runs": runs,
        "boto3_ms": boto3_ms,
        "ingest_ms": ingest_ms,
        "ratio": ingest_ms / boto3_ms,
    }


# (results key, what it measures, how): `make bench` runs them in this order, one progress
# line on stderr as each starts and ends.
STEPS: list[tuple[str, str, Any]] = [
    ("cold_import", "cold import of the ingest handler", lambda a: cold_imports(a.runs)),
    ("warm_ingest", "warm ingest per request", lambda a: warm_ingest(a.requests)),
    ("processor", "processor throughput under moto", lambda a: processor_throughput(a.events)),
    ("calls", "DynamoDB calls per event", lambda a: calls_per_event(a.conversations)),
    ("sweep", "SLA sweep cost at 100/1,000/10,000", lambda a: sweep_costs([100, 1000, 10000])),
    (
        "knowledge",
        "knowledge drafter",
        lambda a: knowledge_drafter(a.articles, a.questions, a.builds),
    ),
    ("report", "weekly report build", lambda a: report_build(a.report_conversations)),
]
RESULTS = ROOT / ".bench" / "results.md"
DOCS = ROOT / "docs" / "benchmarks.md"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every step's results, saying on stderr which step runs and how long each took."""
    results: dict[str, Any] = {
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.system()} {platform.release()}"
        ),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    began = time.perf_counter()
    for number, (key, title, step) in enumerate(STEPS, 1):
        print(f"bench: [{number}/{len(STEPS)}] {title} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results[key] = step(args)
        print(
            f"bench: [{number}/{len(STEPS)}] {title}: done in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    print(f"bench: all done in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    return results


def run_local(args: argparse.Namespace, section_into: Path | None) -> dict[str, Any]:
    """The local stack end to end (scripts/bench_local.py): its section goes between its markers
    in ``section_into``; its raw figures next to the docs (docs/measurements/local-stack.json,
    which scripts/cost.py reads) only with --write-docs, else to .bench/."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_local

    measurement = (
        args.docs.parent / "measurements" / "local-stack.json" if args.write_docs else None
    )
    return bench_local.run(args.load_events, args.load_concurrency, section_into, measurement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["knowledge", "calls", "sweep", "report", "local"],
        help="run one measurement and print it",
    )
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--report-conversations", type=int, default=1000)
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where the markdown results go (default: .bench/results.md, untracked)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="also rewrite --docs (docs/benchmarks.md): `make bench-docs`",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    parser.add_argument("--load-events", type=int, default=2000, help="local stack section")
    parser.add_argument("--load-concurrency", type=int, default=8, help="local stack section")
    args = parser.parse_args(argv)

    if args.only == "report":
        measured = report_build(args.report_conversations)
        print(json.dumps(measured, indent=2))
        print(render_report(measured))
        return 0

    if args.only == "local":
        measured = run_local(args, args.docs if args.write_docs else None)
        print(json.dumps(measured, indent=2))
        return 0

    if args.only == "sweep":
        print(render_sweep(sweep_costs([100, 1000, 10000])))
        return 0
    if args.only == "calls":
        calls = calls_per_event(args.conversations)
        print(render_calls(calls))
        return 0
    if args.only == "knowledge":
        knowledge = knowledge_drafter(args.articles, args.questions, args.builds)
        print(json.dumps(knowledge, indent=2))
        print(render_knowledge(knowledge))
        return 0

    results = measure(args)
    print(json.dumps(results, indent=2))
    text = render(results) + kept_sections(args.docs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: results in {args.out}", file=sys.stderr)
    if args.write_docs:
        args.docs.write_text(text)
        print(f"bench: wrote {args.docs}", file=sys.stderr)
    else:
        print(f"bench: {args.docs} left as it was (make bench-docs rewrites it)", file=sys.stderr)
    # The local stack's section, between its markers, in the same file.
    run_local(args, args.docs if args.write_docs else args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
