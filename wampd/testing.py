"""Test doubles for programs that embed wampd: a fake connector and an event recorder.

A :class:`wampd.Supervisor` reaches the network only through its *connector* (see
:mod:`wampd.link`). Give it a :class:`FakeConnector` and a ``twisted.internet.task.Clock``
instead of the reactor, and a unit test decides what happens to each connection attempt
(:meth:`~FakeConnector.refuse`, :meth:`~FakeConnector.join`, :meth:`~FakeConnector.abort`)
and when time passes (``clock.advance``), while an :class:`EventRecorder` keeps every
:class:`wampd.Event` the supervisor emits -- exactly what your own observers (alerts,
metrics, a readiness flag) receive through ``EventHub.subscribe``. No network, no router,
no sleeping::

    >>> from twisted.internet.task import Clock
    >>> from wampd import Backoff, EventHub, Jitter, RetryPolicy, State, Supervisor
    >>> from wampd.testing import EventRecorder, FakeConnector
    >>> clock, hub, connector = Clock(), EventHub(), FakeConnector()
    >>> recorder = EventRecorder(hub)
    >>> supervisor = Supervisor(
    ...     "backend",
    ...     connector,
    ...     ["ws://router.example:8080/ws"],
    ...     policy=RetryPolicy(
    ...         backoff=Backoff(1.0, 60.0, 2.0, Jitter.NONE, steady_retries=0),
    ...         fatal_errors=frozenset({"wamp.error.not_authorized"}),
    ...     ),
    ...     clock=clock,
    ...     hub=hub,
    ... )
    >>> supervisor.startService()          # attempt 1
    >>> connector.refuse()                 # ... the router is down
    >>> recorder.named("retry.scheduled")[-1].delay
    1.0
    >>> clock.advance(1.0)                 # the retry is due: attempt 2
    >>> link = connector.join()            # ... joins
    >>> supervisor.state
    <State.JOINED: 'joined'>
    >>> link.lose()                        # the connection drops: retry 2, after 2 s
    >>> clock.advance(2.0)                 # attempt 3
    >>> connector.abort("wamp.error.not_authorized")   # ... a fatal ABORT
    >>> print(*recorder.names, sep="\\n")
    connect.attempt
    connect.failed
    retry.scheduled
    connect.attempt
    session.joined
    session.left
    retry.scheduled
    connect.attempt
    fatal.error
    >>> supervisor.state is State.FAILED
    True

The names of the events are also in ``wampd.events.names`` (``names.RETRY_SCHEDULED``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from .events import Event, EventHub
from .link import AttemptError, Link, Loss, Reporter

__all__ = ["EventRecorder", "FakeAttempt", "FakeConnector", "FakeLink"]


@dataclass
class FakeLink:
    """A joined session, as :meth:`FakeConnector.join` hands it to the supervisor.

    It satisfies :class:`wampd.link.Link`. It records what the supervisor asks of it
    (:attr:`left_with_timeout`, :attr:`aborted`); the test ends it with :meth:`lose`, also
    after a ``leave()`` (where a real router would answer the GOODBYE).
    """

    url: str
    session_id: int
    realm: str = "realm1"
    #: Fires with the :class:`~wampd.link.Loss` given to :meth:`lose`.
    lost: Deferred[Loss] = field(default_factory=Deferred)
    #: The timeout of the supervisor's ``leave()`` (GOODBYE) call, None until it is made.
    left_with_timeout: float | None = None
    #: Whether the supervisor dropped the connection at once (``abort()``).
    aborted: bool = False

    def leave(self, timeout: float) -> None:
        """The supervisor leaves the session (it is being stopped): recorded only."""
        self.left_with_timeout = timeout

    def abort(self) -> None:
        """The supervisor drops the connection: recorded only."""
        self.aborted = True

    def lose(
        self,
        reason: str = "wamp.close.transport_lost",
        *,
        message: str | None = None,
        by_component: bool = False,
        component_error: bool = False,
        keepalive: bool = False,
    ) -> None:
        """End the session: the connection is gone, for ``reason`` (a WAMP close reason).

        The default is a dropped connection. ``by_component=True`` is a component that
        left on its own (the supervisor stops); ``keepalive=True`` a connection dropped for
        a missing PONG; ``component_error=True`` a join handler that raised.
        """
        self.lost.callback(
            Loss(
                reason=reason,
                message=message,
                by_component=by_component,
                component_error=component_error,
                keepalive=keepalive,
            )
        )


@dataclass
class FakeAttempt:
    """One connection attempt the supervisor made through a :class:`FakeConnector`."""

    url: str
    #: The supervisor's reporter: ``attempt.report(names.COMPONENT_ERROR, error=...)``
    #: emits an event inside the current state, as the real connector does.
    report: Reporter
    #: Fires with the :class:`FakeLink` on join, fails with ``AttemptError`` on refusal.
    deferred: Deferred[Link]
    #: Whether the supervisor gave the attempt up (``connect_timeout``, or a stop).
    cancelled: bool = False

    @property
    def settled(self) -> bool:
        """Whether the attempt has an outcome: joined, refused, aborted or cancelled."""
        return self.deferred.called


class FakeConnector:
    """A :class:`wampd.link.Connector` whose attempts the test settles by hand.

    Every call (one per attempt) is recorded in :attr:`attempts`; :meth:`join`,
    :meth:`refuse` and :meth:`abort` settle the latest one, which must still be pending.
    """

    def __init__(self) -> None:
        #: Every attempt so far, oldest first.
        self.attempts: list[FakeAttempt] = []
        self._session_ids = 0

    def __call__(self, url: str, report: Reporter) -> Deferred[Link]:
        def cancel(_: Deferred[Link]) -> None:
            attempt.cancelled = True

        attempt = FakeAttempt(url, report, Deferred(cancel))
        self.attempts.append(attempt)
        return attempt.deferred

    @property
    def last(self) -> FakeAttempt:
        """The latest attempt (LookupError if the supervisor has made none)."""
        if not self.attempts:
            raise LookupError("the supervisor has not made a connection attempt yet")
        return self.attempts[-1]

    def join(self, *, realm: str = "realm1") -> FakeLink:
        """Let the latest attempt's session join; return its link (session ids count 1,
        2, 3, ... across attempts)."""
        attempt = self._pending()
        self._session_ids += 1
        link = FakeLink(attempt.url, self._session_ids, realm)
        attempt.deferred.callback(link)
        return link

    def refuse(self, error: str = "connection refused", reason: str | None = None) -> None:
        """Fail the latest attempt with ``error`` (for people); ``reason`` is the router's
        ABORT reason, if it got that far (see :meth:`abort`)."""
        self._pending().deferred.errback(AttemptError(error, reason))

    def abort(self, reason: str, message: str | None = None) -> None:
        """The router answers the latest attempt's HELLO with ABORT ``reason`` (e.g.
        ``wamp.error.not_authorized``): fatal if the policy's ``fatal_errors`` has it,
        else a failed attempt like any other."""
        error = f"router refused the session: {reason}"
        self.refuse(error + (f" ({message})" if message else ""), reason)

    def _pending(self) -> FakeAttempt:
        attempt = self.last
        if attempt.settled:
            state = "cancelled" if attempt.cancelled else "settled"
            raise RuntimeError(f"the latest attempt (to {attempt.url}) is already {state}")
        return attempt


class EventRecorder:
    """Subscribes to an :class:`~wampd.EventHub` and keeps every event, in order."""

    def __init__(self, hub: EventHub) -> None:
        #: Every event so far, oldest first.
        self.events: list[Event] = []
        self._unsubscribe = hub.subscribe(self.events.append)

    @property
    def names(self) -> list[str]:
        """The names of the events so far (``connect.attempt``, ...), oldest first."""
        return [str(e.name) for e in self.events]

    def named(self, name: str) -> list[Event]:
        """The events called ``name`` (``"retry.scheduled"``, ...), oldest first."""
        return [e for e in self.events if e.name == name]

    def close(self) -> None:
        """Stop recording (the events so far are kept)."""
        self._unsubscribe()
