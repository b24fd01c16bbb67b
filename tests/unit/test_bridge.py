"""The bridge's routes, with a fake session and a Clock: every status of the table in
wampd/bridge.py's docstring."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.request import Registration, Subscription
from autobahn.wamp.types import CallDetails, CallResult, EventDetails
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from wampd.bridge import Bridge
from wampd.config import BridgeConfig, ProcedureConfig, SubscriptionConfig
from wampd.outbound import Reply
from wampd.routes import RETRY_AFTER


class FakeSession:
    """Records publishes and calls; answers calls with the Deferreds the test gives."""

    def __init__(self) -> None:
        self.published: list[tuple[str, tuple[Any, ...], Any, dict[str, Any]]] = []
        self.calls: list[tuple[str, tuple[Any, ...], Any, dict[str, Any]]] = []
        self.answers: list[Deferred[Any]] = []

    def publish(self, topic: str, *args: Any, options: Any, **kwargs: Any) -> Deferred[Any]:
        self.published.append((topic, args, options, kwargs))

        class Publication:
            id = 4242

        return succeed(Publication())

    def call(self, procedure: str, *args: Any, options: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls.append((procedure, args, options, kwargs))
        return self.answers.pop(0)


def make(
    tmp_path: Path | None = None, token: str | None = None, **settings: Any
) -> tuple[Bridge, Clock]:
    token_file = None
    if token is not None:
        assert tmp_path is not None
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
    clock = Clock()
    config = BridgeConfig(
        listen="127.0.0.1:0", token_file=None if token_file is None else str(token_file), **settings
    )
    return Bridge(config, clock=clock, post=no_post), clock


def no_post(url: str, body: bytes, timeout: float) -> Deferred[Any]:
    raise AssertionError(f"nothing should be POSTed to the app here ({url})")


def request(
    bridge: Bridge,
    clock: Clock,
    path: str,
    body: object = None,
    *,
    method: bytes = b"POST",
    raw: bytes | None = None,
    headers: dict[bytes, bytes] | None = None,
) -> DummyRequest:
    """Render ``path`` on the bridge's site; the request, finished or still pending."""
    req = DummyRequest(path.strip("/").encode().split(b"/"))
    req.method = method
    req.path = path.encode()  # type: ignore[attr-defined]
    req.uri = path.encode()
    for name, value in (headers or {}).items():
        req.requestHeaders.setRawHeaders(name, [value])
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    req.content = io.BytesIO(data)  # type: ignore[attr-defined]
    site = bridge.site()
    resource = getChildForRequest(site.resource, req)
    result = resource.render(req)
    if result != NOT_DONE_YET:
        req.write(result)
        req.finish()
    return req


def answer(req: DummyRequest) -> tuple[int, dict[str, Any]]:
    assert req.finished, "the request is still pending"
    return req.responseCode or 200, json.loads(b"".join(req.written))


def joined(bridge: Bridge) -> FakeSession:
    session = FakeSession()
    bridge.session = session  # type: ignore[assignment]
    return session


def test_ready_is_503_with_retry_after_until_the_session_joins() -> None:
    bridge, clock = make()
    req = request(bridge, clock, "/v1/ready", method=b"GET")
    assert answer(req) == (503, {"ready": False, "error": "the bridge session is not joined"})
    assert req.responseHeaders.getRawHeaders(b"retry-after") == [str(RETRY_AFTER).encode()]
    joined(bridge)
    assert answer(request(bridge, clock, "/v1/ready", method=b"GET")) == (200, {"ready": True})


def test_publish_waits_for_the_routers_acknowledgement_and_answers_its_id() -> None:
    bridge, clock = make()
    session = joined(bridge)
    body = {
        "topic": "com.example.t",
        "args": [1],
        "kwargs": {"k": 2},
        "options": {"exclude_me": False},
    }
    assert answer(request(bridge, clock, "/v1/publish", body)) == (200, {"id": 4242})
    ((topic, args, options, kwargs),) = session.published
    assert (topic, args, kwargs) == ("com.example.t", (1,), {"k": 2})
    assert options.acknowledge is True and options.exclude_me is False


