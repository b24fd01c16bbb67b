"""The supervisor's state machine, driven by a Clock and hand-settled attempts."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from wampd.backoff import Backoff, Jitter
from wampd.errors import FatalRouterError, RetriesExhausted
from wampd.events import EventHub, State, names
from wampd.supervisor import RetryPolicy, Supervisor

from .fakes import FakeConnector, Recorder, outcome

FATAL = frozenset({"wamp.error.not_authorized", "wamp.error.no_such_realm"})


def state_of(supervisor: Supervisor) -> State:
    """``supervisor.state``, read afresh: mypy would carry the narrowing of an ``assert
    supervisor.state is ...`` past the calls that change the state."""
    return supervisor.state


def make(
    *,
    failover: str = "ordered",
    prefer_first: bool = False,
    max_retries: int | None = None,
    stable_after: float = 5.0,
    retry_on_start: bool = True,
    fatal: frozenset[str] = FATAL,
    urls: tuple[str, ...] = ("ws://127.0.0.1:1/ws",),
    jitter: Jitter = Jitter.NONE,
    connect_timeout: float = 10.0,
) -> tuple[Supervisor, FakeConnector, Clock, Recorder]:
    clock = Clock()
    hub = EventHub()
    recorder = Recorder(hub)
    connector = FakeConnector()
    policy = RetryPolicy(
        backoff=Backoff(1.0, 8.0, 2.0, jitter, steady_retries=0),
        max_retries=max_retries,
        retry_on_start=retry_on_start,
        stable_after=stable_after,
        fatal_errors=fatal,
    )
    supervisor = Supervisor(
        "backend",
        connector,
        urls,
        policy=policy,
        clock=clock,
        hub=hub,
        rand=lambda: 0.5,
        connect_timeout=connect_timeout,
        leave_timeout=3.0,
        failover=failover,
        prefer_first=prefer_first,
    )
    return supervisor, connector, clock, recorder


def test_start_then_join() -> None:
    """Starting makes one attempt; its join moves the session to joined."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    assert state_of(supervisor) is State.CONNECTING
    assert len(connector.attempts) == 1
    clock.advance(0.25)
    connector.join()
    assert state_of(supervisor) is State.JOINED
    assert rec.names == [names.CONNECT_ATTEMPT, names.SESSION_JOINED]
    joined = rec.named(names.SESSION_JOINED)[0]
    assert joined.session_id == 1
    assert joined.connect_duration == 0.25
    assert joined.outage_duration is None
    assert joined.previous is State.CONNECTING


