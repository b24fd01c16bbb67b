"""Crossbar's HTTP bridge routes (wampd/crossbar.py: ``/publish``, ``/call``) rendered on
the bridge's site with a fake session and a Clock: the denials' exact sentences and
statuses in Crossbar's order, signed requests (and their replays), and the answers'
exact bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CallResult
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from wampd.bridge import Bridge
from wampd.config import BridgeConfig, SigningConfig
from wampd.crossbar import Replays, denial, signature

#: 2026-01-02T03:04:05.678Z, the signed requests' "now".
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
STAMP = b"2026-01-02T03:04:05.678Z"
SECRET = b"s3cret"
BODY = b'{"topic":"com.example.t"}'


class FakeSession:
    """Records publishes and calls; answers calls with the Deferreds the test gives."""

    def __init__(self) -> None:
        self.published: list[tuple[str, tuple[Any, ...], Any, dict[str, Any]]] = []
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answers: list[Deferred[Any]] = []

    def publish(self, topic: str, *args: Any, options: Any, **kwargs: Any) -> Deferred[Any]:
        self.published.append((topic, args, options, kwargs))

        class Publication:
            id = 4242

        return succeed(Publication())

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.calls.append((procedure, args, kwargs))
        return self.answers.pop(0)


def no_post(url: str, body: bytes, timeout: float) -> Deferred[Any]:
    raise AssertionError(f"nothing should be POSTed to the app here ({url})")


def make(tmp_path: Path | None = None, *, signed: bool = False, **settings: Any) -> Bridge:
    """A bridge at :data:`NOW`; ``signed``: with [bridge.signing] (key "app", the secret
    in a file)."""
    if signed:
        assert tmp_path is not None
        secret = tmp_path / "signing"
        secret.write_bytes(SECRET + b"\n")
        settings["signing"] = SigningConfig(key="app", secret_file=str(secret))
    clock = Clock()
    clock.advance(NOW)
    return Bridge(BridgeConfig(listen="127.0.0.1:0", **settings), clock=clock, post=no_post)


def clock_of(bridge: Bridge) -> Clock:
    assert isinstance(bridge.clock, Clock)
    return bridge.clock


def joined(bridge: Bridge) -> FakeSession:
    session = FakeSession()
    bridge.session = session  # type: ignore[assignment]
    return session


def render(
    bridge: Bridge,
    path: str = "/publish",
    raw: bytes = BODY,
    *,
    method: bytes = b"POST",
    headers: dict[bytes, bytes] | None = None,
    args: dict[bytes, bytes] | None = None,
) -> DummyRequest:
    """Render ``path`` on the bridge's site; the request, finished or still pending."""
    req = DummyRequest(path.strip("/").encode().split(b"/"))
    req.method = method
    req.path = path.encode()  # type: ignore[attr-defined]
    req.uri = path.encode()
    req.args = {name: [value] for name, value in (args or {}).items()}
    for name, value in (headers or {}).items():
        req.requestHeaders.setRawHeaders(name, [value])
    req.content = io.BytesIO(raw)  # type: ignore[attr-defined]
    resource = getChildForRequest(bridge.site().resource, req)
    result = resource.render(req)
    if result != NOT_DONE_YET:
        req.write(result)
        req.finish()
    return req


def written(req: DummyRequest) -> tuple[int, bytes]:
    assert req.finished, "the request is still pending"
    return req.responseCode or 200, b"".join(req.written)


def denied(req: DummyRequest) -> tuple[int, str]:
    """A denial's status and sentence (its body checked to be Crossbar's, exactly)."""
    status, body = written(req)
    message = json.loads(body)["error"]
    assert body == denial(message)
    return status, message


def fields(**overrides: bytes | None) -> dict[bytes, bytes]:
    """A signed request's query string for :data:`BODY` at :data:`NOW` (an override of
    None leaves that field out)."""
    values: dict[str, bytes | None] = {
        "key": b"app",
        "timestamp": STAMP,
        "seq": b"1",
        "nonce": b"12345",
    }
    values.update({k: v for k, v in overrides.items() if k != "signature"})
    given = {k: v for k, v in values.items() if v is not None}
    if "signature" in overrides:
        sig = overrides["signature"]
    else:
        sig = signature(
            SECRET,
            key=given.get("key", b""),
            timestamp=given.get("timestamp", b""),
            seq=given.get("seq", b""),
            nonce=given.get("nonce", b""),
            body=BODY,
        )
    if sig is not None:
        given["signature"] = sig
    return {k.encode(): v for k, v in given.items()}


# -- the signature and the replays ------------------------------------------------------


