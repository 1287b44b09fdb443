"""`make bench`, section "Local stack end to end": the README's run command under load.

Starts `support-pipeline local` (a child process, as a person starts it: moto server, HTTP front,
processor pollers), posts the load command's mix through its real HTTP front
(`support_pipeline_ops.load`), waits until the pipeline settles and reads the stack's own counts
(`/_local/status`). Writes:

- docs/measurements/local-stack.json: the raw measurement (scripts/cost.py reads it);
- the section between the markers below in docs/benchmarks.md (the rest of the file is kept).

`scripts/bench.py --only local --write-docs` runs this section alone.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENT = ROOT / "docs" / "measurements" / "local-stack.json"
BEGIN = "<!-- bench:local-stack:begin -->"
END = "<!-- bench:local-stack:end -->"
TARGET_PER_SECOND = 200


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "support-pipeline"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from support_pipeline_ops.cli import main; "
            "sys.exit(main())"]  # fmt: skip


def _load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by process ``root`` and its children (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    family, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        grown, family = bool(more), family | more
    return sum(used.get(pid, 0.0) for pid in family)


def measure(events: int = 2000, concurrency: int = 8) -> dict[str, Any]:
    """Start the local stack, post ``events`` webhooks through its HTTP front, account for them."""
    from support_pipeline_ops import load
    from support_pipeline_ops.local.stack import free_port

    port, moto_port = free_port(), free_port()
    secret = secrets.token_urlsafe(24)
    log = tempfile.NamedTemporaryFile(prefix="bench-local-", suffix=".log", delete=False)  # noqa: SIM115
    env = {**os.environ, "CHATWOOT_WEBHOOK_SECRET": secret, "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    command = [
        *_cli(),
        "local",
        "--port",
        str(port),
        "--moto-port",
        str(moto_port),
        "--sweep-every",
        "0",  # no sweeps during the run: only the webhooks' own work is measured
    ]
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    status_url = f"http://127.0.0.1:{port}/_local/status"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                load.read_status(status_url, timeout=2)
                break
            except (OSError, load.LoadError, ValueError):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the local stack did not start: {Path(log.name).read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        before = load.read_status(status_url)
        log_before = Path(log.name).stat().st_size
        load_before = _load_average()
        cpu_before, wall_before = cpu_seconds(child.pid), time.monotonic()
        result = load.run_load(
            f"http://127.0.0.1:{port}/webhooks/chatwoot",
            secret,
            events,
            concurrency=concurrency,
            out=sys.stderr,
            tty=False,
        )
        after = load.read_status(status_url)
        cpu = cpu_seconds(child.pid) - cpu_before
        wall = time.monotonic() - wall_before
        log_bytes_total = Path(log.name).stat().st_size - log_before
        load_after = _load_average()
        stored = stored_data(f"http://127.0.0.1:{moto_port}")
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        Path(log.name).unlink(missing_ok=True)

    summary = result.summary()
    p0, p1 = before.get("processor", {}), after.get("processor", {})

    def grew(name: str) -> float:
        return float(p1.get(name, 0)) - float(p0.get(name, 0))

    def grew_calls(key: str) -> dict[str, int]:
        names = set(p1.get(key, {})) | set(p0.get(key, {}))
        return {
            n: int(p1.get(key, {}).get(n, 0)) - int(p0.get(key, {}).get(n, 0))
            for n in sorted(names)
        }

    accepted = max(1, int(summary["accepted"]))
    batches, records = grew("batches"), grew("records")
    processor_log = grew("log_bytes")
    ingest_seconds = float(after.get("ingest_seconds", 0)) - float(before.get("ingest_seconds", 0))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "command": "support-pipeline local --sweep-every 0 (pollers: the template's "
        "ProcessorMaximumConcurrency)",
        "pollers": after.get("pollers"),
        "stack_cpu_seconds": cpu,
        "stack_cpu_ms_per_webhook": 1000 * cpu / max(1, int(summary["accepted"])),
        "stack_cores_used": cpu / wall if wall else 0.0,
        "concurrency": concurrency,
        "load": summary,
        "webhooks": summary["accepted"],
        "pipeline_events": summary["pipeline_events"],
        "ingest": {
            "invocations": accepted,
            "ms_per_invocation": 1000 * ingest_seconds / accepted,
            "sqs_send_per_webhook": 1.0,
            "log_bytes_per_invocation": max(0.0, (log_bytes_total - processor_log) / accepted),
        },
        "processor": {
            "batches": int(batches),
            "records": int(records),
            "records_per_batch": records / batches if batches else 0.0,
            "ms_per_batch": 1000 * grew("seconds") / batches if batches else 0.0,
            "log_bytes_per_webhook": processor_log / accepted,
            "calls": grew_calls("calls"),
            "event_source_calls": grew_calls("event_source_calls"),
        },
        "stored": stored,
    }


def attribute_bytes(value: Any) -> int:
    """An attribute value's size as DynamoDB counts it (approximately, for numbers)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return (len(str(inner).lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_bytes({kind[0]: x}) for x in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(x) for x in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_bytes(v) for k, v in inner.items())
    return 0


