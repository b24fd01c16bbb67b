"""WAMP events delivered to the app: one bounded queue and its deliveries per
``[[bridge.subscription]]``.

Each event is POSTed to the subscription's URL as JSON ``{"topic", "args", "kwargs",
"publication", "details", "delivery_attempt"}``. What the app answers decides:

- 2xx: delivered;
- 408, 429, 5xx, no answer within ``timeout``, a refused or broken connection: retried,
  after :data:`RETRY_BACKOFF`'s delay (or the app's ``Retry-After``, up to its cap), until
  ``max_retries`` (then dead-lettered);
- any other status: dead-lettered at once -- a request the app will never take.

With ``max_inflight = 1`` an event is delivered only once the one before it was (or was
dead-lettered): the app sees them in publication order, retries included. With more,
that many are in flight at once, in any order. Events wait in a queue of at most
``max_queued``; when it is full ``when_full`` says which one goes: the new one
(``drop_newest``) or the oldest waiting (``drop_oldest``).

Nothing goes silently: every outcome -- delivered, retried, dead-lettered, dropped, and
abandoned when a stop's drain runs out of time -- is a :class:`Note` for the bridge to log
and count, with the event's publication id.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure

from ._typing import Clock
from .backoff import Backoff, Jitter
from .config import SubscriptionConfig
from .outbound import Post, Reply, ReplyTooLarge

__all__ = ["RETRY_BACKOFF", "Deliveries", "Event", "Note", "Outcome", "payload_json"]

#: Delays between the attempts of one event: 0.5-1 s, 1-2 s, 2-4 s ... up to 15-30 s.
RETRY_BACKOFF = Backoff(
    initial_delay=1.0, max_delay=30.0, growth=2.0, jitter=Jitter.EQUAL, steady_retries=0
)

#: Statuses worth another attempt (besides 5xx): the app timed out, or asks to slow down.
_RETRIED = frozenset({408, 429})


class Outcome(StrEnum):
    """What became of an event (the ``outcome`` label of ``wampd_bridge_deliveries_total``)."""

    DELIVERED = "delivered"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"
    ABANDONED = "abandoned"


def payload_json(value: Any) -> bytes:
    """``value`` as JSON; binary values (from CBOR or MessagePack peers) as WAMP's JSON
    convention has them: ``"\\u0000"`` followed by their base64."""

    def binary(obj: object) -> str:
        if isinstance(obj, bytes | bytearray | memoryview):
            return "\x00" + base64.b64encode(bytes(obj)).decode()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    return json.dumps(value, default=binary, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Event:
    """One WAMP event, as the app receives it."""

    topic: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    publication: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def body(self, attempt: int) -> bytes:
        """The JSON POSTed for the ``attempt``-th try (from 1)."""
        return payload_json(
            {
                "topic": self.topic,
                "args": list(self.args),
                "kwargs": self.kwargs,
                "publication": self.publication,
                "details": self.details,
                "delivery_attempt": attempt,
            }
        )


@dataclass(frozen=True)
class Note:
    """One outcome of one event, for the logs and the metrics."""

    subscription: str
    outcome: Outcome
    publication: int | None
    #: Attempts made so far (0 for an event dropped before its first).
    attempts: int
    #: Events accepted and not yet done (queued, in flight or waiting to retry), after this.
    depth: int
    #: Why it was retried, dead-lettered, dropped or abandoned.
    reason: str | None = None
    #: Seconds until the next attempt (retried only).
    delay: float | None = None
    #: Seconds the attempt took (delivered, retried and dead-lettered after an attempt).
    seconds: float | None = None


class _Item:
    __slots__ = ("attempts", "call", "event", "timer")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.attempts = 0
        self.call: Deferred[Reply] | None = None
        self.timer: Any = None


class Deliveries:
    """One subscription's queue: :meth:`offer` events, they get delivered.

    :param post: how to POST (:class:`~wampd.outbound.Poster`, or a test's script).
    :param clock: times the retries (the reactor).
    :param rand: the jitter's source of floats in [0, 1).
    :param note: called with every :class:`Note`.
    """

    def __init__(
        self,
        config: SubscriptionConfig,
        post: Post,
        *,
        clock: Clock,
        rand: Callable[[], float],
        note: Callable[[Note], None],
        backoff: Backoff = RETRY_BACKOFF,
    ) -> None:
        self.config = config
        self._post, self._clock, self._rand, self._note = post, clock, rand, note
        self._backoff = backoff
        self._waiting: deque[_Item] = deque()
        #: In flight, or waiting for their next attempt.
        self._active: set[_Item] = set()
        self._idle: list[Deferred[None]] = []
        self._closed = False
        self._pumping = False

    @property
    def depth(self) -> int:
        """Events accepted and not done yet."""
        return len(self._waiting) + len(self._active)

    def offer(self, event: Event) -> None:
        """Queue ``event`` for delivery (or drop one, when the queue is full)."""
        if self._closed:
            self._tell(_Item(event), Outcome.DROPPED, reason="the bridge is stopping")
            return
        if len(self._waiting) >= self.config.max_queued:
            full = f"the queue is full ({self.config.max_queued} events waiting)"
            if self.config.when_full == "drop_newest":
                self._tell(_Item(event), Outcome.DROPPED, reason=full)
                return
            oldest = self._waiting.popleft()
            self._waiting.append(_Item(event))
            self._tell(oldest, Outcome.DROPPED, reason=full)
        else:
            self._waiting.append(_Item(event))
        self._pump()

    def idle(self) -> Deferred[None]:
        """Fires once every accepted event is done (at once if none is pending)."""
        if not self.depth:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def abandon(self, reason: str) -> int:
        """Stop: take no more events, give up on those not done (each one noted); returns
        how many that was."""
        self._closed = True
        left = [*self._active, *self._waiting]
        self._active.clear()
        self._waiting.clear()
        for item in left:
            if item.timer is not None and item.timer.active():
                item.timer.cancel()
            call, item.call = item.call, None
            if call is not None:
                call.cancel()
            self._tell(item, Outcome.ABANDONED, reason=reason)
        self._check_idle()
        return len(left)

    def close(self) -> None:
        """Take no more events; those accepted are still delivered."""
        self._closed = True

    # -- the deliveries -------------------------------------------------------------------

    def _pump(self) -> None:
        # Never re-entered: an attempt that ends at once (an event JSON cannot carry) calls
        # back into here; the loop below takes the next one instead of a deeper stack.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._waiting and len(self._active) < self.config.max_inflight:
                item = self._waiting.popleft()
                self._active.add(item)
                self._attempt(item)
        finally:
            self._pumping = False

    def _attempt(self, item: _Item) -> None:
        item.timer = None
        item.attempts += 1
        started = self._clock.seconds()
        try:
            body = item.event.body(item.attempts)
        except (TypeError, ValueError) as exc:  # a value JSON cannot carry
            self._done(item, Outcome.DEAD_LETTERED, reason=f"not JSON-serializable: {exc}")
            return
        d = item.call = self._post(self.config.url, body, self.config.timeout)
        d.addCallbacks(
            lambda reply: self._replied(item, reply, started),
            lambda failure: self._failed(item, failure, started),
        )

    def _replied(self, item: _Item, reply: Reply, started: float) -> None:
        item.call = None
        seconds = self._clock.seconds() - started
        status = reply.status
        if 200 <= status < 300:
            self._done(item, Outcome.DELIVERED, seconds=seconds)
        elif status in _RETRIED or status >= 500:
            self._retry(item, f"HTTP {status}", seconds, reply.retry_after)
        else:
            self._done(item, Outcome.DEAD_LETTERED, reason=f"HTTP {status}", seconds=seconds)

    def _failed(self, item: _Item, failure: Failure, started: float) -> None:
        if item not in self._active:  # abandoned: its cancel ends up here
            return
        item.call = None
        seconds = self._clock.seconds() - started
        exc = failure.value
        if isinstance(exc, ReplyTooLarge) and exc.status is not None:
            self._replied(item, Reply(exc.status), started)  # its body is not read anyway
            return
        if isinstance(exc, TimeoutError | CancelledError):
            why = f"no answer within {self.config.timeout:g} s"
        elif isinstance(exc, ConnectError):
            why = f"cannot connect: {type(exc).__name__}"
        else:
            why = f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"
        self._retry(item, why, seconds, None)

    def _retry(self, item: _Item, why: str, seconds: float, asked: float | None) -> None:
        limit = self.config.max_retries
        if limit is not None and item.attempts > limit:
            gave_up = f"{why}, after {item.attempts} attempts"
            self._done(item, Outcome.DEAD_LETTERED, reason=gave_up, seconds=seconds)
            return
        delay = self._backoff.delay(item.attempts, self._rand)
        if asked is not None:  # the app's Retry-After, within the backoff's cap
            delay = max(delay, min(asked, self._backoff.max_delay))
        item.timer = self._clock.callLater(delay, self._attempt, item)
        self._tell(item, Outcome.RETRIED, reason=why, delay=delay, seconds=seconds)

    def _done(self, item: _Item, outcome: Outcome, **more: Any) -> None:
        self._active.discard(item)
        self._tell(item, outcome, **more)
        self._pump()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.depth:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _tell(self, item: _Item, outcome: Outcome, **more: Any) -> None:
        self._note(
            Note(
                self.config.label,
                outcome,
                item.event.publication,
                item.attempts,
                self.depth,
                **more,
            )
        )
