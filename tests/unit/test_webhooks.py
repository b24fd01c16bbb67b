"""Webhook deliveries (wampd/webhooks.py) against a scripted app on a Clock: which replies
deliver, retry or dead-letter an event, the exact retry delays, the queue's order and
bounds, and what a stop abandons -- every outcome as the Note the bridge logs and counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from wampd.config import SubscriptionConfig
from wampd.outbound import ReplyTooLarge
from wampd.webhooks import RETRY_BACKOFF, Deliveries, Event, Note, Outcome, payload_json

from .fakes import App

URL = "http://127.0.0.1:8000/hooks/orders"


def make(**settings: Any) -> tuple[Deliveries, App, Clock, list[Note]]:
    settings.setdefault("topic", "com.example.orders")
    settings.setdefault("url", URL)
    config = SubscriptionConfig(**settings)
    app, clock = App(), Clock()
    notes: list[Note] = []
    deliveries = Deliveries(config, app, clock=clock, rand=lambda: 0.5, note=notes.append)
    return deliveries, app, clock, notes


def event(publication: int, *args: Any, **kwargs: Any) -> Event:
    return Event("com.example.orders", args, kwargs, publication, {"publisher": 7})


def fired(d: Deferred[Any]) -> bool:
    results: list[object] = []
    d.addBoth(results.append)
    return bool(results)


def outcomes(notes: list[Note]) -> list[tuple[Outcome, int | None]]:
    return [(n.outcome, n.publication) for n in notes]


# -- the body ---------------------------------------------------------------------------


def test_the_body_is_the_event_as_json_with_its_attempt_number() -> None:
    """The JSON the app gets: topic, args, kwargs, publication, details and the attempt
    (from 1), compact."""
    e = Event("com.example.t", (1, "two"), {"k": [3]}, 99, {"publisher": 5})
    assert json.loads(e.body(1)) == {
        "topic": "com.example.t",
        "args": [1, "two"],
        "kwargs": {"k": [3]},
        "publication": 99,
        "details": {"publisher": 5},
        "delivery_attempt": 1,
    }
    assert json.loads(e.body(3))["delivery_attempt"] == 3
    assert b" " not in e.body(1)  # separators=(",", ":")
    assert Event("t").body(1) == (
        b'{"topic":"t","args":[],"kwargs":{},"publication":null,"details":{},"delivery_attempt":1}'
    )


@pytest.mark.parametrize("binary", [b"\x00\x01\xfe", bytearray(b"\x00\x01\xfe")])
def test_binary_values_are_nul_and_base64_as_wamps_json_has_them(binary: bytes) -> None:
    """bytes (from CBOR or MessagePack peers): "\\u0000" and their base64, anywhere."""
    assert payload_json({"b": binary}) == b'{"b":"\\u0000AAH+"}'
    assert payload_json([memoryview(b"hi")]) == b'["\\u0000aGk="]'
    assert json.loads(payload_json({"b": binary}))["b"] == "\x00AAH+"


def test_payload_json_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        payload_json({"s": {1, 2}})


def test_each_post_goes_to_the_url_with_the_timeout_and_the_attempt_number() -> None:
    deliveries, app, clock, _ = make(timeout=2.5)
    deliveries.offer(event(1, "a"))
    (first,) = app.posts
    assert (first.url, first.timeout) == (URL, 2.5)
    assert first.json["delivery_attempt"] == 1 and first.json["args"] == ["a"]
    first.reply(503)
    clock.advance(RETRY_BACKOFF.max_delay)
    assert [p.json["delivery_attempt"] for p in app.posts] == [1, 2]
    assert app.posts[1].json["args"] == ["a"]


# -- what the app answers ---------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_delivers(status: int) -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    clock.advance(1.5)
    app.last.reply(status)
    assert notes == [Note("com.example.orders", Outcome.DELIVERED, 1, 1, 0, seconds=1.5)]
    assert deliveries.depth == 0 and clock.getDelayedCalls() == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_408_429_and_5xx_are_retried(status: int) -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    clock.advance(0.25)
    app.last.reply(status)
    assert notes == [
        Note(
            "com.example.orders",
            Outcome.RETRIED,
            1,
            1,
            1,
            reason=f"HTTP {status}",
            delay=0.75,
            seconds=0.25,
        )
    ]
    assert len(app.posts) == 1
    clock.advance(0.75)
    assert len(app.posts) == 2


@pytest.mark.parametrize("status", [100, 301, 304, 400, 401, 403, 404, 409, 413, 422, 499])
def test_any_other_status_is_dead_lettered_at_once(status: int) -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    app.last.reply(status)
    assert notes == [
        Note(
            "com.example.orders",
            Outcome.DEAD_LETTERED,
            1,
            1,
            0,
            reason=f"HTTP {status}",
            seconds=0.0,
        )
    ]
    clock.advance(3600)
    assert len(app.posts) == 1


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError("no reply within 10 s"), "no answer within 10 s"),
        (ConnectionRefusedError(), "cannot connect: ConnectionRefusedError"),
        (ValueError("boom"), "ValueError: boom"),
        (RuntimeError(), "RuntimeError: no message"),
        (ReplyTooLarge(None, 10), "ReplyTooLarge: the reply body is over 10 bytes"),
    ],
)
def test_no_reply_at_all_is_retried(exc: BaseException, reason: str) -> None:
    """A timeout, a refused connection, anything the POST failed with: another attempt."""
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    clock.advance(10)
    app.last.fail(exc)
    assert notes == [
        Note("com.example.orders", Outcome.RETRIED, 1, 1, 1, reason=reason, delay=0.75, seconds=10)
    ]
    clock.advance(0.75)
    assert len(app.posts) == 2


def test_a_2xx_reply_too_large_to_read_is_delivered() -> None:
    """The app took the event; its reply body is not read anyway."""
    deliveries, app, _, notes = make()
    deliveries.offer(event(1))
    app.last.fail(ReplyTooLarge(200, 10))
    assert outcomes(notes) == [(Outcome.DELIVERED, 1)]
    assert len(app.posts) == 1


@pytest.mark.parametrize("status", [408, 503])
def test_a_retried_status_reply_too_large_to_read_is_retried(status: int) -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    app.last.fail(ReplyTooLarge(status, 10))
    assert [(n.outcome, n.delay) for n in notes] == [(Outcome.RETRIED, 0.75)]
    clock.advance(0.75)
    assert len(app.posts) == 2


def test_a_4xx_reply_too_large_to_read_is_dead_lettered() -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    app.last.fail(ReplyTooLarge(400, 10))
    assert outcomes(notes) == [(Outcome.DEAD_LETTERED, 1)]
    clock.advance(3600)
    assert len(app.posts) == 1


def test_a_value_json_cannot_carry_is_dead_lettered_without_a_post() -> None:
    deliveries, app, _, notes = make()
    deliveries.offer(event(1, {1, 2}))
    assert app.posts == []
    (note,) = notes
    assert (note.outcome, note.publication, note.attempts, note.depth) == (
        Outcome.DEAD_LETTERED,
        1,
        1,
        0,
    )
    assert note.reason == "not JSON-serializable: set is not JSON serializable"
    assert note.seconds is None
    deliveries.offer(event(2, "fine"))  # the queue goes on
    assert [p.publication for p in app.posts] == [2]


# -- retries ------------------------------------------------------------------------------


def test_the_retry_delays_follow_retry_backoff() -> None:
    """rand 0.5 with equal jitter: 3/4 of 1, 2, 4, 8, 16 s, then of the 30 s cap; each
    attempt starts exactly when its delay is over."""
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    expected = [0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5]
    for n, delay in enumerate(expected, start=1):
        assert len(app.posts) == n
        app.last.reply(503)
        assert notes[-1].delay == delay and notes[-1].attempts == n
        clock.advance(delay / 2)
        assert len(app.posts) == n, f"attempt {n + 1} came early"
        clock.advance(delay / 2)
    assert len(app.posts) == len(expected) + 1
    assert [n.delay for n in notes] == expected
    assert [RETRY_BACKOFF.delay(n, lambda: 0.5) for n in range(1, 8)] == expected


@pytest.mark.parametrize(
    ("asked", "delay"),
    [
        (10.0, 10.0),  # longer than the backoff's: the app's
        (0.1, 0.75),  # shorter: the backoff's
        (0.0, 0.75),
        (3600.0, 30.0),  # over the cap: the cap
    ],
)
def test_retry_after_is_honoured_up_to_the_cap(asked: float, delay: float) -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    app.last.reply(429, retry_after=asked)
    assert notes[-1].delay == delay
    clock.advance(delay / 2)
    assert len(app.posts) == 1
    clock.advance(delay / 2)
    assert len(app.posts) == 2


def test_max_retries_then_dead_lettered() -> None:
    """max_retries = 2: three attempts, the last one's failure dead-letters it."""
    deliveries, app, clock, notes = make(max_retries=2)
    deliveries.offer(event(1))
    app.last.reply(500)
    clock.advance(0.75)
    app.last.fail(TimeoutError())
    clock.advance(1.5)
    app.last.reply(502)
    assert [n.outcome for n in notes] == [Outcome.RETRIED, Outcome.RETRIED, Outcome.DEAD_LETTERED]
    assert notes[-1].reason == "HTTP 502, after 3 attempts"
    assert notes[-1].attempts == 3 and notes[-1].depth == 0
    clock.advance(3600)
    assert len(app.posts) == 3


