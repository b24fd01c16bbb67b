"""Loopback port helpers: pick a free port, wait until a port accepts or stops accepting.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

HOST = "127.0.0.1"
_POLL = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connect to 127.0.0.1:``port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll until a TCP connect to 127.0.0.1:``port`` succeeds.

    ``alive``: stop early (RuntimeError) when it returns False, e.g. the server process
    died. ``describe``: extra text (a log tail) appended to the error messages.
    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not port_open(port, timeout=min(0.5, timeout)):
        extra = f"\n{describe()}" if describe else ""
        if alive is not None and not alive():
            raise RuntimeError(f"server for 127.0.0.1:{port} exited before listening{extra}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"127.0.0.1:{port} did not accept within {timeout:.1f}s{extra}")
        time.sleep(_POLL)


def wait_port_closed(
    port: int, timeout: float, *, describe: Callable[[], str] | None = None
) -> None:
    """Poll until a TCP connect to 127.0.0.1:``port`` is refused (or fails).

    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while port_open(port, timeout=min(0.5, timeout)):
        if time.monotonic() >= deadline:
            extra = f"\n{describe()}" if describe else ""
            raise TimeoutError(f"127.0.0.1:{port} still accepts after {timeout:.1f}s{extra}")
        time.sleep(_POLL)
