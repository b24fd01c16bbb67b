"""The sidecar bridge: an app next to wampd, in any language, publishes, calls, subscribes
and registers over local HTTP through a session wampd keeps joined.

The bridge's session is one more supervised component of the daemon (named ``bridge``,
on the router's URLs and realm): it reconnects, is counted, logged and probed like any
other. On every join it subscribes each ``[[bridge.subscription]]`` and registers each
``[[bridge.procedure]]`` again, and only then is it *ready* (``GET /v1/ready`` says 200):
a subscription or registration the router refuses fails the join, which the supervisor
retries with its backoff like any other failed attempt.

- Requests from the app: :mod:`wampd.routes` (``/v1/publish``, ``/v1/call``,
  ``/v1/ready``, and Crossbar's ``/publish`` and ``/call``).
- Events to the app: :mod:`wampd.webhooks`, one queue per subscription, which outlives
  the sessions (events accepted during one are still delivered during an outage).
- Invocations answered by the app: :mod:`wampd.callbacks`.

On stop (SIGTERM), :meth:`Bridge.drain` runs before the session leaves: requests get 503,
the registrations and subscriptions go, and what is in flight -- requests, invocations,
deliveries -- finishes within the drain's time; then the session leaves with GOODBYE.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, EventDetails, RegisterOptions, SubscribeOptions
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure
from twisted.web.server import Site

from . import callbacks, webhooks
from ._typing import Clock
from .callbacks import Callback
from .config import BridgeConfig
from .crossbar import crossbar_routes
from .metrics import BridgeMetrics
from .outbound import Post
from .outbox import Outbox
from .routes import make_site
from .webhooks import Deliveries, Event, Outcome

__all__ = ["Bridge"]

#: How each webhook outcome is logged: its event name and level.
_DELIVERY_LOG = {
    Outcome.DELIVERED: ("debug", "bridge.delivered"),
    Outcome.RETRIED: ("warning", "bridge.delivery_retried"),
    Outcome.DEAD_LETTERED: ("error", "bridge.dead_lettered"),
    Outcome.DROPPED: ("warning", "bridge.event_dropped"),
    Outcome.ABANDONED: ("error", "bridge.delivery_abandoned"),
}


class Bridge:
    """The bridge's session (the component the daemon supervises), its subscriptions'
    queues, its procedures' callbacks and its HTTP site.

    :param post: POSTs to the app (a :class:`~wampd.outbound.Poster` on the reactor).
    :param logger: a structlog logger; None logs nothing.
    :param metrics: the bridge's series; None counts nothing.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        clock: Clock,
        post: Post,
        rand: Callable[[], float] = random.random,
        logger: Any = None,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self._log = logger
        #: The joined session, once its subscriptions and registrations are in place.
        self.session: ApplicationSession | None = None
        #: True once :meth:`drain` began: requests are refused from then on.
        self.draining = False
        self.deliveries = {
            sub.label: Deliveries(sub, post, clock=clock, rand=rand, note=self._delivery_note)
            for sub in config.subscriptions
        }
        self.callbacks = [
            Callback(proc, post, clock=clock, note=self._invocation_note)
            for proc in config.procedures
        ]
        self._requests = 0
        self._requests_idle: list[Deferred[None]] = []
        self._held: list[Any] = []  # the session's subscriptions and registrations
        self._site: Site | None = None
        #: The durable outbox /v1/publish stores into (None: publishes go straight out).
        self.outbox: Outbox | None = None
        self._drain_waiters: list[Deferred[None]] = []
        self._drained = False

    # -- the session ----------------------------------------------------------------------

    def make_session(self, config: ComponentConfig) -> ApplicationSession:
        """The bridge's session factory (a :data:`~wampd.wamp.SessionFactory`)."""
        return _BridgeSession(config, self)

    @property
    def ready(self) -> bool:
        """Whether requests can go through: joined, everything in place, not draining."""
        return self.session is not None and not self.draining

    def _set_up(self, session: ApplicationSession) -> Deferred[None]:
        """Subscribe and register everything on ``session``; ready once all are."""
        pending: list[Deferred[Any]] = []
        for deliveries in self.deliveries.values():
            sub = deliveries.config
            options = SubscribeOptions(match=sub.match, details_arg="details")
            handler = partial(self._event, deliveries)
            pending.append(session.subscribe(handler, sub.topic, options=options))
        for callback in self.callbacks:
            proc = callback.config
            reg_options = RegisterOptions(
                match=proc.match, invoke=proc.invoke, details_arg="details"
            )
            pending.append(session.register(callback, proc.uri, options=reg_options))

        def in_place(held: list[Any]) -> None:
            if not session.is_attached():
                return  # lost meanwhile: the next join sets up again
            self._held = held
            self.session = session
            self._say(
                "info",
                "bridge.ready",
                subscriptions=len(self.deliveries),
                procedures=len(self.callbacks),
            )

        def refused(failure: Failure) -> Failure:
            first = getattr(failure.value, "subFailure", failure)
            return first if isinstance(first, Failure) else failure

        d: Deferred[Any] = gatherResults(pending, consumeErrors=True)
        return d.addCallbacks(in_place, refused)

    def _left(self, session: ApplicationSession) -> None:
        if self.session is session:
            self.session = None
            self._held = []

    def _event(self, deliveries: Deliveries, *args: Any, details: EventDetails, **kw: Any) -> None:
        info = {
            "subscription": getattr(details.subscription, "id", None),
            "publisher": details.publisher,
            "publisher_authid": details.publisher_authid,
            "publisher_authrole": details.publisher_authrole,
            "retained": bool(details.retained),
            # The outbox's msg_id, for an app that drops repeats.
            "transaction_hash": details.transaction_hash,
        }
        topic = details.topic or deliveries.config.topic
        deliveries.offer(Event(topic, args, kw, details.publication, info))

    # -- the requests the routes are answering --------------------------------------------

    def request_began(self) -> None:
        """A publish or call from the app is in flight (the drain waits for it)."""
        self._requests += 1

    def request_ended(self) -> None:
        self._requests -= 1
        if not self._requests:
            idle, self._requests_idle = self._requests_idle, []
            for d in idle:
                d.callback(None)

    def _no_requests(self) -> Deferred[None]:
        if not self._requests:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._requests_idle.append(d)
        return d

    def site(self) -> Site:
        """The HTTP routes (:mod:`wampd.routes`, :mod:`wampd.crossbar`): one site."""
        if self._site is None:
            self._site = make_site(self, crossbar_routes)
        return self._site

    # -- stopping ---------------------------------------------------------------------------

    def drain(self, timeout: float) -> Deferred[None]:
        """Refuse new requests (503), and wait up to ``timeout`` seconds for what is in
        flight; what is not done by then is abandoned (each delivery logged and counted).
        Never fails.

        The order matters: subscriptions go first (no new events; those queued are still
        delivered); new invocations get ``wamp.error.unavailable`` while those in flight
        finish; only then do the registrations go -- a router answers an invocation whose
        registration went away with an error to its caller, not with the result."""
        started = self.clock.seconds()
        self.draining = True
        pending = {
            "requests": self._requests,
            "invocations": sum(c.inflight for c in self.callbacks),
            "events": sum(d.depth for d in self.deliveries.values()),
        }
        self._say("info", "bridge.draining", timeout=timeout, **pending)
        held, self._held = self._held, []
        subscriptions = [h for h in held if hasattr(h, "unsubscribe")]
        registrations = [h for h in held if not hasattr(h, "unsubscribe")]
        for callback in self.callbacks:
            callback.close()
        done: Deferred[Any] = DeferredList([_release(h) for h in subscriptions], consumeErrors=True)

        def in_flight(_: object) -> Deferred[Any]:
            for deliveries in self.deliveries.values():
                deliveries.close()
            waits = [
                self._no_requests(),
                *(c.idle() for c in self.callbacks),
                *(d.idle() for d in self.deliveries.values()),
            ]
            return DeferredList(waits)

        def unregister(_: object) -> Deferred[Any]:
            return DeferredList([_release(h) for h in registrations], consumeErrors=True)

        done.addCallback(in_flight).addCallback(unregister)
        ended: Deferred[None] = Deferred()
        timed_out: list[bool] = []

        def finished() -> None:
            if timer.active():
                timer.cancel()
            if not timed_out:
                seconds = self.clock.seconds() - started
                self._say("info", "bridge.drained", seconds=seconds)
                ended.callback(None)

        def out_of_time() -> None:
            # The session leaves now: what is still in flight fails with it.
            timed_out.append(True)
            why = f"the drain took longer than {timeout:g} s"
            abandoned = sum(d.abandon(why) for d in self.deliveries.values())
            self._say(
                "warning",
                "bridge.drain_timeout",
                seconds=self.clock.seconds() - started,
                requests=self._requests,
                invocations=sum(c.inflight for c in self.callbacks),
                abandoned_events=abandoned,
            )
            ended.callback(None)

        timer = self.clock.callLater(timeout, out_of_time)
        done.addBoth(lambda _: finished())
        ended.addCallback(self._drain_ended)
        return ended

    def _drain_ended(self, _: object) -> None:
        self._drained = True
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires once a drain has ended (at once if none began)."""
        if self._drained or not self.draining:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drain_waiters.append(d)
        return d

    # -- what happened, into the logs and metrics ---------------------------------------------

    def _delivery_note(self, note: webhooks.Note) -> None:
        level, event = _DELIVERY_LOG[note.outcome]
        self._say(
            level,
            event,
            subscription=note.subscription,
            publication=note.publication,
            attempts=note.attempts,
            queued=note.depth,
            reason=note.reason,
            delay=note.delay,
            seconds=note.seconds,
        )
        if self.metrics is not None:
            self.metrics.deliveries.labels(note.subscription, note.outcome.value).inc()
            self.metrics.queue_depth.labels(note.subscription).set(note.depth)

    def _invocation_note(self, note: callbacks.Note) -> None:
        level = "debug" if note.outcome in ("ok", "error") else "warning"
        self._say(
            level,
            "bridge.invocation",
            procedure=note.procedure,
            outcome=note.outcome,
            seconds=note.seconds,
            error=note.error,
            reason=note.reason,
        )
        if self.metrics is not None:
            self.metrics.invocations.labels(note.procedure, note.outcome).inc()
            self.metrics.invocation_duration.labels(note.procedure).observe(note.seconds)

    def _say(self, level: str, event: str, **fields: Any) -> None:
        if self._log is not None:
            given = {k: v for k, v in fields.items() if v is not None}
            getattr(self._log, level)(event, component="bridge", **given)


def _release(held: Any) -> Deferred[Any]:
    """Unsubscribe a subscription, unregister a registration."""
    undo = held.unsubscribe if hasattr(held, "unsubscribe") else held.unregister
    return maybeDeferred(undo)


class _BridgeSession(ApplicationSession):
    """Sets up the subscriptions and registrations on each join; the bridge's session
    while joined."""

    def __init__(self, config: ComponentConfig, bridge: Bridge) -> None:
        super().__init__(config)
        self._bridge = bridge

    def onJoin(self, details: Any) -> Deferred[None]:
        return self._bridge._set_up(self)

    def onLeave(self, details: Any) -> None:
        self._bridge._left(self)
        super().onLeave(details)

    def onUserError(self, fail: Failure, msg: str) -> None:
        """An app's error answer is the caller's (and noted as ``bridge.invocation``), not
        a fault of the bridge's to warn about."""
        if not isinstance(fail.value, ApplicationError):
            super().onUserError(fail, msg)