def stored_data(endpoint: str) -> dict[str, Any]:
    """What the run left in DynamoDB and S3: items, their bytes, their index entries."""
    import boto3

    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106  # nosec B106 - moto accepts any credentials
        region_name="us-east-1",
    )
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    tables = {}
    for name in dynamodb.list_tables()["TableNames"]:
        described = dynamodb.describe_table(TableName=name)["Table"]
        indexes = [
            [k["AttributeName"] for k in index["KeySchema"]]
            for index in described.get("GlobalSecondaryIndexes", [])
        ]
        items = size = index_entries = 0
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):
            for item in page["Items"]:
                items += 1
                size += sum(len(k.encode()) + attribute_bytes(v) for k, v in item.items())
                index_entries += sum(int(all(k in item for k in keys)) for keys in indexes)
        tables[name.rsplit("-", 1)[-1]] = {
            "items": items,
            "bytes": size,
            "index_entries": index_entries,
            "indexes": len(indexes),
        }
    objects = object_bytes = 0
    for bucket in s3.list_buckets()["Buckets"]:
        for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for entry in listing.get("Contents", []):
                objects += 1
                object_bytes += int(entry["Size"])
    return {"tables": tables, "s3_objects": objects, "s3_bytes": object_bytes}


def render(m: dict[str, Any]) -> str:
    s, p, i = m["load"], m["processor"], m["ingest"]
    per_webhook = {op: n / max(1, m["webhooks"]) for op, n in p["calls"].items()}
    rows = "\n".join(f"| {op} | {n} | {per_webhook[op]:.2f} |" for op, n in p["calls"].items())
    source = ", ".join(f"{op} {n}" for op, n in p["event_source_calls"].items())
    e2e = s["processed_per_second"] or 0.0
    lost = s["accepted"] - s["processed"] - s["dead_lettered"]
    calls = sum(p["calls"].values()) + sum(p["event_source_calls"].values())
    calls_per_webhook = calls / max(1, m["webhooks"]) + i["sqs_send_per_webhook"]
    head = "| webhooks | accepted/s | processed/s end to end | processed | dead-lettered "
    head += "| pipeline's own events | lost |"
    row = f"| {s['accepted']} | {s['accepted_per_second']} | {e2e} | {s['processed']} "
    row += f"| {s['dead_lettered']} | {s['pipeline_events']} | {lost} |"
    verdict = "meets" if e2e >= TARGET_PER_SECOND else "DOES NOT MEET"
    return f"""{BEGIN}
## 8. Local stack end to end

The README's run command (`support-pipeline local`: moto server, the HTTP front with the
ingest handler, {m["pollers"]} processor pollers, each its own process) under the load
command's mix (`support-pipeline load`: signed fixture webhooks with fresh ids; per six
conversations, five answered ones of six webhooks and one waiting question), posted through the
real HTTP front over {m["concurrency"]} keep-alive connections, then waited on until nothing was
queued, delayed or in flight.

- Measured {m["date"]} on {m["machine"]}, Python {m["python"]}.
- The machine was shared with other work (other test runs). Load average, which counts the
  stack's own processes too: {m["load_average_before"]} before, {m["load_average_after"]}
  after. Read the rates as what this machine gave under that load.
- The stack (its main process and the pollers) used {m["stack_cpu_seconds"]:.0f} CPU seconds,
  **{m["stack_cpu_ms_per_webhook"]:.0f} ms of CPU per webhook**, {m["stack_cores_used"]:.2f}
  cores on average over the run. At that cost 2 whole cores give at most
  {2000 / max(m["stack_cpu_ms_per_webhook"], 1e-9):.0f} webhooks/s; 200/s needs it under
  10 ms.

{head}
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{row}

Target: {TARGET_PER_SECOND} webhooks/s end to end on 2 cores; this run **{verdict}** it.
"Processed/s end to end" counts webhooks processed from the first post until the last was
accounted for. The ingest handler took {i["ms_per_invocation"]:.1f} ms per request, one
request at a time (one execution environment); the processor {p["ms_per_batch"]:.0f} ms per
batch of {p["records_per_batch"]:.1f} records on average.

AWS calls the processor made (botocore, in the pollers), per accepted webhook:

| operation | calls | per webhook |
| --- | ---: | ---: |
{rows}

The event source (the pollers themselves): {source}. The ingest handler adds one
`SendMessage` per webhook: about {calls_per_webhook:.1f} AWS calls per webhook in all.

Where the time goes (py-spy on the stack during a run, 2026-11-28):

- In a poller, calls into botocore (with urllib3 and http.client under it) were about 80% of
  the samples that were not waiting; the pipeline's own frames about 7%. The functions' CPU is
  their AWS clients.
- The stack's main process runs moto, so it serves every AWS call of every function, and the
  HTTP front with the ingest handler: about one core (Python's GIL). Most of it is moto's
  request handling (werkzeug and Flask dispatch, request parsing, response serialisation,
  DynamoDB expression evaluation). moto_fast (tools/support_pipeline_ops/local/moto_fast.py)
  takes out what grew with the data or was recomputed per request; the last of these, a listing
  of moto's package directory on every request, cost 0.3 to 1.3 ms a call (by service).
- Accepted webhooks are bounded by the ingest handler running one request at a time: at
  {i["ms_per_invocation"]:.1f} ms a request (mostly its `SendMessage` waiting for the busy
  moto) that is at most {1000 / max(i["ms_per_invocation"], 1e-9):.0f}/s. Processing kept up
  with what was accepted.
- Tried and not kept: DynamoDB in a moto process of its own (`AWS_ENDPOINT_URL_DYNAMODB`).
  Back to back, 1,500 webhooks each on 2026-11-27: 26.6 and 30.0 webhooks/s with it, 26.9
  without; the cores, not one process's GIL, were already the limit.

{render_floor(m.get("floor"), calls_per_webhook)}

Reproduce (writes docs/measurements/local-stack.json and this section):

```
.venv/bin/python scripts/bench.py --only local --write-docs [--load-events 3000]
# or by hand, against `make run` in another shell:
support-pipeline load --events 10000 --secret <the secret it printed>
```
{END}
"""


