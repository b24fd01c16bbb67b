"""The HTTP endpoints, served by ``twisted.web`` on the daemon's own reactor.

``GET /metrics``  Prometheus text format, or OpenMetrics when the scraper asks for it.
``GET /healthz``  liveness: 200 while the daemon works, 503 once it has given up.
``GET /readyz``   readiness: 200 when every component is joined, else 503; JSON body with
                  each component's state, since when, failures and next retry delay.
``GET /``         a small HTML page linking the three.

Anything else is 404, a method other than GET or HEAD is 405. Requests are not logged
(a scraper every few seconds would drown the log).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.http import HTTPChannel
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ._version import __version__
from .health import Health

__all__ = ["Exposition", "QuietChannel", "QuietSite", "make_site", "render_registry"]


_ALLOWED = (b"GET", b"HEAD")


class _Page(Resource):
    """Answers GET with ``get``, HEAD with its headers only, and 404 below its own path
    (/metrics/anything is not /metrics). Other methods get a 405, where Twisted's own
    answer is 501 for some.
    """

    def __init__(self, get: Callable[[Request], bytes]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._get = get

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> bytes:
        if request.method not in _ALLOWED:
            request.setResponseCode(405)
            request.setHeader(b"allow", b", ".join(_ALLOWED))
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"405 Method Not Allowed: use GET or HEAD\n"
        body = self._get(request)
        return b"" if request.method == b"HEAD" else body


#: The body and content type of a scrape, from its ``Accept`` header.
Exposition = Callable[[str], tuple[bytes, str]]


def render_registry(registry: CollectorRegistry) -> Exposition:
    """Every series of ``registry``, rendered at each scrape (a registry wampd does not
    own may hold anyone's collectors)."""

    def render(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return render


def _metrics(exposition: Exposition, request: Request) -> bytes:
    accept = request.getHeader(b"accept")
    body, content_type = exposition(accept.decode("latin-1") if accept else "")
    request.setHeader(b"content-type", content_type.encode("ascii"))
    return body


def _probe(health: Health, question: str, request: Request) -> bytes:
    report = health.report()
    ok = report[question]
    request.setResponseCode(200 if ok else 503)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    body = {"status": "ok" if ok else "unavailable", **report}
    return json.dumps(body, indent=2).encode("utf-8") + b"\n"


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wampd {version}</title></head>
<body><h1>wampd {version}</h1>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: liveness</li>
<li><a href="/readyz">/readyz</a>: readiness, with each component's state</li>
</ul></body></html>
""".format(version=html.escape(__version__)).encode("utf-8")


def _index(request: Request) -> bytes:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    return _INDEX


class QuietChannel(HTTPChannel):
    """HTTP/1.1 that answers a too-long request or header line, instead of hanging up."""

    def lineLengthExceeded(self, line: bytes) -> None:
        cast(Any, self.transport).write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.loseConnection()  # type: ignore[no-untyped-call]


class QuietSite(Site):
    """A Site that does not write an access log line per request, nor "Starting factory"."""

    protocol = QuietChannel  # type: ignore[assignment]
    noisy = False

    def log(self, request: Any) -> None:
        pass


def make_site(exposition: Exposition, health: Health, reactor: Any = None) -> Site:
    """The ``twisted.web`` site serving the endpoints above.

    :param exposition: what ``/metrics`` answers (:meth:`wampd.metrics.Metrics.exposition`,
        or :func:`render_registry`).
    :param reactor: for the connections' timeouts (the global reactor when None).
    """
    root = _Page(_index)
    root.putChild(b"", cast(IResource, root))  # "/" itself
    root.putChild(b"metrics", cast(IResource, _Page(partial(_metrics, exposition))))
    root.putChild(b"healthz", cast(IResource, _Page(partial(_probe, health, "alive"))))
    root.putChild(b"readyz", cast(IResource, _Page(partial(_probe, health, "ready"))))
    site = QuietSite(root, reactor=reactor)  # type: ignore[no-untyped-call]
    site.displayTracebacks = False
    return site
