"""The durable outbox: publishes committed to disk first, and sent once the router takes them.

An :class:`Outbox` is the reactor's side of the store (:mod:`wampd.store`): every database
call runs on its one writer thread (:class:`Writer`), and the intake's commits are grouped
-- while one transaction runs, the messages that arrive meanwhile wait and go in the next
one, whatever their number -- so throughput does not depend on how many fsyncs a second
the disk does. Its :class:`~wampd.sender.Sender` publishes what is stored, over the
outbox's own supervised session (named ``outbox``).

The guarantee: a message is in the store from the moment :meth:`Outbox.enqueue` fires
(the bridge's 202) until the router has acknowledged its publication (PUBLISHED); it is
published at least once, in order. With ``sync = "normal"`` it survives a crash of wampd,
with ``"full"`` a power loss too. It leaves the store unpublished only as a counted,
logged drop: evicted (``when_full = "drop_oldest"``), expired (``ttl``), or a dead letter
(the router refused it for good).

Components hosted by the daemon reach it as ``self.config.shared["wampd.outbox"]``::

    yield self.publish("com.example.reading", value)                           # autobahn
    yield self.config.shared["wampd.outbox"].publish("com.example.reading", value)  # stored

Its :meth:`~Outbox.publish` fires with the ``msg_id`` once the message is committed.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import InvalidUriError, ProtocolError
from autobahn.wamp.message import check_or_raise_uri
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ._typing import Clock
from .config import OutboxConfig
from .errors import OutboxFull, OutboxUnavailable
from .metrics import OutboxMetrics
from .sender import Sender, Trouble
from .store import (
    Accepted,
    Entry,
    Limits,
    Outcome,
    Row,
    Stats,
    Store,
    StoreCorrupt,
    StoreNotOpen,
    StoreUnavailable,
    move_aside,
)
from .store import open_store as _open_store
from .store import payload as _payload

__all__ = ["SHARED_KEY", "InvalidTopic", "NoOutbox", "Outbox", "Writer", "message"]

_T = TypeVar("_T")

#: Where hosted components find the outbox: ``self.config.shared[SHARED_KEY]``.
SHARED_KEY = "wampd.outbox"

#: Seconds between the store's upkeep (TTL, old idempotency keys, overdue acks, changes
#: made by ``wampd outbox``), and between attempts to open a store that could not be.
TICK = 1.0
REOPEN_INTERVAL = 5.0

#: Options a publication may not set: wampd's own.
_RESERVED_OPTIONS = ("acknowledge", "transaction_hash")

#: A function that runs ``fn(*args)`` off the reactor and fires with its result.
Run = Callable[..., Deferred[Any]]


class Writer:
    """One thread that runs every store call, in the order given; each call's Deferred
    fires on the reactor thread."""

    def __init__(self, reactor: Any, name: str = "wampd-outbox") -> None:
        self._reactor, self._name = reactor, name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended: Deferred[None] = Deferred()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def __call__(self, fn: Callable[..., _T], *args: Any) -> Deferred[_T]:
        d: Deferred[_T] = Deferred()
        self._calls.put((fn, args, d))
        return d

    def stop(self) -> Deferred[None]:
        """Run what was given, then end the thread; fires once it has ended."""
        if self._thread is None:
            return succeed(None)
        self._calls.put(None)
        return self._ended

    def _loop(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                break
            fn, args, d = call
            try:
                result = fn(*args)
            except BaseException as exc:
                self._reactor.callFromThread(d.errback, Failure(exc))
            else:
                self._reactor.callFromThread(d.callback, result)
        self._reactor.callFromThread(self._ended.callback, None)


class InvalidTopic(ValueError):
    """A topic that is not a valid WAMP URI."""


def message(
    topic: Any, args: Any, kwargs: Any, options: Any, *, msg_id: Any = None, key: str | None = None
) -> Entry:
    """An :class:`~wampd.store.Entry` from a publication's parts, checked as the router
    would (raises ``ValueError`` naming what is wrong)."""
    try:
        check_or_raise_uri(topic, "invalid topic")
    except (InvalidUriError, ProtocolError) as exc:
        raise InvalidTopic(f"not a valid WAMP URI for a topic, got {topic!r} ({exc})") from None
    if not isinstance(args, list | tuple):
        raise ValueError("'args' must be an array")
    if not isinstance(kwargs, dict) or not isinstance(options, dict):
        raise ValueError("'kwargs' and 'options' must be objects")
    for name in _RESERVED_OPTIONS:
        if name in options:
            raise ValueError(
                f"option {name!r} is wampd's own with the outbox (acknowledged publications, "
                "the msg_id as transaction_hash)"
            )
    try:
        PublishOptions(acknowledge=True, **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"bad options: {exc}") from None
    if msg_id is not None and not (isinstance(msg_id, str) and 0 < len(msg_id) <= 128):
        raise ValueError("'msg_id' must be a string of 1 to 128 characters")
    try:
        body = _payload(args, kwargs, options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot store the payload as JSON: {exc}") from None
    given = msg_id if msg_id is not None else None
    if key is None and given is not None:
        key = "msg_id:" + given
    return Entry(given or uuid.uuid4().hex, topic, body, key)


class Outbox:
    """The store, its intake, its upkeep, and its sender.

    :param run: runs a store call off the reactor (a :class:`Writer`); tests pass one that
        runs it at once.
    :param open_store: opens the store (called through ``run``).
    """

    def __init__(
        self,
        config: OutboxConfig,
        *,
        clock: Clock,
        run: Run,
        open_store: Callable[[], Store] | None = None,
        logger: Any = None,
        metrics: OutboxMetrics | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self._run = run
        self._log = logger
        self._open = open_store or self._default_open
        self.limits = Limits(config.max_messages, config.max_bytes, config.when_full)
        #: The open store; None while it cannot be opened.
        self.store: Store | None = None
        #: Why the store is unavailable (None: it is not).
        self.unavailable: str | None = "the store is not open yet"
        self.stats = Stats()
        self._pending: list[tuple[list[Entry], Deferred[list[Accepted]]]] = []
        self._committing = False
        self._upkeep_running = False
        self._timer: Any = None
        self._version: int | None = None
        self._stopped = False
        #: Fired once no commit runs or waits (:meth:`stop`).
        self._committed: list[Deferred[None]] = []
        self._corrupt: list[tuple[str, str]] = []
        self.sender = Sender(
            self,
            clock=clock,
            window=config.max_inflight,
            ttl=config.ttl,
            note=self._trouble,
            rand=rand if rand is not None else random.random,
        )

    def make_session(self, config: ComponentConfig) -> ApplicationSession:
        """The outbox's session factory: its joins and leaves drive the sender."""
        return _OutboxSession(config, self.sender)

    # -- opening and upkeep ---------------------------------------------------------------

    def _default_open(self) -> Store:
        return _open_store(
            self.config.path,
            sync=self.config.sync,
            clock=self.clock.seconds,
            on_corrupt=self._corrupt_from_thread,
        )

    def _corrupt_from_thread(self, moved_to: str, why: str) -> None:
        self._corrupt.append((moved_to, why))

    def _corrupted(self, failure: Failure) -> None:
        """A call found the open store corrupt: move it aside (kept, with what it held) and
        go on with a fresh one, whose ``seq`` numbers start after all the sender has seen.
        Until it is open, intake answers ``outbox_unavailable``."""
        store = self.store
        if not failure.check(StoreCorrupt) or store is None or self._stopped:
            return
        self.store = None
        self.unavailable = f"the store was found corrupt and is being replaced: {failure.value}"
        self._account_stats()
        floor = self.sender.forget()
        why = str(failure.value)

        def replace() -> tuple[Store, Stats, int]:
            store.close()
            moved = move_aside(self.config.path, self.clock.seconds())
            self._corrupt_from_thread(moved, why)
            fresh = Store(self.config.path, sync=self.config.sync, seq_floor=floor)
            return fresh, fresh.stats(), fresh.data_version()

        self._open_with(replace)

    def start(self) -> Deferred[None]:
        """Open the store (or keep trying to, every :data:`REOPEN_INTERVAL` seconds);
        fires once the first attempt is over, never fails."""
        return self._open_with(self._open_and_count)

    def _open_with(self, opener: Callable[[], tuple[Store, Stats, int]]) -> Deferred[None]:
        started = self.clock.seconds()
        d = self._run(opener)

        def opened(result: tuple[Store, Stats, int]) -> None:
            if self._stopped:  # stopped while it was being opened
                self._run(result[0].close)
                return
            self.store, self.stats, self._version = result
            self.unavailable = None
            self._report_corrupt()
            self._say(
                "info",
                "outbox.opened",
                path=self.config.path,
                messages=self.stats.messages,
                bytes=self.stats.bytes,
                dead_letters=self.stats.dead,
                seconds=round(self.clock.seconds() - started, 3),
            )
            self._account_stats()
            self.sender.wake()
            self._schedule(TICK)

        def failed(failure: Failure) -> None:
            self._report_corrupt()
            self.unavailable = str(failure.value)
            self._say(
                "error",
                "outbox.unavailable",
                path=self.config.path,
                error=self.unavailable,
                retry_in=REOPEN_INTERVAL,
            )
            self._account_stats()
            self._schedule(REOPEN_INTERVAL)

        return d.addCallbacks(opened, failed)

    def _open_and_count(self) -> tuple[Store, Stats, int]:
        store = self._open()
        return store, store.stats(), store.data_version()

    def _report_corrupt(self) -> None:
        for moved_to, why in self._corrupt:
            self._say(
                "error", "outbox.store_corrupt", path=self.config.path, moved_to=moved_to, error=why
            )
            if self.metrics is not None:
                self.metrics.store_resets.inc()
        self._corrupt.clear()

    def _schedule(self, delay: float) -> None:
        if not self._stopped:
            self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.store is None:
            self.start()
            return
        self.sender.check()
        if self._upkeep_running:
            self._schedule(TICK)
            return
        self._upkeep_running = True
        now = self.clock.seconds()
        ttl_cutoff = now - self.config.ttl if self.config.ttl else None
        keys_cutoff = now - self.config.idempotency_window
        after = self.sender.sending_up_to
        d = self._run(self._upkeep, self.store, ttl_cutoff, keys_cutoff, after)

        def done(result: tuple[Outcome, int]) -> None:
            outcome, version = result
            self._upkeep_running = False
            self._account(outcome)
            if version != self._version:  # wampd outbox (retry, purge) changed it
                self._version = version
                self.sender.wake()
            elif self.sender.state.value == "sending":
                self.sender.wake()  # a read that found nothing is tried again
            self._schedule(TICK)

        def failed(failure: Failure) -> None:
            self._upkeep_running = False
            self._say("warning", "outbox.upkeep_failed", error=str(failure.value))
            self._corrupted(failure)
            self._schedule(TICK)

        d.addCallbacks(done, failed)

    @staticmethod
    def _upkeep(
        store: Store, ttl_cutoff: float | None, keys_cutoff: float, after: int
    ) -> tuple[Outcome, int]:
        return store.expire(ttl_cutoff, keys_cutoff, after=after), store.data_version()

    def stop(self) -> Deferred[None]:
        """Take no more messages, stop the upkeep; once what was taken is committed (or
        refused), close the store."""
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        committed: Deferred[None] = Deferred()
        self._committed.append(committed)
        self._check_committed()

        def close(_: None) -> Deferred[None] | None:
            store, self.store = self.store, None
            self.unavailable = "the outbox is stopped"
            return None if store is None else self._run(store.close)

        return committed.addCallback(close)

    def _check_committed(self) -> None:
        if self._committed and not self._committing and not self._pending:
            waiting, self._committed = self._committed, []
            for d in waiting:
                d.callback(None)

    # -- intake ---------------------------------------------------------------------------

    def enqueue(self, entries: list[Entry]) -> Deferred[list[Accepted]]:
        """Store ``entries``; fires with what became of each once committed, or fails with
        :class:`~wampd.errors.OutboxUnavailable`."""
        if self.store is None or self._stopped:
            why = "the outbox is stopping" if self._stopped else self.unavailable
            self._rejected("unavailable", len(entries))
            return fail(OutboxUnavailable(f"the outbox cannot store messages: {why}"))
        d: Deferred[list[Accepted]] = Deferred()
        self._pending.append((entries, d))
        self._commit()
        return d

    def _commit(self) -> None:
        if self._committing:
            return
        if not self._pending:
            self._check_committed()
            return
        if self.store is None:
            # The store went away (found corrupt) with messages waiting: refused, not kept.
            why = self.unavailable or "the store is not open"
            batch, self._pending = self._pending, []
            self._rejected("unavailable", sum(len(group) for group, _ in batch))
            for _, waiting in batch:
                waiting.errback(OutboxUnavailable(f"the outbox cannot store messages: {why}"))
            self._check_committed()
            return
        batch, self._pending = self._pending, []
        entries = [entry for group, _ in batch for entry in group]
        self._committing = True
        now = self.clock.seconds()
        d = self._run(self.store.enqueue, entries, now, self.limits, self.sender.sending_up_to)

        def committed(outcome: Outcome) -> None:
            self._committing = False
            self.unavailable = None
            self._account(outcome)
            accepted = iter(outcome.accepted)
            full = sum(1 for a in outcome.accepted if a.status in ("full", "too_large"))
            if full:
                self._rejected("full", full)
            for group, waiting in batch:
                waiting.callback([next(accepted) for _ in group])
            self.sender.wake()
            self._commit()

        def failed(failure: Failure) -> None:
            self._committing = False
            why = str(failure.value)
            if failure.check(StoreUnavailable):
                self.unavailable = why
            self._say("error", "outbox.commit_failed", messages=len(entries), error=why)
            self._rejected("unavailable", len(entries))
            for _, waiting in batch:
                waiting.errback(OutboxUnavailable(f"the outbox cannot store messages: {why}"))
            self._corrupted(failure)
            self._commit()

        d.addCallbacks(committed, failed)

    def publish(
        self,
        topic: str,
        *args: Any,
        options: PublishOptions | dict[str, Any] | None = None,
        msg_id: str | None = None,
        **kwargs: Any,
    ) -> Deferred[str]:
        """Store a publication (as ``ApplicationSession.publish`` takes it); fires with
        its ``msg_id`` once committed. Fails with ``ValueError`` (bad input),
        :class:`~wampd.errors.OutboxFull` or :class:`~wampd.errors.OutboxUnavailable`.

        ``msg_id``, when given, makes a repeat of it within ``idempotency_window`` fire
        with the same id without storing it twice."""
        if isinstance(options, PublishOptions):
            given = {k: v for k, v in options.message_attr().items() if v is not None}
            given.pop("acknowledge", None)
            options = given
        try:
            entry = message(topic, list(args), kwargs, options or {}, msg_id=msg_id)
        except ValueError:
            return fail(Failure())
        d = self.enqueue([entry])
        return d.addCallback(lambda accepted: _one(accepted[0], self.limits))

    # -- the sender's store -----------------------------------------------------------------

    def read(self, after: int, limit: int) -> Deferred[list[Row]]:
        if self.store is None:
            return fail(StoreNotOpen(self.unavailable or "the store is not open"))
        return self._run(self.store.read, after, limit).addErrback(self._pass_on)

    def _pass_on(self, failure: Failure) -> Failure:
        self._corrupted(failure)
        return failure

    def remove(
        self, published: Sequence[int], expired: Sequence[int], dead: Sequence[tuple[int, str]]
    ) -> Deferred[Any]:
        if self.store is None:
            return fail(StoreNotOpen(self.unavailable or "the store is not open"))
        now = self.clock.seconds()
        d = self._run(self.store.remove, published, dead, now, expired)

        def removed(outcome: Outcome) -> None:
            self._account(outcome)  # the expired ones too
            if self.metrics is not None:
                self.metrics.published.inc(outcome.removed)
                self.metrics.dead_lettered.inc(outcome.dead_lettered)

        return d.addCallbacks(removed, self._pass_on)

    # -- accounting -------------------------------------------------------------------------

    def _account(self, outcome: Outcome) -> None:
        self.stats = outcome.stats
        metrics = self.metrics
        queued = sum(1 for a in outcome.accepted if a.status == "queued")
        if metrics is not None:
            metrics.commit_duration.observe(outcome.seconds)
            if queued:
                metrics.enqueued.inc(queued)
            if outcome.evicted:
                metrics.dropped.labels("evicted").inc(len(outcome.evicted))
            if outcome.expired:
                metrics.dropped.labels("expired").inc(len(outcome.expired))
        if outcome.evicted:
            self._say(
                "warning",
                "outbox.evicted",
                messages=len(outcome.evicted),
                first=outcome.evicted[0],
                last=outcome.evicted[-1],
            )
        if outcome.expired:
            self._say(
                "warning",
                "outbox.expired",
                messages=len(outcome.expired),
                first=outcome.expired[0],
                ttl=self.config.ttl,
            )
        self._account_stats()

    def _account_stats(self) -> None:
        if self.metrics is not None:
            self.metrics.available.set(0 if self.unavailable else 1)

    def _rejected(self, reason: str, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.rejected.labels(reason).inc(n)

    def oldest_age(self) -> float:
        """Seconds the oldest queued message has waited (0: none)."""
        oldest = self.stats.oldest
        return 0.0 if oldest is None else max(0.0, self.clock.seconds() - oldest)

    def report(self) -> dict[str, Any]:
        """What ``/readyz`` says of the outbox."""
        return {
            "available": self.unavailable is None,
            "error": self.unavailable,
            "messages": self.stats.messages,
            "bytes": self.stats.bytes,
            "oldest_age_seconds": round(self.oldest_age(), 3),
            "dead_letters": self.stats.dead,
            "sender": self.sender.state.value,
            "unacknowledged": self.sender.unacknowledged,
        }

    def _trouble(self, trouble: Trouble) -> None:
        level = "error" if trouble.kind == "dead_letter" else "warning"
        self._say(
            level,
            f"outbox.{trouble.kind}",
            msg_id=trouble.msg_id,
            reason=trouble.reason,
            delay=trouble.delay,
        )

    def _say(self, level: str, event: str, **fields: Any) -> None:
        if self._log is not None:
            given = {k: v for k, v in fields.items() if v is not None}
            getattr(self._log, level)(event, component="outbox", **given)


class NoOutbox:
    """What components find in ``config.shared`` when there is no ``[outbox]``: every
    publish fails, saying so."""

    def publish(self, topic: str, *args: Any, **kwargs: Any) -> Deferred[str]:
        return fail(
            OutboxUnavailable('wampd has no outbox: set [outbox] path = "..." in its configuration')
        )


class _OutboxSession(ApplicationSession):
    def __init__(self, config: ComponentConfig, sender: Sender) -> None:
        super().__init__(config)
        self._sender = sender

    def onJoin(self, details: Any) -> None:
        self._sender.joined(self)

    def onLeave(self, details: Any) -> None:
        self._sender.left(self)
        super().onLeave(details)


def _one(accepted: Accepted, limits: Limits) -> str:
    if accepted.status in ("queued", "duplicate"):
        return accepted.msg_id
    if accepted.status == "too_large":
        raise ValueError(f"the message is larger than the outbox's max_bytes ({limits.max_bytes})")
    raise OutboxFull(
        f"the outbox is full ({limits.max_messages} messages or {limits.max_bytes} bytes)"
    )