def test_signature_is_crossbars_hmac_sha256_in_urlsafe_base64() -> None:
    """A known vector (from ``openssl dgst -sha256 -hmac s3cret``), and the same computed
    here with hmac over key | timestamp | seq | nonce | body."""
    got = signature(SECRET, key=b"app", timestamp=STAMP, seq=b"1", nonce=b"12345", body=BODY)
    assert got == b"Jw4ibs8agbEQQrBZi0pgdw7ggNHMojVPRvi--qH5NsQ="
    mac = hmac.new(SECRET, b"app" + STAMP + b"1" + b"12345" + BODY, hashlib.sha256).digest()
    assert got == base64.urlsafe_b64encode(mac)
    assert signature(SECRET, key=b"app", timestamp=STAMP, seq=b"2", nonce=b"12345", body=BODY) != (
        got
    )


def test_replays_remembers_a_nonce_until_it_expires() -> None:
    replays = Replays()
    assert replays.first_time(b"app", b"1", expires=10.0, now=0.0)
    assert not replays.first_time(b"app", b"1", expires=10.0, now=5.0)
    assert replays.first_time(b"app", b"2", expires=10.0, now=5.0)
    assert replays.first_time(b"other", b"1", expires=10.0, now=5.0)  # per key
    assert len(replays) == 3
    assert not replays.first_time(b"app", b"1", expires=20.0, now=9.99)
    assert replays.first_time(b"app", b"1", expires=20.0, now=10.0)  # forgotten at expiry
    assert len(replays) == 1


def test_replays_holds_only_the_nonces_of_the_window() -> None:
    replays = Replays()
    for n in range(1000):
        assert replays.first_time(b"app", str(n).encode(), expires=n + 600.0, now=float(n))
        assert len(replays) <= 600
    assert len(replays) == 600


# -- methods and content types ------------------------------------------------------------


@pytest.mark.parametrize("method", [b"GET", b"DELETE", b"PATCH", b"HEAD"])
def test_other_methods_are_405_in_crossbars_words(method: bytes) -> None:
    bridge = make()
    joined(bridge)
    req = render(bridge, method=method)
    message = f"Method not accepted by the REST bridge. ({method!r} not allowed, only POST, PUT)"
    assert denied(req) == (405, message)
    assert req.responseHeaders.getRawHeaders(b"content-type") == [
        b"application/json; charset=UTF-8"
    ]


def test_options_is_200_empty_with_allow() -> None:
    bridge = make()
    req = render(bridge, "/call", method=b"OPTIONS")
    assert written(req) == (200, b"")
    assert req.responseHeaders.getRawHeaders(b"allow") == [b"POST,PUT,OPTIONS"]
    assert req.responseHeaders.getRawHeaders(b"cache-control") == [
        b"no-store,no-cache,must-revalidate,max-age=0"
    ]
    assert req.responseHeaders.getRawHeaders(b"access-control-allow-origin") is None


@pytest.mark.parametrize("method", [b"POST", b"PUT"])
def test_post_and_put_publish(method: bytes) -> None:
    bridge = make()
    session = joined(bridge)
    assert written(render(bridge, method=method)) == (200, b'{"id":4242}')
    assert [p[0] for p in session.published] == ["com.example.t"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,  # Crossbar accepts a request without one
        b"application/json",
        b"Application/JSON; charset=UTF-8",
        b"application/json;charset=utf8",
        b"application/json; boundary",
    ],
)
def test_json_content_types_are_accepted(content_type: bytes | None) -> None:
    bridge = make()
    joined(bridge)
    headers = {} if content_type is None else {b"content-type": content_type}
    assert written(render(bridge, headers=headers)) == (200, b'{"id":4242}')


def test_another_content_type_is_400_in_crossbars_words() -> None:
    bridge = make()
    session = joined(bridge)
    req = render(bridge, headers={b"content-type": b"text/plain; charset=utf-8"})
    assert denied(req) == (
        400,
        "Non-accepted content type. (must be one of '[b'application/json']', not 'b'text/plain'')",
    )
    assert session.published == []


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json; charset=latin1",
        b"application/json; charset=utf-16",
        b"application/json; charset=utf-8; charset=utf-8",
        b"application/json; charset=utf=8",
    ],
)
def test_a_charset_other_than_utf8_is_400(content_type: bytes) -> None:
    bridge = make()
    joined(bridge)
    req = render(bridge, headers={b"content-type": content_type})
    assert denied(req) == (400, "Non-accepted request encoding, must be UTF-8.")


def test_a_charset_with_spaces_around_the_equals_sign_is_still_checked() -> None:
    bridge = make()
    joined(bridge)
    req = render(bridge, headers={b"content-type": b"application/json; charset = latin1"})
    assert denied(req) == (400, "Non-accepted request encoding, must be UTF-8.")


