"""A real HTTP server playing the app next to wampd: it takes the bridge's webhooks and
procedure callbacks, records each request, and answers from a script.

Threaded (``ThreadingHTTPServer``, HTTP/1.1 keep-alive, as the bridge's connection pool
expects), on 127.0.0.1 and a port of its own; :meth:`AppServer.stop` and
:meth:`AppServer.start` take it down and bring it back on the same port (a receiver that is
down for a while). Each route answers with a :class:`Answer`, or a function of the request
that returns one; an answer may wait ``delay`` seconds first, and the server notes when the
client closed the connection during that wait (a request the bridge cancelled).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .ports import free_port

__all__ = ["Answer", "AppServer", "Received"]


@dataclass(frozen=True)
class Answer:
    """What the app answers: a status, a JSON body (or raw bytes), after ``delay`` s."""

    status: int = 204
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """One request the app got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


Route = Answer | Callable[[Received], Answer]


class AppServer:
    """The app's HTTP server; ``routes`` maps paths to answers (unknown paths: 404)."""

    def __init__(self, routes: dict[str, Route] | None = None, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.routes: dict[str, Route] = dict(routes or {})
        self.received: list[Received] = []
        #: Paths of requests whose client went away while the answer was delayed.
        self.cancelled: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> AppServer:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with app.lock:
                    app._connections.add(self.connection)

            def finish(self) -> None:
                with app.lock:
                    app._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                got = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                with app.lock:
                    app.received.append(got)
                    route = app.routes.get(self.path)
                answer = (
                    Answer(404)
                    if route is None
                    else route
                    if isinstance(route, Answer)
                    else route(got)
                )
                if answer.delay and not self._wait(answer.delay):
                    with app.lock:
                        app.cancelled.append(self.path)
                    self.close_connection = True
                    return
                if isinstance(answer.body, bytes):
                    data = answer.body
                else:
                    data = b"" if answer.body is None else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True

            def _wait(self, seconds: float) -> bool:
                """Wait ``seconds``; False as soon as the client closes the connection."""
                deadline = time.monotonic() + seconds
                sock = self.connection
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([sock], [], [], min(left, 0.05))
                    if readable:
                        try:
                            if sock.recv(1, socket.MSG_PEEK) == b"":
                                return False
                        except OSError:
                            return False
                        time.sleep(min(left, 0.05))  # pipelined data: not a close
                return True

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection, kept-alive ones too: as a process
        that exits."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def requests(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def __enter__(self) -> AppServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
