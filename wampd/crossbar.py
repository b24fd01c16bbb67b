"""Crossbar's HTTP bridge publisher and caller (``POST /publish``, ``POST /call``), answered
as Crossbar 26.10.1 answers them, so that the clients written for it (crossbarhttprequests,
Laravel's and PHP's bridges, scripts with curl) work by changing one URL.

Byte for byte as Crossbar: the checks and their order (method; content type and charset;
body size; the signature's fields; key; signature; UTF-8; JSON; an object; the URI), the
denials' bodies ``{"error": "<sentence>", "args": [], "kwargs": {}}`` with their statuses
(400, 401, 405, 413), a publication's ``{"id": N}`` after the router's acknowledgement, a
call's ``{"args": [...], "kwargs": {...}}`` (each only when not empty), and a WAMP error as
200 ``{"error": uri, "args", "kwargs"}`` -- a user-level error, as Crossbar has it -- and
any other failure as 500.

Where wampd differs, on purpose:

- a signed request (``[bridge.signing]``) is refused when replayed: its timestamp must be
  within ``max_skew`` of now and its nonce not seen before in that window; signatures and
  keys are compared in constant time;
- input Crossbar fails on with "Unhandled exception in Crossbar." (a topic that is not a
  string, an invalid URI, ``kwargs`` not an object) is a 400 that names the problem;
- a failure of wampd's own (the session not joined, ``call_timeout`` passed) is a 500 with
  its own URI and reason, not Crossbar's "Sorry, Crossbar.io has encountered a problem.";
- no CORS headers: the bridge serves the apps next to it, not web pages in browsers
  (an ``Access-Control-Allow-Origin`` echoing any origin would let any page call it).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from autobahn.wamp.exception import ApplicationError, InvalidUriError
from autobahn.wamp.types import CallResult, PublishOptions
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from .routes import Api, Refused, Token

__all__ = ["Replays", "crossbar_routes", "denial", "signature"]

_CONTENT_TYPE = b"application/json; charset=UTF-8"
_CACHE_CONTROL = b"no-store,no-cache,must-revalidate,max-age=0"
_ALLOW = b"POST,PUT,OPTIONS"

#: The publish options Crossbar's publisher passes on (it ignores the others).
_PUBLISH_OPTIONS = (
    "forward_for",
    "retain",
    "exclude_me",
    "exclude_authid",
    "exclude_authrole",
    "exclude",
    "eligible_authid",
    "eligible_authrole",
    "eligible",
)


def crossbar_routes(api: Api) -> dict[bytes, IResource]:
    """``/publish`` and ``/call``, below the root."""
    signing = api.bridge.config.signing
    check = None if signing is None else _Signing(api, signing.key, signing.secret_file)
    return {
        b"publish": cast(IResource, _Resource(api, "/publish", "topic", _publish, check)),
        b"call": cast(IResource, _Resource(api, "/call", "procedure", _call, check)),
    }


def denial(message: str) -> bytes:
    """A denial's body, as Crossbar writes it (compact, no newline)."""
    return _compact({"error": message, "args": [], "kwargs": {}})


def signature(
    secret: bytes, *, key: bytes, timestamp: bytes, seq: bytes, nonce: bytes, body: bytes
) -> bytes:
    """Crossbar's request signature: HMAC-SHA256 over key | timestamp | seq | nonce | body,
    URL-safe base64 with padding."""
    mac = hmac.new(secret, key + timestamp + seq + nonce + body, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest())


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class _Denied(Exception):
    """A request Crossbar would deny: its status and sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Replays:
    """The nonces of the signed requests seen within their window: a replay is one whose
    nonce is remembered. Each is forgotten once its timestamp is out of the window anyway,
    so the memory holds at most the requests of ``2 * max_skew`` seconds."""

    def __init__(self) -> None:
        self._seen: set[tuple[bytes, bytes]] = set()
        self._expiry: list[tuple[float, tuple[bytes, bytes]]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, key: bytes, nonce: bytes, expires: float, now: float) -> bool:
        """Whether ``(key, nonce)`` is new (and remember it until ``expires``)."""
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.discard(heapq.heappop(self._expiry)[1])
        entry = (key, nonce)
        if entry in self._seen:
            return False
        self._seen.add(entry)
        heapq.heappush(self._expiry, (expires, entry))
        return True


class _Signing:
    """Crossbar's signed requests, with replays refused."""

    def __init__(self, api: Api, key: str, secret_file: str) -> None:
        self._api = api
        self._key = key.encode()
        self._secret = Token(secret_file)
        self._replays = Replays()

    def check(self, fields: dict[str, bytes], body: bytes) -> None:
        """The key, the signature, and that the request is not a replay (the fields are
        there and well formed: :func:`_check_fields`)."""
        secret = self._secret.value()
        key = fields["key"]
        if not hmac.compare_digest(key, self._key):
            raise _Denied(401, "REST bridge signature key not valid.")
        expected = signature(
            secret,
            key=key,
            timestamp=fields["timestamp"],
            seq=fields["seq"],
            nonce=fields["nonce"],
            body=body,
        )
        if not (secret and hmac.compare_digest(fields["signature"], expected)):
            raise _Denied(401, "REST bridge signature secret not valid.")
        expires = _timestamp(fields["timestamp"]) + self.max_skew
        if not self._replays.first_time(key, fields["nonce"], expires, self._api.now()):
            raise _Denied(401, "REST bridge signature was already used (a replayed request).")

    @property
    def max_skew(self) -> float:
        config = self._api.bridge.config.signing
        assert config is not None
        return config.max_skew


