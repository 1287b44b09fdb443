"""`support-pipeline load`: post signed webhooks at a pipeline and account for every one.

The webhooks are built from the captured Chatwoot fixtures (tests/fixtures/chatwoot) with fresh
conversation and message ids, signed as Chatwoot signs them, and posted over HTTP (keep-alive,
``--concurrency`` connections, optionally paced at ``--rate`` per second). The mix, per six
conversations:

- five *answered* conversations, the call budget's shape (docs/benchmarks.md, section 4): a
  customer question, an agent reply, a second question, a second reply, a thank-you, and the
  resolution (six webhooks). The first question schedules a draft after the burst window; the
  agent has answered by then, so the draft is skipped (one read). Later questions come right
  after an agent reply (``quiet_after_agent_reply``): no draft.
- one *waiting* conversation: a customer question nobody answers during the run (one webhook).
  Its draft is composed by the knowledge drafter, stored and recorded as a dry-run note.

Conversations are interleaved in groups of ``GROUP`` (many customers talk at once), so an
agent's reply follows the customer's message by ``GROUP`` posts, well inside the burst window.

Against the local stack (``support-pipeline local``) the command then waits for the pipeline to
settle (``/_local/status``: nothing queued, in flight or delayed) and checks that every webhook
the stack accepted during the run was processed or dead-lettered: accepted = processed +
dead-lettered. Exit status 0 when every post got 202 and the accounting balances, 1 otherwise,
2 when the status endpoint cannot be read.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from support_pipeline.chatwoot.signature import sign

GROUP = 50  # conversations interleaved at a time
WAITING_EVERY = 6  # one conversation in six is a question left waiting (it gets a draft)
STATUS_PATH = "/_local/status"
FIXTURES = Path("tests") / "fixtures" / "chatwoot"


class LoadError(Exception):
    """Something the operator can fix (no status endpoint, no fixtures); exit status 2."""


# ---- the mix ---------------------------------------------------------------------------------
def find_fixtures(start: Path | None = None) -> Path:
    """tests/fixtures/chatwoot in the current directory or the nearest parent (the repo)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FIXTURES
        if (candidate / "message_created_incoming.json").is_file():
            return candidate
    raise LoadError("tests/fixtures/chatwoot not found here or above; pass --fixtures")


@dataclass(frozen=True)
class Fixtures:
    incoming: dict[str, Any]
    agent: dict[str, Any]
    resolved: dict[str, Any]

    @classmethod
    def load(cls, folder: Path) -> Fixtures:
        def read(name: str) -> dict[str, Any]:
            loaded: dict[str, Any] = json.loads((folder / f"{name}.json").read_text("utf-8"))
            return loaded

        return cls(
            read("message_created_incoming"),
            read("message_created_outgoing_agent"),
            read("conversation_status_changed_resolved"),
        )


def _customer(fx: Fixtures, text: str, message_id: int, at: float, conv: int) -> dict[str, Any]:
    payload = copy.deepcopy(fx.incoming)
    payload.update(id=message_id, content=text, created_at=at)
    conversation = payload["conversation"]
    conversation.update(
        id=conv, status="open", updated_at=at + 0.5, waiting_since=int(at), created_at=int(at)
    )
    conversation["messages"][0].update(
        id=message_id,
        content=text,
        conversation_id=conv,
        created_at=int(at),
        processed_message_content=text,
    )
    return payload


def _agent(fx: Fixtures, text: str, message_id: int, at: float, conv: int) -> dict[str, Any]:
    payload = copy.deepcopy(fx.agent)
    payload.update(id=message_id, content=text, created_at=at)
    conversation = payload["conversation"]
    conversation.update(id=conv, status="open", updated_at=at + 0.5)
    conversation["first_reply_created_at"] = conversation.get("first_reply_created_at") or at
    for message in conversation.get("messages") or []:
        message.update(id=message_id, content=text, conversation_id=conv, created_at=int(at))
    return payload


def _resolved(fx: Fixtures, at: float, conv: int, first_reply: float) -> dict[str, Any]:
    payload = copy.deepcopy(fx.resolved)
    payload.update(id=conv, status="resolved", updated_at=at, first_reply_created_at=first_reply)
    for message in payload.get("messages") or []:
        message.update(conversation_id=conv)
    return payload


