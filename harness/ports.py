"""Loopback port helpers: pick a free port, wait until a port accepts or stops accepting.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from harness.poll import poll

HOST = "127.0.0.1"


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

    ``alive``: stop early when it returns False, e.g. the server process died.
    ``describe``: extra text (a log tail) appended to the error messages.
    Raises PollTimeout after ``timeout`` seconds, or once ``alive`` said False.
    """

    def message() -> str:
        extra = f"\n{describe()}" if describe else ""
        if alive is not None and not alive():
            return f"server for {HOST}:{port} exited before listening{extra}"
        return f"{HOST}:{port} did not accept{extra}"

    poll(
        lambda: port_open(port, timeout=min(0.5, timeout)),
        timeout,
        describe=message,
        stop=None if alive is None else lambda: not alive(),
    )


def wait_port_closed(
    port: int, timeout: float, *, describe: Callable[[], str] | None = None
) -> None:
    """Poll until a TCP connect to 127.0.0.1:``port`` is refused (or fails).

    Raises PollTimeout after ``timeout`` seconds.
    """

    def message() -> str:
        extra = f"\n{describe()}" if describe else ""
        return f"{HOST}:{port} still accepts{extra}"

    poll(lambda: not port_open(port, timeout=min(0.5, timeout)), timeout, describe=message)
