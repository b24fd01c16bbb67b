"""Router URLs: which transport each names, and where it goes.

``ws://host[:port]/path`` and ``wss://...``  WebSocket (TLS for ``wss``).
``rs://host:port`` and ``rss://host:port``    RawSocket over TCP (TLS for ``rss``).
``rs+unix:///path/to/socket``                RawSocket over a Unix socket; autobahn's own
                                             spelling, ``rs://unix:/path``, works too.

Pure: :func:`target` parses a URL (``ValueError`` naming what is wrong), for the
configuration's checks, the drop-in runner's, and the connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["SCHEMES", "Target", "target"]

#: Every scheme a router URL may have.
SCHEMES: Final = ("ws", "wss", "rs", "rss", "rs+unix")


@dataclass(frozen=True)
class Target:
    """Where a router URL goes."""

    #: ``"websocket"`` or ``"rawsocket"``.
    transport: str
    secure: bool
    host: str = ""
    port: int = 0
    #: The Unix socket's path (RawSocket over a Unix socket); else None.
    unix: str | None = None

    @property
    def rawsocket(self) -> bool:
        return self.transport == "rawsocket"


def target(url: str) -> Target:
    """Parse ``url``; raises ``ValueError`` saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if scheme in ("ws", "wss"):
        if not parts.hostname:
            raise ValueError(f"missing host in {url!r}")
        return Target("websocket", scheme == "wss", parts.hostname, port or 0)
    if parts.query or parts.fragment:
        raise ValueError(f"a RawSocket URL has no ?query or #fragment: {url!r}")
    if scheme == "rs+unix":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or path.endswith("/"):
            raise ValueError(
                f"rs+unix URL must name an absolute socket path, rs+unix:///path/to/socket, "
                f"got {url!r}"
            )
        return Target("rawsocket", False, unix=path)
    if scheme == "rs" and parts.netloc.lower() == "unix:" and parts.path.startswith("/"):
        # autobahn's spelling: rs://unix:/path
        return Target("rawsocket", False, unix=unquote(parts.path))
    if not parts.hostname:
        raise ValueError(f"missing host in {url!r}")
    if port is None or port == 0:
        raise ValueError(f"a RawSocket URL needs a port from 1 to 65535: {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"a RawSocket URL has no path: {url!r} (RawSocket is not HTTP)")
    return Target("rawsocket", scheme == "rss", parts.hostname, port)