def conversation(fx: Fixtures, number: int, conv: int, start: float) -> list[dict[str, Any]]:
    """The webhooks of the ``number``-th conversation of the mix (id ``conv``), in order.
    Its times end at ``start``: a conversation of the last five minutes."""
    first = conv * 10
    if number % WAITING_EVERY == WAITING_EVERY - 1:
        return [_customer(fx, "Hola, ¿cuánto tarda el envío a Bogotá?", first + 1, start, conv)]
    at = start - 300
    return [
        _customer(fx, "Hola, ¿cuánto tarda el envío?", first + 1, at, conv),
        _agent(fx, "Hola, 3 días hábiles", first + 2, at + 60, conv),
        _customer(fx, "¿y a Cali?", first + 3, at + 120, conv),
        _agent(fx, "También", first + 4, at + 180, conv),
        _customer(fx, "gracias", first + 5, at + 240, conv),
        _resolved(fx, at + 300, conv, at + 60),
    ]


def build_mix(events: int, fx: Fixtures, first_conversation: int, start: float) -> list[bytes]:
    """``events`` webhook bodies: conversations interleaved ``GROUP`` at a time."""
    bodies: list[bytes] = []
    number = 0
    while len(bodies) < events:
        group = [
            conversation(fx, number + i, first_conversation + number + i, start)
            for i in range(GROUP)
        ]
        number += GROUP
        for turn in range(max(len(c) for c in group)):
            for webhooks in group:
                if turn < len(webhooks):
                    bodies.append(json.dumps(webhooks[turn], separators=(",", ":")).encode())
    return bodies[:events]


def run_base(now: float) -> int:
    """The first conversation id of a run: distinct runs against one stack never collide (a
    repeated id would be a duplicate, processed once, and look like a loss)."""
    return (int(now * 10) % 10**9) * 1000 + 1


# ---- posting ---------------------------------------------------------------------------------
@dataclass
class Tally:
    """What the posting side saw, updated by the worker threads."""

    total: int
    posted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)

    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


