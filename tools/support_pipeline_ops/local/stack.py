"""`support-pipeline local`: the whole pipeline on one machine, no AWS account.

moto server plays AWS on loopback; the template's queues, tables, bucket and secret parameter
are created from template.yaml; an HTTP server turns each request on /webhooks/chatwoot into an
HTTP API v2 event for the real ingest handler; a poller feeds EventsQueue into the real processor
handler with the template's batch settings, deleting only successes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3

from support_pipeline.chatwoot.payload import to_epoch
from support_pipeline_ops.local import lambda_shim
from support_pipeline_ops.local import template as cfn
from support_pipeline_ops.local.poller import MetricsSplit
from support_pipeline_ops.queues import queue_depth

WEBHOOK_PATH = "/webhooks/chatwoot"
STATUS_PATH = "/_local/status"
SWEEP_PATH = "/_local/sweep"
REPORT_PATH = "/_local/report"
CONVERSATIONS_PATH = "/_local/conversations"  # the list; /<account>/<conversation>: one
REPORT_FORMATS = {
    "html": ("report.html", "text/html; charset=utf-8"),
    "json": ("report.json", "application/json"),
    "md": ("report.md", "text/markdown; charset=utf-8"),
    "csv": ("report.csv", "text/csv; charset=utf-8"),
}
LOCAL_POLICY_PARAM = "/support-pipeline/support-policy"
HTTP_PORT_OPTION = "--port (make run PORT=...)"
MOTO_PORT_OPTION = "--moto-port (make run MOTO_PORT=...)"
POLL_WAIT_SECONDS = 1  # pollers long-poll this long (short: stopping waits for one poll)


LOCAL_PREFIX = "/_local/"


def _loopback(address: str) -> bool:
    """Whether a client address is this machine (IPv4 or IPv6 loopback)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return (mapped or ip).is_loopback


class LocalStackError(Exception):
    """Something the person starting the stack can fix (a busy port, a bad policy file): said in
    one line, what is wrong and what to do, with no traceback."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def check_port(host: str, port: int, what: str, option: str) -> None:
    """Refuse a port another program holds, before anything starts (port 0: any free one)."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as exc:
        raise LocalStackError(
            f"cannot listen on {host}:{port} ({one_line(exc)}): pass a usable {option}"
        ) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LocalStackError(port_message(host, port, what, option, exc)) from None


