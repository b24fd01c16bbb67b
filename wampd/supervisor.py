"""One supervised WAMP session: an explicit state machine that keeps it joined.

The states: ``idle -> connecting -> joined``, ``backoff`` between attempts, ``stopping ->
stopped`` on request, ``failed`` when it gives up (retries spent, or a fatal rejection
while connecting). Every state-changing transition is drawn in ``docs/supervisor.md``,
which a test checks against this machine.

The machine is built with automat, the way Twisted's ``ClientService`` is. Decisions
that depend on counters (retry or give up? how long to wait?) are taken in
:meth:`_Core.route` *before* an input is fed, so every transition is a plain
declaration; the states that own a timer or an attempt carry it as their data, so
``stop`` can cancel it. Every event goes through :meth:`_Core.emit`.

Counting: the n-th failure of an outage (a failed attempt, or losing a session) schedules
retry n, so ``max_retries = N`` allows exactly N retries after the failure that began the
outage. The count goes back to zero only when a session has stayed joined for
``stable_after`` seconds; a session lost sooner is one more failure of the same outage.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal as L  # noqa: N817 -- the overloads read better short
from typing import Protocol, Unpack, cast, overload

from automat import TypeMachineBuilder
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ._typing import Clock, DelayedCall
from .backoff import Backoff
from .errors import FatalRouterError, RetriesExhausted, WampdError
from .events import Event, EventFields, EventHub, EventName, State, names
from .events import EventName as N
from .failover import Failover
from .gate import Gate, Ticket
from .link import AttemptError, Connector, Link, Loss

__all__ = ["RetryPolicy", "Supervisor"]


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, how long to wait, and when to give up."""

    backoff: Backoff = field(default_factory=Backoff)
    #: Retries per outage; None for no limit, 0 for none.
    max_retries: int | None = None
    #: Whether failing to join at start is an outage like any other (else: give up).
    retry_on_start: bool = True
    #: Seconds a session must stay joined before its outage counts as over.
    stable_after: float = 5.0
    #: ABORT reasons that end the supervisor after one attempt.
    fatal_errors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"max_retries must be None (no limit) or >= 0, got {self.max_retries}")


@dataclass(frozen=True)
class _Problem:
    """A failed attempt or a lost session, as it enters the machine."""

    error: str
    url: str | None = None
    #: The router's ABORT reason (attempts only) -- the only thing that can be fatal.
    reason: str | None = None
    loss: Loss | None = None
    traceback: str | None = None
    #: Not this supervisor's attempt: the shared probe's, which it waited behind.
    shared: bool = False


class _Inputs(Protocol):
    def start(self) -> None:
        "Start connecting."

    def stop(self) -> Deferred[None]:
        "Cancel retries, leave with GOODBYE; fires when the connection is closed."

    def whenFinished(self) -> Deferred[None]:
        "Fires when stopped, fails with the error when failed."

    def _joined(self, link: Link) -> None:
        "The attempt's session joined."

    def _retry(self, problem: _Problem, delay: float) -> None:
        "An attempt failed or a session was lost; retry after ``delay`` seconds."

    def _fail(self, problem: _Problem, error: RetriesExhausted | FatalRouterError) -> None:
        "An attempt failed or a session was lost; give up."

    def _done(self, problem: _Problem) -> None:
        "The component left its session on its own."

    def _due(self, ticket: Ticket | None = None) -> None:
        "The backoff delay is over (and the gate, if any, let the attempt through)."

    def _stable(self) -> None:
        "The session stayed joined for ``stable_after`` seconds."