class Poster:
    """Posts signed bodies over keep-alive connections, ``concurrency`` at a time."""

    def __init__(
        self,
        url: str,
        secret: str,
        concurrency: int = 8,
        rate: float | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.secret = secret
        self.concurrency = max(1, concurrency)
        self.rate = rate if rate and rate > 0 else None
        self.timeout = timeout
        self.clock = clock

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, bodies: list[bytes], tally: Tally, run: str) -> None:
        """Post every body once (no retries: Chatwoot does not retry either)."""
        next_index = iter(range(len(bodies)))
        take = threading.Lock()
        tally.started = time.monotonic()

        def worker() -> None:
            connection: http.client.HTTPConnection | None = None
            while True:
                with take:
                    index = next(next_index, None)
                if index is None:
                    break
                if self.rate is not None:
                    wait = tally.started + index / self.rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                body = bodies[index]
                stamp = int(self.clock())
                headers = {
                    "Content-Type": "application/json",
                    "X-Chatwoot-Signature": sign(self.secret, stamp, body),
                    "X-Chatwoot-Timestamp": str(stamp),
                    "X-Chatwoot-Delivery": f"load-{run}-{index}",
                }
                try:
                    if connection is None:
                        connection = self._connect()
                    connection.request("POST", self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    outcome = str(response.status)
                    if response.will_close:
                        connection.close()
                        connection = None
                except (OSError, http.client.HTTPException) as exc:
                    outcome = type(exc).__name__
                    if connection is not None:
                        connection.close()
                    connection = None
                with tally.lock:
                    tally.posted += 1
                    tally.statuses[outcome] += 1
            if connection is not None:
                connection.close()

        threads = [
            threading.Thread(target=worker, name=f"load-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tally.finished = time.monotonic()


# ---- the stack's status ----------------------------------------------------------------------
def read_status(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The local stack's counts (``/_local/status``)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    try:
        connection.request("GET", parts.path or STATUS_PATH)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise LoadError(f"{url} answered {response.status}")
    status: dict[str, Any] = json.loads(body)
    return status


def _status_during(url: str) -> dict[str, Any]:
    try:
        return read_status(url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise LoadError(f"the local stack stopped answering at {url} ({exc})") from exc


def status_url_for(webhook_url: str) -> str:
    parts = urlsplit(webhook_url)
    return f"http://{parts.hostname}:{parts.port or 80}{STATUS_PATH}"


COUNTED = ("received", "accepted", "processed", "dead_lettered_webhooks", "pipeline_events")


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {name: int(after.get(name, 0)) - int(before.get(name, 0)) for name in COUNTED}


# ---- progress --------------------------------------------------------------------------------
class Progress:
    """One updating line on a terminal; a line every ``every`` seconds otherwise."""

    def __init__(self, out: TextIO, tty: bool | None = None, every: float = 5.0) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.every = 0.5 if self.tty else every
        self._last = 0.0
        self._width = 0

    def show(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.tty:
            padding = " " * max(0, self._width - len(line))
            self._width = len(line)
            self.out.write(f"\r{line}{padding}")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()
        self._width = 0


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class Result:
    events: int
    tally: Tally
    counts: dict[str, int]
    settled: bool
    post_seconds: float
    processed_seconds: float | None  # from the first post until every webhook was accounted for
    settle_seconds: float  # from the first post until nothing was queued, delayed or in flight
    final: dict[str, Any]

    @property
    def balanced(self) -> bool:
        c = self.counts
        return c["accepted"] == c["processed"] + c["dead_lettered_webhooks"]

    @property
    def ok(self) -> bool:
        return (
            self.settled
            and self.balanced
            and self.tally.accepted == self.events
            and self.counts["accepted"] == self.tally.accepted
        )

    def summary(self) -> dict[str, Any]:
        c = self.counts
        return {
            "events": self.events,
            "posted": self.tally.posted,
            "answers": dict(sorted(self.tally.statuses.items())),
            "accepted": c["accepted"],
            "processed": c["processed"],
            "dead_lettered": c["dead_lettered_webhooks"],
            "pipeline_events": c["pipeline_events"],
            "post_seconds": round(self.post_seconds, 3),
            "accepted_per_second": round(self.tally.accepted / self.post_seconds, 1)
            if self.post_seconds
            else None,
            "processed_seconds": round(self.processed_seconds, 3)
            if self.processed_seconds
            else None,
            "processed_per_second": round(c["processed"] / self.processed_seconds, 1)
            if self.processed_seconds
            else None,
            "settle_seconds": round(self.settle_seconds, 3),
            "settled": self.settled,
            "balanced": self.balanced,
            "ok": self.ok,
        }


def run_load(
    url: str,
    secret: str,
    events: int,
    *,
    rate: float | None = None,
    concurrency: int = 8,
    fixtures: Path | None = None,
    status_url: str | None = None,
    settle_timeout: float = 120.0,
    out: TextIO | None = None,
    tty: bool | None = None,
    poll: float = 0.1,
    during: Callable[[Tally], None] | None = None,
) -> Result:
    """Post ``events`` webhooks of the mix, wait for the pipeline to settle, account for them.

    ``settle_timeout`` bounds the wait after the last post while the counts stop moving (a
    pipeline still making progress is waited for). ``during`` is called from the posting side
    once, half-way (tests use it to break things on purpose)."""
    out = out or sys.stdout
    status_url = status_url or status_url_for(url)
    try:
        before = read_status(status_url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise LoadError(
            f"no local stack answers at {status_url} ({exc}); start one with `make run`"
        ) from exc
    if "processed" not in before:
        raise LoadError(f"{status_url} does not count processed events (an older local stack?)")
    fx = Fixtures.load(fixtures or find_fixtures())
    now = time.time()
    bodies = build_mix(events, fx, run_base(now), now)
    tally = Tally(total=events)
    poster = Poster(url, secret, concurrency=concurrency, rate=rate)
    progress = Progress(out, tty=tty)
    run = str(run_base(now))

    posting = threading.Thread(target=poster.post, args=(bodies, tally, run), daemon=True)
    posting.start()
    started = time.monotonic()
    processed_at: float | None = None
    called = False
    status = before
    while posting.is_alive():
        posting.join(poll)
        if during is not None and not called and tally.posted >= events // 2:
            called = True
            during(tally)
        if progress.tty or time.monotonic() - progress._last >= progress.every:
            status = _status_during(status_url)
            progress.show(_line("posting", tally, delta(before, status), started))
    post_seconds = tally.seconds()

    last_change = time.monotonic()
    last_counts: dict[str, int] = {}
    settled = False
    while True:
        status = _status_during(status_url)
        counts = delta(before, status)
        now_m = time.monotonic()
        if processed_at is None and (
            counts["processed"] + counts["dead_lettered_webhooks"] >= counts["accepted"]
        ):
            processed_at = now_m
        if int(status.get("queued", 0)) == 0:  # visible, in flight and delayed
            settled = True
            break
        if counts != last_counts:
            last_counts, last_change = counts, now_m
        elif now_m - last_change > settle_timeout:
            break
        progress.show(_line("settling", tally, counts, started, status))
        time.sleep(poll)
    settle_seconds = time.monotonic() - started
    counts = delta(before, status)
    progress.show(_line("settled" if settled else "stalled", tally, counts, started, status), True)
    progress.done()
    return Result(
        events=events,
        tally=tally,
        counts=counts,
        settled=settled,
        post_seconds=post_seconds,
        processed_seconds=(processed_at - started) if processed_at else None,
        settle_seconds=settle_seconds,
        final=status,
    )


def _line(
    phase: str,
    tally: Tally,
    counts: dict[str, int],
    started: float,
    status: dict[str, Any] | None = None,
) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    queued = f"  queued {status.get('queued', 0)}" if status else ""
    return (
        f"{phase}: posted {tally.posted}/{tally.total} ({tally.posted / elapsed:.0f}/s)  "
        f"accepted {counts['accepted']}  processed {counts['processed']} "
        f"({counts['processed'] / elapsed:.0f}/s)  dead-lettered "
        f"{counts['dead_lettered_webhooks']}{queued}  {elapsed:.1f}s"
    )


def report(result: Result, out: TextIO) -> int:
    s = result.summary()
    out.write(
        f"posted {s['posted']} webhooks in {s['post_seconds']:.2f} s: "
        f"{s['accepted_per_second']} accepted/s; answers {s['answers']}\n"
    )
    if s["processed_per_second"] is not None:
        out.write(
            f"processed {s['processed']} in {s['processed_seconds']:.2f} s from the first post: "
            f"{s['processed_per_second']} processed/s end to end\n"
        )
    out.write(
        f"pipeline's own events (drafts due) processed: {s['pipeline_events']}; settled after "
        f"{s['settle_seconds']:.1f} s\n"
    )
    c = result.counts
    sign_ = "=" if result.balanced else "!="
    out.write(
        f"accepted {c['accepted']} {sign_} processed {c['processed']} + dead-lettered "
        f"{c['dead_lettered_webhooks']}\n"
    )
    problems = []
    if not result.settled:
        problems.append("the pipeline did not settle (still queued or in flight)")
    if not result.balanced:
        missing = c["accepted"] - c["processed"] - c["dead_lettered_webhooks"]
        problems.append(f"{missing} accepted webhook(s) neither processed nor dead-lettered")
    if result.tally.accepted != result.events:
        problems.append(f"{result.events - result.tally.accepted} post(s) were not accepted")
    if c["accepted"] != result.tally.accepted:
        problems.append(
            f"the stack counted {c['accepted']} accepted, this run got "
            f"{result.tally.accepted} 202s (someone else posting?)"
        )
    for problem in problems:
        out.write(f"MISMATCH: {problem}\n")
    if not problems:
        out.write("OK: every accepted webhook was processed or dead-lettered.\n")
    return 0 if result.ok else 1


def add_command(commands: Any) -> None:
    load = commands.add_parser(
        "load", help="post signed webhooks at a local stack and account for every one"
    )
    load.add_argument("--events", type=int, default=1000, help="webhooks to post (default 1000)")
    load.add_argument(
        "--rate", type=float, default=None, help="posts per second (default: flat out)"
    )
    load.add_argument(
        "--url",
        default="http://127.0.0.1:3000/webhooks/chatwoot",
        help="webhook URL (default: the local stack's)",
    )
    load.add_argument(
        "--secret",
        default=None,
        help="the webhook secret (default: $CHATWOOT_WEBHOOK_SECRET)",
    )
    load.add_argument("--concurrency", type=int, default=8, help="connections at once (default 8)")
    load.add_argument(
        "--status-url", default=None, help="default: /_local/status on the URL's host"
    )
    load.add_argument(
        "--fixtures", default=None, help="default: tests/fixtures/chatwoot, found upward"
    )
    load.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        help="give up once the counts have not moved for this many seconds (default 120)",
    )
    load.add_argument("--json", action="store_true", help="print the summary as JSON too")


def main(args: argparse.Namespace, out: TextIO, secret: str | None) -> int:
    if not secret:
        raise LoadError(
            "the webhook secret: --secret or $CHATWOOT_WEBHOOK_SECRET "
            "(`support-pipeline local` prints the one it accepts)"
        )
    if args.events < 1:
        raise LoadError("--events must be at least 1")
    result = run_load(
        args.url,
        secret,
        args.events,
        rate=args.rate,
        concurrency=args.concurrency,
        fixtures=Path(args.fixtures) if args.fixtures else None,
        status_url=args.status_url,
        settle_timeout=args.settle_timeout,
        out=out,
    )
    code = report(result, out)
    if args.json:
        json.dump(result.summary(), out, indent=2)
        out.write("\n")
    return code


def iter_chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