def _timestamp(raw: bytes) -> float:
    text = raw.decode("ascii", "replace")
    try:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise _Denied(
            400,
            f"REST bridge signature was invalid (invalid timestamp '{text}' (must be "
            "UTC/ISO-8601, e.g. '2011-10-14T16:59:51.123Z')).",
        ) from None
    return parsed.timestamp()


def _fields(request: Request) -> dict[str, bytes]:
    """The query string's first values, by (ASCII) name."""
    out: dict[str, bytes] = {}
    for name, values in (request.args or {}).items():
        if values:
            out[name.decode("ascii", "replace")] = values[0]
    return out


def _check_fields(fields: dict[str, bytes], signing: _Signing | None, now: float) -> None:
    """The signature's fields, in Crossbar's order: each one present is checked (signed or
    not, as Crossbar does), each one missing is an error when requests are signed."""
    for name in ("key", "timestamp", "seq", "nonce", "signature"):
        if name not in fields:
            if signing is not None:
                detail = (
                    "signed request required, but mandatory 'timestamp' field missing"
                    if name == "timestamp"
                    else f"'{name}' field missing"
                )
                raise _Denied(
                    400, f"REST bridge signature was invalid (missing mandatory field - {detail})."
                )
            continue
        if name == "timestamp":
            skew = DEFAULT_MAX_SKEW if signing is None else signing.max_skew
            if abs(_timestamp(fields[name]) - now) > skew:
                raise _Denied(400, "Request expired, too old timestamp.")
        elif name in ("seq", "nonce"):
            value = fields[name].decode("ascii", "replace")
            what = "sequence number" if name == "seq" else "nonce"
            try:
                int(value)
            except ValueError:
                raise _Denied(
                    400,
                    f"REST bridge signature was invalid (invalid {what} '{value}' "
                    "(must be an integer)).",
                ) from None


#: Seconds a timestamp may be off, when requests are not signed (Crossbar's default).
DEFAULT_MAX_SKEW = 300.0


def _content_type(request: Request) -> None:
    raw = request.requestHeaders.getRawHeaders(b"content-type")
    if not raw:
        return  # Crossbar accepts a request without one
    elements = [x.strip().lower() for x in raw[0].split(b";")]
    if elements[0] != b"application/json":
        raise _Denied(
            400,
            "Non-accepted content type. (must be one of '[b'application/json']', "
            f"not '{elements[0]!r}')",
        )
    params: dict[bytes, bytes] = {}
    for element in elements[1:]:
        if b"=" not in element:
            continue
        parts = [part.strip() for part in element.split(b"=")]
        if len(parts) != 2 or parts[0] in params:
            raise _Denied(400, "Non-accepted request encoding, must be UTF-8.")
        params[parts[0]] = parts[1]
    if params.get(b"charset", b"utf-8") not in (b"utf-8", b"utf8"):
        raise _Denied(400, "Non-accepted request encoding, must be UTF-8.")


Handler = Callable[[Api, dict[str, Any]], "Deferred[bytes]"]


