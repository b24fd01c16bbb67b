"""The bridge's HTTP routes, served by ``twisted.web`` on the daemon's reactor.

``POST /v1/publish``  ``{"topic", "args", "kwargs", "options"}``: 200 ``{"id": N}`` once
                      the router has acknowledged the publication -- or, with the
                      ``[outbox]`` on, 202 ``{"msg_id", "status": "queued"}`` once the
                      message is committed to it (``"duplicate"``: an ``Idempotency-Key``
                      header or a ``msg_id`` field seen before; the first one's id).
``POST /v1/publish/batch``  (outbox only) an array of such objects: 202 ``{"results": [one
                      per entry, in order], "queued", "duplicates", "rejected"}``.
``POST /v1/call``     ``{"procedure", "args", "kwargs", "options"}``: 200 ``{"args",
                      "kwargs"}`` with the result.
``GET /v1/ready``     200 once the bridge session is joined with its subscriptions and
                      registrations in place, else 503 (no token needed: a probe learns
                      nothing from it).
``POST /publish``,    Crossbar's HTTP bridge publisher and caller, answered as Crossbar
``POST /call``        does (:mod:`wampd.crossbar`), for the clients written for it.

Every answer is JSON; every error names the problem as ``{"error": ..., "args": [...],
"kwargs": {...}}``:

=====  =============================================================================
400    the body is not JSON, not an object, lacks the URI, has a wrong type, an unknown
       option, or the router says the URI is invalid (``wamp.error.invalid_uri``)
401    ``token_file`` is set and the request lacks ``Authorization: Bearer <token>``
403    the router refuses (``wamp.error.not_authorized``)
404    no such route; ``/v1/call``: no callee (``wamp.error.no_such_procedure``)
405    a method other than POST (GET for ``/v1/ready``)
413    the body is larger than ``max_body`` (refused from its Content-Length, unread)
502    the callee raised an application error (its URI, args and kwargs)
500    anything else that went wrong inside wampd (its type and message)
503    the bridge session is not joined, was lost during the request, or the bridge is
       stopping; the outbox is full (``wampd.error.outbox_full``, ``when_full =
       "reject"``) or its store cannot be written (``wampd.error.outbox_unavailable``)
       (``Retry-After``)
504    no answer within ``call_timeout``: a call's result (the call is cancelled), or a
       publication's acknowledgement
=====  =============================================================================
"""

from __future__ import annotations

import hmac
import io
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from autobahn.wamp.exception import ApplicationError, InvalidUriError, TransportLost
from autobahn.wamp.types import CallOptions, CallResult, PublishOptions
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.server import version as server_version

from .errors import OutboxFull, OutboxUnavailable
from .http import QuietChannel, QuietSite
from .metrics import BRIDGE_ROUTES
from .outbox import InvalidTopic, message
from .store import Accepted, Entry

if TYPE_CHECKING:
    from .bridge import Bridge
    from .outbox import Outbox

__all__ = ["RETRY_AFTER", "Api", "Refused", "Token", "make_site"]

_R = TypeVar("_R")

#: Seconds an app is told to wait (``Retry-After``) while the bridge session is not joined.
RETRY_AFTER = 1

#: Router errors that have a status of their own.
_STATUS = {
    ApplicationError.NOT_AUTHORIZED: 403,
    ApplicationError.NO_SUCH_PROCEDURE: 404,
    ApplicationError.INVALID_URI: 400,
    ApplicationError.INVALID_ARGUMENT: 400,
}

#: The status counted for a request whose client went away before its answer.
CLIENT_GONE = 499