def test_a_body_over_max_body_is_413() -> None:
    bridge = make(max_body=16)
    joined(bridge)
    assert denied(render(bridge)) == (413, "Request too long. (over 16 bytes)")


# -- the body -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        ("/publish", b"\xff{}", "Non-decodable request body, was not UTF-8."),
        ("/publish", b"{not json", "Request body was invalid JSON."),
        ("/publish", b"", "Request body was invalid JSON."),
        (
            "/publish",
            b"[1, 2]",
            "Request body was valid JSON, but not well formed (must be a dict).",
        ),
        ("/publish", b'"t"', "Request body was valid JSON, but not well formed (must be a dict)."),
        (
            "/publish",
            b'{"procedure": "p"}',
            "Request body was valid JSON, but not well formed (missing key 'topic').",
        ),
        (
            "/call",
            b'{"topic": "t"}',
            "Request body was valid JSON, but not well formed (missing key 'procedure').",
        ),
    ],
)
def test_a_bad_body_is_400_in_crossbars_words(path: str, raw: bytes, message: str) -> None:
    bridge = make()
    session = joined(bridge)
    assert denied(render(bridge, path, raw)) == (400, message)
    assert session.published == [] and session.calls == []


def test_a_denial_is_compact_json_without_a_newline() -> None:
    bridge = make()
    assert written(render(bridge, raw=b"{")) == (
        400,
        b'{"error":"Request body was invalid JSON.","args":[],"kwargs":{}}',
    )


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b'{"topic": 7}', "'topic' must be a non-empty string"),
        (b'{"topic": ""}', "'topic' must be a non-empty string"),
        (b'{"topic": "t", "args": {"a": 1}}', "'args' must be an array"),
        (b'{"topic": "t", "kwargs": [1]}', "'kwargs' must be an object"),
        (b'{"topic": "t", "options": [1]}', "'options' must be an object"),
        (b'{"topic": "t", "kwargs": {"options": 1}}', "may not be named 'options'"),
    ],
)
def test_input_crossbar_fails_on_is_a_400_that_names_the_problem(raw: bytes, text: str) -> None:
    bridge = make()
    session = joined(bridge)
    status, body = written(render(bridge, raw=raw))
    answer = json.loads(body)
    assert status == 400 and answer["error"] == "wamp.error.invalid_argument"
    assert text in answer["args"][0] and answer["kwargs"] == {}
    assert session.published == []


def test_publish_passes_args_kwargs_and_crossbars_options_only() -> None:
    bridge = make()
    session = joined(bridge)
    raw = json.dumps(
        {
            "topic": "com.example.t",
            "args": [1, "two"],
            "kwargs": {"k": 3},
            "options": {"exclude_me": False, "acknowledge": False, "retain": True, "bogus": 1},
        }
    ).encode()
    assert written(render(bridge, raw=raw)) == (200, b'{"id":4242}')
    ((topic, args, options, kwargs),) = session.published
    assert (topic, args, kwargs) == ("com.example.t", (1, "two"), {"k": 3})
    assert options.acknowledge is True  # waits for the router, whatever the app says
    assert options.exclude_me is False and options.retain is True


def test_falsy_args_and_kwargs_are_none_as_crossbar_reads_them() -> None:
    bridge = make()
    session = joined(bridge)
    raw = b'{"topic": "t", "args": null, "kwargs": 0}'
    assert written(render(bridge, raw=raw))[0] == 200
    assert session.published[0][1] == () and session.published[0][3] == {}


# -- calls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (CallResult(1, 2, c=3), b'{"args":[1,2],"kwargs":{"c":3}}'),
        (CallResult(x=1), b'{"kwargs":{"x":1}}'),
        (CallResult(), b"{}"),
        (5, b'{"args":[5]}'),
        (None, b'{"args":[null]}'),
        ([1, 2], b'{"args":[[1,2]]}'),
        ("é", '{"args":["é"]}'.encode()),  # ensure_ascii=False, as Crossbar
    ],
)
def test_call_answers_crossbars_shape_of_the_result(result: object, expected: bytes) -> None:
    bridge = make()
    session = joined(bridge)
    session.answers.append(succeed(result))
    raw = b'{"procedure": "com.example.add", "args": [2, 3], "kwargs": {"k": 1}}'
    assert written(render(bridge, "/call", raw)) == (200, expected)
    assert session.calls == [("com.example.add", (2, 3), {"k": 1})]


