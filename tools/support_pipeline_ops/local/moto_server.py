"""moto's server with HTTP keep-alive.

moto's ``ThreadedMotoServer`` runs werkzeug's development server, which closes the connection
after every response: each AWS call of the local stack opened a TCP connection and the server
started a thread for it. AWS keeps connections alive, and botocore pools them. This server runs
the same moto application (``DomainDispatcherApplication``, moto's request handler, its
environ) but reads each request body whole before the application sees it and answers with a
``Content-Length``, so a connection carries request after request.
"""

from __future__ import annotations

import contextlib
import io
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server


def _handler_class() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc, valid-type]
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # an answer is two writes: no waiting for the peer's ACK

        def run_wsgi(self) -> None:
            if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            environ = self.make_environ()
            # The whole body now: nothing of it may be left to be read as the next request.
            stream = environ["wsgi.input"]
            if environ.get("wsgi.input_terminated"):
                body = stream.read()  # chunked: read to its end
                environ.pop("HTTP_TRANSFER_ENCODING", None)
                environ.pop("wsgi.input_terminated", None)
            else:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = stream.read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            self.environ = environ
            answer: dict[str, Any] = {}

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # type: ignore[no-untyped-def]
                answer["status"], answer["headers"] = status, headers
                return lambda data: answer.setdefault("written", []).append(data)

            try:
                result = self.server.app(environ, start_response)
                try:
                    chunks = [*answer.get("written", []), *result]
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception as exc:
                self.close_connection = True
                self.log_error("moto failed: %s", type(exc).__name__)
                self.send_error(500)
                return
            payload = b"".join(chunks)
            code, _, message = answer["status"].partition(" ")
            self.send_response(int(code), message)
            for name, value in answer["headers"]:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return  # one line per AWS call; moto's own log says what matters

    return KeepAliveHandler


class MotoServer:
    """moto on ``host:port`` in a thread of this process; ``start()`` then ``stop()``.

    Port 0 binds a free port the system picks (race-free, unlike probing for one first);
    ``port`` is the real one once started. A port it cannot bind raises ``OSError`` naming it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5000) -> None:
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MotoServer:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        # werkzeug prints its own lines and calls sys.exit(1) when it cannot bind: an OSError
        # naming the port instead, for the caller to say what to do.
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                self._server = make_server(
                    self.host, self.port, app, threaded=True, request_handler=_handler_class()
                )
        except SystemExit:
            reason = (said.getvalue().strip().splitlines() or ["cannot bind"])[0]
            raise OSError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = self._server.server_address[1]
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-moto", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