def test_nothing_goes_through_while_the_session_is_not_joined() -> None:
    bridge, clock = make()
    req = request(bridge, clock, "/v1/publish", {"topic": "com.example.t"})
    status, body = answer(req)
    assert status == 503 and body["error"] == "wampd.error.not_joined"
    assert req.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        (b"{not json", "wampd.error.invalid_json", "body is not JSON"),
        (b"[1, 2]", "wamp.error.invalid_argument", "body must be a JSON object"),
        (b"{}", "wamp.error.invalid_argument", "'topic' must be a non-empty string"),
        (b'{"topic": 7}', "wamp.error.invalid_argument", "'topic' must be a non-empty string"),
        (b'{"topic": "t", "args": {}}', "wamp.error.invalid_argument", "'args' must be an array"),
        (
            b'{"topic": "t", "kwargs": []}',
            "wamp.error.invalid_argument",
            "'kwargs' must be an object",
        ),
        (b'{"topic": "t", "options": {"nope": 1}}', "wamp.error.invalid_argument", "bad options"),
        (b'{"topic": "t", "kwargs": {"options": 1}}', "wamp.error.invalid_argument", "'options'"),
    ],
)
def test_a_bad_body_is_a_400_that_names_the_problem(raw: bytes, error: str, text: str) -> None:
    bridge, clock = make()
    session = joined(bridge)
    status, body = answer(request(bridge, clock, "/v1/publish", raw=raw))
    assert status == 400 and body["error"] == error
    assert text in body["args"][0]
    assert body["kwargs"] == {} and session.published == []


def test_a_body_over_max_body_is_a_413() -> None:
    bridge, clock = make(max_body=64)
    joined(bridge)
    status, body = answer(
        request(bridge, clock, "/v1/publish", {"topic": "t", "args": ["x" * 100]})
    )
    assert status == 413 and body["error"] == "wampd.error.body_too_large"


def test_the_token_is_required_compared_and_reread_when_its_file_changes(tmp_path: Path) -> None:
    bridge, clock = make(tmp_path, token="s3cret")
    joined(bridge)
    body = {"topic": "t"}
    for headers in ({}, {b"authorization": b"Bearer wrong"}, {b"authorization": b"Basic s3cret"}):
        status, answered = answer(request(bridge, clock, "/v1/publish", body, headers=headers))
        assert status == 401 and "s3cret" not in json.dumps(answered)
    ok = {b"authorization": b"Bearer s3cret"}
    assert answer(request(bridge, clock, "/v1/publish", body, headers=ok))[0] == 200
    # A probe (the kubelet's, an app's start-up wait) needs no token: it learns nothing.
    assert answer(request(bridge, clock, "/v1/ready", method=b"GET"))[0] == 200
    (tmp_path / "token").write_text("rotated-and-longer\n")  # a rotated secret
    assert answer(request(bridge, clock, "/v1/publish", body, headers=ok))[0] == 401
    rotated = {b"authorization": b"Bearer rotated-and-longer"}
    assert answer(request(bridge, clock, "/v1/publish", body, headers=rotated))[0] == 200
    (tmp_path / "token").unlink()  # being swapped: the last token read still holds
    assert answer(request(bridge, clock, "/v1/publish", body, headers=rotated))[0] == 200
    (tmp_path / "token").write_text("\n")  # an empty token matches nothing, not ""
    empty = {b"authorization": b"Bearer "}
    assert answer(request(bridge, clock, "/v1/publish", body, headers=empty))[0] == 401


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (5, {"args": [5], "kwargs": {}}),
        (None, {"args": [], "kwargs": {}}),
        (CallResult(1, 2, x=3), {"args": [1, 2], "kwargs": {"x": 3}}),
    ],
)
def test_call_answers_the_result(result: object, expected: dict[str, Any]) -> None:
    bridge, clock = make()
    session = joined(bridge)
    session.answers.append(succeed(result))
    body = {"procedure": "com.example.add", "args": [2, 3]}
    assert answer(request(bridge, clock, "/v1/call", body)) == (200, expected)
    assert session.calls[0][:2] == ("com.example.add", (2, 3))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ApplicationError.NO_SUCH_PROCEDURE, 404),
        (ApplicationError.NOT_AUTHORIZED, 403),
        (ApplicationError.INVALID_URI, 400),
        ("com.example.error.minus_one", 502),
    ],
)
def test_call_errors_have_honest_statuses(error: str, status: int) -> None:
    """The router's or the callee's error: its own status, its URI, args and kwargs."""
    bridge, clock = make()
    session = joined(bridge)
    callee: Deferred[Any] = Deferred()
    session.answers.append(callee)
    req = request(bridge, clock, "/v1/call", {"procedure": "com.example.p"})
    assert not req.finished
    callee.errback(Failure(ApplicationError(error, "minus one", code=7)))
    assert answer(req) == (status, {"error": error, "args": ["minus one"], "kwargs": {"code": 7}})