@pytest.mark.parametrize(
    "error", ["com.example.error.minus_one", ApplicationError.NO_SUCH_PROCEDURE]
)
def test_a_wamp_error_is_a_200_in_json_dumps_style(error: str) -> None:
    """Crossbar: "a user-level error, not a CB error"; its body with json.dumps' default
    separators."""
    bridge = make()
    session = joined(bridge)
    callee: Deferred[Any] = Deferred()
    session.answers.append(callee)
    req = render(bridge, "/call", b'{"procedure": "com.example.p"}')
    assert not req.finished
    callee.errback(Failure(ApplicationError(error, "minus one", code=7)))
    expected = f'{{"error": "{error}", "args": ["minus one"], "kwargs": {{"code": 7}}}}'
    assert written(req) == (200, expected.encode())


def test_a_lost_session_is_a_500() -> None:
    bridge = make()
    session = joined(bridge)
    callee: Deferred[Any] = Deferred()
    session.answers.append(callee)
    req = render(bridge, "/call", b'{"procedure": "com.example.p"}')
    callee.errback(Failure(TransportLost()))
    status, body = written(req)
    assert (status, json.loads(body)["error"]) == (500, "wampd.error.not_joined")


def test_a_call_over_call_timeout_is_a_500_and_is_cancelled() -> None:
    bridge = make(call_timeout=2.0)
    session = joined(bridge)
    cancelled: list[bool] = []
    session.answers.append(Deferred(lambda _: cancelled.append(True)))
    req = render(bridge, "/call", b'{"procedure": "com.example.slow"}')
    clock_of(bridge).advance(1.9)
    assert not req.finished
    clock_of(bridge).advance(0.2)
    assert written(req) == (
        500,
        b'{"error": "wamp.error.timeout", "args": ["no answer within 2 s"], "kwargs": {}}',
    )
    assert cancelled == [True]


@pytest.mark.parametrize("path", ["/publish", "/call"])
def test_not_joined_is_a_500_with_wampds_own_error(path: str) -> None:
    bridge = make()
    req = render(bridge, path, b'{"topic": "t", "procedure": "p"}')
    assert written(req) == (
        500,
        b'{"error": "wampd.error.not_joined", "args": ["the bridge session is not joined '
        b'yet"], "kwargs": {}}',
    )
    assert req.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]


def test_a_wrong_bearer_token_is_401(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    bridge = make(token_file=str(token))
    session = joined(bridge)
    for headers in ({}, {b"authorization": b"Bearer wrong"}):
        req = render(bridge, headers=headers)
        assert denied(req) == (
            401,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        )
    assert session.published == []
    ok = render(bridge, headers={b"authorization": b"Bearer t0ken"})
    assert written(ok) == (200, b'{"id":4242}')


# -- signed requests ----------------------------------------------------------------------


def test_a_good_signature_publishes_and_its_replay_is_401(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    assert written(render(bridge, args=fields())) == (200, b'{"id":4242}')
    assert len(session.published) == 1
    assert denied(render(bridge, args=fields())) == (
        401,
        "REST bridge signature was already used (a replayed request).",
    )
    assert len(session.published) == 1
    assert written(render(bridge, args=fields(nonce=b"12346")))[0] == 200  # a new nonce


@pytest.mark.parametrize(
    ("missing", "detail"),
    [
        ("key", "'key' field missing"),
        ("timestamp", "signed request required, but mandatory 'timestamp' field missing"),
        ("seq", "'seq' field missing"),
        ("nonce", "'nonce' field missing"),
        ("signature", "'signature' field missing"),
    ],
)
def test_each_missing_field_is_400(tmp_path: Path, missing: str, detail: str) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    req = render(bridge, args=fields(**{missing: None}))
    assert denied(req) == (
        400,
        f"REST bridge signature was invalid (missing mandatory field - {detail}).",
    )
    assert session.published == []


def test_the_fields_are_checked_in_crossbars_order(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    joined(bridge)
    order = ["key", "timestamp", "seq", "nonce", "signature"]
    for n, name in enumerate(order):
        req = render(bridge, args=fields(**dict.fromkeys(order[n:])))
        assert name in denied(req)[1]
    # A bad value comes out before a later field's absence.
    req = render(bridge, args=fields(seq=b"x", nonce=None, signature=None))
    assert "invalid sequence number" in denied(req)[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"timestamp": b"yesterday"},
            "REST bridge signature was invalid (invalid timestamp 'yesterday' (must be "
            "UTC/ISO-8601, e.g. '2011-10-14T16:59:51.123Z')).",
        ),
        (
            {"timestamp": b"2026-01-02T03:04:05Z"},
            "REST bridge signature was invalid (invalid timestamp '2026-01-02T03:04:05Z' "
            "(must be UTC/ISO-8601, e.g. '2011-10-14T16:59:51.123Z')).",
        ),
        (
            {"seq": b"one"},
            "REST bridge signature was invalid (invalid sequence number 'one' (must be an "
            "integer)).",
        ),
        (
            {"nonce": b"n0nce"},
            "REST bridge signature was invalid (invalid nonce 'n0nce' (must be an integer)).",
        ),
        ({"timestamp": b"2026-01-02T02:59:05.677Z"}, "Request expired, too old timestamp."),
        ({"timestamp": b"2026-01-02T03:09:05.679Z"}, "Request expired, too old timestamp."),
    ],
)
def test_malformed_or_expired_fields_are_400(
    tmp_path: Path, overrides: dict[str, bytes], message: str
) -> None:
    """max_skew 300 s: 300.001 s before or after now is too far."""
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    assert denied(render(bridge, args=fields(**overrides))) == (400, message)
    assert session.published == []