def test_router_down_at_start_is_retried_with_growing_delays() -> None:
    """A router that is down at start is an outage: retried with exponential backoff."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    delays = []
    for _ in range(5):
        connector.refuse()
        assert state_of(supervisor) is State.BACKOFF
        delay = rec.named(names.RETRY_SCHEDULED)[-1].delay
        assert delay is not None
        delays.append(delay)
        clock.advance(delay)
        assert state_of(supervisor) is State.CONNECTING
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [e.retry for e in rec.named(names.RETRY_SCHEDULED)] == [1, 2, 3, 4, 5]
    assert len(connector.attempts) == 6


def test_no_retry_before_the_delay_is_over() -> None:
    """The next attempt waits for the whole backoff delay, not a moment less."""
    supervisor, connector, clock, _ = make()
    supervisor.startService()
    connector.refuse()
    clock.advance(0.999)
    assert len(connector.attempts) == 1
    clock.advance(0.001)
    assert len(connector.attempts) == 2


@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_max_retries_means_exactly_that_many_retries(max_retries: int) -> None:
    """max_retries = N makes exactly N retries after the first failure, then gives up."""
    supervisor, connector, clock, rec = make(max_retries=max_retries)
    finished = supervisor.whenFinished()
    supervisor.startService()
    while state_of(supervisor) is State.CONNECTING:
        connector.refuse()
        if state_of(supervisor) is State.BACKOFF:
            clock.advance(100)
    assert state_of(supervisor) is State.FAILED
    assert len(connector.attempts) == max_retries + 1
    assert len(rec.named(names.RETRY_SCHEDULED)) == max_retries
    error = outcome(finished)
    assert isinstance(error, RetriesExhausted)
    assert error.retries == max_retries
    exhausted = rec.named(names.RETRIES_EXHAUSTED)
    assert len(exhausted) == 1
    assert exhausted[0].failures == max_retries + 1
    assert isinstance(outcome(supervisor.whenFinished()), RetriesExhausted)


def test_fatal_rejection_stops_after_one_attempt() -> None:
    """A rejection listed in fatal_errors fails the supervisor at once."""
    supervisor, connector, _, rec = make()
    finished = supervisor.whenFinished()
    supervisor.startService()
    connector.refuse("wrong ticket", reason="wamp.error.not_authorized")
    assert state_of(supervisor) is State.FAILED
    assert len(connector.attempts) == 1
    error = outcome(finished)
    assert isinstance(error, FatalRouterError)
    assert error.reason == "wamp.error.not_authorized"
    assert rec.names == [names.CONNECT_ATTEMPT, names.FATAL_ERROR]
    assert rec.named(names.FATAL_ERROR)[0].reason == "wamp.error.not_authorized"


def test_empty_fatal_errors_make_rejections_transient() -> None:
    """With fatal_errors = [] a rejection is retried like any failure."""
    supervisor, connector, _, _ = make(fatal=frozenset())
    supervisor.startService()
    connector.refuse("wrong ticket", reason="wamp.error.not_authorized")
    assert state_of(supervisor) is State.BACKOFF


def test_session_lost_soon_after_join_counts_as_one_more_failure() -> None:
    """A router that accepts and drops at once is not hammered: delays keep growing."""
    supervisor, connector, clock, rec = make(stable_after=5.0)
    supervisor.startService()
    connector.refuse()
    clock.advance(1.0)
    for expected in (2.0, 4.0, 8.0):
        link = connector.join()
        clock.advance(1.0)  # less than stable_after
        link.lose()
        assert rec.named(names.RETRY_SCHEDULED)[-1].delay == expected
        clock.advance(expected)
    assert rec.named(names.SESSION_LEFT)[-1].failures == 4


def test_budget_is_per_outage_and_resets_only_after_stable_after() -> None:
    """A session that stays joined for stable_after ends the outage: the next gets a full budget.

    The lost session is the first failure of its outage, so with max_retries = 2 each
    outage below uses its whole budget (loss -> retry 1 refused -> retry 2 joins).
    """
    supervisor, connector, clock, rec = make(max_retries=2, stable_after=5.0)
    supervisor.startService()
    connector.refuse()
    clock.advance(1.0)
    connector.refuse()
    clock.advance(2.0)
    link = connector.join()
    for _ in range(4):
        clock.advance(5.0)
        assert rec.names[-1] == names.SESSION_STABLE
        link.lose()
        assert rec.named(names.RETRY_SCHEDULED)[-1].retry == 1
        assert rec.named(names.RETRY_SCHEDULED)[-1].delay == 1.0
        clock.advance(1.0)
        connector.refuse()
        assert rec.named(names.RETRY_SCHEDULED)[-1].retry == 2
        clock.advance(2.0)
        link = connector.join()
    assert state_of(supervisor) is State.JOINED
    assert rec.named(names.RETRIES_EXHAUSTED) == []


def test_flapping_session_spends_the_budget() -> None:
    """Joins that never last stable_after do not reset the count, so the budget runs out."""
    supervisor, connector, clock, _ = make(max_retries=2, stable_after=5.0)
    finished = supervisor.whenFinished()
    supervisor.startService()
    for _ in range(3):
        link = connector.join()
        clock.advance(4.9)
        link.lose()
        clock.advance(100)
    assert state_of(supervisor) is State.FAILED
    assert isinstance(outcome(finished), RetriesExhausted)


def test_lost_stable_session_with_no_retries_gives_up() -> None:
    """max_retries = 0 means a lost session is not reconnected."""
    supervisor, connector, clock, _ = make(max_retries=0)
    supervisor.startService()
    link = connector.join()
    clock.advance(60)
    link.lose()
    assert state_of(supervisor) is State.FAILED


def test_retry_on_start_false_gives_up_on_first_failure_only_before_a_join() -> None:
    """retry_on_start = false: down at start ends it; after a join outages are retried."""
    supervisor, connector, _, _ = make(retry_on_start=False)
    supervisor.startService()
    connector.refuse()
    assert state_of(supervisor) is State.FAILED

    supervisor, connector, clock, _ = make(retry_on_start=False)
    supervisor.startService()
    link = connector.join()
    clock.advance(10)
    link.lose()
    assert state_of(supervisor) is State.BACKOFF


def test_connect_timeout_fails_a_silent_attempt() -> None:
    """An attempt that hears nothing for connect_timeout is cancelled and counted as failed."""
    supervisor, connector, clock, rec = make(connect_timeout=10.0)
    supervisor.startService()
    clock.advance(9.9)
    assert state_of(supervisor) is State.CONNECTING
    clock.advance(0.1)
    assert connector.attempts[0].cancelled
    assert state_of(supervisor) is State.BACKOFF
    failed = rec.named(names.CONNECT_FAILED)[0]
    assert failed.error is not None and "connect_timeout" in failed.error


def test_stop_during_backoff_cancels_the_retry() -> None:
    """Stopping in backoff cancels the pending retry and stops at once."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    connector.refuse()
    stopped = supervisor.stopService()
    assert outcome(stopped) is None
    assert state_of(supervisor) is State.STOPPED
    clock.advance(1000)
    assert len(connector.attempts) == 1
    assert clock.getDelayedCalls() == []
    assert rec.names[-1] == names.SUPERVISOR_STOPPED