def test_a_call_over_call_timeout_is_a_504_and_is_cancelled() -> None:
    bridge, clock = make(call_timeout=2.0)
    session = joined(bridge)
    cancelled: list[bool] = []
    session.answers.append(Deferred(lambda _: cancelled.append(True)))
    req = request(bridge, clock, "/v1/call", {"procedure": "com.example.slow"})
    clock.advance(1.9)
    assert not req.finished
    clock.advance(0.2)
    assert answer(req) == (
        504,
        {"error": "wamp.error.timeout", "args": ["no answer within 2 s"], "kwargs": {}},
    )
    assert cancelled == [True]


def test_an_app_that_goes_away_cancels_its_call() -> None:
    bridge, clock = make()
    session = joined(bridge)
    cancelled: list[bool] = []
    session.answers.append(Deferred(lambda _: cancelled.append(True)))
    req = request(bridge, clock, "/v1/call", {"procedure": "com.example.slow"})
    req.processingFailed(Failure(ConnectionError("gone")))
    assert cancelled == [True]


def test_wrong_method_and_unknown_route() -> None:
    bridge, clock = make()
    joined(bridge)
    status, body = answer(request(bridge, clock, "/v1/publish", method=b"GET"))
    assert status == 405 and body["error"] == "wampd.error.method_not_allowed"
    for path in ("/v1/nope", "/v2/publish", "/"):
        status, body = answer(request(bridge, clock, path))
        assert status == 404 and body["error"] == "wampd.error.no_such_route", path


@pytest.mark.parametrize(
    ("error", "status", "uri"),
    [
        (TransportLost(), 503, "wampd.error.not_joined"),
        (RuntimeError("boom"), 500, "wampd.error.internal"),
    ],
)
def test_a_lost_session_is_a_503_anything_else_a_500(
    error: Exception, status: int, uri: str
) -> None:
    bridge, clock = make()
    session = joined(bridge)
    callee: Deferred[Any] = Deferred()
    session.answers.append(callee)
    req = request(bridge, clock, "/v1/call", {"procedure": "com.example.p"})
    callee.errback(Failure(error))
    code, body = answer(req)
    assert (code, body["error"]) == (status, uri)


class Held:
    """A subscription or registration of :class:`SettingUp`, recording its release."""

    def __init__(self, log: list[str], what: str, kind: str) -> None:
        self._log, self._what = log, what
        if kind == "subscription":
            self.unsubscribe = lambda: self._release("unsubscribe")
        else:
            self.unregister = lambda: self._release("unregister")

    def _release(self, verb: str) -> Deferred[None]:
        self._log.append(f"{verb} {self._what}")
        return succeed(None)