class Refused(Exception):
    """A request answered with an error: its status, and the body's error, args and kwargs."""

    def __init__(
        self, status: int, error: str, *args: Any, kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, list(args)
        self.kwargs = kwargs or {}


class Token:
    """A secret in a file (the bearer token, the signing secret), read again whenever the
    file changes (a rotated Kubernetes secret)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._token = b""

    def value(self) -> bytes:
        """The file's text, stripped; while it cannot be read (a secret being swapped),
        the last one read; empty (which matches nothing) if none ever was."""
        try:
            st = os.stat(self._path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            if seen != self._seen:
                with open(self._path, "rb") as f:
                    self._token = f.read().strip()
                self._seen = seen
        except OSError:
            pass
        return self._token


def make_site(bridge: Bridge, more: Callable[[Api], dict[bytes, IResource]]) -> Site:
    """The bridge's routes, and ``more`` of them below the root (given what they share)."""
    token = None if bridge.config.token_file is None else Token(bridge.config.token_file)
    api = Api(bridge, token)
    root, v1 = _Folder(api, "other"), _Folder(api, "other")
    root.putChild(b"v1", cast(IResource, v1))
    publish = _Route(api, "/v1/publish", api.publish)
    batch = _Route(api, "/v1/publish/batch", api.publish_batch, json_array)
    publish.putChild(b"batch", cast(IResource, batch))
    v1.putChild(b"publish", cast(IResource, publish))
    v1.putChild(b"call", cast(IResource, _Route(api, "/v1/call", api.call)))
    v1.putChild(b"ready", cast(IResource, _Ready(api)))
    extra = more(api)
    for name, resource in extra.items():
        root.putChild(name, resource)
    site = _BridgeSite(root, api)
    for path, leaf in (
        (b"/v1/publish", v1.children[b"publish"]),
        (b"/v1/publish/batch", publish.children[b"batch"]),
        (b"/v1/call", v1.children[b"call"]),
        (b"/v1/ready", v1.children[b"ready"]),
        *((b"/" + name, r) for name, r in extra.items()),
    ):
        site.leaves[path] = (cast(Resource, leaf), path.strip(b"/").split(b"/"))
    return site


#: Seconds a client has for a request's line and headers, from its first byte (a client
#: trickling them in -- slowloris -- is answered 408 and dropped); and for silence on an
#: idle connection (kept-alive, or a body stalled half-way).
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0


class _BridgeChannel(QuietChannel):
    """HTTP/1.1 with a deadline for each request's headers."""

    _phase = "idle"  # idle -> headers -> body -> handling -> idle
    _deadline: Any = None
    _host: Any = None
    _peer: Any = None

    # Every request asks its channel for both; each is a system call. A connection's two
    # ends do not change.
    def getHost(self) -> Any:
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]
        return self._host

    def getPeer(self) -> Any:
        if self._peer is None:
            self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return self._peer

    def dataReceived(self, data: bytes) -> None:
        if self._phase == "idle" and data.strip():
            self._phase = "headers"
            self._deadline = self.callLater(HEADER_TIMEOUT, self._too_slow)  # type: ignore[no-untyped-call]
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        self._phase = "body"
        self._disarm()
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def allContentReceived(self) -> None:
        self._phase = "handling"
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Request) -> None:
        self._phase = "idle"
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _disarm(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _too_slow(self) -> None:
        self._deadline = None
        if self._phase != "headers":
            return
        cast(Any, self.transport).write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.loseConnection()  # type: ignore[no-untyped-call]


class _BridgeSite(QuietSite):
    """The routes' site: requests of the kind that refuse large bodies early, a deadline
    for headers, an idle timeout."""

    protocol = _BridgeChannel

    def __init__(self, root: Resource, api: Api) -> None:
        # The bodies are JSON: never parse them as forms into request.args (Twisted parses
        # every POST's Content-Type with the email package for that).
        super().__init__(  # type: ignore[no-untyped-call]
            root,
            reactor=api.bridge.clock,
            timeout=IDLE_TIMEOUT,
            parsePOSTFormSubmission=False,
        )
        #: The leaf routes by exact path, served without walking the resource tree.
        self.leaves: dict[bytes, tuple[Resource, list[bytes]]] = {}
        self._date: tuple[int, bytes] = (-1, b"")
        self.displayTracebacks = False
        self.requestFactory = _Request
        self.api = api
        self.max_body = api.bridge.config.max_body

    def date(self) -> bytes:
        """The Date header's value, formatted once a second."""
        now = int(self.api.bridge.clock.seconds())
        if now != self._date[0]:
            self._date = (now, datetimeToString(now))
        return self._date[1]

    def too_large(self, target: bytes, size: int) -> tuple[bytes, bytes]:
        """Count a body to ``target`` refused for its ``size``; the answer's content type
        and body."""
        path = target.split(b"?", 1)[0].decode("utf-8", "replace")
        route = path if path in BRIDGE_ROUTES else "other"
        self.api.count(route, 413, self.api.bridge.clock.seconds())
        if route in ("/publish", "/call"):  # as Crossbar words it
            message = f"Request too long. ({size} is longer than accepted {self.max_body})"
            body = json.dumps({"error": message, "args": [], "kwargs": {}}, separators=(",", ":"))
            return b"application/json; charset=UTF-8", body.encode()
        error = {
            "error": "wampd.error.body_too_large",
            "args": [f"body over {self.max_body} bytes"],
            "kwargs": {},
        }
        return b"application/json; charset=utf-8", json.dumps(error).encode() + b"\n"


class _Request(Request):
    """Refuses a body over ``max_body`` as soon as its Content-Length (or, chunked, its
    size so far) says so: a 413 and the connection closed, the body never buffered."""

    refused_large = False

    def process(self) -> None:
        """A known route is served at once; anything else as twisted.web does."""
        site = self._site()
        found = site.leaves.get(self.path)
        if found is None:
            super().process()  # type: ignore[no-untyped-call]
            return
        resource, prepath = found
        self.site = site
        self.setHeader(b"server", server_version)  # type: ignore[no-untyped-call]
        self.setHeader(b"date", site.date())  # type: ignore[no-untyped-call]
        self.prepath, self.postpath = list(prepath), []
        self.sitepath: list[bytes] = []
        try:
            self.render(resource)  # type: ignore[no-untyped-call]
        except Exception:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def gotLength(self, length: int | None) -> None:
        self._received = 0
        # In memory (never more than max_body of it), not Twisted's temporary file for a
        # body of unknown or large length.
        self.content = io.BytesIO()
        if length is not None and length > self._site().max_body:
            self._refuse_large(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused_large:
            return
        self._received += len(data)
        if self._received > self._site().max_body:
            self._refuse_large(self._received)
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def _site(self) -> _BridgeSite:
        return cast(_BridgeSite, cast(Any, self.channel).site)

    def _refuse_large(self, size: int) -> None:
        self.refused_large = True
        # The request line's target: the request itself has no URI before its body is in.
        target = getattr(self.channel, "_path", None) or b""
        content_type, body = self._site().too_large(target, size)
        head = (
            b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (content_type, len(body))
        )
        transport: Any = cast(Any, self.channel).transport
        transport.write(head + body)
        transport.loseConnection()


class Api:
    """What the routes share: the bridge, the token, the answers."""

    def __init__(self, bridge: Bridge, token: Token | None) -> None:
        self.bridge = bridge
        self.token = token
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def now(self) -> float:
        """The reactor's time: the wall clock's (a Clock's, in tests)."""
        return self.bridge.clock.seconds()

    # -- checks -----------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        """Whether ``request`` carries the token (always, when there is none)."""
        if self.token is None:
            return True
        expected = self.token.value()
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        return (
            bool(expected)
            and scheme.lower() == b"bearer"
            and hmac.compare_digest(token.strip(), expected)
        )

    def joined(self) -> Any:
        bridge = self.bridge
        if bridge.draining:
            raise Refused(503, "wampd.error.shutting_down", "the bridge is stopping")
        if bridge.session is None:
            raise Refused(503, "wampd.error.not_joined", "the bridge session is not joined yet")
        return bridge.session

    def body(self, request: Request) -> bytes:
        """The request's body, within ``max_body``."""
        limit = self.bridge.config.max_body
        assert request.content is not None
        raw: bytes = request.content.read(limit + 1)
        if len(raw) > limit:
            raise Refused(413, "wampd.error.body_too_large", f"body over {limit} bytes")
        return raw

    # -- the WAMP actions ---------------------------------------------------------------------

    def publish(self, body: dict[str, Any], request: Request) -> Deferred[Answer]:
        outbox = self.bridge.outbox
        if outbox is not None:
            self.intake_open()
            entry = self.entry(body, _idempotency_key(request))
            stored = outbox.enqueue([entry])
            return stored.addCallback(lambda accepted: _queued(accepted[0], outbox))
        topic = _uri(body, "topic")
        args, kwargs, options = _payload(body)
        try:
            publish_options = PublishOptions(**{**options, "acknowledge": True})
        except (TypeError, ValueError, AssertionError) as exc:
            raise Refused(400, "wamp.error.invalid_argument", f"bad options: {exc}") from None
        d: Deferred[Any] = self.joined().publish(topic, *args, options=publish_options, **kwargs)
        return d.addCallback(lambda publication: (200, {"id": publication.id}))

    def publish_batch(self, body: list[Any], request: Request) -> Deferred[Answer]:
        """Store every valid entry in one commit; answer for each, in order."""
        outbox = self.bridge.outbox
        if outbox is None:
            raise Refused(
                404,
                "wampd.error.no_outbox",
                "/v1/publish/batch stores into the outbox, and [outbox] has no path",
            )
        self.intake_open()
        if not body:
            raise Refused(400, "wamp.error.invalid_argument", "the batch is empty")
        key = _idempotency_key(request)
        results: list[dict[str, Any] | None] = [None] * len(body)
        valid: list[tuple[int, Entry]] = []
        for i, item in enumerate(body):
            try:
                if not isinstance(item, dict):
                    raise Refused(400, "wamp.error.invalid_argument", "entry must be an object")
                valid.append((i, self.entry(item, None if key is None else f"{key}#{i}")))
            except Refused as refused:
                results[i] = _entry_error(refused)
        stored: Deferred[list[Accepted]] = (
            outbox.enqueue([entry for _, entry in valid]) if valid else succeed([])
        )

        def answered(accepted: list[Accepted]) -> Answer:
            for (i, _), one in zip(valid, accepted, strict=True):
                try:
                    results[i] = _queued(one, outbox)[1]
                except Refused as refused:
                    results[i] = _entry_error(refused)
            done = [r for r in results if r is not None]
            queued = sum(1 for r in done if r.get("status") == "queued")
            duplicates = sum(1 for r in done if r.get("status") == "duplicate")
            rejected = len(done) - queued - duplicates
            status = 202 if queued or duplicates else int(done[0]["code"])
            return status, {
                "results": done,
                "queued": queued,
                "duplicates": duplicates,
                "rejected": rejected,
            }

        return stored.addCallback(answered)

    def intake_open(self) -> None:
        if self.bridge.draining:
            raise Refused(503, "wampd.error.shutting_down", "the bridge is stopping")

    def entry(self, body: dict[str, Any], key: str | None) -> Entry:
        """An outbox entry from a publish's body, checked (raises :class:`Refused`)."""
        topic = _uri(body, "topic")
        args, kwargs, options = _payload(body)
        try:
            return message(topic, args, kwargs, options, msg_id=body.get("msg_id"), key=key)
        except InvalidTopic as exc:
            raise Refused(400, ApplicationError.INVALID_URI, str(exc)) from None
        except ValueError as exc:
            raise Refused(400, "wamp.error.invalid_argument", str(exc)) from None

    def call(self, body: dict[str, Any], request: Request) -> Deferred[Answer]:
        procedure = _uri(body, "procedure")
        args, kwargs, options = _payload(body)
        try:
            call_options = CallOptions(**options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise Refused(400, "wamp.error.invalid_argument", f"bad options: {exc}") from None
        d: Deferred[Any] = self.joined().call(procedure, *args, options=call_options, **kwargs)
        return d.addCallback(lambda result: (200, _result(result)))

    # -- answers ----------------------------------------------------------------------------

    def answer(
        self, request: Request, route: str, status: int, body: dict[str, Any], started: float
    ) -> bytes:
        """Set the status and headers, count the request; the JSON body's bytes."""
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if status == 503:
            request.setHeader(b"retry-after", str(RETRY_AFTER).encode())
        self.count(route, status, started)
        data = json.dumps(body, default=str).encode() + b"\n"
        request.setHeader(b"content-length", b"%d" % len(data))  # not chunked: one write
        return data

    def error(self, request: Request, route: str, refused: Refused, started: float) -> bytes:
        body = {"error": refused.error, "args": refused.details, "kwargs": refused.kwargs}
        return self.answer(request, route, refused.status, body, started)

    def count(self, route: str, status: int, started: float) -> None:
        metrics = self.bridge.metrics
        if metrics is None:
            return
        series = self._series.get((route, status))
        if series is None:  # labels() looks up, under a lock: once per route and status
            series = self._series[route, status] = (
                metrics.requests.labels(route, str(status)),
                metrics.request_duration.labels(route),
            )
        series[0].inc()
        series[1].observe(self.bridge.clock.seconds() - started)

    def run(
        self,
        request: Request,
        handle: Callable[[Any], Deferred[_R]],
        body: Any,
        *,
        ok: Callable[[_R], bytes],
        failed: Callable[[Refused], bytes],
    ) -> int:
        """Run ``handle`` for ``request`` within ``call_timeout``; write ``ok``'s or
        ``failed``'s answer -- unless the app went away, which cancels the call.

        One timer and one callback per request: this is the bridge's hot path."""
        bridge = self.bridge
        timeout = bridge.config.call_timeout
        try:
            d = handle(body)
        except Exception:  # autobahn checks a URI before sending: raises
            request.write(failed(refusal(Failure(), timeout)))
            request.finish()
            return NOT_DONE_YET
        bridge.request_began()
        # [the timer, whether it fired, whether the app went away]
        state: list[Any] = [None, False, False]

        def expire() -> None:
            state[0], state[1] = None, True
            d.cancel()

        def went_away(_: Failure) -> None:
            state[2] = True
            d.cancel()

        state[0] = bridge.clock.callLater(timeout, expire)
        request.notifyFinish().addErrback(went_away)

        def done(result: Any) -> None:
            timer = state[0]
            if timer is not None:
                state[0] = None
                timer.cancel()
            bridge.request_ended()
            if state[2]:
                return  # nobody to answer
            if isinstance(result, Failure):
                if state[1] and result.check(CancelledError):
                    result = Failure(TimeoutError())
                answer = failed(refusal(result, timeout))
            else:
                answer = ok(result)
            request.write(answer)
            request.finish()

        d.addBoth(done)
        return NOT_DONE_YET


#: A native route's answer: its status and JSON body.
Answer = tuple[int, dict[str, Any]]


def _idempotency_key(request: Request) -> str | None:
    raw = request.getHeader(b"idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 200 or not key.isascii() or not key.decode().isprintable():
        raise Refused(
            400,
            "wamp.error.invalid_argument",
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
        )
    return "key:" + key.decode()


def _queued(accepted: Accepted, outbox: Outbox) -> Answer:
    """The answer for one entry the outbox took, or the :class:`Refused` it was not."""
    if accepted.status in ("queued", "duplicate"):
        return 202, {"msg_id": accepted.msg_id, "status": accepted.status}
    limits = outbox.limits
    if accepted.status == "too_large":
        raise Refused(
            413,
            "wampd.error.body_too_large",
            f"the message is larger than the outbox's max_bytes ({limits.max_bytes})",
        )
    raise Refused(
        503,
        OutboxFull.error,
        f"the outbox is full ({limits.max_messages} messages or {limits.max_bytes} bytes)",
    )


def _entry_error(refused: Refused) -> dict[str, Any]:
    return {
        "status": "rejected",
        "code": refused.status,
        "error": refused.error,
        "args": refused.details,
        "kwargs": refused.kwargs,
    }


def _uri(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise Refused(400, "wamp.error.invalid_argument", f"{key!r} must be a non-empty string")
    return value


def _payload(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    args, kwargs, options = body.get("args", []), body.get("kwargs", {}), body.get("options", {})
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    options = {} if options is None else options
    if not isinstance(args, list):
        raise Refused(400, "wamp.error.invalid_argument", "'args' must be an array")
    for name, value in (("kwargs", kwargs), ("options", options)):
        if not isinstance(value, dict):
            raise Refused(400, "wamp.error.invalid_argument", f"{name!r} must be an object")
    if "options" in kwargs:  # autobahn's publish() and call() take it as their own
        raise Refused(
            400, "wamp.error.invalid_argument", "a keyword argument may not be named 'options'"
        )
    return args, kwargs, options


def _result(result: object) -> dict[str, Any]:
    if isinstance(result, CallResult):
        return {"args": list(result.results), "kwargs": dict(result.kwresults)}
    return {"args": [] if result is None else [result], "kwargs": {}}


def refusal(failure: Failure, timeout: float) -> Refused:
    """How a failed publish or call is answered."""
    exc = failure.value
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, InvalidUriError | OutboxUnavailable | OutboxFull):
        status, error = (
            (400, ApplicationError.INVALID_URI)
            if isinstance(exc, InvalidUriError)
            else (503, exc.error)
        )
        return Refused(status, error, str(exc))
    if isinstance(exc, TimeoutError):
        return Refused(504, "wamp.error.timeout", f"no answer within {timeout:g} s")
    if isinstance(exc, ApplicationError):
        return Refused(
            _STATUS.get(exc.error, 502), exc.error, *exc.args, kwargs=dict(exc.kwargs or {})
        )
    if isinstance(exc, TransportLost):
        return Refused(503, "wampd.error.not_joined", f"the bridge session was lost: {exc}")
    return Refused(500, "wampd.error.internal", f"{type(exc).__name__}: {exc}")


def _json(raw: bytes, kind: type, name: str) -> Any:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, "wampd.error.invalid_json", f"body is not JSON: {exc}") from None
    if not isinstance(body, kind):
        raise Refused(400, "wamp.error.invalid_argument", f"body must be a JSON {name}")
    return body


def json_array(raw: bytes) -> list[Any]:
    """The body as a JSON array."""
    body: list[Any] = _json(raw, list, "array")
    return body


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object."""
    body: dict[str, Any] = _json(raw, dict, "object")
    return body


class _Folder(Resource):
    """Its children by name; anything else below it, and itself, is a JSON 404."""

    def __init__(self, api: Api, route: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._api = api

    def getChild(self, path: bytes, request: Request) -> IResource:
        return cast(IResource, _Missing(self._api))

    def render(self, request: Request) -> bytes:
        return _Missing(self._api).render(request)


class _Missing(Resource):
    isLeaf = True

    def __init__(self, api: Api) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._api = api

    def render(self, request: Request) -> bytes:
        started = self._api.bridge.clock.seconds()
        route = request.path.decode("utf-8", "replace")
        refused = Refused(404, "wampd.error.no_such_route", f"no route {route[:200]}")
        return self._api.error(request, "other", refused, started)


class _Ready(Resource):
    isLeaf = True

    def __init__(self, api: Api) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._api = api

    def render(self, request: Request) -> bytes:
        api, started = self._api, self._api.bridge.clock.seconds()
        if request.method not in (b"GET", b"HEAD"):
            refused = Refused(405, "wampd.error.method_not_allowed", "use GET")
            return api.error(request, "/v1/ready", refused, started)
        bridge = api.bridge
        if bridge.ready:
            return api.answer(request, "/v1/ready", 200, {"ready": True}, started)
        why = "the bridge is stopping" if bridge.draining else "the bridge session is not joined"
        return api.answer(request, "/v1/ready", 503, {"ready": False, "error": why}, started)


class _Route(Resource):
    """One native POST route: the JSON body in, ``handle``'s answer (or error) out."""

    isLeaf = True

    def __init__(
        self,
        api: Api,
        route: str,
        handle: Callable[[Any, Request], Deferred[Answer]],
        parse: Callable[[bytes], Any] = json_object,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._api, self._route, self._handle, self._parse = api, route, handle, parse

    def render(self, request: Request) -> bytes | int:
        api, route, started = self._api, self._route, self._api.bridge.clock.seconds()
        if getattr(request, "refused_large", False):
            return NOT_DONE_YET  # answered already, and the connection closed
        try:
            if request.method != b"POST":
                raise Refused(405, "wampd.error.method_not_allowed", "use POST")
            if not api.authorized(request):
                raise Refused(401, "wampd.error.unauthorized", "missing or wrong bearer token")
            body = self._parse(api.body(request))
        except Refused as refused:
            return api.error(request, route, refused, started)
        return api.run(
            request,
            lambda parsed: self._handle(parsed, request),
            body,
            ok=lambda answer: api.answer(request, route, answer[0], answer[1], started),
            failed=lambda refused: api.error(request, route, refused, started),
        )