def port_message(host: str, port: int, what: str, option: str, exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE or "in use" in str(exc):
        return (
            f"the {what} port {port} ({host}) is in use: stop the other `support-pipeline "
            f"local` (or whatever holds it), or pass {option} with a free port"
        )
    reason = exc.strerror or one_line(exc)
    return f"cannot listen on {host}:{port} for the {what} ({reason}): pass a usable {option}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def load_function(root: Path, function_dir: str) -> ModuleType:
    """Import functions/<dir>/app.py as its own module, as Lambda would load it."""
    name = f"local_{function_dir}_app"
    spec = importlib.util.spec_from_file_location(
        name, root / "functions" / function_dir / "app.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load functions/{function_dir}/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LocalStack:
    """A running local pipeline. ``start()`` then ``stop()``; usable as a context manager."""

    template_path: Path
    secret: str
    host: str = "127.0.0.1"
    port: int = 3000
    moto_port: int = 5005
    stack_name: str = "support-pipeline-local"
    chatwoot_url: str = ""
    chatwoot_token: str = ""
    sweep_every: float | None = None  # seconds; None: the template's rate; 0: only on request
    policy_file: Path | None = None  # a support policy to load through SSM, as a deployment would
    pollers: int | None = None  # batches at once; None: the template's MaximumConcurrency
    parameters: dict[str, str] = field(default_factory=dict)  # template Parameter overrides
    metrics_file: Path | None = None  # EMF metric blobs go here, not to stdout (None: stdout)
    backoff_scale: float = 1.0  # retry delays times this (LOCAL_BACKOFF_SCALE), for practice
    stack: cfn.Stack | None = None
    ingest_seconds: float = 0.0  # time spent in the ingest handler, all requests
    counts: dict[str, int] = field(default_factory=lambda: {"received": 0, "accepted": 0})
    _threads: list[threading.Thread] = field(default_factory=list)
    _pollers: list[Any] = field(default_factory=list)  # multiprocessing.Process
    _reports: list[Any] = field(default_factory=list)  # multiprocessing Connection, per poller
    _sweep_process: Any = None  # multiprocessing.Process: the SLA sweep's
    _sweep_requests: Any = None  # its end of the pipe to it
    _report_lock: threading.Lock = field(default_factory=threading.Lock)
    _meter: Any = None  # poller.Ledger
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sweep_lock: threading.Lock = field(default_factory=threading.Lock)
    # Signalled when a webhook is queued (wakes the poller) and after each batch (wakes waiters).
    _work: threading.Condition = field(default_factory=threading.Condition)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}"

    def preflight(self) -> str | None:
        """What can be refused before anything starts, as a ``LocalStackError``: a Chatwoot URL
        without its token, a missing or invalid policy file, a port another program holds.
        Returns the policy file's text, if one is given."""
        if self.chatwoot_url and not self.chatwoot_token:
            raise LocalStackError(
                "--chatwoot-url needs its API access token: pass --chatwoot-token or set "
                "$CHATWOOT_API_TOKEN (or drop the URL for dry runs)"
            )
        text = None
        if self.policy_file is not None:
            from support_pipeline.policy import PolicyError, parse_policy_text

            try:
                text = Path(self.policy_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise LocalStackError(
                    f"cannot read the policy file {self.policy_file} "
                    f"({exc.strerror or one_line(exc)}): check the --policy path"
                ) from None
            try:
                parse_policy_text(text, str(self.policy_file))
            except PolicyError as exc:
                raise LocalStackError(
                    f"{one_line(exc)} (fix the file, or check it with "
                    "`support-pipeline policy validate`)"
                ) from None
        if not 0 < self.backoff_scale <= 1:
            raise LocalStackError(
                f"the backoff scale must be > 0 and <= 1 (0.1: retries ten times sooner), "
                f"got {self.backoff_scale:g}: pass another --backoff-scale (make run BACKOFF=...)"
            )
        check_port("127.0.0.1", self.moto_port, "moto (local AWS)", MOTO_PORT_OPTION)
        check_port(self.host, self.port, "webhook HTTP", HTTP_PORT_OPTION)
        return text

    def start(self) -> LocalStack:
        policy_text = self.preflight()
        from support_pipeline_ops.local import moto_atomic, moto_fast
        from support_pipeline_ops.local.moto_server import MotoServer

        moto_atomic.install()  # the poller, the sweep and HTTP threads write concurrently
        moto_fast.install()  # moto's hot paths without their O(table) and O(queue) steps
        # A new stack is a new deployment: parameters cached by an earlier one in this process
        # (Powertools caches them per process) must not leak into it.
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log
        try:
            self._moto = MotoServer("127.0.0.1", self.moto_port).start()
        except OSError as exc:  # taken since the check
            raise LocalStackError(
                port_message("127.0.0.1", self.moto_port, "moto (local AWS)", MOTO_PORT_OPTION, exc)
            ) from None
        self.moto_port = self._moto.port  # the real one, if 0 asked for any free port
        os.environ.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",  # noqa: S106  # nosec B106 - moto accepts any credentials
            AWS_DEFAULT_REGION=cfn.REGION,
        )
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        clients: dict[str, Any] = {
            name: boto3.client(name, region_name=cfn.REGION)
            for name in ("sqs", "dynamodb", "s3", "ssm", "sns")
        }
        secrets = {"WebhookSecretParamName": self.secret}
        overrides = dict(self.parameters)
        if self.chatwoot_url:
            overrides["ChatwootBaseUrl"] = self.chatwoot_url
            secrets["ChatwootApiTokenParamName"] = self.chatwoot_token
        if self.policy_file is not None:
            overrides["SupportPolicyParamName"] = LOCAL_POLICY_PARAM
        self.stack = cfn.provision(
            cfn.load(self.template_path),
            clients,
            stack_name=self.stack_name,
            overrides=overrides,
            secrets=secrets,
        )
        if policy_text is not None:
            clients["ssm"].put_parameter(
                Name=LOCAL_POLICY_PARAM, Value=policy_text, Type="String", Overwrite=True
            )
        # Ingest last: this process is the ingest function's execution environment (its
        # POWERTOOLS_SERVICE_NAME names every line it logs); the processor and the sweep run in
        # processes of their own, each with its own environment and Powertools state.
        for function in ("ProcessorFunction", "SlaSweepFunction", "IngestFunction"):
            os.environ.update(self.stack.function_environment(function))
        # A local Chatwoot (the fake one, or yours on loopback) speaks plain http; deployed
        # functions never get this, so they refuse an http:// ChatwootBaseUrl.
        os.environ["CHATWOOT_ALLOW_HTTP"] = "true"
        # Drafts may come from the layer's sample articles (a fictional store's), so the local
        # stack drafts out of the box; deployed functions never get this, and draft only from a
        # knowledge source the team configures (docs/drafters.md).
        from support_pipeline.config import KNOWLEDGE_SAMPLES_ENV

        os.environ[KNOWLEDGE_SAMPLES_ENV] = "allow"
        root = self.template_path.parent
        if self.metrics_file is not None:
            Path(self.metrics_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.metrics_file).write_text("", encoding="utf-8")
            if not isinstance(sys.stdout, MetricsSplit):
                sys.stdout = MetricsSplit(sys.stdout, self.metrics_file)
        self._ingest = load_function(root, "ingest")
        self._sqs = clients["sqs"]
        from support_pipeline_ops.local.poller import Ledger

        self._meter = Ledger()
        self._start_http()
        self._start_pollers()
        self._start_sweep_process()
        self._start_sweeper()
        return self

    def drafts(self) -> str:
        """What the processor drafts from under the policy in force (the banner's line)."""
        from support_pipeline.config import KNOWLEDGE_SAMPLES_ENV
        from support_pipeline.drafts.registry import in_force
        from support_pipeline.policy import PolicySource

        policy = PolicySource(LOCAL_POLICY_PARAM if self.policy_file else "").current()
        state = in_force(policy.drafts, samples_allowed=True)
        if not state.samples:
            return state.summary()
        return (
            f"{state.summary()}\n"
            f"                   ({KNOWLEDGE_SAMPLES_ENV}=allow, set by the local stack only: "
            "deployed, drafts stay off\n"
            "                   until a knowledge source is configured, docs/drafters.md)"
        )

    def sweep(self, now: float | None = None) -> dict[str, Any]:
        """Run the SLA sweep as its schedule would, as of ``now`` (default: the real time)."""
        when = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": cfn.REGION,
            "resources": [],
            "detail": {},
        }
        with self._sweep_lock:
            timeout = int(self._running().parameters.get("SlaSweepTimeoutSeconds", "120"))
            self._sweep_requests.send(event)
            # Its first request waits for the process to load the function too.
            if not self._sweep_requests.poll(timeout + 60):
                raise TimeoutError(f"the local SLA sweep did not answer in {timeout + 60} s")
            try:
                outcome, result = self._sweep_requests.recv()
            except EOFError:
                raise RuntimeError("the local SLA sweep process is gone") from None
        if outcome != "ok":
            raise RuntimeError(f"the SLA sweep failed: {result}")
        return dict(result)

    def _start_sweep_process(self) -> None:
        """The SLA sweep's execution environment: a process of its own, as on Lambda (see
        ``poller.run_sweeper``), asked for each sweep over a pipe."""
        import multiprocessing

        from support_pipeline_ops.local import poller

        stack = self._running()
        config = {
            "env": {**os.environ, **stack.function_environment("SlaSweepFunction")},
            "root": str(self.template_path.parent),
            "timeout": int(stack.parameters.get("SlaSweepTimeoutSeconds", "120")),
            "metrics_file": str(self.metrics_file) if self.metrics_file else "",
        }
        context = multiprocessing.get_context("spawn")
        here, there = context.Pipe(duplex=True)
        process = context.Process(
            target=poller.run_sweeper,
            args=(config, there, self._poller_stop),
            name="local-sla-sweep",
            daemon=True,
        )
        process.start()
        there.close()
        self._sweep_requests = here
        self._sweep_process = process

    def report(self, week: str | None = None) -> dict[str, bytes]:
        """The support report, as the weekly function makes it, stored under reports/ in the
        local bucket: of ``week`` (``YYYY-Www``), else of this week so far (the latest data)."""
        import time as clock

        from support_pipeline.chatwoot.client import ChatwootClient
        from support_pipeline.config import SupportSettings
        from support_pipeline.policy import PolicySource
        from support_pipeline.report.builder import ReportBuilder
        from support_pipeline.report.health import HealthReader
        from support_pipeline.report.period import Period
        from support_pipeline.report.publish import upload
        from support_pipeline.report.settings import ReportSettings
        from support_pipeline.store import ConversationStore

        stack = self._running()
        policy = PolicySource(LOCAL_POLICY_PARAM if self.policy_file else "").current()
        period = (
            Period.iso_week(week, policy.zone)
            if week
            else Period.week_to_date(clock.time(), policy.zone)
        )
        settings = ReportSettings(
            conversations_table=stack.physical["ConversationsTable"],
            payload_bucket=stack.physical["PayloadBucket"],
            events_dlq_url=stack.physical["EventsDLQ"],
            support=SupportSettings(chatwoot_base_url=self.chatwoot_url),
        )
        token = self.chatwoot_token
        chatwoot = ChatwootClient(self.chatwoot_url, lambda: token) if self.chatwoot_url else None
        built = ReportBuilder(
            ConversationStore(
                boto3.resource("dynamodb", region_name=cfn.REGION), settings.conversations_table
            ),
            policy,
            settings,
            HealthReader(
                boto3.client("cloudwatch", region_name=cfn.REGION),
                self._sqs,
                settings.events_dlq_url,
            ),
            chatwoot,
        ).build(period)
        upload(built, boto3.client("s3", region_name=cfn.REGION), settings.payload_bucket)
        return built.files()

    def conversations_page(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        """``conversations list`` and ``conversations show`` as pages: the list at
        CONVERSATIONS_PATH (``?account=``), one conversation at ``.../<account>/<conversation>``;
        the same view as the CLI's, every value escaped."""
        from urllib.parse import unquote

        from support_pipeline.policy import PolicySource
        from support_pipeline.processing.errors import PermanentError
        from support_pipeline_ops import conversations_cli

        stack = self._running()
        tables = conversations_cli.Tables(
            boto3.resource("dynamodb", region_name=cfn.REGION),
            stack.physical["ConversationsTable"],
            stack.physical["ActionsTable"],
        )
        rest = [unquote(part) for part in path[len(CONVERSATIONS_PATH) :].split("/") if part]
        try:
            if not rest:
                rows, complete = conversations_cli.conversation_list(
                    tables, query.get("account") or None, include_closed=True
                )
                return 200, conversation_list_html(rows, complete)
            if len(rest) != 2:
                return 404, message_html(
                    "No such page", f"Try {CONVERSATIONS_PATH}/ACCOUNT/CONVERSATION."
                )
            policy = PolicySource(LOCAL_POLICY_PARAM if self.policy_file else "").current()
            view = conversations_cli.conversation_view(tables, rest[0], rest[1], policy)
        except PermanentError as error:  # a malformed id
            return 400, message_html("Bad request", getattr(error, "reason", None) or str(error))
        if view is None:
            return 404, message_html(
                "No such conversation",
                f"The pipeline has no record of conversation {rest[1]} of account {rest[0]}.",
            )
        return 200, conversations_cli.render_conversation_html(view)

    def sweep_interval(self) -> float:
        if self.sweep_every is not None:
            return self.sweep_every
        return 60.0 * float(self._running().parameters.get("SlaSweepRateMinutes", "5"))

    def sweep_schedule(self) -> str:
        every = self.sweep_interval()
        return f"every {every:g} s" if every > 0 else "only on request"

    def _start_sweeper(self) -> None:
        every = self.sweep_interval()
        if every <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception as exc:  # the next sweep tries again
                    print(f"local sweep: {type(exc).__name__}", file=sys.stderr)

        thread = threading.Thread(target=loop, name="local-sla-sweep", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_http(self) -> None:
        stack = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "support-pipeline-local"
            protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway; every answer has a length
            disable_nagle_algorithm = True  # headers and body are two writes: send both at once

            def _serve(self) -> None:
                url = urlsplit(self.path)
                try:
                    body = self._body()
                except ValueError:  # a length or chunk size that is not a number
                    self.close_connection = True
                    self._answer(400, {"status": "rejected", "reason": "malformed request body"})
                    return
                if url.path.startswith(LOCAL_PREFIX) and not _loopback(self.client_address[0]):
                    # The /_local pages show every conversation and can run the sweep: they
                    # answer this machine only, whatever --host opens the webhook to.
                    self._answer(
                        403, {"status": "rejected", "reason": "local pages: loopback only"}
                    )
                    return
                if url.path == STATUS_PATH and self.command == "GET":
                    self._answer(200, stack.status())
                    return
                if url.path == SWEEP_PATH and self.command == "POST":
                    query = dict(parse_qsl(url.query))
                    now = to_epoch(query.get("now")) if query.get("now") else None
                    self._answer(200, stack.sweep(now))
                    return
                if url.path == REPORT_PATH and self.command == "GET":
                    query = dict(parse_qsl(url.query))
                    name, kind = REPORT_FORMATS.get(query.get("format", "html"), ("", ""))
                    if not name:
                        self._answer(404, {"status": "rejected", "reason": "no such format"})
                        return
                    try:
                        files = stack.report(query.get("week") or None)
                    except ValueError as error:  # a malformed week
                        self._answer(400, {"status": "rejected", "reason": str(error)})
                        return
                    self._send(200, files[name], kind)
                    return
                if (
                    url.path == CONVERSATIONS_PATH or url.path.startswith(CONVERSATIONS_PATH + "/")
                ) and self.command == "GET":
                    status, page = stack.conversations_page(url.path, dict(parse_qsl(url.query)))
                    self._send(status, page.encode(), "text/html; charset=utf-8")
                    return
                if url.path != WEBHOOK_PATH:
                    self._answer(404, {"status": "rejected", "reason": "no such route"})
                    return
                event = lambda_shim.http_api_event(
                    self.command,
                    url.path,
                    dict(self.headers.items()),
                    body,
                    url.query,
                    self.client_address[0],
                )
                # One ingest execution environment: a request at a time, as Lambda runs one.
                with stack._lock:
                    stack.counts["received"] += 1
                    started = time.perf_counter()
                    answer = stack._ingest.handler(
                        event, lambda_shim.LocalContext(function_name="ingest", timeout_seconds=4)
                    )
                    stack.ingest_seconds += time.perf_counter() - started
                    if answer["statusCode"] == 202:
                        stack.counts["accepted"] += 1
                if answer["statusCode"] == 202:
                    with stack._work:
                        stack._work.notify_all()
                self.send_response(answer["statusCode"])
                for name, value in answer.get("headers", {}).items():
                    self.send_header(name, value)
                payload = answer.get("body", "").encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                """The whole request body (nothing of it may be read as the next request)."""
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length > 0 else b""

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, payload: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # the handlers log structured JSON themselves

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the listen backlog: 5 resets a burst of new connections

            def handle_error(self, request: Any, client_address: Any) -> None:
                # One line, not socketserver's traceback: a bad client is not the stack's fault.
                print(
                    f"local http: a request from {client_address[0]} failed "
                    f"({type(sys.exc_info()[1]).__name__})",
                    file=sys.stderr,
                )

        try:
            self._http = Server((self.host, self.port), Handler)
        except OSError as exc:  # taken since the check
            raise LocalStackError(
                port_message(self.host, self.port, "webhook HTTP", HTTP_PORT_OPTION, exc)
            ) from None
        self.port = self._http.server_address[1]
        thread = threading.Thread(target=self._http.serve_forever, name="local-http", daemon=True)
        thread.start()
        self._threads.append(thread)

    def poller_count(self) -> int:
        """How many batches run at once: ``pollers``, else the template's MaximumConcurrency."""
        if self.pollers:
            return max(1, self.pollers)
        source = self._running().sqs_event_source("ProcessorFunction")
        return max(1, int(source.get("ScalingConfig", {}).get("MaximumConcurrency", 1)))

    def _start_pollers(self) -> None:
        """Processor execution environments: one process each (see local/poller.py)."""
        import multiprocessing

        from support_pipeline_ops.local import poller

        stack = self._running()
        source = stack.sqs_event_source("ProcessorFunction")
        spec = stack.template["Resources"]["ProcessorFunction"]["Properties"]
        memory = spec.get("MemorySize") or stack.template.get("Globals", {}).get(
            "Function", {}
        ).get("MemorySize", 128)
        from support_pipeline.config import BACKOFF_SCALE_ENV

        # The backoff scale reaches the processor as an environment variable only the local
        # stack sets (never the template: deployed, every delay is the policy's).
        scale = {BACKOFF_SCALE_ENV: f"{self.backoff_scale:g}"} if self.backoff_scale != 1 else {}
        config = {
            "env": {**os.environ, **stack.function_environment("ProcessorFunction"), **scale},
            "root": str(self.template_path.parent),
            "region": cfn.REGION,
            "queue_url": stack.physical["EventsQueue"],
            "queue_arn": stack.attributes[("EventsQueue", "Arn")],
            "dlq_url": stack.physical["EventsDLQ"],
            "batch_size": int(source.get("BatchSize", 10)),
            "batching_window": float(source.get("MaximumBatchingWindowInSeconds", 0)),
            "timeout": int(stack.parameters.get("ProcessorTimeoutSeconds", "30")),
            "memory": int(memory),
            "wait_seconds": POLL_WAIT_SECONDS,
            "parent": os.getpid(),  # a poller whose parent is gone (kill -9) stops
            "metrics_file": str(self.metrics_file) if self.metrics_file else "",
        }
        context = multiprocessing.get_context("spawn")
        self._poller_stop = context.Event()
        for number in range(self.poller_count()):
            receiving, sending = context.Pipe(duplex=False)
            process = context.Process(
                target=poller.run,
                args=(config, sending, self._poller_stop),
                name=f"local-poller-{number}",
                daemon=True,
            )
            process.start()
            sending.close()
            self._pollers.append(process)
            self._reports.append(receiving)
        thread = threading.Thread(target=self._read_reports, name="local-reports", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read_reports(self) -> None:
        from multiprocessing.connection import wait

        while not self._stop.is_set() and self._reports:
            ready = wait(list(self._reports), timeout=0.5)
            if ready:
                self._drain_reports()

    def _drain_reports(self) -> None:
        """Count every batch the pollers reported so far (also called by ``status()``)."""
        changed = False
        with self._report_lock:
            for connection in list(self._reports):
                try:
                    while connection.poll():
                        self._meter.add(connection.recv())
                        changed = True
                except (EOFError, OSError):
                    self._reports.remove(connection)  # that poller is gone
        if changed:
            with self._work:
                self._work.notify_all()

    def wait_until_settled(self, timeout: float = 20.0) -> dict[str, Any]:
        """Block until EventsQueue is empty (every accepted event processed or dead-lettered),
        waking on each batch the poller finishes rather than on a timer."""
        end = time.monotonic() + timeout
        with self._work:
            while True:
                status = self.status()
                if status["queued"] == 0:
                    return status
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"EventsQueue did not drain: {status}")
                self._work.wait(timeout=left)

    def status(self) -> dict[str, Any]:
        """Counts for people and tests: what came in, what waits, what is dead-lettered."""
        stack = self._running()

        def depth(url: str) -> int:
            # Delayed messages too: the pipeline's own scheduled events (drafts) are work to do.
            return queue_depth(self._sqs, url).total

        # The queues first, then the reports: a poller reports a batch before deleting it, so
        # whatever the queues no longer hold is counted below.
        queued = depth(stack.physical["EventsQueue"])
        dead_lettered = depth(stack.physical["EventsDLQ"])
        self._drain_reports()
        with self._report_lock:
            ledger = self._meter.summary() if self._meter is not None else {}
        own = ledger.get("dead_lettered_by_processor", {}).get("pipeline", 0)
        return {
            **self.counts,
            "batches": ledger.get("processor", {}).get("batches", 0),
            **ledger,
            "pollers": len(self._pollers),
            "ingest_seconds": round(self.ingest_seconds, 3),
            "queued": queued,
            "dead_lettered": dead_lettered,
            # What is in the DLQ and is not one of the pipeline's own events the processor put
            # there: accepted webhooks that were not processed (purging the DLQ breaks this).
            "dead_lettered_webhooks": max(0, dead_lettered - own),
        }

    def _running(self) -> cfn.Stack:
        if self.stack is None:
            raise RuntimeError("the local stack is not started")
        return self.stack

    def exports(self) -> dict[str, str]:
        stack = self._running()
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # nosec B105 - moto accepts any credentials
            "AWS_DEFAULT_REGION": cfn.REGION,
            "EVENTS_QUEUE_URL": stack.physical["EventsQueue"],
            "EVENTS_DLQ_URL": stack.physical["EventsDLQ"],
            "PAYLOAD_BUCKET": stack.physical["PayloadBucket"],
            "ACTIONS_TABLE": stack.physical["ActionsTable"],
            "CONVERSATIONS_TABLE": stack.physical["ConversationsTable"],
            "PAUSE_PARAM": stack.parameters["PauseParamName"],
        }

    def stop(self) -> None:
        """Stop whatever started, on every path (a failed start too): each step on its own, so
        one failing cannot leave a child process behind."""
        self._stop.set()
        with self._work:
            self._work.notify_all()
        steps = []
        if hasattr(self, "_http"):
            steps += [self._http.shutdown, self._http.server_close]
        if hasattr(self, "_poller_stop"):
            steps.append(self._poller_stop.set)
        steps += [self._stop_processes, self._join_threads]
        if hasattr(self, "_moto"):
            steps.append(self._moto.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # the next step still runs
                print(f"local stack: stopping: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _stop_processes(self) -> None:
        children = [*self._pollers, *([self._sweep_process] if self._sweep_process else [])]
        end = time.monotonic() + POLL_WAIT_SECONDS + 5  # a poll, then its batch (or sweep)
        for process in children:
            process.join(timeout=max(0.1, end - time.monotonic()))
        for process in children:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def message_html(title: str, text: str) -> str:
    from html import escape

    from support_pipeline_ops.conversations_cli import PAGE_STYLE

    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><style>{PAGE_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p>{escape(text)}</p></body></html>"
    )


def conversation_list_html(rows: list[dict[str, Any]], complete: bool) -> str:
    """``conversations list`` as a page, each row linking to its conversation."""
    from html import escape
    from urllib.parse import quote

    from support_pipeline_ops.conversations_cli import PAGE_STYLE

    heads = ["account", "conversation", "status", "priority", "next SLA moment", "escalated"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Conversations"
        f"</title><style>{PAGE_STYLE}</style></head><body><h1>Conversations</h1>",
        f"<p>{len(rows)} known to the pipeline{'' if complete else ' (the first ones)'}.</p>",
        "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>",
    ]
    for row in rows:
        account, conversation = str(row["account_id"]), str(row["conversation_id"])
        link = f"{CONVERSATIONS_PATH}/{quote(account, safe='')}/{quote(conversation, safe='')}"
        cells = [
            row.get("status"),
            row.get("priority"),
            row.get("next_due"),
            "yes" if row.get("escalated") else "no",
        ]
        parts.append(
            f"<tr><td>{escape(account)}</td><td><a href='{escape(link, quote=True)}'>"
            f"{escape(conversation)}</a></td>"
            + "".join(f"<td>{escape('-' if c is None else str(c))}</td>" for c in cells)
            + "</tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)


def default_metrics_file(args: argparse.Namespace) -> Path:
    import tempfile

    name = f"metrics-{args.port}.jsonl" if args.port else f"metrics-{os.getpid()}.jsonl"
    return Path(tempfile.gettempdir()) / "support-pipeline-local" / name


def banner(stack: LocalStack, secret: str, generated: bool) -> str:
    """What a person needs to use the running stack, all of it settings they can change."""
    every = ("0.0.0.0", "::", "")  # noqa: S104  # nosec B104 - a check, not a bind
    here = "127.0.0.1" if stack.host in every else stack.host
    base = f"http://{here}:{stack.port}"
    listening = f"{stack.host}:{stack.port}"
    if here != stack.host:
        listening += (
            " (every interface: a Chatwoot in a container uses this machine's address; the"
            " /_local pages below still answer this machine only, and moto stays on 127.0.0.1)"
        )
    scale = (
        "1 (retry delays as deployed)"
        if stack.backoff_scale == 1
        else f"{stack.backoff_scale:g} (retry delays {stack.backoff_scale:g} times as deployed)"
    )
    exports = "\n".join(f"  export {name}={value}" for name, value in stack.exports().items())
    secret_note = (
        "generated for this run: a new one each start unless you pass --secret or set "
        "$CHATWOOT_WEBHOOK_SECRET"
        if generated
        else "yours (--secret / $CHATWOOT_WEBHOOK_SECRET)"
    )
    return f"""
Chatwoot support pipeline running locally (moto at {stack.endpoint}, no AWS account).

  Listening on:    {listening}   (make run PORT=3001 HOST=0.0.0.0)
  Webhook URL:     {base}{WEBHOOK_PATH}
  Webhook secret:  {secret}
                   ({secret_note})
  Status:          {base}{STATUS_PATH}
  Conversations:   {base}{CONVERSATIONS_PATH}   (one: {CONVERSATIONS_PATH}/ACCOUNT/CONVERSATION)
  Chatwoot:        {stack.chatwoot_url or "none: actions are dry runs (`actions list`)"}
  Drafts:          {stack.drafts()}
  Processor:       {len(stack._pollers)} batches at once (pollers)
  Backoff scale:   {scale}   (make run BACKOFF=0.1)
  SLA sweep:       {stack.sweep_schedule()}; run one now with
                   curl -X POST {base}{SWEEP_PATH}
  Report:          {base}{REPORT_PATH}
                   (this week so far; ?week=2026-W39 for a past week, &format=json|md|csv)
  Logs:            this terminal, one JSON line each, named by function (service: ingest,
                   processor, sla-sweep); metric blobs (EMF) go to
                   {stack.metrics_file or "this terminal"}

State lives in memory (moto): stopping the stack forgets every table, queue and message.

Point Chatwoot (or a tunnel to it) at the URL and give it this secret. For the ops CLI, in
another shell from this directory, paste these lines:

{exports}

and then, for example:

  make cli ARGS='conversations list'
  make cli ARGS='conversations show 1 42'
  make cli ARGS='dlq list'
  make cli ARGS='report --week 2026-W39'

(or .venv/bin/support-pipeline conversations list, and the same for every verb)

Ctrl-C stops everything."""


def run_local(args: argparse.Namespace) -> int:
    """The README's run command: start, print how to use it, run until Ctrl-C."""
    # Handlers first: a Ctrl-C during start-up must still stop moto and the threads cleanly.
    stopped = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopped.is_set():  # asked twice: stop now, whatever start-up was doing
            raise KeyboardInterrupt
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    import warnings

    # Powertools warns on every invocation that published no metric: noise in a terminal.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    try:
        template = Path(args.template) if args.template else cfn.find_template()
        if not template.is_file():
            raise FileNotFoundError(f"no template at {template}")
    except FileNotFoundError as error:
        print(
            f"support-pipeline local: {error}; run it from the repository (or pass --template)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    secret = args.secret or secrets.token_urlsafe(32)
    stack = LocalStack(
        template_path=template,
        secret=secret,
        host=args.host,
        port=args.port,
        moto_port=args.moto_port,
        stack_name=args.stack_name,
        chatwoot_url=args.chatwoot_url,
        chatwoot_token=args.chatwoot_token,
        sweep_every=args.sweep_every,
        policy_file=Path(args.policy) if args.policy else None,
        pollers=args.pollers,
        backoff_scale=args.backoff_scale,
        metrics_file=Path(args.metrics_file) if args.metrics_file else default_metrics_file(args),
    )
    try:
        stack.start()
    except LocalStackError as error:
        stack.stop()
        print(f"support-pipeline local: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        stack.stop()
        return 130
    except BaseException:
        stack.stop()
        raise
    if stopped.is_set():
        stack.stop()
        return 0
    print(banner(stack, secret, generated=not args.secret), flush=True)

    while not stopped.wait(0.5):  # a timed wait lets the signal handler run promptly
        pass
    print("\nStopping...", flush=True)
    try:
        stack.stop()
    except KeyboardInterrupt:  # asked again while stopping: stop the rest without waiting
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("Stopped (interrupted).", flush=True)
        return 130
    print("Stopped.", flush=True)
    return 0
