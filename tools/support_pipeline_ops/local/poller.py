"""One processor "execution environment" of the local stack: a process polling EventsQueue.

Lambda runs up to ``MaximumConcurrency`` batches of an SQS event source at once, each in its own
execution environment (its own process, module globals, clients, Powertools state). The local
stack does the same: each poller is a process that loads functions/processor/app.py itself,
receives batches with the template's batch size and batching window (long polling; the window
begins when the previous invocation completes, as AWS documents for SQS event sources), invokes
the handler and deletes only the records it did not report as failures.

Each batch is reported to the stack over a pipe, before its records are deleted (so the stack
has counted them by the time the queue shows them gone): the records done, by kind (a webhook,
or one of the pipeline's own events), which of them the processor dead-lettered or deferred
(seen on the way out, as its SendMessage calls), and the AWS calls the handler made, by
operation (a botocore hook on this process's sessions: counted, never changed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

WEBHOOK = "webhook"
PIPELINE = "pipeline"


def kind_of(attributes: dict[str, str]) -> str:
    """A webhook, or one of the pipeline's own events (``origin: pipeline``)."""
    return PIPELINE if attributes.get("origin") == "pipeline" else WEBHOOK


def _string_attributes(raw: dict[str, Any] | None) -> dict[str, str]:
    return {
        name: str(value.get("StringValue", ""))
        for name, value in (raw or {}).items()
        if isinstance(value, dict)
    }


class CallMeter:
    """Counts the AWS calls of every botocore session created after ``install()`` in this
    process (the handler's clients), and notes the processor's sends to the queues."""

    def __init__(self, queue_url: str, dlq_url: str) -> None:
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.calls: Counter[str] = Counter()
        self.dead_lettered: Counter[str] = Counter()
        self.deferred: Counter[str] = Counter()
        self.scheduled = 0

    def install(self) -> None:
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.append(
            ("before-parameter-build.sqs.SendMessage", self._before_send)
        )
        handlers.BUILTIN_HANDLERS.append(("after-call", self._after_call))

    def _before_send(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["local_send"] = params

    def _after_call(
        self, event_name: str, http_response: Any, context: dict[str, Any], **_: Any
    ) -> None:
        _stage, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1
        sent = context.get("local_send")
        if sent is None or getattr(http_response, "status_code", 500) >= 300:
            return
        attributes = _string_attributes(sent.get("MessageAttributes"))
        if sent.get("QueueUrl") == self.dlq_url:
            try:
                original = json.loads(attributes.get("original_attributes") or "{}")
            except ValueError:
                original = {}
            self.dead_lettered[kind_of(original if isinstance(original, dict) else {})] += 1
        elif sent.get("QueueUrl") == self.queue_url:
            if "prior_attempts" in attributes:
                self.deferred[kind_of(attributes)] += 1
            else:
                self.scheduled += 1

    def take(self) -> dict[str, Any]:
        """What was counted since the last call."""
        taken = {
            "calls": dict(self.calls),
            "dead_lettered": dict(self.dead_lettered),
            "deferred": dict(self.deferred),
            "scheduled": self.scheduled,
        }
        self.calls.clear()
        self.dead_lettered.clear()
        self.deferred.clear()
        self.scheduled = 0
        return taken


class CountingStream:
    """stdout as the handler sees it: written through, bytes counted (CloudWatch Logs bills
    the bytes a function prints)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8", "replace"))
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def is_metric_blob(line: str) -> bool:
    """A CloudWatch embedded-metric-format blob, as Powertools Metrics prints one."""
    return line.startswith("{") and '"_aws"' in line and '"CloudWatchMetrics"' in line


class MetricsSplit:
    """stdout with the EMF metric blobs sent to a file of their own, so that the log a person
    reads is the functions' log lines (on Lambda both go to CloudWatch Logs, which extracts the
    metrics). Whole lines are routed; a partial line waits for its end (or a flush)."""

    def __init__(self, stream: Any, path: str | Path) -> None:
        self._stream = stream
        self._metrics = Path(path).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            (self._metrics if is_metric_blob(line) else self._stream).write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._partial and not self._partial.startswith("{"):
            self._stream.write(self._partial)
            self._partial = ""
        self._stream.flush()
        self._metrics.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def enter_environment(config: dict[str, Any]) -> None:
    """A child process of the stack becomes its function's execution environment: Ctrl-C is the
    stack's to handle, the function's own environment (its POWERTOOLS_SERVICE_NAME too), and
    metric blobs to their own file if the stack keeps one."""
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(config["env"])
    # Powertools warns on every invocation that published no metric: noise in a terminal.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    if config.get("metrics_file"):
        sys.stdout = MetricsSplit(sys.stdout, config["metrics_file"])


def run_sweeper(config: dict[str, Any], requests: Connection, stop: Any) -> None:
    """The SLA sweep's execution environment: one scheduled event at a time, from the stack
    (its timer or ``/_local/sweep``), answered with the handler's result or its error."""
    enter_environment(config)
    from support_pipeline_ops.local import lambda_shim
    from support_pipeline_ops.local.stack import load_function

    sweeper = load_function(Path(config["root"]), "sla_sweep")
    while not stop.is_set():
        try:
            if not requests.poll(0.5):
                continue
            event = requests.recv()
        except (EOFError, OSError):
            break  # the stack is gone
        try:
            result = sweeper.handler(
                event,
                lambda_shim.LocalContext(
                    function_name="sla-sweep", timeout_seconds=int(config["timeout"])
                ),
            )
            answer: tuple[str, Any] = ("ok", result)
        except Exception as exc:
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            requests.send(answer)
        except (EOFError, OSError):
            break


