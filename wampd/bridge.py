"""The sidecar bridge: an app next to wampd, in any language, publishes and calls over
local HTTP through a session wampd keeps joined.

The bridge's session is one more supervised component of the daemon (named ``bridge``,
on the router's URLs and realm): it reconnects, is counted, logged and probed like any
other. Its routes, served by ``twisted.web`` on the daemon's reactor:

``POST /v1/publish``  ``{"topic", "args", "kwargs", "options"}``: 200 ``{"id": N}`` once
                      the router has acknowledged the publication.
``POST /v1/call``     ``{"procedure", "args", "kwargs", "options"}``: 200 ``{"args",
                      "kwargs"}`` with the result.
``GET /v1/ready``     200 once the bridge session is joined, else 503 (no token needed:
                      a probe learns nothing from it).

Every answer is JSON; every error names the problem as ``{"error": ..., "args": [...],
"kwargs": {...}}``:

=====  =============================================================================
400    the body is not JSON, not an object, lacks the URI, has a wrong type, an unknown
       option, or the router says the URI is invalid (``wamp.error.invalid_uri``)
401    ``token_file`` is set and the request lacks ``Authorization: Bearer <token>``
403    the router refuses (``wamp.error.not_authorized``)
404    no such route; ``/v1/call``: no callee (``wamp.error.no_such_procedure``)
405    a method other than POST (GET for ``/v1/ready``)
413    the body is larger than ``max_body``
502    the callee raised an application error (its URI, args and kwargs)
500    anything else that went wrong inside wampd (its type and message)
503    the bridge session is not joined, or was lost during the request (``Retry-After``)
504    no answer within ``call_timeout``: a call's result (the call is cancelled), or a
       publication's acknowledgement
=====  =============================================================================
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError, InvalidUriError, TransportLost
from autobahn.wamp.types import CallOptions, CallResult, ComponentConfig, PublishOptions
from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ._typing import Clock
from .http import QuietSite

__all__ = ["Bridge", "BridgeSettings"]

#: Seconds an app is told to wait (``Retry-After``) while the bridge session is not joined.
RETRY_AFTER = 1

#: Router errors that have a status of their own.
_STATUS = {
    ApplicationError.NOT_AUTHORIZED: 403,
    ApplicationError.NO_SUCH_PROCEDURE: 404,
    ApplicationError.INVALID_URI: 400,
    ApplicationError.INVALID_ARGUMENT: 400,
}


@dataclass(frozen=True)
class BridgeSettings:
    """``[bridge]``, as the bridge uses it."""

    #: A unix socket's path, or ``(host, port)``.
    address: str | tuple[str, int]
    token_file: str | None = None
    max_body: int = 1048576
    call_timeout: float = 10.0


class _Refused(Exception):
    """A request answered with an error: its status, and the body's error, args and kwargs."""

    def __init__(
        self, status: int, error: str, *args: Any, kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.details = status, error, list(args)
        self.kwargs = kwargs or {}


class _Token:
    """The bearer token, read from its file again whenever the file changes (a rotated
    Kubernetes secret)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen: tuple[int, int, int] | None = None
        self._token = b""

    def value(self) -> bytes:
        """The file's text; while it cannot be read (a secret being swapped), the last
        one read; empty (which matches nothing) if none ever was."""
        try:
            st = os.stat(self._path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen != self._seen:
                with open(self._path, "rb") as f:
                    self._token = f.read().strip()
                self._seen = seen
        except OSError:
            pass
        return self._token


class Bridge:
    """The bridge's session (the component the daemon supervises) and its HTTP site."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        #: The joined session, or None.
        self.session: ApplicationSession | None = None
        self._token = None if settings.token_file is None else _Token(settings.token_file)

    def make_session(self, config: ComponentConfig) -> ApplicationSession:
        """The bridge's session factory (a :data:`~wampd.wamp.SessionFactory`)."""
        return _BridgeSession(config, self)

    @property
    def ready(self) -> bool:
        """Whether requests can go through: the session is joined."""
        return self.session is not None

    def site(self, clock: Clock) -> Site:
        """The routes, timing calls by ``clock`` (the reactor)."""
        root, v1 = _Folder(), _Folder()
        root.putChild(b"v1", cast(IResource, v1))
        v1.putChild(b"publish", cast(IResource, _Route(self, clock, self._publish)))
        v1.putChild(b"call", cast(IResource, _Route(self, clock, self._call)))
        v1.putChild(b"ready", cast(IResource, _Ready(self)))
        site = QuietSite(root, reactor=clock)  # type: ignore[no-untyped-call]
        site.displayTracebacks = False
        return site

    def authorized(self, request: Request) -> bool:
        """Whether ``request`` carries the token (always, when there is none)."""
        if self._token is None:
            return True
        expected = self._token.value()
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        return (
            bool(expected)
            and scheme.lower() == b"bearer"
            and hmac.compare_digest(token.strip(), expected)
        )

    def _joined(self) -> ApplicationSession:
        if self.session is None:
            raise _Refused(503, "wampd.error.not_joined", "the bridge session is not joined yet")
        return self.session

    def _publish(self, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        topic = _uri(body, "topic")
        args, kwargs, options = _payload(body)
        try:
            publish_options = PublishOptions(**{**options, "acknowledge": True})
        except (TypeError, ValueError, AssertionError) as exc:
            raise _Refused(400, "wamp.error.invalid_argument", f"bad options: {exc}") from None
        d: Deferred[Any] = self._joined().publish(topic, *args, options=publish_options, **kwargs)
        return d.addCallback(lambda publication: {"id": publication.id})

    def _call(self, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        procedure = _uri(body, "procedure")
        args, kwargs, options = _payload(body)
        try:
            call_options = CallOptions(**options)
        except (TypeError, ValueError, AssertionError) as exc:
            raise _Refused(400, "wamp.error.invalid_argument", f"bad options: {exc}") from None
        d: Deferred[Any] = self._joined().call(procedure, *args, options=call_options, **kwargs)
        return d.addCallback(_result)


class _BridgeSession(ApplicationSession):
    """Makes itself the bridge's session while it is joined."""

    def __init__(self, config: ComponentConfig, bridge: Bridge) -> None:
        super().__init__(config)
        self._bridge = bridge

    def onJoin(self, details: Any) -> None:
        self._bridge.session = self

    def onLeave(self, details: Any) -> None:
        if self._bridge.session is self:
            self._bridge.session = None
        super().onLeave(details)


def _uri(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _Refused(400, "wamp.error.invalid_argument", f"{key!r} must be a non-empty string")
    return value


def _payload(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    args, kwargs, options = body.get("args", []), body.get("kwargs", {}), body.get("options", {})
    if not isinstance(args, list):
        raise _Refused(400, "wamp.error.invalid_argument", "'args' must be an array")
    for name, value in (("kwargs", kwargs), ("options", options)):
        if not isinstance(value, dict):
            raise _Refused(400, "wamp.error.invalid_argument", f"{name!r} must be an object")
    if "options" in kwargs:  # autobahn's publish() and call() take it as their own
        raise _Refused(
            400, "wamp.error.invalid_argument", "a keyword argument may not be named 'options'"
        )
    return args, kwargs, options


def _result(result: object) -> dict[str, Any]:
    if isinstance(result, CallResult):
        return {"args": list(result.results), "kwargs": dict(result.kwresults)}
    return {"args": [] if result is None else [result], "kwargs": {}}


def _answer(request: Request, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    if status == 503:
        request.setHeader(b"retry-after", str(RETRY_AFTER).encode())
    return json.dumps(body, default=str).encode() + b"\n"


def _error(request: Request, refused: _Refused) -> bytes:
    body = {"error": refused.error, "args": refused.details, "kwargs": refused.kwargs}
    return _answer(request, refused.status, body)


class _Folder(Resource):
    """Its children by name; anything else below it, and itself, is a JSON 404."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def getChild(self, path: bytes, request: Request) -> IResource:
        return cast(IResource, _Missing())

    def render(self, request: Request) -> bytes:
        return _Missing().render(request)


class _Missing(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render(self, request: Request) -> bytes:
        route = request.path.decode("utf-8", "replace")
        return _error(request, _Refused(404, "wampd.error.no_such_route", f"no route {route}"))


class _Ready(Resource):
    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._bridge = bridge

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            return _error(request, _Refused(405, "wampd.error.method_not_allowed", "use GET"))
        if self._bridge.ready:
            return _answer(request, 200, {"ready": True})
        return _answer(request, 503, {"ready": False, "error": "the bridge session is not joined"})


class _Route(Resource):
    """One POST route: the JSON body in, ``handle``'s answer (or error) out."""

    isLeaf = True

    def __init__(
        self,
        bridge: Bridge,
        clock: Clock,
        handle: Callable[[dict[str, Any]], Deferred[dict[str, Any]]],
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._bridge, self._clock, self._handle = bridge, clock, handle

    def render(self, request: Request) -> bytes | int:
        try:
            body = self._body(request)
        except _Refused as refused:
            return _error(request, refused)
        # autobahn checks a URI before sending: that refusal comes as an exception.
        d = maybeDeferred(self._handle, body)
        timeout = self._bridge.settings.call_timeout
        d.addTimeout(timeout, self._clock)  # type: ignore[arg-type]
        gone: list[Failure] = []

        def went_away(failure: Failure) -> None:  # the app closed the connection
            gone.append(failure)
            d.cancel()

        request.notifyFinish().addErrback(went_away)

        def write(answer: Callable[[], bytes]) -> None:
            if not gone:
                request.write(answer())
                request.finish()

        d.addCallbacks(
            lambda body: write(lambda: _answer(request, 200, body)),
            lambda failure: write(lambda: _error(request, _refusal(failure, timeout))),
        )
        return NOT_DONE_YET

    def _body(self, request: Request) -> dict[str, Any]:
        if request.method != b"POST":
            raise _Refused(405, "wampd.error.method_not_allowed", "use POST")
        if not self._bridge.authorized(request):
            raise _Refused(401, "wampd.error.unauthorized", "missing or wrong bearer token")
        limit = self._bridge.settings.max_body
        assert request.content is not None
        raw = request.content.read(limit + 1)
        if len(raw) > limit:
            raise _Refused(413, "wampd.error.body_too_large", f"body over {limit} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Refused(400, "wampd.error.invalid_json", f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Refused(400, "wamp.error.invalid_argument", "body must be a JSON object")
        return body


def _refusal(failure: Failure, timeout: float) -> _Refused:
    """How a failed publish or call is answered (a call the app gave up on is not)."""
    exc = failure.value
    if isinstance(exc, _Refused):
        return exc
    if isinstance(exc, InvalidUriError):
        return _Refused(400, ApplicationError.INVALID_URI, str(exc))
    if isinstance(exc, TimeoutError):
        return _Refused(504, "wamp.error.timeout", f"no answer within {timeout:g} s")
    if isinstance(exc, ApplicationError):
        return _Refused(
            _STATUS.get(exc.error, 502), exc.error, *exc.args, kwargs=dict(exc.kwargs or {})
        )
    if isinstance(exc, TransportLost):
        return _Refused(503, "wampd.error.not_joined", f"the bridge session was lost: {exc}")
    return _Refused(500, "wampd.error.internal", f"{type(exc).__name__}: {exc}")