def test_max_retries_zero_dead_letters_after_the_first_attempt() -> None:
    deliveries, app, _, notes = make(max_retries=0)
    deliveries.offer(event(1))
    app.last.fail(ConnectionRefusedError())
    assert notes[-1].outcome is Outcome.DEAD_LETTERED
    assert notes[-1].reason == "cannot connect: ConnectionRefusedError, after 1 attempts"


# -- order and concurrency ----------------------------------------------------------------


def test_max_inflight_1_keeps_publication_order_and_a_retry_blocks_the_head() -> None:
    deliveries, app, clock, notes = make(max_inflight=1)
    for pub in (1, 2, 3):
        deliveries.offer(event(pub))
    assert [p.publication for p in app.posts] == [1]
    app.last.reply(503)
    assert deliveries.depth == 3
    clock.advance(0.7)
    assert [p.publication for p in app.posts] == [1], "the next one overtook a retry"
    clock.advance(0.05)
    app.last.reply(200)
    app.last.reply(200)
    app.last.reply(404)
    assert [p.publication for p in app.posts] == [1, 1, 2, 3]
    assert outcomes(notes) == [
        (Outcome.RETRIED, 1),
        (Outcome.DELIVERED, 1),
        (Outcome.DELIVERED, 2),
        (Outcome.DEAD_LETTERED, 3),
    ]
    assert [n.depth for n in notes] == [3, 2, 1, 0]