def gather(
    receive: Any,
    first: list[dict[str, Any]],
    batch_size: int,
    deadline: float,
    stop: Any,
    clock: Any = time.monotonic,
    idle_wait: float = 0.2,
) -> tuple[list[dict[str, Any]], int]:
    """The batching window (``MaximumBatchingWindowInSeconds``) as AWS documents it for SQS event
    sources: a window begins as soon as the previous invocation completes, and records are
    gathered until the batch is full or the window ends. ``deadline`` is that end (on
    ``clock``); records that come after it are invoked at once. Returns the batch and the
    ``ReceiveMessage`` calls it took beyond the first.

    ``receive(count, wait_seconds)`` returns up to ``count`` messages. With a second or more of
    the window left it long-polls (moto answers as soon as one message is there); with less, it
    polls without waiting and, when nothing came, waits ``idle_wait`` (or what is left of the
    window) on ``stop``; it looks once more when the window ends. A batch is held past its
    window by one short poll at most."""
    batch = list(first)
    calls = 0
    if not batch or clock() >= deadline:
        return batch, calls
    while len(batch) < batch_size and not stop.is_set():
        left = deadline - clock()
        calls += 1
        try:
            more = receive(batch_size - len(batch), 1 if left >= 1 else 0)
        except Exception as exc:  # a hiccup: invoke with what came (it is received already)
            print(f"local poller: {type(exc).__name__} while batching", file=sys.stderr)
            break
        batch.extend(more)
        if left <= 0:
            break  # that was the last look, at the window's end
        if not more and left < 1:
            stop.wait(min(idle_wait, max(0.0, deadline - clock())))
    return batch, calls