@dataclass
class _Core:
    name: str
    connector: Connector
    urls: Sequence[str]
    policy: RetryPolicy
    clock: Clock
    rand: Callable[[], float]
    connect_timeout: float
    leave_timeout: float
    hub: EventHub
    #: Shared with the other supervisors of the same router (None: on its own).
    gate: Gate | None = None

    state: State = State.IDLE
    #: Consecutive failures in the current outage.
    failures: int = 0
    #: The delay chosen for the last retry (decorrelated jitter builds on it).
    previous_delay: float | None = None
    #: When the current outage began, if there is one.
    outage_since: float | None = None
    #: Whether a session has ever joined (``retry_on_start = false`` looks at this).
    ever_joined: bool = False
    #: Which URL the next attempt goes to (set by the Supervisor).
    failover: Failover = field(default_factory=lambda: Failover(("ws://unset",)))
    stop_waiters: list[Deferred[None]] = field(default_factory=list)
    finish_waiters: list[Deferred[None]] = field(default_factory=list)

    # Each kind of event with the fields it carries (and the state it enters, if any).
    @overload
    def emit(self, name: L[N.CONNECT_ATTEMPT], state: State, *, url: str, attempt: int) -> None: ...
    @overload
    def emit(
        self,
        name: L[N.CONNECT_FAILED],
        *,
        url: str | None,
        reason: str | None,
        error: str,
        traceback: str | None,
    ) -> None: ...
    @overload
    def emit(
        self,
        name: L[N.SESSION_JOINED],
        state: State,
        *,
        url: str,
        session_id: int | None,
        realm: str | None,
        connect_duration: float,
        outage_duration: float | None,
    ) -> None: ...
    @overload
    def emit(self, name: L[N.SESSION_STABLE], *, session_id: int | None) -> None: ...
    @overload
    def emit(
        self,
        name: L[N.SESSION_LEFT],
        *,
        url: str | None,
        reason: str,
        error: str | None,
        keepalive: bool,
    ) -> None: ...
    @overload
    def emit(
        self, name: L[N.RETRY_SCHEDULED], state: State, *, retry: int, delay: float, error: str
    ) -> None: ...
    @overload
    def emit(
        self, name: L[N.RETRIES_EXHAUSTED], state: State, *, error: str, retry: int
    ) -> None: ...
    @overload
    def emit(
        self, name: L[N.FATAL_ERROR], state: State, *, url: str | None, reason: str, error: str
    ) -> None: ...
    @overload
    def emit(
        self,
        name: L[N.COMPONENT_ERROR, N.KEEPALIVE_TIMEOUT],
        *,
        error: str | None = None,
        traceback: str | None = None,
        reason: str | None = None,
    ) -> None: ...
    @overload
    def emit(
        self,
        name: L[N.SUPERVISOR_STOPPING],
        state: State,
        *,
        url: str | None = None,
        session_id: int | None = None,
    ) -> None: ...
    @overload
    def emit(
        self, name: L[N.SUPERVISOR_STOPPED], state: State, *, reason: str | None = None
    ) -> None: ...

    def emit(
        self, name: EventName, state: State | None = None, **fields: Unpack[EventFields]
    ) -> None:
        """The one place events come from (and the connectors' reporter): record the new
        state, then tell the hub."""
        previous = self.state
        if state is not None:
            self.state = state
        fields.setdefault("keepalive", name is names.KEEPALIVE_TIMEOUT)
        event = Event(
            name=name,
            component=self.name,
            previous=previous,
            state=self.state,
            time=self.clock.seconds(),
            failures=self.failures,
            **fields,
        )
        self.hub.emit(event)

    def plan(self, problem: _Problem) -> float | RetriesExhausted | FatalRouterError:
        """The delay of the next retry, or the error to give up with. Pure but for ``rand``."""
        if problem.reason is not None and problem.reason in self.policy.fatal_errors:
            return FatalRouterError(self.name, problem.reason, problem.error)
        # Before the first join, retry_on_start = false leaves no retries at all.
        budget = self.policy.max_retries if self.ever_joined or self.policy.retry_on_start else 0
        if budget is not None and self.failures >= budget:
            return RetriesExhausted(self.name, self.failures, problem.error)
        return self.policy.backoff.delay(self.failures + 1, self.rand, self.previous_delay)

    def route(self, machine: _Inputs, problem: _Problem) -> None:
        """Feed the input that ``problem`` leads to; :attr:`failover` picks the next URL."""
        if problem.loss is not None:
            self.failover.lost()
        else:
            self.failover.failed()
        if problem.loss is not None and problem.loss.by_component:
            machine._done(problem)
        elif isinstance(verdict := self.plan(problem), WampdError):
            machine._fail(problem, verdict)
        else:
            machine._retry(problem, verdict)

    def describe(self, problem: _Problem) -> None:
        """Emit what went wrong, in the state where it went wrong."""
        if problem.loss is not None:
            self.emit(
                names.SESSION_LEFT,
                url=problem.url,
                reason=problem.loss.reason,
                error=problem.loss.message,
                keepalive=problem.loss.keepalive,
            )
        else:
            self.emit(
                names.CONNECT_FAILED,
                url=problem.url,
                reason=problem.reason,
                error=problem.error,
                traceback=problem.traceback,
            )

    def stopped(self, problem: _Problem | None = None, reason: str | None = None) -> None:
        """Enter stopped, saying first how a lost session ended (a cancelled attempt is quiet)."""
        if problem is not None and problem.loss is not None:
            self.describe(problem)
        self.emit(names.SUPERVISOR_STOPPED, State.STOPPED, reason=reason)
        self.finish(None)

    def finish(self, error: WampdError | None) -> None:
        """Fire the waiters of ``stop`` (none when it gives up), then of ``whenFinished``."""
        waiters = self.stop_waiters + self.finish_waiters
        self.stop_waiters, self.finish_waiters = [], []
        for waiter in waiters:
            if error is None:
                waiter.callback(None)
            else:
                waiter.errback(error)