def test_stop_while_connecting_cancels_the_attempt() -> None:
    """Stopping during an attempt cancels it; no retry follows."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    stopped = supervisor.stopService()
    assert connector.attempts[0].cancelled
    assert outcome(stopped) is None
    assert state_of(supervisor) is State.STOPPED
    assert clock.getDelayedCalls() == []
    assert rec.names == [
        names.CONNECT_ATTEMPT,
        names.SUPERVISOR_STOPPING,
        names.SUPERVISOR_STOPPED,
    ]


def test_stop_while_joined_leaves_and_waits_for_the_close() -> None:
    """Stopping a joined session sends GOODBYE and fires only once the connection is gone."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    link = connector.join()
    stopped = supervisor.stopService()
    assert link.left_with_timeout == 3.0
    assert state_of(supervisor) is State.STOPPING
    assert outcome(stopped) == "pending"
    link.lose("wamp.close.goodbye_and_out")
    assert outcome(stopped) is None
    assert state_of(supervisor) is State.STOPPED
    assert clock.getDelayedCalls() == []
    assert rec.names[-3:] == [
        names.SUPERVISOR_STOPPING,
        names.SESSION_LEFT,
        names.SUPERVISOR_STOPPED,
    ]


def test_stop_after_many_reconnects_still_leaves() -> None:
    """GOODBYE on stop works the same after any number of reconnects."""
    supervisor, connector, clock, _ = make()
    supervisor.startService()
    for _ in range(5):
        link = connector.join()
        clock.advance(10)
        link.lose()
        clock.advance(10)
    link = connector.join()
    supervisor.stopService()
    assert link.left_with_timeout == 3.0


def test_component_leaving_on_its_own_is_not_reconnected() -> None:
    """A component that leaves its session itself is done: stopped, no retry."""
    supervisor, connector, clock, rec = make()
    finished = supervisor.whenFinished()
    supervisor.startService()
    link = connector.join()
    link.lose("wamp.close.goodbye_and_out", by_component=True)
    assert state_of(supervisor) is State.STOPPED
    assert outcome(finished) is None
    clock.advance(1000)
    assert len(connector.attempts) == 1
    assert rec.names[-2:] == [names.SESSION_LEFT, names.SUPERVISOR_STOPPED]


