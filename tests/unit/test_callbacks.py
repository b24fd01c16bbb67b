"""Procedure callbacks (wampd/callbacks.py) against a scripted app on a Clock: the JSON the
app gets, how each reply becomes the caller's result or WAMP error, max_inflight, close,
a caller's cancel reaching the HTTP request, and the Note every invocation ends as."""

from __future__ import annotations

import json
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.request import Registration
from autobahn.wamp.types import CallDetails, CallResult
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionRefusedError, TCPTimedOutError
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from wampd.callbacks import RUNTIME_ERROR, UNAVAILABLE, Callback, Note
from wampd.config import ProcedureConfig
from wampd.outbound import ReplyTooLarge

from .fakes import App

URL = "http://127.0.0.1:8000/rpc/add"
URI = "com.example.add"


def make(**settings: Any) -> tuple[Callback, App, Clock, list[Note]]:
    settings.setdefault("uri", URI)
    settings.setdefault("url", URL)
    app, clock = App(), Clock()
    notes: list[Note] = []
    callback = Callback(ProcedureConfig(**settings), app, clock=clock, note=notes.append)
    return callback, app, clock, notes


def details(procedure: str | None = URI) -> CallDetails:
    return CallDetails(
        Registration(None, 77, URI, None),
        caller=123,
        caller_authid="alice",
        caller_authrole="user",
        procedure=procedure,
    )


def result_of(d: Deferred[Any]) -> Any:
    """The result of a fired Deferred (a Failure's exception), consumed."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the invocation is still pending"
    result = results[0]
    return result.value if isinstance(result, Failure) else result


def error_of(d: Deferred[Any]) -> ApplicationError:
    exc = result_of(d)
    assert isinstance(exc, ApplicationError), exc
    return exc


def invoke(callback: Callback, *args: Any, **kwargs: Any) -> Deferred[Any]:
    return callback(*args, details=details(), **kwargs)


# -- the request --------------------------------------------------------------------------


def test_the_invocation_is_posted_as_json() -> None:
    callback, app, _, _ = make(timeout=3.0)
    invoke(callback, 2, 3, k="v")
    (posted,) = app.posts
    assert (posted.url, posted.timeout) == (URL, 3.0)
    assert json.loads(posted.body) == {
        "procedure": URI,
        "args": [2, 3],
        "kwargs": {"k": "v"},
        "details": {
            "procedure": URI,
            "caller": 123,
            "caller_authid": "alice",
            "caller_authrole": "user",
            "registration": 77,
        },
    }
    assert b" " not in posted.body


def test_a_pattern_registration_posts_the_procedure_called() -> None:
    """With match = prefix, details.procedure is the URI called; without one (exact), the
    registration's."""
    callback, app, _, _ = make(uri="com.example", match="prefix")
    callback(details=details("com.example.add.int"))
    callback(details=details(None))
    first, second = (json.loads(p.body) for p in app.posts)
    assert first["procedure"] == first["details"]["procedure"] == "com.example.add.int"
    assert second["procedure"] == "com.example"


def test_binary_arguments_are_nul_and_base64() -> None:
    callback, app, _, _ = make()
    invoke(callback, b"\x00\x01")
    assert json.loads(app.last.body)["args"] == ["\x00AAE="]


# -- the app's answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "args", "kwargs"),
    [
        (b'{"args": [1, 2], "kwargs": {"c": 3}}', [1, 2], {"c": 3}),
        (b'{"args": [5]}', [5], {}),
        (b'{"kwargs": {"x": 1}}', [], {"x": 1}),
    ],
)
def test_args_and_kwargs_are_a_call_result(
    body: bytes, args: list[Any], kwargs: dict[str, Any]
) -> None:
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.reply(200, body)
    result = result_of(d)
    assert isinstance(result, CallResult)
    assert (list(result.results), dict(result.kwresults)) == (args, kwargs)
    assert [n.outcome for n in notes] == ["ok"]