@dataclass
class _Pending:
    """The data of the connecting state: the attempt under way."""

    deferred: Deferred[Link]
    url: str
    started: float


@dataclass
class _Session:
    link: Link
    stable: DelayedCall


@dataclass
class _Wait:
    call: DelayedCall | None = None
    #: Once the delay is over: the retry waiting at the gate.
    ticket: Ticket | None = None


def _describe_failure(failure: Failure, url: str, connect_timeout: float) -> _Problem:
    exc = failure.value
    if isinstance(exc, AttemptError):
        return _Problem(error=exc.error, url=url, reason=exc.reason)
    if isinstance(exc, TimeoutError):
        return _Problem(error=f"no session within connect_timeout ({connect_timeout:g} s)", url=url)
    if isinstance(exc, CancelledError):
        return _Problem(error="attempt cancelled", url=url)
    kind = type(exc).__name__
    return _Problem(
        error=f"{kind}: {failure.getErrorMessage() or kind}",
        url=url,
        traceback=None if isinstance(exc, OSError) else failure.getTraceback(),
    )


_TRANSPORT_LOST = "wamp.close.transport_lost"


def _router_down(problem: _Problem) -> bool:
    """Whether ``problem`` says the router is down, not that this session failed: an attempt
    that failed before the router answered, a link that died, the shared probe's failure."""
    if problem.loss is not None:
        return problem.loss.keepalive or problem.loss.reason == _TRANSPORT_LOST
    return problem.shared or problem.reason is None


def _waiter(waiters: list[Deferred[None]]) -> Deferred[None]:
    waiters.append(Deferred())
    return waiters[-1]