def test_max_inflight_n_runs_that_many_at_once() -> None:
    deliveries, app, _, notes = make(max_inflight=3)
    for pub in range(1, 6):
        deliveries.offer(event(pub))
    assert [p.publication for p in app.pending] == [1, 2, 3]
    app.posts[1].reply(200)  # any order
    assert [p.publication for p in app.pending] == [1, 3, 4]
    app.posts[0].reply(503)  # waiting to retry still takes its place
    assert [p.publication for p in app.pending] == [3, 4]
    app.posts[2].reply(200)
    assert [p.publication for p in app.pending] == [4, 5]
    assert outcomes(notes) == [
        (Outcome.DELIVERED, 2),
        (Outcome.RETRIED, 1),
        (Outcome.DELIVERED, 3),
    ]


# -- a full queue -------------------------------------------------------------------------


def test_drop_newest_drops_the_offered_event() -> None:
    deliveries, app, _, notes = make(max_queued=2, when_full="drop_newest")
    for pub in (1, 2, 3, 4):
        deliveries.offer(event(pub))
    assert notes == [
        Note(
            "com.example.orders",
            Outcome.DROPPED,
            4,
            0,
            3,
            reason="the queue is full (2 events waiting)",
        )
    ]
    assert deliveries.depth == 3
    for _ in range(3):
        app.last.reply(200)
    assert [p.publication for p in app.posts] == [1, 2, 3]


def test_drop_oldest_drops_the_oldest_waiting_event() -> None:
    """Not the one in flight: the oldest of those waiting."""
    deliveries, app, _, notes = make(max_queued=2, when_full="drop_oldest")
    for pub in (1, 2, 3, 4):
        deliveries.offer(event(pub))
    ((outcome, publication),) = outcomes(notes)
    assert (outcome, publication) == (Outcome.DROPPED, 2)
    assert notes[0].attempts == 0
    assert notes[0].reason == "the queue is full (2 events waiting)"
    assert deliveries.depth == 3
    for _ in range(3):
        app.last.reply(200)
    assert [p.publication for p in app.posts] == [1, 3, 4]