@pytest.mark.parametrize("body", [b"", b" \r\n"])
def test_an_empty_reply_is_a_result_without_arguments(body: bytes) -> None:
    callback, app, _, _ = make()
    d = invoke(callback)
    app.last.reply(204 if not body else 200, body)
    result = result_of(d)
    assert isinstance(result, CallResult) and not result.results and not result.kwresults


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"42", 42),
        (b'"text"', "text"),
        (b"[1, 2]", [1, 2]),
        (b'{"a": 1}', {"a": 1}),
        (b"{}", {}),  # not a RESULT's shape: the value
        (b'{"args": [1], "other": 2}', {"args": [1], "other": 2}),
        (b'{"args": 5}', {"args": 5}),
        (b'{"kwargs": [1]}', {"kwargs": [1]}),
        (b"null", None),
    ],
)
def test_any_other_json_is_the_one_result(body: bytes, value: object) -> None:
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.reply(204 if not body.strip() else 200, body)
    result = result_of(d)
    assert not isinstance(result, CallResult)
    assert result == value
    assert notes == [Note(URI, "ok", 0.0)]


@pytest.mark.parametrize("body", [b"not json", b"{", b"\xff\xfe"])
def test_a_2xx_that_is_not_json_is_a_runtime_error(body: bytes) -> None:
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.reply(200, body)
    error = error_of(d)
    assert error.error == RUNTIME_ERROR
    assert error.args[0].startswith("the app's reply is not JSON: ")
    ((outcome, err, reason),) = [(n.outcome, n.error, n.reason) for n in notes]
    assert (outcome, err) == ("runtime_error", RUNTIME_ERROR)
    assert reason == error.args[0]


def test_an_error_reply_is_that_wamp_error() -> None:
    callback, app, clock, notes = make()
    d = invoke(callback)
    clock.advance(0.5)
    app.last.reply(
        422, b'{"error": "com.example.error.invalid", "args": ["no"], "kwargs": {"k": 1}}'
    )
    error = error_of(d)
    assert (error.error, error.args, error.kwargs) == (
        "com.example.error.invalid",
        ("no",),
        {"k": 1},
    )
    assert notes == [Note(URI, "error", 0.5, "com.example.error.invalid", "HTTP 422")]


def test_an_error_reply_without_args_or_kwargs() -> None:
    callback, app, _, _ = make()
    d = invoke(callback)
    app.last.reply(500, b'{"error": "com.example.oops"}')
    error = error_of(d)
    assert (error.error, error.args, error.kwargs) == ("com.example.oops", (), {})


@pytest.mark.parametrize(
    "body",
    [
        b"Internal Server Error",
        b"",
        b"[1]",
        b'{"error": 5}',
        b'{"error": "not a uri"}',
        b'{"error": ""}',
        b'{"error": "com..example"}',
        b'{"error": "com.example#x"}',
        b'{"error": "com.example.e", "args": {"a": 1}}',
        b'{"error": "com.example.e", "kwargs": [1]}',
        b'{"message": "no"}',
    ],
)
def test_any_other_non_2xx_is_a_runtime_error_with_its_status(body: bytes) -> None:
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.reply(503, body)
    error = error_of(d)
    assert (error.error, error.args, error.kwargs) == (
        RUNTIME_ERROR,
        ("the app answered HTTP 503",),
        {"status": 503},
    )
    assert notes == [Note(URI, "runtime_error", 0.0, RUNTIME_ERROR, "HTTP 503")]


def test_an_app_that_answers_runtime_error_itself_is_noted_as_one() -> None:
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.reply(500, b'{"error": "wamp.error.runtime_error", "args": ["mine"]}')
    assert error_of(d).args == ("mine",)
    assert notes[0].outcome == "runtime_error"


@pytest.mark.parametrize(
    ("exc", "error", "reason", "outcome"),
    [
        (
            TimeoutError("no reply within 10 s"),
            ApplicationError.TIMEOUT,
            "no answer from the app within 10 s",
            "timeout",
        ),
        (
            ConnectionRefusedError(),
            UNAVAILABLE,
            "cannot reach the app: ConnectionRefusedError",
            "unavailable",
        ),
        (TCPTimedOutError(), UNAVAILABLE, "cannot reach the app: TCPTimedOutError", "unavailable"),
        (RuntimeError("kaput"), RUNTIME_ERROR, "RuntimeError: kaput", "runtime_error"),
        (ValueError(), RUNTIME_ERROR, "ValueError: no message", "runtime_error"),
        (
            ReplyTooLarge(200, 10),
            RUNTIME_ERROR,
            "ReplyTooLarge: the reply body is over 10 bytes",
            "runtime_error",
        ),
    ],
)
def test_no_reply_is_a_wamp_error(
    exc: BaseException, error: str, reason: str, outcome: str
) -> None:
    callback, app, clock, notes = make()
    d = invoke(callback)
    clock.advance(10)
    app.last.fail(exc)
    got = error_of(d)
    assert (got.error, got.args) == (error, (reason,))
    assert notes == [Note(URI, outcome, 10.0, error, reason)]
    assert callback.inflight == 0


