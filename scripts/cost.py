"""What the pipeline costs on AWS per month, for 1, 10 and 100 million webhooks: docs/cost.md.

Inputs, all read, none typed in:

- docs/measurements/local-stack.json (`make bench-docs`, section "Local stack end to end"): per
  webhook, the AWS calls the functions made by operation, the processor's batches and their
  duration, the ingest handler's duration, the bytes both printed (CloudWatch Logs), and what the
  run left stored in DynamoDB and S3;
- template.yaml: the functions' memory sizes, the API type (HTTP API), tracing, the timeline and
  log retention;
- PRICES below: AWS list prices for us-east-1, each with where it comes from and its date.

`python scripts/cost.py` prints the section; `--write docs/cost.md` replaces the section between
the markers in that file. tests/unit/test_cost_doc.py recomputes it and fails when the doc
differs, so the figures in the doc are always this script's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENT = ROOT / "docs" / "measurements" / "local-stack.json"
TEMPLATE = ROOT / "template.yaml"
DOC = ROOT / "docs" / "cost.md"
BEGIN = "<!-- cost:begin (written by scripts/cost.py; do not edit by hand) -->"
END = "<!-- cost:end -->"
VOLUMES = (1_000_000, 10_000_000, 100_000_000)
SECONDS_PER_MONTH = 30 * 86400
GB = 1024**3

# AWS list prices, us-east-1, on-demand, no free tier, no savings plans. Written down from the
# public pricing pages as known on PRICES_AS_OF; this project has no network access when the
# doc is generated, so recheck them at the URLs before relying on a figure.
PRICES_AS_OF = "2025-01 (recollected, not fetched; recheck)"
PRICES: dict[str, tuple[float, str, str]] = {
    # name: (USD, unit, source)
    "http_api_request": (
        1.00 / 1e6,
        "per request (HTTP API, first 300 million a month)",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "lambda_request": (0.20 / 1e6, "per invocation", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_gb_second_arm64": (
        0.0000133334,
        "per GB-second (arm64, first 7.5 billion GB-s a month)",
        "https://aws.amazon.com/lambda/pricing/",
    ),
    "sqs_request": (
        0.40 / 1e6,
        "per request (standard queue, each 64 KB chunk)",
        "https://aws.amazon.com/sqs/pricing/",
    ),
    "dynamodb_wru": (
        0.625 / 1e6,
        "per write request unit (on-demand)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_rru": (
        0.125 / 1e6,
        "per read request unit (on-demand)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_storage_gb_month": (
        0.25,
        "per GB-month (Standard table class)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_pitr_gb_month": (
        0.20,
        "per GB-month (point-in-time recovery)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "s3_put": (0.005 / 1000, "per PUT", "https://aws.amazon.com/s3/pricing/"),
    "s3_storage_gb_month": (0.023, "per GB-month (Standard)", "https://aws.amazon.com/s3/pricing/"),
    "logs_ingest_gb": (
        0.50,
        "per GB ingested (CloudWatch Logs, Standard class)",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "logs_storage_gb_month": (
        0.03,
        "per GB-month archived",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "xray_trace": (5.00 / 1e6, "per trace recorded", "https://aws.amazon.com/xray/pricing/"),
}

# Hosted webhook gateways: what a service in front of the pipeline would charge for receiving
# the same webhooks (it replaces API Gateway, the ingest function and the queue's front door;
# the processing behind it stays). No network access here: the figures come from the stored copy
# of a public comparison post, not from the vendors' pages; its date is unknown, it was read on
# GATEWAYS_READ. Per-event overage rates were not available offline, so the table shows the plan
# that the volume needs at least, and says so.
GATEWAYS_READ = "2026-11-27"
GATEWAYS_SOURCE = "https://dev.to/emithq/why-we-built-emithq-the-49-490-webhook-pricing-gap-npd"
GATEWAYS: list[dict[str, Any]] = [
    {
        "name": "Hookdeck (Event Gateway)",
        "plans": "Developer free (10,000 events a month); Team $39 a month at 5 events/s; "
        "Growth $499 a month; more throughput about $1 a month per event/s",
        "monthly": lambda volume, peak: 39.0 + max(0.0, peak - 5.0) * 1.0,
        "basis": "Team plan plus throughput for the peak rate; per-event charges not included",
    },
    {
        "name": "Svix",
        "plans": "free to 50,000 messages a month; first paid tier $490 a month",
        "monthly": lambda volume, peak: 0.0 if volume <= 50_000 else 490.0,
        "basis": "first paid tier; usage above its allowance not included",
    },
    {
        "name": "Convoy (cloud)",
        "plans": "from $99 a month",
        "monthly": lambda volume, peak: 99.0,
        "basis": "entry plan; usage above its allowance not included",
    },
]
PEAK_FACTOR = 5.0  # a busy hour against the month's average rate, for the throughput tiers

# Lambda's SQS event source long-polls the queue whether or not anything arrives: about five
# pollers, each a ReceiveMessage per 20 s wait when idle (AWS documents the five pollers, not the
# exact rate): a fixed number of requests a month, added to the measured per-webhook ones.
IDLE_POLL_REQUESTS = 5 * SECONDS_PER_MONTH / 20
# X-Ray's default sampling rule: the first request each second, then 5%.
XRAY_RESERVOIR_PER_SECOND, XRAY_RATE = 1.0, 0.05
DYNAMODB_ITEM_OVERHEAD = 100  # bytes DynamoDB adds to each stored item (and index entry)


@dataclass(frozen=True)
class Inputs:
    measured: dict[str, Any]
    memory_mb: dict[str, int]
    timeline_retention_days: int
    log_retention_days: int
    tracing: bool
    api_type: str


def read_inputs(measurement: Path = MEASUREMENT, template: Path = TEMPLATE) -> Inputs:
    sys.path.insert(0, str(ROOT / "tools"))
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    from support_pipeline_ops.local import template as cfn

    spec = cfn.load(template)
    globals_ = spec.get("Globals", {}).get("Function", {})
    resources = spec["Resources"]

    def memory(name: str) -> int:
        return int(resources[name]["Properties"].get("MemorySize") or globals_["MemorySize"])

    def default(name: str) -> int:
        return int(spec["Parameters"][name]["Default"])

    api = [r["Type"] for r in resources.values() if "Api" in r["Type"]]
    if api != ["AWS::Serverless::HttpApi"]:  # the prices below are HTTP API's, not REST API's
        raise SystemExit(f"template.yaml's API is {api}: update PRICES for it")
    return Inputs(
        measured=json.loads(measurement.read_text(encoding="utf-8")),
        memory_mb={"ingest": memory("IngestFunction"), "processor": memory("ProcessorFunction")},
        timeline_retention_days=default("TimelineRetentionDays"),
        log_retention_days=default("LogRetentionDays"),
        tracing=globals_.get("Tracing") == "Active",
        api_type=api[0] if api else "none",
    )


def per_webhook(inputs: Inputs) -> dict[str, float]:
    """Billable units per accepted webhook, from the measurement."""
    m = inputs.measured
    webhooks = float(m["webhooks"])
    ingest, processor = m["ingest"], m["processor"]
    calls = {op: n / webhooks for op, n in processor["calls"].items()}
    # Invocations are priced at one record each: at a quiet moment the batching window has
    # ended before a webhook arrives, so Lambda invokes with it alone (the window begins when
    # the previous invocation completes). The measured run gathered fuller batches under load;
    # at 1 M webhooks a month (0.4/s) they would not be. Each invocation's records cost the
    # measured processor time per record, and the event source a receive and a delete.
    records = processor["records"] / webhooks
    batches = records
    ms_per_record = processor["ms_per_batch"] * processor["batches"] / max(1, processor["records"])
    source_requests = 2 * batches  # ReceiveMessage + DeleteMessageBatch per invocation

    # DynamoDB: request units per call. Items are well under 1 KB (see stored bytes): a write
    # is 1 WRU, a strongly consistent read of up to 4 KB 1 RRU; a transactional write is 2 WRUs
    # per item (the record and the timeline item: 2 items). Each written item that sits in a
    # global secondary index (ProjectionType ALL) is written there too: the stored data says how
    # many index entries an item has on average.
    tables = m["stored"]["tables"]
    items = sum(t["items"] for t in tables.values())
    entries = sum(t["index_entries"] for t in tables.values())
    index_per_item = entries / items if items else 0.0
    writes = (
        calls.get("dynamodb.PutItem", 0.0)
        + calls.get("dynamodb.UpdateItem", 0.0)
        + 2 * calls.get("dynamodb.TransactWriteItems", 0.0)
    )
    wru = (
        calls.get("dynamodb.PutItem", 0.0)
        + calls.get("dynamodb.UpdateItem", 0.0)
        + 2 * 2 * calls.get("dynamodb.TransactWriteItems", 0.0)
        + writes * index_per_item
    )
    rru = calls.get("dynamodb.GetItem", 0.0) + calls.get("dynamodb.Query", 0.0)
    stored_bytes = sum(
        t["bytes"] + (t["items"] + t["index_entries"]) * DYNAMODB_ITEM_OVERHEAD
        for t in tables.values()
    )
    stored_bytes += sum(
        t["bytes"] * (t["index_entries"] / t["items"]) for t in tables.values() if t["items"]
    )
    gb_seconds_ingest = ingest["ms_per_invocation"] / 1000 * inputs.memory_mb["ingest"] / 1024
    gb_seconds_processor = records * ms_per_record / 1000 * inputs.memory_mb["processor"] / 1024
    return {
        "api_requests": 1.0,
        "lambda_invocations": 1.0 + batches,
        "gb_seconds_ingest": gb_seconds_ingest,
        "gb_seconds_processor": gb_seconds_processor,
        "sqs_requests": ingest["sqs_send_per_webhook"]
        + calls.get("sqs.SendMessage", 0.0)
        + source_requests,
        "wru": wru,
        "rru": rru,
        "dynamodb_bytes": stored_bytes / webhooks,
        "s3_puts": (calls.get("s3.PutObject", 0.0)),
        "s3_bytes": m["stored"]["s3_bytes"] / webhooks,
        "log_bytes": ingest["log_bytes_per_invocation"] + processor["log_bytes_per_webhook"],
        "invocations_traced": 1.0 + batches,
    }


def monthly(inputs: Inputs, volume: int) -> dict[str, float]:
    """USD a month, by line, for ``volume`` webhooks a month."""
    u = per_webhook(inputs)
    p = {name: price for name, (price, _, _) in PRICES.items()}
    invocations = volume * u["invocations_traced"]
    per_second = invocations / SECONDS_PER_MONTH
    traced = 0.0
    if inputs.tracing:
        reservoir = min(per_second, XRAY_RESERVOIR_PER_SECOND) * SECONDS_PER_MONTH
        traced = reservoir + (invocations - reservoir) * XRAY_RATE
    months_kept = inputs.timeline_retention_days / 30
    dynamodb_gb = volume * u["dynamodb_bytes"] / GB
    log_gb = volume * u["log_bytes"] / GB
    return {
        "API Gateway (HTTP API)": volume * u["api_requests"] * p["http_api_request"],
        "Lambda requests": volume * u["lambda_invocations"] * p["lambda_request"],
        "Lambda GB-seconds: ingest": volume * u["gb_seconds_ingest"] * p["lambda_gb_second_arm64"],
        "Lambda GB-seconds: processor": volume
        * u["gb_seconds_processor"]
        * p["lambda_gb_second_arm64"],
        "SQS requests": (volume * u["sqs_requests"] + IDLE_POLL_REQUESTS) * p["sqs_request"],
        "DynamoDB writes": volume * u["wru"] * p["dynamodb_wru"],
        "DynamoDB reads": volume * u["rru"] * p["dynamodb_rru"],
        "DynamoDB storage + PITR (first month)": dynamodb_gb
        * (p["dynamodb_storage_gb_month"] + p["dynamodb_pitr_gb_month"]),
        "DynamoDB storage + PITR (steady state)": dynamodb_gb
        * months_kept
        * (p["dynamodb_storage_gb_month"] + p["dynamodb_pitr_gb_month"]),
        "S3": volume * (u["s3_puts"] * p["s3_put"] + u["s3_bytes"] / GB * p["s3_storage_gb_month"]),
        "CloudWatch Logs": log_gb * p["logs_ingest_gb"]
        + log_gb * min(1.0, inputs.log_retention_days / 30) * p["logs_storage_gb_month"],
        "X-Ray traces": traced * p["xray_trace"],
    }


STEADY = "DynamoDB storage + PITR (steady state)"
FIRST = "DynamoDB storage + PITR (first month)"


def money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.2f}" if value >= 0.005 else "<$0.01"


def render(inputs: Inputs) -> str:
    m = inputs.measured
    u = per_webhook(inputs)
    costs = {volume: monthly(inputs, volume) for volume in VOLUMES}
    names = [n for n in costs[VOLUMES[0]] if n != STEADY]
    header = "| line | " + " | ".join(f"{v // 1_000_000}M webhooks" for v in VOLUMES) + " |"
    rows = [header, "| --- |" + " ---: |" * len(VOLUMES)]
    for name in names:
        rows.append(f"| {name} | " + " | ".join(money(costs[v][name]) for v in VOLUMES) + " |")
    first = {v: sum(c for n, c in costs[v].items() if n != STEADY) for v in VOLUMES}
    steady = {v: first[v] - costs[v][FIRST] + costs[v][STEADY] for v in VOLUMES}
    rows.append(
        "| **total, first month** | " + " | ".join(f"**{money(first[v])}**" for v in VOLUMES) + " |"
    )
    rows.append(
        f"| total once {inputs.timeline_retention_days} days of timeline are stored | "
        + " | ".join(money(steady[v]) for v in VOLUMES)
        + " |"
    )
    rows.append(
        "| per million webhooks, first month | "
        + " | ".join(money(first[v] / (v / 1e6)) for v in VOLUMES)
        + " |"
    )

    gateway_rows = [
        "| gateway | published plans | "
        + " | ".join(f"{v // 1_000_000}M" for v in VOLUMES)
        + " | basis |"
    ]
    gateway_rows.append("| --- | --- |" + " ---: |" * len(VOLUMES) + " --- |")
    for g in GATEWAYS:
        figures = []
        for v in VOLUMES:
            peak = v / SECONDS_PER_MONTH * PEAK_FACTOR
            figures.append(money(g["monthly"](v, peak)))
        gateway_rows.append(
            f"| {g['name']} | {g['plans']} | " + " | ".join(figures) + f" | {g['basis']} |"
        )
    front = {
        v: costs[v]["API Gateway (HTTP API)"]
        + v * u["gb_seconds_ingest"] * PRICES["lambda_gb_second_arm64"][0]
        + v * PRICES["lambda_request"][0]
        for v in VOLUMES
    }

    price_rows = ["| price | USD | unit | source |", "| --- | ---: | --- | --- |"]
    for name, (price, unit, source) in PRICES.items():
        price_rows.append(f"| {name} | {price:.10g} | {unit} | {source} |")

    unit_rows = ["| unit | per webhook |", "| --- | ---: |"]
    for name, value in u.items():
        unit_rows.append(f"| {name} | {value:.4g} |")

    nl = "\n"
    return f"""{BEGIN}
