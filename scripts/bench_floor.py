"""`make bench`, the floor under "Local stack end to end": what one AWS call costs before any
pipeline code runs.

Every function of the local stack reaches AWS the way it does in Lambda: a boto3 client, HTTP to
an endpoint (moto's server here). Two figures per call, CPU time, measured in one process:

- **botocore alone**: a DynamoDB ``GetItem`` and ``PutItem`` answered by a server that does no
  work (it sends back a fixed, valid answer the moment a request is whole, from its own thread).
  This is what the calling process spends: parameter validation, serialisation, SigV4 signing,
  urllib3 and http.client, parsing the answer. No AWS emulator can make it smaller.
- **moto**: the same calls answered by the local stack's moto server (moto_fast installed, as
  the stack runs it), on the template's ConversationsTable with its indexes: the caller's CPU
  and the server's, apart.

With the local stack's measured AWS calls per webhook, the first gives the most webhooks/s two
cores could carry if AWS, the pipeline's own code, the HTTP front and the load generator cost
nothing at all.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

# A timeline item as the processor writes one: it sits in the ByAccountDay index, so each
# PutItem also writes an index entry (as the pipeline's writes do).
_ITEM = {
    "pk": {"S": "CONV#1#1"},
    "sk": {"S": "RECORD"},
    "account_day": {"S": "1#2026-11-28"},
    "occurred_key": {"S": "2026-11-28T00:00:00Z#1"},
    "body": {"S": "x" * 400},
}


class InstantServer:
    """HTTP/1.1 on loopback with keep-alive; answers every request with one fixed DynamoDB
    answer (``{"Item": ...}`` for GetItem, ``{}`` otherwise) as soon as its body is in."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _answer(head: bytes) -> bytes:
        body = json.dumps({"Item": _ITEM} if b"DynamoDB_20120810.GetItem" in head else {})
        data = body.encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"x-amzn-RequestId: floor\r\nContent-Length: %d\r\n\r\n" % len(data)
        ) + data

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                pending += data
                while b"\r\n\r\n" in pending:
                    head, rest = pending.split(b"\r\n\r\n", 1)
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    if len(rest) < length:
                        break
                    pending = rest[length:]
                    conn.sendall(self._answer(head))

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def _per_call(client: Any, calls: int) -> tuple[float, float]:
    """(caller's CPU ms, whole process's CPU ms) per call over ``calls`` GetItem + PutItem."""

    def one(i: int) -> None:
        if i % 2:
            item = {**_ITEM, "sk": {"S": f"EVENT#{i}"}, "occurred_key": {"S": f"{i:012d}"}}
            client.put_item(TableName="floor", Item=item)
        else:
            client.get_item(TableName="floor", Key={"pk": _ITEM["pk"], "sk": _ITEM["sk"]})

    for i in range(20):  # warm: connection, loaded models, caches
        one(i)
    thread0, process0 = time.thread_time(), time.process_time()
    for i in range(calls):
        one(i)
    thread = time.thread_time() - thread0
    process = time.process_time() - process0
    return 1000 * thread / calls, 1000 * process / calls


def _template_tables(client: Any) -> list[str]:
    """The template's tables (ConversationsTable with its indexes, as the pipeline writes to
    it), created as the local stack creates them; ConversationsTable's is named "floor"."""
    from pathlib import Path

    from support_pipeline_ops.local import template as cfn

    loaded = cfn.load(cfn.find_template(Path(__file__).resolve().parent))
    stack = cfn.Stack(
        name="floor", template=loaded, parameters=cfn.parameter_defaults(loaded), region="us-east-1"
    )
    spec = stack.resources("AWS::DynamoDB::Table")["ConversationsTable"]
    spec["Properties"] = {**spec["Properties"], "TableName": "floor"}
    cfn._create_tables(stack, client)
    return list(stack.physical.values())


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session(  # loopback only: credentials are never checked
        aws_access_key_id="floor",
        aws_secret_access_key="floor",  # noqa: S106 - not a secret: the local servers ignore it
        region_name="us-east-1",
    ).client("dynamodb", endpoint_url=endpoint)


def measure(calls: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """Each figure is the median of ``rounds`` rounds of ``calls`` calls."""
    import statistics

    taken = [_round(calls) for _ in range(rounds)]
    return {
        "calls": calls,
        "rounds": rounds,
        "operations": "DynamoDB GetItem and PutItem on the template's ConversationsTable, "
        "alternating",
        **{
            name: round(statistics.median(t[name] for t in taken), 3)
            for name in (
                "botocore_ms_per_call",
                "moto_caller_ms_per_call",
                "moto_server_ms_per_call",
            )
        },
    }


def _round(calls: int) -> dict[str, float]:
    from support_pipeline_ops.local import moto_fast
    from support_pipeline_ops.local.moto_server import MotoServer

    instant = InstantServer()
    try:
        botocore_ms, _ = _per_call(_client(f"http://127.0.0.1:{instant.port}"), calls)
    finally:
        instant.close()

    moto_fast.install()
    server = MotoServer(port=0).start()
    try:
        client = _client(f"http://127.0.0.1:{server.port}")
        tables = _template_tables(client)
        client.put_item(TableName="floor", Item=_ITEM)
        try:
            caller_ms, process_ms = _per_call(client, calls)
        finally:
            for table in tables:  # moto's state outlives its server
                client.delete_table(TableName=table)
    finally:
        server.stop()
    return {
        "botocore_ms_per_call": botocore_ms,
        "moto_caller_ms_per_call": caller_ms,
        "moto_server_ms_per_call": max(0.0, process_ms - caller_ms),
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
