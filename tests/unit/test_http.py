"""The HTTP endpoints, driven over an in-memory transport (no sockets, no reactor)."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wampd.events import Event, State, names
from wampd.health import Health
from wampd.http import make_site
from wampd.metrics import Metrics

from .fakes import event


def setup() -> tuple[object, Health, Metrics]:
    registry = CollectorRegistry()
    health = Health(["a", "b"])
    metrics = Metrics(registry, ["a", "b"])
    return make_site(metrics.exposition, health, Clock()), health, metrics


def request(site: object, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))  # type: ignore[attr-defined]
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    response = transport.value()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            chunks, rest = chunks + rest[:n], rest[n + 2 :]
        body = chunks
    return status, headers, body


def get(
    site: object, path: str, method: str = "GET", extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    raw = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
    return request(site, raw.encode("latin-1"))


def joined(component: str) -> Event:
    return event(
        names.SESSION_JOINED,
        State.CONNECTING,
        State.JOINED,
        component=component,
        time=5.0,
    )


def test_metrics_in_prometheus_text_format() -> None:
    """GET /metrics answers the Prometheus text format with wampd's series."""
    site, _, _ = setup()
    status, headers, body = get(site, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b'wampd_session_up{component="a"} 0.0' in body


def test_metrics_in_openmetrics_when_asked() -> None:
    """A scraper that accepts OpenMetrics gets it."""
    site, _, _ = setup()
    status, headers, body = get(
        site, "/metrics", extra="Accept: application/openmetrics-text; version=1.0.0\r\n"
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_readyz_is_503_until_every_component_is_joined() -> None:
    """Readiness needs every component joined; the body says each one's state."""
    site, health, _ = setup()
    status, _, body = get(site, "/readyz")
    assert status == 503
    assert json.loads(body)["components"]["a"]["state"] == "idle"
    health(joined("a"))
    assert get(site, "/readyz")[0] == 503
    health(joined("b"))
    status, headers, body = get(site, "/readyz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    report = json.loads(body)
    assert report["components"]["b"] == {
        "state": "joined",
        "since": 5.0,
        "consecutive_failures": 0,
        "next_retry_delay": None,
        "last_error": None,
    }


def test_healthz_stays_200_through_outages_and_503_once_failed() -> None:
    """Liveness does not follow the router; only giving up makes it 503."""
    site, health, _ = setup()
    assert get(site, "/healthz")[0] == 200
    health(
        event(
            names.RETRY_SCHEDULED,
            State.CONNECTING,
            State.BACKOFF,
            component="a",
            time=1.0,
            failures=4,
            delay=8.0,
            error="refused",
        )
    )
    status, _, body = get(site, "/healthz")
    assert status == 200
    assert json.loads(body)["components"]["a"]["next_retry_delay"] == 8.0
    health(
        event(
            names.RETRIES_EXHAUSTED,
            State.BACKOFF,
            State.FAILED,
            component="a",
            time=2.0,
            failures=5,
            error="gave up",
        )
    )
    assert get(site, "/healthz")[0] == 503


def test_index_links_the_endpoints() -> None:
    """GET / is a small HTML page linking the three endpoints, with the version."""
    site, _, _ = setup()
    status, headers, body = get(site, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    for path in (b"/metrics", b"/healthz", b"/readyz"):
        assert b'href="' + path + b'"' in body


def test_unknown_paths_are_404_and_wrong_methods_405() -> None:
    """Anything else is 404; POST, PUT, DELETE are 405; HEAD works."""
    site, _, _ = setup()
    for path in ("/nope", "/metrics/extra", "/healthz/x", "/%00", "/../etc/passwd"):
        assert get(site, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/metrics", "/healthz", "/readyz"):
            assert get(site, path, method)[0] == 405, (method, path)
    status, _, body = get(site, "/healthz", "HEAD")
    assert status == 200 and body == b""


def test_oversized_headers_are_refused() -> None:
    """A request with huge headers gets a 4xx, not a crash."""
    site, _, _ = setup()
    huge = "X-Big: " + "a" * 70_000 + "\r\n"
    assert 400 <= get(site, "/metrics", extra=huge)[0] < 500