Generated by `scripts/cost.py` from docs/measurements/local-stack.json (measured {m["date"]}:
{m["webhooks"]} webhooks of the load mix through the local stack, plus the pipeline's own
{m["pipeline_events"]} draft events) and template.yaml (memory: ingest
{inputs.memory_mb["ingest"]} MB, processor {inputs.memory_mb["processor"]} MB; arm64;
`{inputs.api_type}`; tracing {"on" if inputs.tracing else "off"}; timeline kept
{inputs.timeline_retention_days} days; logs {inputs.log_retention_days} days).
AWS list prices for us-east-1 as of {PRICES_AS_OF}; no free tier.

### Monthly cost on AWS

{nl.join(rows)}

### A hosted webhook gateway for the same volume

Published list prices as of an undated comparison post read {GATEWAYS_READ}, not the
vendors' own pages: **to be rechecked**. Source:
<{GATEWAYS_SOURCE}>

A gateway replaces only the front door: API Gateway and the ingest function, here
{" / ".join(money(front[v]) for v in VOLUMES)} a month at these volumes. The queue, the
processor and DynamoDB stay. Peak rate assumed {PEAK_FACTOR:g}x the month's average.

{nl.join(gateway_rows)}

### Per-webhook units (from the measurement)

{nl.join(unit_rows)}

### Prices used

{nl.join(price_rows)}
{END}"""


def write(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{path} has no {BEGIN!r} marker")
    path.write_text(head + section + tail, encoding="utf-8")


def section_in(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    _, _, rest = text.partition(BEGIN)
    inner, _, _ = rest.partition(END)
    return BEGIN + inner + END


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", help="replace the generated section of this file")
    parser.add_argument("--measurement", default=str(MEASUREMENT))
    args = parser.parse_args(argv)
    section = render(read_inputs(Path(args.measurement)))
    if args.write:
        write(Path(args.write), section)
        print(f"wrote {args.write}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