class _Resource(Resource):
    """One of Crossbar's bridge services."""

    isLeaf = True

    def __init__(
        self, api: Api, route: str, uri_key: str, handle: Handler, signing: _Signing | None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._api, self._route, self._uri_key = api, route, uri_key
        self._handle, self._signing = handle, signing

    def render(self, request: Request) -> bytes | int:
        api, started = self._api, self._api.bridge.clock.seconds()
        if getattr(request, "refused_large", False):
            return NOT_DONE_YET
        request.setHeader(b"cache-control", _CACHE_CONTROL)
        request.setHeader(b"content-type", _CONTENT_TYPE)
        if request.method == b"OPTIONS":
            request.setHeader(b"allow", _ALLOW)
            api.count(self._route, 200, started)
            return b""
        try:
            body = self._checked(request)
        except _Denied as denied:
            request.setResponseCode(denied.status)
            api.count(self._route, denied.status, started)
            return denial(denied.message)
        try:
            d = self._handle(api, body)
        except Refused as refused:  # bad input (400), or the session not joined (500)
            return self._refused(request, refused, started)
        except InvalidUriError as exc:  # autobahn checks a URI before sending
            invalid = Refused(400, ApplicationError.INVALID_URI, str(exc))
            return self._refused(request, invalid, started)

        def ok(result: bytes) -> bytes:
            request.setResponseCode(200)
            api.count(self._route, 200, started)
            return result

        return api.run(
            request,
            lambda _: d,
            body,
            ok=ok,
            failed=lambda refused: self._failed(request, refused, started),
        )

    def _checked(self, request: Request) -> dict[str, Any]:
        method = request.method
        if method not in (b"POST", b"PUT"):
            raise _Denied(
                405,
                f"Method not accepted by the REST bridge. ({method!r} not allowed, only POST, PUT)",
            )
        if not self._api.authorized(request):
            raise _Denied(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        _content_type(request)
        try:
            raw = self._api.body(request)
        except Refused:
            limit = self._api.bridge.config.max_body
            size = (request.getHeader(b"content-length") or b"").decode("latin-1")
            why = f"{size} is longer than accepted {limit}" if size else f"over {limit} bytes"
            raise _Denied(413, f"Request too long. ({why})") from None
        fields = _fields(request)
        _check_fields(fields, self._signing, self._api.now())
        if self._signing is not None:
            self._signing.check(fields, raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Denied(400, "Non-decodable request body, was not UTF-8.") from None
        try:
            body = json.loads(text)
        except ValueError:
            raise _Denied(400, "Request body was invalid JSON.") from None
        if not isinstance(body, dict):
            raise _Denied(400, "Request body was valid JSON, but not well formed (must be a dict).")
        if self._uri_key not in body:
            raise _Denied(
                400,
                "Request body was valid JSON, but not well formed "
                f"(missing key '{self._uri_key}').",
            )
        return body

    def _refused(self, request: Request, refused: Refused, started: float) -> bytes:
        """Refused before anything was sent: bad input is a 400, wampd not able to (the
        session not joined, the bridge stopping) a 500 with its reason."""
        status = 400 if refused.status == 400 else 500
        return self._write(request, status, refused, started)

    def _failed(self, request: Request, refused: Refused, started: float) -> bytes:
        """A failed publish or call: a WAMP error from the router or the callee is a 200
        (Crossbar: "a user-level error, not a CB error"), anything else (the session lost,
        no answer within call_timeout) a 500."""
        status = 500 if refused.status in (500, 503, 504) else 200
        return self._write(request, status, refused, started)

    def _write(self, request: Request, status: int, refused: Refused, started: float) -> bytes:
        request.setResponseCode(status)
        if refused.status == 503:
            request.setHeader(b"retry-after", b"1")
        self._api.count(self._route, status, started)
        body = {"error": refused.error, "args": refused.details, "kwargs": refused.kwargs}
        return json.dumps(body, default=str).encode()  # json.dumps' style, as Crossbar


def _values(body: dict[str, Any]) -> tuple[Any, Any]:
    """``args`` and ``kwargs`` as Crossbar reads them (a falsy value is none), checked."""
    args = body.get("args") or []
    kwargs = body.get("kwargs") or {}
    if not isinstance(args, list):
        raise Refused(400, "wamp.error.invalid_argument", "'args' must be an array")
    if not isinstance(kwargs, dict):
        raise Refused(400, "wamp.error.invalid_argument", "'kwargs' must be an object")
    if "options" in kwargs:
        raise Refused(
            400, "wamp.error.invalid_argument", "a keyword argument may not be named 'options'"
        )
    return args, kwargs


def _uri(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise Refused(400, "wamp.error.invalid_argument", f"{key!r} must be a non-empty string")
    return value


def _publish(api: Api, body: dict[str, Any]) -> Deferred[bytes]:
    topic = _uri(body, "topic")
    args, kwargs = _values(body)
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise Refused(400, "wamp.error.invalid_argument", "'options' must be an object")
    try:
        publish_options = PublishOptions(
            acknowledge=True, **{k: options.get(k) for k in _PUBLISH_OPTIONS}
        )
    except (TypeError, ValueError, AssertionError) as exc:
        raise Refused(400, "wamp.error.invalid_argument", f"bad options: {exc}") from None
    d: Deferred[Any] = api.joined().publish(topic, *args, options=publish_options, **kwargs)
    return d.addCallback(lambda publication: _compact({"id": publication.id}))


def _call(api: Api, body: dict[str, Any]) -> Deferred[bytes]:
    procedure = _uri(body, "procedure")
    args, kwargs = _values(body)
    d: Deferred[Any] = api.joined().call(procedure, *args, **kwargs)
    return d.addCallback(_call_result)


def _call_result(value: object) -> bytes:
    """Crossbar's shape of a call's result: ``args`` and ``kwargs`` only when not empty
    (a CallResult), else the value as the one argument."""
    if isinstance(value, CallResult):
        out: dict[str, Any] = {}
        if value.results:
            out["args"] = list(value.results)
        if value.kwresults:
            out["kwargs"] = dict(value.kwresults)
        return _compact(out)
    return _compact({"args": [value]})
