"""wampd.testing as its users would use it: a real Supervisor on a Clock, fake attempts."""

from __future__ import annotations

import doctest

import pytest
from twisted.internet.task import Clock

import wampd.testing
from wampd import (
    Backoff,
    Event,
    EventHub,
    FatalRouterError,
    Jitter,
    RetryPolicy,
    State,
    Supervisor,
)
from wampd.events import names
from wampd.testing import EventRecorder, FakeConnector

from .fakes import outcome

URL = "ws://router.example:8080/ws"
NOT_AUTHORIZED = "wamp.error.not_authorized"


def state_of(supervisor: Supervisor) -> State:
    """``supervisor.state``, read afresh: mypy would carry the narrowing of an ``assert
    supervisor.state is ...`` past the calls that change the state."""
    return supervisor.state


def supervise(
    hub: EventHub | None = None,
) -> tuple[Supervisor, FakeConnector, Clock, EventRecorder]:
    hub = hub or EventHub()
    clock, connector = Clock(), FakeConnector()
    recorder = EventRecorder(hub)
    supervisor = Supervisor(
        "backend",
        connector,
        [URL],
        policy=RetryPolicy(
            backoff=Backoff(1.0, 8.0, 2.0, Jitter.NONE, steady_retries=0),
            fatal_errors=frozenset({NOT_AUTHORIZED}),
        ),
        clock=clock,
        hub=hub,
    )
    return supervisor, connector, clock, recorder


def test_the_module_docstring_example_runs() -> None:
    failed, attempted = doctest.testmod(wampd.testing, report=True)
    assert attempted > 10
    assert failed == 0


def test_refuse_retry_join_then_a_fatal_abort() -> None:
    """refuse -> retry.scheduled -> join -> session.joined -> a fatal ABORT -> fatal.error."""
    supervisor, connector, clock, recorder = supervise()
    finished = supervisor.whenFinished()
    supervisor.startService()
    assert [a.url for a in connector.attempts] == [URL]

    # The router is down: the attempt is refused and a retry is scheduled.
    clock.advance(0.5)
    connector.refuse()
    (retry,) = recorder.named(names.RETRY_SCHEDULED)
    assert (retry.retry, retry.delay, retry.error) == (1, 1.0, "connection refused")
    assert retry.state is State.BACKOFF
    assert state_of(supervisor) is State.BACKOFF

    # Nothing happens before the delay is over; then attempt 2 joins.
    clock.advance(0.99)
    assert len(connector.attempts) == 1
    clock.advance(0.01)
    assert len(connector.attempts) == 2
    clock.advance(0.25)
    link = connector.join()
    (joined,) = recorder.named(names.SESSION_JOINED)
    assert joined.session_id == link.session_id == 1
    assert joined.url == URL
    assert joined.connect_duration == pytest.approx(0.25)
    assert joined.outage_duration == pytest.approx(1.25)  # from the refusal to the join
    assert state_of(supervisor) is State.JOINED

    # The connection drops before it is stable: the same outage, retry 2 after 2 s.
    link.lose()
    (left,) = recorder.named(names.SESSION_LEFT)
    assert left.reason == "wamp.close.transport_lost"
    assert [e.delay for e in recorder.named(names.RETRY_SCHEDULED)] == [1.0, 2.0]
    clock.advance(2.0)

    # The router now rejects the session with an ABORT that the policy calls fatal.
    connector.abort(NOT_AUTHORIZED, "bad ticket")
    (fatal,) = recorder.named(names.FATAL_ERROR)
    assert fatal.reason == NOT_AUTHORIZED
    assert fatal.state is State.FAILED
    assert fatal.error is not None and "bad ticket" in fatal.error
    assert state_of(supervisor) is State.FAILED
    error = outcome(finished)
    assert isinstance(error, FatalRouterError)
    assert error.reason == NOT_AUTHORIZED

    assert recorder.names == [
        names.CONNECT_ATTEMPT,
        names.CONNECT_FAILED,
        names.RETRY_SCHEDULED,
        names.CONNECT_ATTEMPT,
        names.SESSION_JOINED,
        names.SESSION_LEFT,
        names.RETRY_SCHEDULED,
        names.CONNECT_ATTEMPT,
        names.FATAL_ERROR,
    ]
    # No more attempts, no timer left behind.
    assert len(connector.attempts) == 3
    assert clock.getDelayedCalls() == []


def test_a_users_observer_reacts_to_the_events() -> None:
    """The point of the fakes: test your own observer's reaction to the events."""
    alerts: list[str] = []

    def alert_on_trouble(event: Event) -> None:  # what a user would write
        if event.name == names.RETRY_SCHEDULED:
            alerts.append(f"retry in {event.delay:g} s")
        elif event.name == names.FATAL_ERROR:
            alerts.append(f"page someone: {event.reason}")

    hub = EventHub()
    hub.subscribe(alert_on_trouble)
    supervisor, connector, clock, _recorder = supervise(hub)
    supervisor.startService()
    connector.refuse()
    assert alerts == ["retry in 1 s"]
    clock.advance(1.0)
    connector.join().lose()
    clock.advance(2.0)
    connector.abort(NOT_AUTHORIZED)
    assert alerts == ["retry in 1 s", "retry in 2 s", f"page someone: {NOT_AUTHORIZED}"]


def test_stopping_leaves_the_session_and_the_test_ends_it() -> None:
    supervisor, connector, _clock, recorder = supervise()
    supervisor.startService()
    link = connector.join()
    stopped = supervisor.stopService()
    assert link.left_with_timeout == 5.0
    assert outcome(stopped) == "pending"
    link.lose("wamp.close.goodbye_and_out")
    assert outcome(stopped) is None
    assert recorder.names[-1] == names.SUPERVISOR_STOPPED
    assert state_of(supervisor) is State.STOPPED


def test_settling_an_attempt_twice_says_so() -> None:
    supervisor, connector, _clock, _recorder = supervise()
    with pytest.raises(LookupError, match="not made a connection attempt"):
        connector.join()
    supervisor.startService()
    connector.join()
    with pytest.raises(RuntimeError, match="already settled"):
        connector.refuse()


def test_a_timed_out_attempt_is_cancelled() -> None:
    supervisor, connector, clock, recorder = supervise()
    supervisor.startService()
    clock.advance(10.0)  # the supervisor's default connect_timeout
    assert connector.attempts[0].cancelled
    assert connector.attempts[0].settled
    (failed,) = recorder.named(names.CONNECT_FAILED)
    assert failed.error is not None and "connect_timeout" in failed.error
    with pytest.raises(RuntimeError, match="already cancelled"):
        connector.join()


def test_a_closed_recorder_keeps_what_it_had() -> None:
    supervisor, connector, _clock, recorder = supervise()
    supervisor.startService()
    recorder.close()
    connector.refuse()
    assert recorder.names == [names.CONNECT_ATTEMPT]