def test_failover_tries_urls_in_turn() -> None:
    """With several router URLs, each failure moves on to the next, round-robin."""
    urls = ("ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws", "ws://127.0.0.1:3/ws")
    supervisor, connector, clock, _ = make(urls=urls)
    supervisor.startService()
    for _ in range(4):
        connector.refuse()
        clock.advance(100)
    assert [a.url for a in connector.attempts] == [*urls, urls[0], urls[1]]


URLS = ("ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws", "ws://127.0.0.1:3/ws")


@pytest.mark.parametrize(
    ("failover", "prefer_first", "after_loss"),
    [("ordered", False, URLS[1]), ("ordered", True, URLS[0]), ("round_robin", False, URLS[2])],
)
def test_a_session_lost_after_failing_over(
    failover: str, prefer_first: bool, after_loss: str
) -> None:
    """The first URL refuses, the second joins, its session is lost: ordered tries the
    second again (it stays on the router that works), prefer_first the first, round_robin
    the third."""
    supervisor, connector, clock, _ = make(urls=URLS, failover=failover, prefer_first=prefer_first)
    supervisor.startService()
    connector.refuse()
    clock.advance(100)
    connector.join().lose()
    clock.advance(100)
    assert [a.url for a in connector.attempts] == [URLS[0], URLS[1], after_loss]


def test_outage_duration_is_reported_on_rejoin() -> None:
    """The join after an outage says how long the outage lasted."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    link = connector.join()
    clock.advance(10)
    link.lose()
    clock.advance(1.0)
    connector.refuse()
    clock.advance(2.0)
    connector.join()
    assert rec.named(names.SESSION_JOINED)[-1].outage_duration == 3.0


def test_every_event_starts_in_the_state_the_last_one_ended_in() -> None:
    """The event stream is a consistent story of state changes."""
    supervisor, connector, clock, rec = make(max_retries=3)
    supervisor.startService()
    connector.refuse()
    clock.advance(10)
    link = connector.join()
    clock.advance(10)
    link.lose()
    clock.advance(10)
    connector.refuse("bad", reason="wamp.error.not_authorized")
    state = State.IDLE
    for event in rec.events:
        assert event.previous is state, event
        state = event.state
    assert state is State.FAILED
    assert rec.events[-1].changed


def test_reported_events_keep_the_state() -> None:
    """A connector's report (component error, keepalive timeout) is an event inside a state."""
    supervisor, connector, _, rec = make()
    supervisor.startService()
    connector.join()
    connector.last.report(names.COMPONENT_ERROR, error="boom", traceback="Traceback ...")
    event = rec.events[-1]
    assert event.name == names.COMPONENT_ERROR
    assert event.state is State.JOINED and not event.changed
    assert event.traceback == "Traceback ..."


def test_restart_after_stop_starts_a_fresh_outage_count() -> None:
    """A supervisor stopped and started again begins counting failures from zero."""
    supervisor, connector, clock, rec = make()
    supervisor.startService()
    connector.refuse()
    clock.advance(10)
    connector.refuse()
    supervisor.stopService()
    supervisor.startService()
    connector.refuse()
    assert rec.named(names.RETRY_SCHEDULED)[-1].retry == 1


def test_stopping_an_idle_supervisor() -> None:
    """A supervisor that never started stops at once."""
    supervisor, connector, _, _ = make()
    assert outcome(supervisor.stopService()) is None
    assert state_of(supervisor) is State.STOPPED
    assert connector.attempts == []


def test_jitter_draws_from_the_injected_source() -> None:
    """The delay comes from the injected random source, never a global one."""
    supervisor, connector, _, rec = make(jitter=Jitter.FULL)
    supervisor.startService()
    connector.refuse()
    assert rec.named(names.RETRY_SCHEDULED)[0].delay == 0.5  # 1.0 * rand() = 0.5


def test_no_limit_is_none_not_a_sentinel() -> None:
    """Inside, "no retry limit" is ``None``; a negative count is refused, not a sentinel."""
    assert RetryPolicy().max_retries is None
    with pytest.raises(ValueError, match="max_retries must be None"):
        RetryPolicy(max_retries=-1)
