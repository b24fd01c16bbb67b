"""A TCP server on 127.0.0.1 that accepts connections and then says nothing, ever.

It stands in for a router that hangs after accepting (a black hole): a client's WebSocket
upgrade is never answered, data it sends is never read, and the connection stays open until
the server is closed. Runs in a background thread of the test process.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Self

from harness.poll import poll
from harness.ports import HOST

_POLL = 0.05


class SilentServer:
    """Accepts on 127.0.0.1:``port`` (a free one by default); never reads or writes.

    Use as a context manager, or call start() / close().
    """

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, port))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._accepted = 0

    @property
    def accepted(self) -> int:
        """Number of connections accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """Accepted connections still ESTABLISHED (the peer has not closed them)."""
        with self._lock:
            conns = list(self._conns)
        return sum(1 for c in conns if not _peer_closed(c))

    def url(self, path: str = "ws") -> str:
        """``ws://127.0.0.1:<port>/<path>``."""
        return f"ws://{HOST}:{self.port}/{path.lstrip('/')}"

    def start(self) -> Self:
        """Start listening and accepting in a daemon thread; return self."""
        if self._thread is not None:
            return self
        self._listener.listen(128)
        self._thread = threading.Thread(
            target=self._serve, name=f"SilentServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(timeout=_POLL):
                    continue
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with self._lock:
                    self._conns.append(conn)
                    self._accepted += 1

    def wait_for_accepted(self, count: int = 1, timeout: float = 5.0) -> None:
        """Poll until at least ``count`` connections were accepted (PollTimeout otherwise)."""
        poll(
            lambda: self.accepted >= count,
            timeout,
            describe=lambda: (
                f"silent server on port {self.port}: {self.accepted} of {count} "
                "connection(s) accepted"
            ),
        )

    def close(self) -> None:
        """Stop accepting and close every connection and the listener. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SilentServer port={self.port} accepted={self.accepted}>"


def _peer_closed(conn: socket.socket) -> bool:
    """True if the peer closed (FIN or RST) ``conn``, from the kernel's TCP state; no data
    is read."""
    try:
        info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    except OSError:
        return True
    return info[0] != _TCP_ESTABLISHED


_TCP_ESTABLISHED = 1