def _build() -> Callable[[_Core], _Inputs]:
    machine = TypeMachineBuilder(_Inputs, _Core)

    # -- state data factories: run on entering a state, with the input's arguments --

    def start_attempt(inputs: _Inputs, core: _Core, ticket: Ticket | None = None) -> _Pending:
        """``ticket``: the gate's, when the gate let this attempt through (the probe's
        outcome is reported with it)."""
        if core.state in (State.STOPPED, State.FAILED):
            # Started again after the end: a fresh outage count.
            core.failures, core.previous_delay, core.outage_since = 0, None, None
        url = core.failover.url
        core.emit(names.CONNECT_ATTEMPT, State.CONNECTING, url=url, attempt=core.failures + 1)
        attempt = _Pending(core.connector(url, core.emit), url, core.clock.seconds())
        # The clock is the reactor, or a Clock in tests.
        attempt.deferred.addTimeout(core.connect_timeout, cast(IReactorTime, core.clock))

        def failed(failure: Failure) -> None:
            problem = _describe_failure(failure, url, core.connect_timeout)
            if core.gate is not None:
                if failure.check(CancelledError):  # stopped: says nothing of the router
                    if ticket is not None:
                        core.gate.abandoned(ticket)
                elif _router_down(problem):
                    core.gate.unreachable(problem.error, ticket)
                else:  # an ABORT: the router is up
                    core.gate.answered()
            core.route(inputs, problem)

        attempt.deferred.addCallbacks(inputs._joined, failed)
        return attempt

    def enter_joined(inputs: _Inputs, core: _Core, link: Link) -> _Session:
        stable = core.clock.callLater(core.policy.stable_after, inputs._stable)

        def lost(loss: Loss) -> None:
            if stable.active():
                stable.cancel()
            problem = _Problem(error=loss.message or loss.reason, url=link.url, loss=loss)
            if core.gate is not None and _router_down(problem):
                core.gate.unreachable(problem.error, None)
            core.route(inputs, problem)

        link.lost.addCallback(lost)
        return _Session(link, stable)

    def wait(inputs: _Inputs, core: _Core, problem: _Problem, delay: float) -> _Wait:
        waiting = _Wait()
        backoff(inputs, core, problem, delay, waiting)
        return waiting

    def backoff(
        inputs: _Inputs, core: _Core, problem: _Problem, delay: float, waiting: _Wait
    ) -> None:
        """Count the failure, say so, and schedule the retry (through the gate, if any)."""
        core.failures += 1
        core.previous_delay = delay
        if core.outage_since is None:
            core.outage_since = core.clock.seconds()
        if not problem.shared:
            core.describe(problem)
        core.emit(
            names.RETRY_SCHEDULED,
            State.BACKOFF,
            retry=core.failures,
            delay=delay,
            error=problem.error,
        )
        waiting.ticket = None
        if core.gate is None:
            waiting.call = core.clock.callLater(delay, inputs._due)
            return
        gate = core.gate

        def go(ticket: Ticket) -> None:
            if waiting.call is not None and waiting.call.active():
                waiting.call.cancel()  # let through before its delay was over
            inputs._due(ticket)

        def refused(error: str) -> None:
            core.route(inputs, _Problem(f"the router still refuses: {error}", shared=True))

        if _router_down(problem):
            # Sleep the delay, unless the router answers someone sooner.
            ticket = waiting.ticket = gate.park(go, refused)
            waiting.call = core.clock.callLater(delay, gate.due, ticket)
        else:

            def due() -> None:
                waiting.ticket = gate.request(go, refused)

            waiting.call = core.clock.callLater(delay, due)

    def give_up(
        inputs: _Inputs, core: _Core, problem: _Problem, error: RetriesExhausted | FatalRouterError
    ) -> WampdError:
        core.failures += 1
        if isinstance(error, RetriesExhausted):
            if not problem.shared:
                core.describe(problem)
            core.emit(names.RETRIES_EXHAUSTED, State.FAILED, error=str(error), retry=error.retries)
        else:
            # Every attempt ends in exactly one event; this one's is fatal.error.
            core.emit(
                names.FATAL_ERROR,
                State.FAILED,
                url=problem.url,
                reason=error.reason,
                error=str(error),
            )
        core.finish(error)
        return error

    Idle = machine.state("Idle")
    Connecting = machine.state("Connecting", start_attempt)
    Joined = machine.state("Joined", enter_joined)
    Waiting = machine.state("Backoff", wait)
    Stopping = machine.state("Stopping")
    Stopped = machine.state("Stopped")
    Failed = machine.state("Failed", give_up)

    # -- starting, connecting and joined (the data factories do the work) --

    Idle.upon(_Inputs.start).to(Connecting).returns(None)
    Stopped.upon(_Inputs.start).to(Connecting).returns(None)
    Failed.upon(_Inputs.start).to(Connecting).returns(None)
    Waiting.upon(_Inputs._due).to(Connecting).returns(None)
    Connecting.upon(_Inputs.start).loop().returns(None)
    Joined.upon(_Inputs.start).loop().returns(None)
    Waiting.upon(_Inputs.start).loop().returns(None)
    Connecting.upon(_Inputs._retry).to(Waiting).returns(None)
    Joined.upon(_Inputs._retry).to(Waiting).returns(None)
    Connecting.upon(_Inputs._fail).to(Failed).returns(None)
    Joined.upon(_Inputs._fail).to(Failed).returns(None)
    # The shared probe this supervisor waited behind failed: its failure, counted here.
    Waiting.upon(_Inputs._fail).to(Failed).returns(None)

    @Waiting.upon(_Inputs._retry).loop()
    def retry_again(
        inputs: _Inputs, core: _Core, waiting: _Wait, problem: _Problem, delay: float
    ) -> None:
        backoff(inputs, core, problem, delay, waiting)

    @Connecting.upon(_Inputs._joined).to(Joined)
    def joined(inputs: _Inputs, core: _Core, attempt: _Pending, link: Link) -> None:
        now = core.clock.seconds()
        outage = None if core.outage_since is None else now - core.outage_since
        core.outage_since = None
        core.ever_joined = True
        core.failover.joined()
        if core.gate is not None:
            core.gate.answered()
        core.emit(
            names.SESSION_JOINED,
            State.JOINED,
            url=attempt.url,
            session_id=link.session_id,
            realm=link.realm,
            connect_duration=now - attempt.started,
            outage_duration=outage,
        )

    @Joined.upon(_Inputs._stable).loop()
    def stable(inputs: _Inputs, core: _Core, session: _Session) -> None:
        core.failures, core.previous_delay = 0, None
        core.emit(names.SESSION_STABLE, session_id=session.link.session_id)

    @Joined.upon(_Inputs._done).to(Stopped)
    def component_left(inputs: _Inputs, core: _Core, session: _Session, problem: _Problem) -> None:
        core.stopped(problem, reason="component left")

    # -- stopping --

    @Idle.upon(_Inputs.stop).to(Stopped)
    def stop_idle(inputs: _Inputs, core: _Core) -> Deferred[None]:
        core.stopped()
        return succeed(None)

    @Waiting.upon(_Inputs.stop).to(Stopped)
    def stop_waiting(inputs: _Inputs, core: _Core, wait: _Wait) -> Deferred[None]:
        if wait.call is not None and wait.call.active():
            wait.call.cancel()
        if wait.ticket is not None:
            wait.ticket.cancel()
        return stop_idle(inputs, core)

    @Connecting.upon(_Inputs.stop).to(Stopping)
    def stop_connecting(inputs: _Inputs, core: _Core, attempt: _Pending) -> Deferred[None]:
        core.emit(names.SUPERVISOR_STOPPING, State.STOPPING, url=attempt.url)
        attempt.deferred.cancel()
        return _waiter(core.stop_waiters)

    @Joined.upon(_Inputs.stop).to(Stopping)
    def stop_joined(inputs: _Inputs, core: _Core, session: _Session) -> Deferred[None]:
        if session.stable.active():
            session.stable.cancel()
        core.emit(names.SUPERVISOR_STOPPING, State.STOPPING, session_id=session.link.session_id)
        session.link.leave(core.leave_timeout)
        return _waiter(core.stop_waiters)

    @Stopping.upon(_Inputs.stop).loop()
    def stop_again(inputs: _Inputs, core: _Core) -> Deferred[None]:
        return _waiter(core.stop_waiters)

    def stopping_over(
        inputs: _Inputs, core: _Core, problem: _Problem, *_: object, **__: object
    ) -> None:
        "The attempt or the session being stopped is gone, however it ended."
        core.stopped(problem)

    Stopping.upon(_Inputs._retry).to(Stopped)(stopping_over)
    Stopping.upon(_Inputs._fail).to(Stopped)(stopping_over)
    Stopping.upon(_Inputs._done).to(Stopped)(stopping_over)

    # -- waiting for the end --

    @Idle.upon(_Inputs.whenFinished).loop()
    @Connecting.upon(_Inputs.whenFinished, nodata=True).loop()
    @Joined.upon(_Inputs.whenFinished, nodata=True).loop()
    @Waiting.upon(_Inputs.whenFinished, nodata=True).loop()
    @Stopping.upon(_Inputs.whenFinished).loop()
    def not_finished(inputs: _Inputs, core: _Core) -> Deferred[None]:
        return _waiter(core.finish_waiters)

    @Stopped.upon(_Inputs.stop).loop()
    @Stopped.upon(_Inputs.whenFinished).loop()
    @Failed.upon(_Inputs.stop, nodata=True).loop()
    def finished(inputs: _Inputs, core: _Core) -> Deferred[None]:
        return succeed(None)

    @Failed.upon(_Inputs.whenFinished).loop()
    def finished_failed(inputs: _Inputs, core: _Core, error: WampdError) -> Deferred[None]:
        return fail(error)

    return machine.build()