def test_drop_oldest_notes_the_depth_after_the_swap() -> None:
    deliveries, _, _, notes = make(max_queued=2, when_full="drop_oldest")
    for pub in (1, 2, 3, 4):
        deliveries.offer(event(pub))
    assert notes[0].depth == deliveries.depth == 3


# -- idle, close, abandon -----------------------------------------------------------------


def test_idle_fires_once_everything_accepted_is_done() -> None:
    deliveries, app, clock, _ = make(max_inflight=2)
    assert fired(deliveries.idle())
    deliveries.offer(event(1))
    deliveries.offer(event(2))
    idle = deliveries.idle()
    app.posts[0].reply(200)
    app.posts[1].reply(503)
    assert not fired(idle)
    clock.advance(0.75)
    assert not fired(idle)
    app.last.reply(410)  # dead-lettered is done too
    assert fired(idle)
    assert fired(deliveries.idle())


def test_close_takes_no_more_events_but_delivers_those_accepted() -> None:
    deliveries, app, clock, notes = make()
    deliveries.offer(event(1))
    deliveries.offer(event(2))
    deliveries.close()
    deliveries.offer(event(3))
    assert notes == [
        Note("com.example.orders", Outcome.DROPPED, 3, 0, 2, reason="the bridge is stopping")
    ]
    idle = deliveries.idle()
    app.last.reply(500)
    clock.advance(0.75)
    app.last.reply(200)
    app.last.reply(200)
    assert [p.publication for p in app.posts] == [1, 1, 2]
    assert fired(idle)


def test_abandon_cancels_posts_and_timers_and_notes_each_event() -> None:
    """In flight (its POST cancelled), waiting to retry (its timer cancelled) and queued:
    each one ABANDONED, nothing runs afterwards, and later offers are DROPPED."""
    deliveries, app, clock, notes = make(max_inflight=2)
    for pub in (1, 2, 3):
        deliveries.offer(event(pub))
    app.posts[1].reply(503)  # 2 waits to retry, in its slot; 3 stays queued
    in_flight = app.pending
    assert [p.publication for p in in_flight] == [1]
    idle = deliveries.idle()
    del notes[:]
    assert deliveries.abandon("the drain took longer than 5 s") == 3
    assert all(p.cancelled for p in in_flight)
    assert clock.getDelayedCalls() == []
    assert sorted(n.publication or 0 for n in notes) == [1, 2, 3]
    assert {n.outcome for n in notes} == {Outcome.ABANDONED}
    assert {n.reason for n in notes} == {"the drain took longer than 5 s"}
    assert {n.publication: n.attempts for n in notes} == {1: 1, 2: 1, 3: 0}
    assert deliveries.depth == 0 and fired(idle)
    deliveries.offer(event(4))
    assert outcomes(notes)[-1] == (Outcome.DROPPED, 4)
    assert notes[-1].reason == "the bridge is stopping"
    clock.advance(3600)
    assert len(app.posts) == 2 and len(notes) == 4


def test_abandon_with_nothing_pending_abandons_nothing() -> None:
    deliveries, _, _, notes = make()
    assert deliveries.abandon("stop") == 0
    assert notes == []


def test_the_label_is_the_name_when_given() -> None:
    deliveries, app, _, notes = make(name="orders")
    deliveries.offer(event(1))
    app.last.reply(200)
    assert notes[0].subscription == "orders"


def test_many_events_dead_lettered_at_once_do_not_stall_the_queue() -> None:
    deliveries, app, _, notes = make(max_inflight=1)
    deliveries.offer(event(0))
    for pub in range(1, 1001):
        deliveries.offer(event(pub, {pub}))
    deliveries.offer(event(5000))
    idle = deliveries.idle()
    head = app.last
    head.reply(200)
    head.deferred.addErrback(lambda _: None)  # today: the RecursionError, not to be logged
    assert [p.publication for p in app.posts] == [0, 5000]
    app.last.reply(200)
    assert fired(idle)
    assert len(notes) == 1002
