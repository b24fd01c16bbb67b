"""The outbox's sender: publishes what the store holds, in order, over the outbox's session.

One :class:`Sender` per outbox, driven by its session's joins and leaves (``joined`` /
``left``) and by the store (``wake`` when messages were committed). It is one explicit
state machine::

    paused --joined--> sending --transient error--> backoff --delay--> sending
      ^                   |  ^                          |
      +------left---------+  +-----------joined---------+      any --stop--> stopped

While *sending* it keeps up to ``window`` messages read from the store and not yet removed
from it: each is published with ``acknowledge=True`` (its ``msg_id`` as the publication's
``transaction_hash``, which the router hands every subscriber with the event), and removed
only once the router has acknowledged it. The window is the most a crash of wampd can
duplicate: those messages may have reached the router without their removal having been
committed.

Order: the publications of one session reach the router in the order they were sent.
When the session is lost, or a publication fails for a reason that may pass (any error
not in :data:`PERMANENT`, or no acknowledgement within ``ack_timeout``), the sender goes
back to the first message not acknowledged and sends everything from there again (after a
delay, or on the next join): what a subscriber sees first of each ``msg_id`` is in order,
and a repeat is always of a ``msg_id`` it saw before.

A permanent refusal (:data:`PERMANENT`) moves the message to the dead letters. So does a
message that was at the head of the window, unacknowledged, in :data:`MAX_LOSSES`
sessions in a row that were lost (a message the router drops the connection for, e.g.
one over its frame size, would otherwise block everything after it forever).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from autobahn.wamp.exception import ApplicationError, InvalidUriError, ProtocolError
from autobahn.wamp.types import PublishOptions
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ._typing import Clock
from .backoff import Backoff, Jitter
from .store import Row, StoreNotOpen

__all__ = ["MAX_LOSSES", "PERMANENT", "RETRY_BACKOFF", "Queue", "Sender", "SenderState"]

#: Router errors that no retry can cure: the message becomes a dead letter.
PERMANENT = frozenset(
    {
        ApplicationError.NOT_AUTHORIZED,
        ApplicationError.INVALID_URI,
        ApplicationError.INVALID_ARGUMENT,
        ApplicationError.INVALID_PAYLOAD,
        ApplicationError.PAYLOAD_SIZE_EXCEEDED,
    }
)

#: Sessions in a row lost while the same message headed the window unacknowledged.
MAX_LOSSES = 5

#: Delays before sending again after a transient error on a joined session.
RETRY_BACKOFF = Backoff(
    initial_delay=1.0, max_delay=30.0, growth=2.0, jitter=Jitter.EQUAL, steady_retries=0
)


class SenderState(Enum):
    PAUSED = "paused"
    SENDING = "sending"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class Queue(Protocol):
    """The store, as the sender sees it (:class:`~wampd.outbox.Outbox`)."""

    def read(self, after: int, limit: int) -> Deferred[list[Row]]:
        """Up to ``limit`` messages after ``seq`` ``after``, in order."""

    def remove(
        self, published: Sequence[int], expired: Sequence[int], dead: Sequence[tuple[int, str]]
    ) -> Deferred[Any]:
        """Commit the removal of messages: published, expired, dead (with a reason)."""


@dataclass(frozen=True)
class Trouble:
    """What the sender reports besides its removals: ``kind`` is ``retry`` (a transient
    error: it goes back and sends again), ``dead_letter`` or ``ack_timeout``."""

    kind: str
    msg_id: str | None
    reason: str
    delay: float | None = None


class Sender:
    """See the module docstring.

    :param window: messages read and not yet removed, at most.
    :param ttl: seconds a message may wait (0: forever); an older one is dropped unsent.
    :param ack_timeout: seconds an acknowledgement may take before the sender goes back.
    :param note: told of every :class:`Trouble`.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        clock: Clock,
        window: int = 100,
        ttl: float = 0.0,
        ack_timeout: float = 30.0,
        rand: Callable[[], float] = random.random,
        note: Callable[[Trouble], None] = lambda trouble: None,
    ) -> None:
        self.queue, self.clock, self.window, self.ttl = queue, clock, window, ttl
        self.ack_timeout, self._rand, self._note = ack_timeout, rand, note
        self.state = SenderState.PAUSED
        self._session: Any = None
        #: Bumped on every going back: answers to an older round's reads are ignored.
        self._round = 0
        #: The last seq read (the next read is after it).
        self.cursor = 0
        #: Read and not yet removed, by seq (in order).
        self._held: dict[int, Row] = {}
        #: Sent and not acknowledged: seq -> when it was sent.
        self._unacked: dict[int, float] = {}
        self._published: list[int] = []
        self._expired: list[int] = []
        self._dead: list[tuple[int, str]] = []
        self._reading = False
        self._removing = False
        #: True when the last read found nothing (until :meth:`wake`).
        self._caught_up = False
        self._retries = 0
        self._previous_delay: float | None = None
        self._timer: Any = None
        self._losses: tuple[int, int] = (0, 0)  # (head seq, sessions lost with it unacked)
        #: Sent on this session and forgotten by a going back, not read again yet: their
        #: acknowledgement may still come (then they are removed, not sent again).
        self._late: dict[int, Row] = {}
        self._idle: list[Deferred[None]] = []
        #: The largest seq ever read (see :meth:`forget`).
        self._highest = 0
        self._flush_timer: Any = None

    # -- what drives it ---------------------------------------------------------------------

    def joined(self, session: Any) -> None:
        """The outbox's session joined: send from the first message not removed."""
        if self.state is SenderState.STOPPED:
            return
        self._session = session
        self._cancel_timer()
        self.state = SenderState.SENDING
        self._caught_up = False
        self._pump()

    def left(self, session: Any = None) -> None:
        """The session is gone: what was sent and not acknowledged is sent again on the
        next join."""
        if session is not None and session is not self._session:
            return
        self._session = None
        # Paused first: the poison's removal, when it is committed at once, must not find
        # the sender still sending (it would read and "send" over no session, again and again).
        if self.state is not SenderState.STOPPED:
            self._cancel_timer()
            self.state = SenderState.PAUSED
        poison = None
        head = min(self._unacked, default=None)
        if head is not None:
            seq, losses = self._losses
            self._losses = (head, losses + 1 if seq == head else 1)
            if self._losses[1] >= MAX_LOSSES:
                poison = head
        self._go_back(poison)
        self._late.clear()  # that session's publications will never be acknowledged now
        self._check_idle()

    def wake(self) -> None:
        """New messages were committed."""
        self._caught_up = False
        self._pump()

    @property
    def sending_up_to(self) -> int:
        """The last seq read (or sent and maybe still to be acknowledged): ``drop_oldest``
        evicts only after it."""
        return max(max(self._held, default=0), max(self._late, default=0))

    @property
    def unacknowledged(self) -> int:
        return len(self._unacked)

    def check(self) -> None:
        """Go back if an acknowledgement is overdue (called every second or so)."""
        if self.state is not SenderState.SENDING or not self._unacked:
            return
        head = next(iter(self._unacked.values()))
        if self.clock.seconds() - head >= self.ack_timeout:
            msg_id = self._held[next(iter(self._unacked))].msg_id
            why = f"no acknowledgement within {self.ack_timeout:g} s"
            self._note(Trouble("ack_timeout", msg_id, why))
            self._transient(why, msg_id)

    def forget(self) -> int:
        """The store was replaced by an empty one (the old one, found corrupt, was moved
        aside with what it held): forget every message read from it, and ignore the
        acknowledgements still to come for them. The new store's seqs must be larger than
        the number returned (the largest seq read), so that no late acknowledgement is
        taken for a message of the new store."""
        self._round += 1
        self._reading = False
        self._held.clear()
        self._unacked.clear()
        self._late.clear()
        self._published.clear()
        self._expired.clear()
        self._dead.clear()
        self._losses = (0, 0)
        self._caught_up = False
        self.cursor = self._highest
        self._check_idle()
        return self._highest

    def stop(self) -> Deferred[None]:
        """Send nothing more; fires once every publication sent was acknowledged or
        failed and their removals were committed (or failed: then they are sent again
        after a restart)."""
        self.state = SenderState.STOPPED
        self._cancel_timer()
        flush, self._flush_timer = self._flush_timer, None
        if flush is not None and flush.active():
            flush.cancel()
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        self._check_idle()
        return d

    # -- reading and sending ---------------------------------------------------------------

    def _pump(self) -> None:
        if (
            self.state is not SenderState.SENDING
            or self._reading
            or self._caught_up
            or len(self._held) >= self.window
        ):
            return
        self._reading = True
        round_ = self._round
        d = self.queue.read(self.cursor, self.window - len(self._held))
        d.addCallbacks(self._read, self._read_failed, (round_,), errbackArgs=(round_,))

    def _read_failed(self, failure: Failure, round_: int) -> None:
        if round_ != self._round:
            return  # an older round's: _go_back ended it, a newer read may be under way
        self._reading = False
        if failure.check(StoreNotOpen):
            # Not an error to back off from: the outbox wakes the sender once it is open.
            self._caught_up = True
            return
        if self.state is SenderState.SENDING:
            self._transient(f"cannot read the store: {failure.value}", None)

    def _read(self, rows: list[Row], round_: int) -> None:
        if round_ != self._round:
            # An older round's: _go_back ended it (``_reading`` is the newer round's now).
            self._pump()
            return
        if self.state is not SenderState.SENDING:
            self._reading = False
            return
        if not rows:
            self._reading = False
            self._caught_up = True
            return
        # Still reading until the loop is done: a removal committed at once from within it
        # (a publish that failed at once) must not start another read, whose rows this loop
        # would then see as not held and send again.
        now = self.clock.seconds()
        session = self._session
        for row in rows:
            self.cursor = row.seq
            self._highest = max(self._highest, row.seq)
            if row.seq in self._held:
                continue  # acknowledged before a going back; its removal is on its way
            self._late.pop(row.seq, None)
            self._held[row.seq] = row
            if self.ttl and now - row.enqueued > self.ttl:
                self._expired.append(row.seq)
                continue
            self._unacked[row.seq] = now
            self._send(session, row)
            if self.state is not SenderState.SENDING or round_ != self._round:
                break  # a publish failed at once, and the sender went back
        if round_ == self._round:
            self._reading = False
        self._flush()
        self._pump()

    def _send(self, session: Any, row: Row) -> None:
        round_ = self._round
        try:
            options = PublishOptions(acknowledge=True, transaction_hash=row.msg_id, **row.options)
            d: Deferred[Any] = session.publish(row.topic, *row.args, options=options, **row.kwargs)
        except Exception:  # autobahn checks URIs and options before sending: raises
            d = Deferred()
            d.errback(Failure())
        d.addCallbacks(self._acked, self._failed, (row.seq,), errbackArgs=(row.seq, round_))

    def _acked(self, _: Any, seq: int) -> None:
        if self._unacked.pop(seq, None) is None:
            late = self._late.pop(seq, None)
            if late is not None and seq not in self._held:
                # Sent before a going back and acknowledged after it (during the backoff):
                # the router has it, so it is removed rather than sent again.
                self._held[seq] = late
                self._published.append(seq)
                self._flush()
            return  # else sent again since, and already acknowledged (or gone)
        if self._losses[0] == seq:
            self._losses = (0, 0)
        self._retries, self._previous_delay = 0, None
        self._published.append(seq)
        self._flush()

    def _failed(self, failure: Failure, seq: int, round_: int) -> None:
        if seq not in self._unacked:
            return
        row = self._held[seq]
        exc = failure.value
        permanent = isinstance(exc, InvalidUriError | ProtocolError | TypeError | ValueError) or (
            isinstance(exc, ApplicationError) and exc.error in PERMANENT
        )
        reason = _describe(failure.value) if failure.value is not None else repr(failure)
        if permanent:
            del self._unacked[seq]
            self._dead.append((seq, reason))
            self._note(Trouble("dead_letter", row.msg_id, reason))
            self._flush()
            return
        if round_ == self._round:
            self._transient(reason, row.msg_id)

    def _transient(self, reason: str, msg_id: str | None) -> None:
        """Go back to the first unacknowledged message, and send again after a delay."""
        self._go_back()
        if self._session is None or self.state is not SenderState.SENDING:
            return
        self._retries += 1
        delay = RETRY_BACKOFF.delay(self._retries, self._rand, self._previous_delay)
        self._previous_delay = delay
        self._note(Trouble("retry", msg_id, reason, delay))
        self.state = SenderState.BACKOFF
        self._timer = self.clock.callLater(delay, self._resume)

    def _resume(self) -> None:
        self._timer = None
        if self.state is SenderState.BACKOFF and self._session is not None:
            self.state = SenderState.SENDING
            self._caught_up = False
            self._pump()

    def _go_back(self, poison: int | None = None) -> None:
        """Forget what was sent and not acknowledged: it is read and sent again -- but
        ``poison``, which becomes a dead letter (it stays held until that is committed,
        so it is not read again)."""
        self._round += 1
        self._reading = False
        if self._unacked:
            head = min(self._unacked)
            for seq in self._unacked:
                if seq != poison:
                    self._late[seq] = self._held.pop(seq)
            self._unacked.clear()
            self.cursor = min(self.cursor, head - 1)
        self._caught_up = False
        if poison is not None:
            self._losses = (0, 0)
            reason = (
                f"wampd.error.undeliverable: {MAX_LOSSES} sessions in a row were lost while "
                "it was being sent (is it larger than the router takes?)"
            )
            self._dead.append((poison, reason))
            self._note(Trouble("dead_letter", self._held[poison].msg_id, reason))
            self._flush()

    # -- removing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._removing or not (self._published or self._expired or self._dead):
            self._check_idle()
            return
        published, self._published = self._published, []
        expired, self._expired = self._expired, []
        dead, self._dead = self._dead, []
        self._removing = True

        def removed(_: object) -> None:
            self._removing = False
            for seq in (*published, *expired, *(s for s, _ in dead)):
                self._held.pop(seq, None)
            self._flush()
            self._pump()

        def failed(failure: Failure) -> None:
            self._removing = False
            self._note(Trouble("retry", None, f"cannot remove from the store: {failure.value}"))
            if self.state is SenderState.STOPPED:
                # No more tries: they stay in the store and are sent again after a restart
                # (at least once, as promised).
                for seq in (*published, *expired, *(s for s, _ in dead)):
                    self._held.pop(seq, None)
                self._check_idle()
                return
            # Kept, and committed with the next removal.
            self._published[:0], self._expired[:0], self._dead[:0] = published, expired, dead
            if self._flush_timer is None or not self._flush_timer.active():
                self._flush_timer = self.clock.callLater(1.0, self._flush)

        self.queue.remove(published, expired, dead).addCallbacks(removed, failed)

    def _check_idle(self) -> None:
        if (
            self._idle
            and not self._unacked
            and not self._removing
            and not (self._published or self._expired or self._dead)
        ):
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApplicationError):
        detail = " ".join(str(a) for a in exc.args)
        return f"{exc.error}: {detail}" if detail else exc.error
    return f"{type(exc).__name__}: {exc}"