class SettingUp(FakeSession):
    """A session the bridge subscribes and registers on; ``refuse`` fails one URI."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__()
        self.log: list[str] = []
        self.handlers: dict[str, Any] = {}
        self.refuse = refuse

    def is_attached(self) -> bool:
        return True

    def _hold(self, uri: str, handler: Any, kind: str) -> Deferred[Any]:
        if uri == self.refuse:
            return Deferred.fromCoroutine(_refuse(uri))
        self.handlers[uri] = handler
        self.log.append(f"{kind} {uri}")
        return succeed(Held(self.log, uri, kind))

    def subscribe(self, handler: Any, topic: str, options: Any) -> Deferred[Any]:
        assert options.details_arg == "details"
        return self._hold(topic, handler, "subscription")

    def register(self, endpoint: Any, uri: str, options: Any) -> Deferred[Any]:
        assert options.details_arg == "details" and options.invoke == "roundrobin"
        return self._hold(uri, endpoint, "registration")


async def _refuse(uri: str) -> None:
    raise ApplicationError(ApplicationError.NOT_AUTHORIZED, f"not authorized: {uri}")


SUBSCRIPTION = Subscription(1, "com.example.e", None, None)
REGISTRATION = Registration(None, 2, "com.example.p", None)


def app_bridge() -> tuple[Bridge, Clock, list[Deferred[Any]]]:
    """A bridge with one subscription and one procedure whose POSTs stay pending."""
    clock = Clock()
    posts: list[Deferred[Any]] = []

    def post(url: str, body: bytes, timeout: float) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        posts.append(d)
        return d

    config = BridgeConfig(
        listen="127.0.0.1:0",
        subscriptions=(SubscriptionConfig(topic="com.example.e", url="http://127.0.0.1:1/e"),),
        procedures=(
            ProcedureConfig(uri="com.example.p", url="http://127.0.0.1:1/p", invoke="roundrobin"),
        ),
    )
    return Bridge(config, clock=clock, post=post, rand=lambda: 0.5), clock, posts


def test_ready_only_once_everything_is_subscribed_and_registered() -> None:
    bridge, _clock, _posts = app_bridge()
    refusing = SettingUp(refuse="com.example.p")
    failed: list[Failure] = []
    bridge._set_up(refusing).addErrback(failed.append)  # type: ignore[arg-type]
    assert not bridge.ready and failed and failed[0].check(ApplicationError)
    session = SettingUp()
    bridge._set_up(session)  # type: ignore[arg-type]
    assert bridge.ready and bridge.session is session
    assert session.log == ["subscription com.example.e", "registration com.example.p"]


def test_the_drain_unsubscribes_first_and_unregisters_after_the_invocations() -> None:
    """503 from the start; events already queued and invocations in flight finish; the
    registration goes only after them (a router fails an invocation whose registration
    went away)."""
    bridge, clock, posts = app_bridge()
    session = SettingUp()
    bridge._set_up(session)  # type: ignore[arg-type]
    details = EventDetails(SUBSCRIPTION, publication=7, topic="com.example.e")
    session.handlers["com.example.e"]("x", details=details)  # a delivery in flight
    invocation = session.handlers["com.example.p"](1, details=CallDetails(REGISTRATION))
    assert len(posts) == 2

    drained = bridge.drain(5.0)
    assert not drained.called and not bridge.ready
    status, body = answer(request(bridge, clock, "/v1/publish", {"topic": "com.example.t"}))
    assert (status, body["error"]) == (503, "wampd.error.shutting_down")
    assert session.log[-1] == "unsubscribe com.example.e"
    with pytest.raises(ApplicationError, match="stopping"):  # new invocations: unavailable
        session.handlers["com.example.p"](2, details=CallDetails(REGISTRATION))
    posts[0].callback(Reply(204))  # the delivery
    assert not drained.called
    posts[1].callback(Reply(200, b'{"args": [1]}'))  # the invocation
    assert invocation.called and drained.called
    assert session.log[-1] == "unregister com.example.p"


def test_a_drain_out_of_time_abandons_what_is_left() -> None:
    notes: list[Any] = []
    bridge, clock, posts = app_bridge()
    bridge._delivery_note = notes.append  # type: ignore[method-assign,assignment]
    for deliveries in bridge.deliveries.values():
        deliveries._note = notes.append
    session = SettingUp()
    bridge._set_up(session)  # type: ignore[arg-type]
    for n in range(3):
        details = EventDetails(SUBSCRIPTION, publication=n)
        session.handlers["com.example.e"](n, details=details)
    drained = bridge.drain(2.0)
    clock.advance(2.0)
    assert drained.called
    abandoned = [note.publication for note in notes if note.outcome == "abandoned"]
    assert sorted(abandoned) == [0, 1, 2]
    assert posts[0].called  # the one in flight was cancelled