def render_floor(floor: dict[str, Any] | None, calls_per_webhook: float) -> str:
    """The floor under the rate: what one AWS call costs in botocore and in moto
    (scripts/bench_floor.py), times the calls a webhook makes."""
    if not floor:
        return "(The floor was not measured in this run: scripts/bench_floor.py.)"
    budget = 2 * 1000 / TARGET_PER_SECOND  # ms of CPU per webhook two cores allow
    client = floor["botocore_ms_per_call"] * calls_per_webhook
    with_moto = (
        floor["moto_caller_ms_per_call"] + floor["moto_server_ms_per_call"]
    ) * calls_per_webhook
    botocore, caller, server = (
        f"{floor[name]:.2f}"
        for name in ("botocore_ms_per_call", "moto_caller_ms_per_call", "moto_server_ms_per_call")
    )
    if client >= budget:
        verdict = (
            f"botocore alone uses the whole budget: {TARGET_PER_SECOND}/s is out of reach of any "
            "boto3 client on this machine, whatever answers it."
        )
    elif with_moto >= budget:
        verdict = (
            f"So {TARGET_PER_SECOND}/s is out of reach of boto3 against moto on this machine; "
            "the product's local stack is moto by design (docs/architecture.md)."
        )
    else:
        verdict = (
            f"The calls leave {budget - with_moto:.1f} ms per webhook for everything else "
            "(compare the stack's measured CPU per webhook above)."
        )
    return f"""### The floor: what one AWS call costs

Every function reaches AWS as it does in Lambda, through a boto3 client over HTTP. CPU per call,
measured in one process (scripts/bench_floor.py; median of {floor["rounds"]} rounds of
{floor["calls"]:,} {floor["operations"]}, the cheapest calls the pipeline makes):

| what | ms of CPU per call |
| --- | ---: |
| botocore in the caller, against a server that does no work | {botocore} |
| botocore in the caller, against the local stack's moto server | {caller} |
| the moto server answering it | {server} |

At {calls_per_webhook:.1f} AWS calls per webhook (the event source's receives while it gathers a
batch included), two cores give {budget:.0f} ms of CPU per webhook at {TARGET_PER_SECOND}/s.
botocore alone takes {client:.1f} ms of it ({2000 / max(client, 1e-9):.0f} webhooks/s at most);
with moto answering, the calls take {with_moto:.1f} ms ({2000 / max(with_moto, 1e-9):.0f}/s at
most), before the pipeline's own code, the HTTP front or the load generator run.

{textwrap.fill(verdict, width=96)}"""


def write_section(path: Path, section: str) -> None:
    """Replace the section between the markers (or add it before "## Reproduce")."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.strip() + tail
    elif "## Reproduce" in text:
        head, _, tail = text.partition("## Reproduce")
        text = head + section.strip() + "\n\n## Reproduce" + tail
    else:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    path.write_text(text, encoding="utf-8")


def run(
    events: int, concurrency: int, write: Path | None, measurement: Path | None = None
) -> dict[str, Any]:
    """Measure; write the raw figures to ``measurement`` (docs/measurements/local-stack.json,
    tracked, only for the docs; .bench/local-stack.json otherwise) and the section into
    ``write``."""
    import bench_floor

    measured = measure(events, concurrency)
    measured["floor"] = bench_floor.measure()
    measurement = measurement or ROOT / ".bench" / "local-stack.json"
    measurement.parent.mkdir(parents=True, exist_ok=True)
    measurement.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    section = render(measured)
    if write is not None:
        write_section(write, section)
    return measured