@pytest.mark.parametrize("stamp", [b"2026-01-02T02:59:05.678Z", b"2026-01-02T03:09:05.678Z"])
def test_a_timestamp_within_max_skew_is_accepted(tmp_path: Path, stamp: bytes) -> None:
    bridge = make(tmp_path, signed=True)
    joined(bridge)
    assert written(render(bridge, args=fields(timestamp=stamp)))[0] == 200


def test_the_clock_far_from_the_timestamp_expires_a_signed_request(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    joined(bridge)
    clock_of(bridge).advance(301)
    assert denied(render(bridge, args=fields())) == (400, "Request expired, too old timestamp.")


def test_a_wrong_key_is_401(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    req = render(bridge, args=fields(key=b"intruder"))
    assert denied(req) == (401, "REST bridge signature key not valid.")
    assert session.published == []


@pytest.mark.parametrize(
    "sig", [b"", b"Jw4ibs8agbEQQrBZi0pgdw7ggNHMojVPRvi--qH5NsQ", b"x" * 44, "é".encode()]
)
def test_a_wrong_signature_is_401(tmp_path: Path, sig: bytes) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    req = render(bridge, args=fields(signature=sig))
    assert denied(req) == (401, "REST bridge signature secret not valid.")
    assert session.published == []


def test_the_signature_covers_the_body(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    req = render(bridge, raw=b'{"topic":"com.example.other"}', args=fields())
    assert denied(req) == (401, "REST bridge signature secret not valid.")
    assert session.published == []


def test_the_known_vector_is_accepted(tmp_path: Path) -> None:
    """The openssl-computed signature of test_signature_... is what the bridge takes."""
    bridge = make(tmp_path, signed=True)
    joined(bridge)
    args = fields(signature=b"Jw4ibs8agbEQQrBZi0pgdw7ggNHMojVPRvi--qH5NsQ=")
    assert written(render(bridge, args=args)) == (200, b'{"id":4242}')


def test_a_rotated_secret_is_picked_up(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    joined(bridge)
    assert written(render(bridge, args=fields()))[0] == 200
    (tmp_path / "signing").write_bytes(b"rotated-and-longer\n")
    old = fields(nonce=b"2")
    assert denied(render(bridge, args=old)) == (401, "REST bridge signature secret not valid.")
    new = signature(
        b"rotated-and-longer", key=b"app", timestamp=STAMP, seq=b"1", nonce=b"3", body=BODY
    )
    assert written(render(bridge, args=fields(nonce=b"3", signature=new))) == (
        200,
        b'{"id":4242}',
    )


def test_a_signed_call(tmp_path: Path) -> None:
    bridge = make(tmp_path, signed=True)
    session = joined(bridge)
    session.answers.append(succeed(CallResult(7)))
    raw = b'{"procedure":"com.example.add"}'
    sig = signature(SECRET, key=b"app", timestamp=STAMP, seq=b"1", nonce=b"9", body=raw)
    req = render(bridge, "/call", raw, args=fields(nonce=b"9", signature=sig))
    assert written(req) == (200, b'{"args":[7]}')


def test_unsigned_bridges_still_check_the_fields_given(tmp_path: Path) -> None:
    """As Crossbar: a field present is checked even when requests need no signature."""
    bridge = make()
    session = joined(bridge)
    assert denied(render(bridge, args={b"seq": b"x"}))[0] == 400
    assert denied(render(bridge, args={b"timestamp": b"2020-01-01T00:00:00.000Z"})) == (
        400,
        "Request expired, too old timestamp.",
    )
    assert written(render(bridge, args={b"key": b"anything", b"seq": b"1"}))[0] == 200
    assert len(session.published) == 1