_Machine = _build()


class Supervisor(Service):
    """Keeps one WAMP session joined: a Twisted ``Service`` around the state machine.

    :param name: the component's name (the ``component`` of every event).
    :param connector: makes one connection attempt; see :mod:`wampd.link`.
    :param urls: router URLs (failover between them as ``failover`` says).
    :param policy: retry policy.
    :param clock: the reactor, or a ``twisted.internet.task.Clock`` in tests.
    :param hub: where events go.
    :param rand: a source of floats in ``[0, 1)`` for jitter.
    :param connect_timeout: seconds an attempt may take from TCP connect to WAMP join.
    :param gate: shared with the other supervisors of the same router (:mod:`wampd.gate`).
    :param failover: ``ordered`` or ``round_robin`` (:mod:`wampd.failover`; ``shuffle`` is
        ``ordered`` over shuffled ``urls``), with ``prefer_first``.
    """

    def __init__(
        self,
        name: str,
        connector: Connector,
        urls: Sequence[str],
        *,
        policy: RetryPolicy,
        clock: Clock,
        hub: EventHub,
        rand: Callable[[], float] = _random.random,
        connect_timeout: float = 10.0,
        leave_timeout: float = 5.0,
        gate: Gate | None = None,
        failover: str = "ordered",
        prefer_first: bool = False,
    ) -> None:
        if not urls:
            raise ValueError("a supervisor needs at least one router URL")
        self.name = name
        self._core = _Core(
            name,
            connector,
            tuple(urls),
            policy,
            clock,
            rand,
            connect_timeout,
            leave_timeout,
            hub,
            gate,
            failover=Failover(urls, failover, prefer_first=prefer_first),
        )
        self._machine = _Machine(self._core)

    @property
    def state(self) -> State:
        """The state the supervised session is in now."""
        return self._core.state

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._machine.start()

    def stopService(self) -> Deferred[None]:
        """Cancel any retry, leave with GOODBYE; fires when the connection is closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self._machine.stop()

    def whenFinished(self) -> Deferred[None]:
        """Fires when the supervisor has stopped; fails with the error when it gave up.

        The error is a :class:`~wampd.errors.RetriesExhausted` or a
        :class:`~wampd.errors.FatalRouterError`.
        """
        return self._machine.whenFinished()
