"""The bridge's outgoing HTTP (wampd/outbound.py): ``Retry-After``'s parsing, what counts
as a cancelled request, and the real :class:`Poster` -- treq, its pool and its timeout --
talking to a twisted.web Site over an in-memory transport (``twisted.test.iosim``) on a
``MemoryReactorClock``: no socket is opened, no time passes but the test's."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from wampd._version import __version__
from wampd.outbound import Poster, Reply, ReplyTooLarge, _cancelled, retry_after

URL = "http://127.0.0.1:8000/hooks/orders"

# -- Retry-After ----------------------------------------------------------------------------

#: Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example), as a Unix time.
WHEN = float(calendar.timegm((1994, 11, 6, 8, 49, 37)))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("007", 7.0),
    ],
)
def test_retry_after_delay_seconds(value: str, seconds: float) -> None:
    assert retry_after(value, WHEN) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun, 06 Nov 1994 09:49:37 +0100",
    ],
)
def test_retry_after_http_dates_in_every_format_http_allows(value: str) -> None:
    """Seconds from ``now`` until the date; a date past is 0."""
    assert retry_after(value, WHEN - 90) == 90.0
    assert retry_after(value, WHEN) == 0.0
    assert retry_after(value, WHEN + 3600) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "  ", "soon", "1.5", "-1", "+5", "1e3", "0x10", "Sun, 32 Nov 1994"]
)
def test_retry_after_not_understood_is_none(value: str | None) -> None:
    assert retry_after(value, WHEN) is None


def test_retry_after_with_a_superscript_digit_is_none() -> None:
    assert retry_after("²", WHEN) is None


# -- cancelled ----------------------------------------------------------------------------


def test_cancelled_as_such_or_wrapped_by_twisted_web() -> None:
    assert _cancelled(Failure(CancelledError()))
    assert _cancelled(Failure(ResponseNeverReceived([Failure(CancelledError())])))
    assert _cancelled(
        Failure(ResponseNeverReceived([Failure(ConnectionLost()), Failure(CancelledError())]))
    )
    assert not _cancelled(Failure(ResponseNeverReceived([Failure(ConnectionLost())])))
    assert not _cancelled(Failure(ResponseNeverReceived([])))
    assert not _cancelled(Failure(TimeoutError()))
    assert not _cancelled(Failure(ValueError("reasons")))


# -- the Poster, on an in-memory connection ---------------------------------------------------


@dataclass
class Seen:
    headers: dict[bytes, list[bytes]]
    body: bytes


class App(Resource):
    """The app: records each request, answers with ``answer``."""

    isLeaf = True

    def __init__(self, answer: Callable[[Request], bytes | int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.answer = answer
        self.seen: list[Seen] = []
        self.requests: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        headers = {k.lower(): list(v) for k, v in request.requestHeaders.getAllRawHeaders()}
        self.seen.append(Seen(headers, request.content.read()))
        self.requests.append(request)
        request.defaultContentType = None
        return self.answer(request)


@dataclass
class Connection:
    client: FakeTransport
    server: FakeTransport
    pump: IOPump


@pytest.fixture
def reactor(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryReactorClock]:
    """treq sends a body with a FileBodyProducer on Twisted's global cooperator: it runs
    on this reactor instead, for the test's time."""
    reactor = MemoryReactorClock()
    cooperator = task.Cooperator(scheduler=lambda work: reactor.callLater(0, work))
    monkeypatch.setattr(task, "_theCooperator", cooperator)
    yield reactor
    cooperator.stop()


def results(d: Deferred[Any]) -> list[Any]:
    """What ``d`` fires with, as it fires (a Failure's exception)."""
    out: list[Any] = []
    d.addBoth(lambda r: out.append(r.value if isinstance(r, Failure) else r))
    return out


def accept(reactor: MemoryReactorClock, app: App) -> Connection:
    """Connect the Poster's last connection attempt to ``app``, and let them talk."""
    host, port, factory, _, _ = reactor.tcpClients[-1]
    assert (host, port) == ("127.0.0.1", 8000)
    address = cast(IAddress, IPv4Address("TCP", "127.0.0.1", 8000))
    client = factory.buildProtocol(address)
    server = Site(app, reactor=reactor).buildProtocol(address)
    assert client is not None and server is not None
    client_transport = FakeTransport(client, isServer=False)
    server_transport = FakeTransport(server, isServer=True)
    pump = connect(server, server_transport, client, client_transport)
    conn = Connection(client_transport, server_transport, pump)
    settle(reactor, conn)
    return conn


def settle(reactor: MemoryReactorClock, conn: Connection) -> None:
    for _ in range(5):
        reactor.advance(0)
        conn.pump.flush()


def json_reply(
    body: bytes = b'{"ok": 1}', *, status: int = 200, **headers: bytes
) -> Callable[[Request], bytes]:
    def answer(request: Request) -> bytes:
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name.replace("_", "-").encode(), value)
        return body

    return answer


def test_a_post_is_json_with_wampds_headers_and_its_reply_is_read(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b'{"a": 1}', 5.0))
    app = App(json_reply(content_type=b"Application/JSON; charset=utf-8", retry_after=b"7"))
    accept(reactor, app)
    assert got == [Reply(200, b'{"ok": 1}', 7.0, "application/json")]
    ((seen),) = app.seen
    assert seen.body == b'{"a": 1}'
    assert seen.headers[b"content-type"] == [b"application/json"]
    assert seen.headers[b"accept"] == [b"application/json"]
    assert seen.headers[b"user-agent"] == [f"wampd/{__version__}".encode()]
    assert app.requests[0].uri == b"/hooks/orders"