def run(config: dict[str, Any], reports: Connection, stop: Any) -> None:
    """The poller process: poll, invoke, report, delete, until ``stop`` is set."""
    enter_environment(config)
    import boto3
    from botocore.config import Config

    from support_pipeline_ops.local import lambda_shim
    from support_pipeline_ops.local.stack import load_function

    region = config["region"]
    # The event source's own client, not metered; no retries of its own: the loop below polls
    # again, and notices in time when the stack is gone (kill -9 runs no cleanup).
    sqs = boto3.client(
        "sqs", region_name=region, config=Config(retries={"max_attempts": 1, "mode": "standard"})
    )
    meter = CallMeter(config["queue_url"], config["dlq_url"])
    meter.install()
    stdout = CountingStream(sys.stdout)
    sys.stdout = stdout  # before the handler's module binds its log handler to it
    processor = load_function(Path(config["root"]), "processor")
    queue_url, queue_arn = config["queue_url"], config["queue_arn"]
    batch_size = max(1, min(10, int(config["batch_size"])))
    window = max(0.0, float(config.get("batching_window", 0)))
    parent = int(config.get("parent") or os.getppid())  # the stack's pid, given at spawn time

    def receive(count: int, wait_seconds: int) -> list[dict[str, Any]]:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages", []))  # type: ignore[arg-type]

    window_ends = time.monotonic() + window  # the first window begins when polling does
    while not stop.is_set():
        if os.getppid() != parent:
            break  # the stack was killed (kill -9): an orphan must not poll the next one's moto
        extra = 0
        try:
            messages = receive(batch_size, int(config["wait_seconds"]))
            messages, extra = gather(receive, messages, batch_size, window_ends, stop)
        except Exception as exc:  # moto going away at stop, or a hiccup: poll again
            if stop.is_set():
                break
            print(f"local poller: {type(exc).__name__}", file=sys.stderr)
            stop.wait(1)
            continue
        source = {"ReceiveMessage": 1 + extra}
        if not messages:
            try:
                reports.send({"received": 0, "source_calls": source})
            except (BrokenPipeError, EOFError, OSError):
                break  # the stack is gone
            continue
        logged = stdout.bytes
        started = time.perf_counter()
        try:
            answer = processor.handler(
                lambda_shim.sqs_event(messages, queue_arn, region),
                lambda_shim.LocalContext(
                    function_name="processor",
                    timeout_seconds=int(config["timeout"]),
                    memory_limit_in_mb=int(config["memory"]),
                ),
            )
            failed = {
                item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])
            }
        except Exception:
            # As on Lambda: the whole batch comes back after its visibility timeout.
            failed = {m["MessageId"] for m in messages}
        seconds = time.perf_counter() - started
        window_ends = time.monotonic() + window  # the next window begins as this one completes
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            source["DeleteMessageBatch"] = 1
        try:
            reports.send(
                {
                    "received": len(messages),
                    "failed": len(failed),
                    "done": [
                        (m["MessageId"], kind_of(_string_attributes(m.get("MessageAttributes"))))
                        for m in done
                    ],
                    "seconds": seconds,
                    "log_bytes": stdout.bytes - logged,
                    "source_calls": source,
                    **meter.take(),
                }
            )
        except (BrokenPipeError, EOFError, OSError):
            break  # the stack is gone: nothing is left to report to or delete from
        if done:
            try:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            except Exception as exc:  # they come back after the visibility timeout
                print(f"local poller: delete failed: {type(exc).__name__}", file=sys.stderr)


class Ledger:
    """The pollers' reports added up: what ``/_local/status`` says about processing.

    Records are counted once each by message id (a redelivered message done twice is one
    event). A record the processor dead-lettered or deferred (a fresh copy sent back) was done
    by the event source but not processed: ``processed`` leaves it out, so that every accepted
    webhook ends up counted once, as processed or as dead-lettered.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.receives = 0
        self.records = 0
        self.failed = 0
        self.done: dict[str, set[str]] = {WEBHOOK: set(), PIPELINE: set()}
        self.dead_lettered: Counter[str] = Counter()
        self.deferred: Counter[str] = Counter()
        self.scheduled = 0
        self.calls: Counter[str] = Counter()
        self.source_calls: Counter[str] = Counter()
        self.seconds = 0.0
        self.log_bytes = 0
        self.last_done_at: float | None = None

    def add(self, report: dict[str, Any]) -> None:
        self.receives += 1
        self.source_calls.update(report.get("source_calls") or {})
        if not report.get("received"):
            return
        self.batches += 1
        self.records += int(report["received"])
        self.failed += int(report.get("failed", 0))
        for message_id, kind in report.get("done", []):
            self.done.setdefault(kind, set()).add(message_id)
        self.dead_lettered.update(report.get("dead_lettered") or {})
        self.deferred.update(report.get("deferred") or {})
        self.scheduled += int(report.get("scheduled", 0))
        self.calls.update(report.get("calls") or {})
        self.seconds += float(report.get("seconds", 0.0))
        self.log_bytes += int(report.get("log_bytes", 0))
        if report.get("done"):
            self.last_done_at = time.time()

    def processed(self, kind: str = WEBHOOK) -> int:
        return len(self.done.get(kind, ())) - self.dead_lettered[kind] - self.deferred[kind]

    def summary(self) -> dict[str, Any]:
        return {
            "processed": self.processed(WEBHOOK),
            "pipeline_events": self.processed(PIPELINE),
            "scheduled": self.scheduled,
            "deferred": sum(self.deferred.values()),
            "dead_lettered_by_processor": {
                WEBHOOK: self.dead_lettered[WEBHOOK],
                PIPELINE: self.dead_lettered[PIPELINE],
            },
            "last_processed_at": self.last_done_at,
            "processor": {
                "batches": self.batches,
                "records": self.records,
                "records_failed": self.failed,
                "seconds": round(self.seconds, 3),
                "log_bytes": self.log_bytes,
                "calls": dict(sorted(self.calls.items())),
                "event_source_calls": dict(sorted(self.source_calls.items())),
            },
        }