def test_an_application_error_from_the_post_is_passed_on_unnoted() -> None:
    """An ApplicationError as the POST's failure is raised as it is (and noted by
    whoever raised it, not twice)."""
    callback, app, _, notes = make()
    d = invoke(callback)
    app.last.fail(ApplicationError("com.example.e", "x"))
    assert error_of(d).error == "com.example.e"
    assert notes == []


# -- limits, stopping, cancelling ---------------------------------------------------------


def test_over_max_inflight_is_unavailable_at_once_without_a_post() -> None:
    callback, app, clock, notes = make(max_inflight=2)
    first, _ = invoke(callback), invoke(callback)
    clock.advance(1)
    with pytest.raises(ApplicationError) as raised:
        invoke(callback)
    why = "2 invocations in flight already (max_inflight)"
    assert (raised.value.error, raised.value.args) == (UNAVAILABLE, (why,))
    assert notes == [Note(URI, "unavailable", 0.0, UNAVAILABLE, why)]
    assert len(app.posts) == 2 and callback.inflight == 2
    app.posts[0].reply(200, b"1")
    assert result_of(first) == 1 and callback.inflight == 1
    invoke(callback)
    assert len(app.posts) == 3 and callback.inflight == 2


def test_close_makes_every_invocation_unavailable() -> None:
    callback, app, _, notes = make()
    callback.close()
    with pytest.raises(ApplicationError) as raised:
        invoke(callback)
    assert (raised.value.error, raised.value.args) == (UNAVAILABLE, ("the bridge is stopping",))
    assert notes == [Note(URI, "unavailable", 0.0, UNAVAILABLE, "the bridge is stopping")]
    assert app.posts == [] and callback.inflight == 0


def test_an_invocation_in_flight_when_closed_still_gets_its_answer() -> None:
    callback, app, _, _ = make()
    d = invoke(callback)
    callback.close()
    app.last.reply(200, b'"late"')
    assert result_of(d) == "late"


def test_cancelling_the_invocation_cancels_the_request() -> None:
    """The caller cancels (autobahn cancels the endpoint's Deferred): the POST's Deferred
    is cancelled -- its canceller closes the connection -- and it is noted."""
    callback, app, clock, notes = make()
    d = invoke(callback)
    idle = callback.idle()
    clock.advance(2)
    d.cancel()
    assert app.last.cancelled
    assert isinstance(result_of(d), CancelledError)
    assert notes == [
        Note(URI, "cancelled", 2.0, ApplicationError.CANCELED, "cancelled by the caller")
    ]
    assert callback.inflight == 0 and result_of(idle) is None


def test_idle_fires_once_nothing_is_in_flight() -> None:
    callback, app, _, _ = make()
    assert result_of(callback.idle()) is None
    first, second = invoke(callback), invoke(callback)
    assert callback.inflight == 2
    idle = callback.idle()
    app.posts[1].reply(200)
    assert isinstance(result_of(second), CallResult)
    results: list[object] = []
    idle.addBoth(results.append)
    assert results == [] and callback.inflight == 1
    app.posts[0].fail(ConnectionRefusedError())
    assert error_of(first).error == UNAVAILABLE
    assert results == [None] and callback.inflight == 0


def test_the_note_has_the_seconds_the_invocation_took() -> None:
    callback, app, clock, notes = make()
    clock.advance(100)
    first = invoke(callback)
    clock.advance(0.25)
    second = invoke(callback)
    clock.advance(1.0)
    app.posts[1].reply(200, b"2")
    clock.advance(0.5)
    app.posts[0].reply(200, b"1")
    assert (result_of(first), result_of(second)) == (1, 2)
    assert [(n.outcome, n.seconds) for n in notes] == [("ok", 1.0), ("ok", 1.75)]