def test_a_reply_without_content_type_or_retry_after(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    accept(reactor, App(json_reply(b"", status=503)))
    assert got == [Reply(503, b"", None, "")]


def test_retry_after_as_a_date_counts_from_the_reactors_time(
    reactor: MemoryReactorClock,
) -> None:
    reactor.advance(WHEN - 30)
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    accept(reactor, App(json_reply(status=429, retry_after=b"Sun, 06 Nov 1994 08:49:37 GMT")))
    assert [r.retry_after for r in got] == [30.0]


def test_a_reply_over_max_reply_fails_with_its_status_and_closes(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor, max_reply=100)
    got = results(poster(URL, b"{}", 5.0))
    conn = accept(reactor, App(json_reply(b"x" * 101, status=201)))
    ((error,),) = [got]
    assert isinstance(error, ReplyTooLarge) and error.status == 201
    assert str(error) == "the reply body is over 100 bytes"
    assert conn.client.disconnecting


def test_a_reply_of_exactly_max_reply_is_read(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor, max_reply=100)
    got = results(poster(URL, b"{}", 5.0))
    accept(reactor, App(json_reply(b"x" * 100)))
    assert [r.body for r in got] == [b"x" * 100]


def test_no_reply_within_the_timeout_is_a_timeout_and_closes_the_connection(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 2.5))
    app = App(lambda request: NOT_DONE_YET)
    conn = accept(reactor, app)
    reactor.advance(2.4)
    assert got == []
    reactor.advance(0.1)
    settle(reactor, conn)
    ((error,),) = [got]
    assert isinstance(error, TimeoutError) and str(error) == "no reply within 2.5 s"
    assert conn.client.disconnecting  # the app sees its request go away


def test_an_app_that_never_accepts_the_connection_stops_the_attempt(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 3.0))
    reactor.advance(2.9)
    assert got == [] and not reactor.connectors[-1].stoppedConnecting
    reactor.advance(0.1)
    assert len(got) == 1 and reactor.connectors[-1].stoppedConnecting


def test_an_app_that_never_accepts_the_connection_times_out(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 3.0))
    reactor.advance(3.0)
    ((error,),) = [got]
    assert isinstance(error, TimeoutError)


def test_the_callers_cancel_while_connecting_is_a_cancel(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    d = poster(URL, b"{}", 3.0)
    got = results(d)
    d.cancel()
    ((error,),) = [got]
    assert isinstance(error, CancelledError) and not isinstance(error, TimeoutError)


def test_a_refused_connection_is_a_connect_error(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 3.0))
    factory = reactor.tcpClients[-1][2]
    factory.clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))
    reactor.advance(0.3)  # HostnameEndpoint tries its next address (there is none)
    reactor.advance(0.3)
    ((error,),) = [got]
    assert isinstance(error, ConnectionRefusedError)
    assert reactor.getDelayedCalls() == []  # the timeout's timer is cancelled


def test_the_callers_cancel_is_a_cancel_and_closes_the_connection(
    reactor: MemoryReactorClock,
) -> None:
    poster = Poster(reactor)
    d = poster(URL, b"{}", 5.0)
    got = results(d)
    conn = accept(reactor, App(lambda request: NOT_DONE_YET))
    d.cancel()
    settle(reactor, conn)
    ((error,),) = [got]
    assert isinstance(error, CancelledError) and not isinstance(error, TimeoutError)
    assert conn.client.disconnecting
    reactor.advance(5.0)  # the timeout's timer went with it
    assert len(got) == 1


def test_a_timely_reply_cancels_the_timer(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    accept(reactor, App(json_reply()))
    assert [r.status for r in got] == [200]
    calls = cast(list[Any], reactor.getDelayedCalls())
    assert calls and 5.0 not in [call.getTime() for call in calls]


def test_connections_are_kept_and_close_closes_them(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    conn = accept(reactor, App(json_reply()))
    assert len(got) == 1 and not conn.client.disconnecting  # persistent
    again = results(poster(URL, b"{}", 5.0))
    settle(reactor, conn)
    assert len(reactor.tcpClients) == 1 and [r.status for r in again] == [200]  # reused
    closed = results(poster.close())
    settle(reactor, conn)
    assert conn.client.disconnecting and closed == [None]


def test_a_timeout_while_the_body_trickles_in_closes_the_connection(
    reactor: MemoryReactorClock,
) -> None:
    def trickle(request: Request) -> int:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"100")
        request.write(b'{"ok":')
        return NOT_DONE_YET

    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    conn = accept(reactor, App(trickle))
    assert got == []
    reactor.advance(5.0)
    settle(reactor, conn)
    assert [type(e) for e in got] == [TimeoutError]
    assert conn.client.disconnecting


def test_a_header_not_in_utf8_does_not_fail_the_post(reactor: MemoryReactorClock) -> None:
    poster = Poster(reactor)
    got = results(poster(URL, b"{}", 5.0))
    accept(reactor, App(json_reply(b"{}", retry_after=b"\xff")))
    assert [(r.status, r.retry_after) for r in got] == [(200, None)]
