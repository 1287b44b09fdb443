"""`support-pipeline local` as a person runs it: a real process, a clean environment, free ports.

Every first-hour mistake (a port taken, a bad policy file, a Chatwoot URL without its token)
ends within seconds with one line saying what to do and a non-zero exit; Ctrl-C and SIGTERM
stop a running stack and every process it started.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support_pipeline_ops.local.stack import free_port
from tests.support import NOW, body_of, incoming, signed_headers

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "support-pipeline"
BANNER_END = "Ctrl-C stops everything."
SECRET = "e2e-secret-for-the-process"  # invented


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def run_briefly(*args: str, timeout: float = 15) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(CLI), "local", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, time.monotonic() - started


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_busy_moto_port_is_one_line_naming_it(held_port: int) -> None:
    done, seconds = run_briefly("--moto-port", str(held_port), "--port", "0")
    assert done.returncode == 2
    assert seconds < 10
    assert "Traceback" not in done.stderr
    line = last_line(done.stderr)
    assert f"port {held_port}" in line and "--moto-port" in line, done.stderr


def test_a_busy_http_port_is_one_line_naming_it(held_port: int) -> None:
    done, seconds = run_briefly("--moto-port", "0", "--port", str(held_port))
    assert done.returncode == 2
    assert seconds < 10
    assert "Traceback" not in done.stderr
    line = last_line(done.stderr)
    assert f"port {held_port}" in line and "--port" in line, done.stderr


def test_a_missing_policy_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done, seconds = run_briefly("--moto-port", "0", "--port", "0", "--policy", str(missing))
    assert done.returncode == 2 and seconds < 10
    assert "Traceback" not in done.stderr
    assert str(missing) in last_line(done.stderr)
    assert "--policy" in last_line(done.stderr)


def test_a_bad_policy_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sla: [\n", encoding="utf-8")
    done, seconds = run_briefly("--moto-port", "0", "--port", "0", "--policy", str(bad))
    assert done.returncode == 2 and seconds < 10
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert str(bad) in done.stderr and "policy validate" in done.stderr


def test_a_chatwoot_url_without_a_token_is_one_line() -> None:
    done, seconds = run_briefly(
        "--moto-port", "0", "--port", "0", "--chatwoot-url", "http://127.0.0.1:9"
    )
    assert done.returncode == 2 and seconds < 10
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--chatwoot-token" in done.stderr


class Running:
    """A `support-pipeline local` process, its output read line by line as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        # no metrics file left behind in the temp directory, unless the test names one
        metrics = [] if "--metrics-file" in args else ["--metrics-file", os.devnull]
        self.process = subprocess.Popen(
            [str(CLI), "local", "--port", str(self.port), "--moto-port", "0", *metrics, *args],
            cwd=ROOT,
            env=env or clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return "".join(self.seen)
        raise AssertionError(f"no {text!r} in: {''.join(self.seen)}")

    def drain(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get(timeout=0.5))
            except queue.Empty:
                return "".join(self.seen)

    def children(self) -> list[int]:
        return descendants(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.children():
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent:
                found.append(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def running() -> Iterator[Running]:
    stack = Running("--sweep-every", "0")
    try:
        stack.wait_for(BANNER_END)
        yield stack
    finally:
        stack.stop()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_stack_and_every_child(signum: int) -> None:
    stack = Running("--sweep-every", "0", "--pollers", "2")
    try:
        stack.wait_for(BANNER_END)
        children = stack.children()
        assert len(children) >= 2  # the pollers (and the sweep)
        started = time.monotonic()
        stack.process.send_signal(signum)
        assert stack.process.wait(15) == 0
        assert time.monotonic() - started < 12
        end = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < end:
            time.sleep(0.1)
        assert not [pid for pid in children if alive(pid)], "orphans left behind"
        assert "Stopped." in stack.drain()
    finally:
        stack.stop()


def test_a_second_stack_on_the_same_ports_exits_at_once(running: Running) -> None:
    """The second `make run`: its moto port is the first one's (checked first), then HTTP."""
    moto_port = re.search(r"moto at http://127\.0\.0\.1:(\d+)", "".join(running.seen))
    assert moto_port, running.seen
    done, seconds = run_briefly("--port", str(running.port), "--moto-port", moto_port[1])
    assert done.returncode == 2 and seconds < 10
    assert f"moto (local AWS) port {moto_port[1]}" in last_line(done.stderr)
    done, seconds = run_briefly("--port", str(running.port), "--moto-port", "0")
    assert done.returncode == 2 and seconds < 10
    assert f"port {running.port}" in last_line(done.stderr)
    assert running.process.poll() is None  # the first one is untouched


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    """One stack as `make run HOST=127.0.0.1 BACKOFF=0.25` starts it, its metrics on the side."""
    metrics = tmp_path_factory.mktemp("local") / "metrics.jsonl"
    stack = Running(
        "--host", "127.0.0.1", "--backoff-scale", "0.25", "--sweep-every", "0",
        "--pollers", "1", "--secret", SECRET, "--metrics-file", str(metrics),
    )  # fmt: skip
    try:
        stack.wait_for(BANNER_END)
        yield stack, metrics
    finally:
        stack.stop()


def base(stack: Running) -> str:
    return f"http://127.0.0.1:{stack.port}"


def post(stack: Running, conversation: int, text: str, delivery: str) -> None:
    body = body_of(incoming(text, 600 + conversation, NOW, conversation_id=conversation))
    headers = signed_headers(body, secret=SECRET, timestamp=time.time(), delivery_id=delivery)
    url = f"{base(stack)}/webhooks/chatwoot"
    answer = requests.post(url, data=body, headers=headers, timeout=5)
    assert answer.status_code == 202, answer.text


def settle(stack: Running, processed: int, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = requests.get(f"{base(stack)}/_local/status", timeout=5).json()
        if status["processed"] >= processed and status["queued"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"not processed: {status}")


def test_the_banner_says_port_host_backoff_state_secret_page_logs_and_the_cli(practice) -> None:
    stack, metrics = practice
    said = "".join(stack.seen)
    assert f"127.0.0.1:{stack.port}" in said
    assert "make run PORT=3001 HOST=0.0.0.0" in said
    assert "Backoff scale:   0.25" in said
    assert "State lives in memory" in said
    assert "yours (--secret" in said  # given, so not regenerated
    assert f"http://127.0.0.1:{stack.port}/_local/conversations" in said
    assert str(metrics) in said
    assert "make cli ARGS='conversations list'" in said
    assert ".venv/bin/support-pipeline conversations list" in said
    # the local stack drafts from the layer's sample articles, and says it is local only
    assert "Drafts:          knowledge over the sample articles of a fictional store" in said
    assert "KNOWLEDGE_SAMPLES=allow, set by the local stack only: deployed, drafts stay off" in said


def test_the_conversations_page_shows_a_conversation_posted_through_the_stack(practice) -> None:
    stack, _ = practice
    post(stack, 71, "Hello <script>alert(1)</script>, my order is late", "page-e2e-1")
    settle(stack, 1)
    listed = requests.get(f"{base(stack)}/_local/conversations", timeout=10)
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("text/html")
    assert "/_local/conversations/1/71" in listed.text
    shown = requests.get(f"{base(stack)}/_local/conversations/1/71", timeout=10)
    assert shown.status_code == 200
    assert "Conversation 1/71" in shown.text
    assert "SLA clocks" in shown.text
    assert "<script>" not in shown.text  # every value escaped
    unknown = requests.get(f"{base(stack)}/_local/conversations/1/999", timeout=10)
    assert unknown.status_code == 404
    hostile = requests.get(f"{base(stack)}/_local/conversations/1/%3Cb%3E", timeout=10)
    assert hostile.status_code == 400 and "<b>" not in hostile.text


def test_each_function_logs_under_its_own_name_and_metrics_go_aside(practice) -> None:
    stack, metrics = practice
    post(stack, 72, "First message", "logs-e2e-1")
    settle(stack, 2)
    swept = requests.post(f"{base(stack)}/_local/sweep", timeout=60)
    assert swept.status_code == 200, swept.text
    post(stack, 73, "After the sweep", "logs-e2e-2")
    settle(stack, 3)
    time.sleep(0.5)
    said = stack.drain()
    assert '"_aws"' not in said  # no EMF blob in the log a person reads
    assert '"CloudWatchMetrics"' in metrics.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in said.splitlines() if line.startswith("{")]
    by_service: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_service.setdefault(line.get("service", "?"), []).append(line)
    assert {"ingest", "processor", "sla-sweep"} <= set(by_service), set(by_service)
    sweep_ids = {line.get("function_request_id") for line in by_service["sla-sweep"]}
    for line in by_service["ingest"]:
        assert line.get("function_name") == "ingest", line
        assert line.get("function_request_id") not in sweep_ids, line  # no stale sweep id
    for line in by_service["processor"]:
        assert line.get("function_name") == "processor", line
    assert all(line.get("function_name") == "sla-sweep" for line in by_service["sla-sweep"])


def test_a_stack_killed_with_sigkill_leaves_no_poller_behind() -> None:
    """kill -9 runs no cleanup: the pollers notice their parent is gone and stop."""
    stack = Running("--sweep-every", "0", "--pollers", "2")
    try:
        stack.wait_for(BANNER_END)
        children = stack.children()
        assert len(children) >= 2
        stack.process.kill()
        stack.process.wait(10)
        end = time.monotonic() + 15
        while any(alive(pid) for pid in children) and time.monotonic() < end:
            time.sleep(0.2)
        left = [pid for pid in children if alive(pid)]
        assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in left]
    finally:
        stack.stop()


def test_a_port_out_of_range_is_refused_by_the_parser() -> None:
    finished, seconds = run_briefly("--port", "70000")
    assert finished.returncode == 2 and seconds < 10
    assert "70000 is not a port (0 to 65535)" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_malformed_request_gets_a_400_and_the_local_pages_answer_loopback_only(
    running: Running,
) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as conn:
        conn.sendall(b"POST /webhooks/chatwoot HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        assert conn.recv(200).startswith(b"HTTP/1.1 400")
    from support_pipeline_ops.local.stack import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.1")
    assert not _loopback("192.168.1.20") and not _loopback("10.0.0.5")
    assert "Traceback" not in running.drain()


def test_a_missing_template_is_one_line(tmp_path: Path) -> None:
    finished, seconds = run_briefly("--template", str(tmp_path / "nothing.yaml"))
    assert finished.returncode == 2 and seconds < 10
    assert "no template at" in last_line(finished.stderr)
    assert "Traceback" not in finished.stderr
