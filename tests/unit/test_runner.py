"""The drop-in ``ApplicationRunner`` and ``Service``: arguments, and the run's life on a
fake reactor (a ``Clock`` and an endpoint the test controls; no network, no sleeping).

The real-router behaviour, one test per autobahn defect, is in
``tests/integration/test_library.py``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, ParamSpec, cast

import pytest
from autobahn.twisted.wamp import Application, ApplicationSession
from autobahn.wamp.types import ComponentConfig
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from wampd import ApplicationRunner, Jitter, RetriesExhausted, Service, State
from wampd.embed import HostSettings, check_url, retry_policy
from wampd.events import Event
from wampd.logs import twisted_logger
from wampd.wamp import fresh_sessions

from . import sample_entries

URL = "ws://127.0.0.1:1/ws"

P = ParamSpec("P")


class FakeReactor(MemoryReactorClock):
    """A clock with system event triggers that can be fired and removed."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's is unannotated
        self._next_trigger = 0
        self.live: dict[int, tuple[str, str, Callable[[], object]]] = {}

    # MemoryReactor's returns None; a real reactor's (IReactorCore) returns the trigger's
    # ID, which the runner passes to removeSystemEventTrigger.
    def addSystemEventTrigger(  # type: ignore[override]
        self,
        phase: str,
        eventType: str,
        callable: Callable[P, object],
        *args: P.args,
        **kw: P.kwargs,
    ) -> int:
        self._next_trigger += 1
        self.live[self._next_trigger] = (phase, eventType, lambda: callable(*args, **kw))
        return self._next_trigger

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.live[trigger]

    def fire_before_shutdown(self) -> list[object]:
        return [f() for phase, event, f in list(self.live.values()) if phase == "before"]


class RefusingEndpoint:
    """Every connect is refused; counts them."""

    def __init__(self) -> None:
        self.connects = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        self.connects += 1
        return fail(ConnectionRefusedError())


def as_observer(observer: Callable[[LogEvent], None]) -> ILogObserver:
    """``observer`` as the ILogObserver it provides (zope's interface declarations, which
    twisted.logger's type hints rely on, are invisible to mypy)."""
    return cast(ILogObserver, observer)


def no_jitter() -> float:
    return 0.0


def policy(**kw: Any) -> Any:
    args: dict[str, Any] = {
        "max_retries": None,
        "initial_retry_delay": None,
        "max_retry_delay": None,
        "retry_delay_growth": None,
        "retry_delay_jitter": None,
    }
    args.update(kw)
    return retry_policy(**args, settings=HostSettings())


# -- autobahn's retry arguments --


def test_no_retry_argument_gives_autobahns_documented_defaults() -> None:
    """1 s, 60 s, growth 1.5, random.random() seconds added; no retry limit."""
    p, _ = policy()
    b = p.backoff
    assert (b.initial_delay, b.max_delay, b.growth, b.jitter, b.noise) == (
        1.0,
        60.0,
        1.5,
        Jitter.ADDED,
        1.0,
    )
    assert p.max_retries is None  # no limit
    assert p.retry_on_start


@pytest.mark.parametrize(
    "given",
    [
        {"max_retries": 3},
        {"initial_retry_delay": 0.5},
        {"max_retry_delay": 5.0},
        {"retry_delay_growth": 2.0},
        {"retry_delay_jitter": 0.2},
        {"max_retry_delay": 0},
    ],
)
def test_any_subset_of_the_retry_arguments_works(given: dict[str, Any]) -> None:
    """autobahn raised TypeError for max_retries alone and failed inside the policy for
    delays without it; here each one alone gives a policy, the rest defaulted."""
    p, rand = policy(**given)
    delay = p.backoff.delay(1, rand)
    assert 0 <= delay <= p.backoff.max_delay
    if "max_retries" in given:
        assert p.max_retries == 3
    if given == {"max_retry_delay": 0}:
        assert delay == 0.0  # autobahn: max_retry_delay <= 0 reconnects at once


def test_retry_delay_jitter_float_and_callable_are_seconds_added_under_the_cap() -> None:
    """A float scales random.random(); a 0-argument callable (as autobahn's docstring
    promises, where autobahn raised TypeError) is called for each delay."""
    p, rand = policy(initial_retry_delay=1.0, max_retry_delay=3.0, retry_delay_jitter=0.5)
    assert p.backoff.noise == 0.5
    assert 1.0 <= p.backoff.delay(1, rand) <= 1.5
    p, rand = policy(initial_retry_delay=1.0, max_retry_delay=3.0, retry_delay_jitter=lambda: 0.7)
    assert p.backoff.delay(1, rand) == pytest.approx(1.7)
    assert p.backoff.delay(5, rand) == 3.0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"max_retries": -2}, "max_retries: must be an integer >= -1, got -2"),
        ({"max_retries": "3"}, 'max_retries: must be an integer >= -1, got "3"'),
        ({"max_retries": True}, "max_retries: must be an integer >= -1, got true"),
        ({"initial_retry_delay": -1}, "initial_retry_delay: must be a number >= 0, got -1"),
        ({"max_retry_delay": float("inf")}, "max_retry_delay: must be a number >= 0, got inf"),
        (
            {"initial_retry_delay": 5, "max_retry_delay": 1},
            r"max_retry_delay: must be >= initial_retry_delay \(got 1 < 5\)",
        ),
        ({"retry_delay_growth": 0.5}, "retry_delay_growth: must be a number >= 1, got 0.5"),
        ({"retry_delay_jitter": "lots"}, "retry_delay_jitter must be a finite number"),
    ],
)
def test_bad_retry_arguments_are_named(given: dict[str, Any], message: str) -> None:
    """Each bad value raises ValueError naming the argument, at construction."""
    with pytest.raises(ValueError, match=message):
        ApplicationRunner(URL, "realm1", **given)


def test_wampd_jitter_mode_replaces_autobahns_but_not_both() -> None:
    """jitter="full" spreads delays under the ceiling; giving retry_delay_jitter too is
    ambiguous and refused; an unknown mode lists the choices."""
    settings = HostSettings.from_options({"jitter": "full"})
    p, _ = retry_policy(
        max_retries=None,
        initial_retry_delay=2.0,
        max_retry_delay=None,
        retry_delay_growth=None,
        retry_delay_jitter=None,
        settings=settings,
    )
    assert p.backoff.jitter is Jitter.FULL
    assert p.backoff.delay(1, lambda: 0.5) == 1.0
    with pytest.raises(ValueError, match="not both"):
        ApplicationRunner(URL, jitter="full", retry_delay_jitter=0.1)
    with pytest.raises(ValueError, match='jitter: must be one of "phase", "full", "equal"'):
        ApplicationRunner(URL, jitter="wobbly")


def test_unknown_and_bad_keywords_are_named() -> None:
    """A misspelt wampd keyword is a TypeError with a suggestion, as Python's own is;
    bad values are ValueErrors naming the keyword."""
    with pytest.raises(TypeError, match=r"'ping_intervall'.*did you mean 'ping_interval'"):
        ApplicationRunner(URL, ping_intervall=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ping_timeout: must be > 0 when ping_interval > 0, got 0"):
        ApplicationRunner(URL, ping_interval=1, ping_timeout=0)
    with pytest.raises(ValueError, match="connect_timeout: must be a number > 0, got 0"):
        ApplicationRunner(URL, connect_timeout=0)
    with pytest.raises(ValueError, match="http_listen 'nowhere'"):
        ApplicationRunner(URL, http_listen="nowhere")
    with pytest.raises(ValueError, match="fatal_errors: must be an array of WAMP error URIs"):
        ApplicationRunner(URL, fatal_errors="wamp.error.not_authorized")
    with pytest.raises(ValueError, match="proxy must be a dict with 'host' and 'port'"):
        ApplicationRunner(URL, proxy={"hostname": "x"})


def test_urls_wampd_cannot_serve_are_refused_with_the_reason() -> None:
    """RawSocket URLs as autobahn takes them (and rs+unix); a bad one, ssl= with ws://
    or rs:// (autobahn's own check), and garbage are refused, saying why."""
    for url in ("rs://127.0.0.1:8080", "rss://router:443", "rs://unix:/run/r.sock"):
        assert check_url(url, tls=url.startswith("rss")) == url
    assert check_url("rs+unix:///run/r.sock", tls=False) == "rs+unix:///run/r.sock"
    with pytest.raises(ValueError, match="needs a port"):
        check_url("rs://127.0.0.1", tls=False)
    with pytest.raises(ValueError, match='did you mean "rss:"'):
        check_url("rs://127.0.0.1:8080", tls=True)
    with pytest.raises(ValueError, match='did you mean "wss:"'):
        ApplicationRunner(URL, ssl=object())
    with pytest.raises(ValueError, match="is not a ws:// or wss:// URL"):
        ApplicationRunner("http://127.0.0.1/ws")
    with pytest.raises(ValueError, match="context_factory"):
        Service(URL, "realm1", ApplicationSession, context_factory=object())


# -- a run on a fake reactor --


def state_of(runner: ApplicationRunner) -> State:
    """``runner.state``, read afresh: mypy would carry the narrowing of an ``assert
    runner.state is ...`` past the calls that change the state."""
    return runner.state


def start(
    runner: ApplicationRunner, reactor: FakeReactor, endpoint: Any, **run: Any
) -> tuple[Deferred[None], list[Event]]:
    events: list[Event] = []
    runner.subscribe(events.append)
    d = runner.run(
        ApplicationSession, start_reactor=False, endpoint=endpoint, reactor=reactor, **run
    )
    assert d is not None
    return d, events


def outcome(d: Deferred[None]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the run has not ended"
    return results[0].value if isinstance(results[0], Failure) else results[0]


def test_without_auto_reconnect_one_refused_attempt_ends_the_run() -> None:
    """auto_reconnect=False (autobahn's default): one attempt, then the Deferred fails
    with RetriesExhausted (0 retries) naming the error; the shutdown trigger is gone."""
    reactor, endpoint = FakeReactor(), RefusingEndpoint()
    runner = ApplicationRunner(URL, "realm1", max_retries=5)
    d, events = start(runner, reactor, endpoint)
    error = outcome(d)
    assert isinstance(error, RetriesExhausted)
    assert error.retries == 0
    assert "refused" in str(error)
    assert endpoint.connects == 1
    assert state_of(runner) is State.FAILED
    assert reactor.live == {}
    assert [e.name for e in events][-1] == "retries.exhausted"


def test_max_retries_gives_exactly_that_many_retries_with_the_policys_delays() -> None:
    """max_retries=2: attempts at t=0, 1.25 and 3.0 (1 s and 1.5 s ceilings plus the
    callable jitter's 0.25 s), then RetriesExhausted; nothing is left scheduled."""
    reactor, endpoint = FakeReactor(), RefusingEndpoint()
    runner = ApplicationRunner(URL, "realm1", max_retries=2, retry_delay_jitter=lambda: 0.25)
    d, events = start(runner, reactor, endpoint, auto_reconnect=True)
    assert [e.delay for e in events if e.name == "retry.scheduled"] == [1.25]
    reactor.advance(1.25)
    assert endpoint.connects == 2
    reactor.advance(1.75)
    assert endpoint.connects == 3
    error = outcome(d)
    assert isinstance(error, RetriesExhausted)
    assert error.retries == 2
    assert [e.delay for e in events if e.name == "retry.scheduled"] == [1.25, 1.75]
    assert reactor.getDelayedCalls() == []


def test_reactor_shutdown_stops_retrying_and_ends_the_run_cleanly() -> None:
    """The before-shutdown trigger stops the supervisor in backoff: the run's Deferred
    fires with None, and no attempt follows."""
    reactor, endpoint = FakeReactor(), RefusingEndpoint()
    runner = ApplicationRunner(URL, "realm1", retry_delay_jitter=no_jitter)
    d, _ = start(runner, reactor, endpoint, auto_reconnect=True)
    assert state_of(runner) is State.BACKOFF
    reactor.fire_before_shutdown()
    assert outcome(d) is None
    assert state_of(runner) is State.STOPPED
    reactor.advance(120)
    assert endpoint.connects == 1


def test_stop_ends_the_run_and_a_second_run_may_follow() -> None:
    """stop() in backoff ends the run with None; run() while running is refused."""
    reactor, endpoint = FakeReactor(), RefusingEndpoint()
    runner = ApplicationRunner(URL, "realm1")
    d, _ = start(runner, reactor, endpoint, auto_reconnect=True)
    with pytest.raises(RuntimeError, match="already running"):
        runner.run(ApplicationSession, start_reactor=False, endpoint=endpoint, reactor=reactor)
    runner.stop()
    assert outcome(d) is None
    again = runner.run(ApplicationSession, start_reactor=False, endpoint=endpoint, reactor=reactor)
    assert again is not None
    assert isinstance(outcome(again), RetriesExhausted)


def test_bad_run_arguments_are_named() -> None:
    """log_level outside autobahn's names, and a make that cannot make sessions."""
    runner = ApplicationRunner(URL, "realm1")
    with pytest.raises(ValueError, match="log_level must be one of none, critical"):
        runner.run(ApplicationSession, start_reactor=False, log_level="loud", reactor=FakeReactor())
    with pytest.raises(TypeError, match="make must be a session class"):
        runner.run(42, start_reactor=False, reactor=FakeReactor())  # type: ignore[arg-type]
    # Found before the first attempt, not by every attempt: a make that takes no config.
    with pytest.raises(TypeError, match="cannot be called with a session's config"):
        runner.run(sample_entries.no_config, start_reactor=False, reactor=FakeReactor())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be called with a session's config"):
        Service(URL, "realm1", sample_entries.two_args)  # type: ignore[arg-type]


def test_metrics_registry_and_name_from_keywords() -> None:
    """name= labels the series in the registry the caller passes; a second run of the
    same runner keeps counting in them."""
    registry = CollectorRegistry()
    reactor, endpoint = FakeReactor(), RefusingEndpoint()
    runner = ApplicationRunner(URL, "realm1", name="edge", registry=registry)
    start(runner, reactor, endpoint, auto_reconnect=True)
    value = registry.get_sample_value(
        "wampd_session_state", {"component": "edge", "state": "backoff"}
    )
    assert value == 1.0
    assert runner.registry is registry
    runner.stop()
    # A second run counts on in the same series (a registry takes each series once).
    start(runner, reactor, endpoint, auto_reconnect=True)
    attempts = registry.get_sample_value(
        "wampd_connect_attempts_total", {"component": "edge", "outcome": "failure"}
    )
    assert attempts == 2.0


def test_service_is_a_multiservice_with_the_supervisor() -> None:
    """Service(url, realm, make) builds its supervisor at once; state and events are
    there before it starts; unknown keywords are refused."""
    service = Service(URL, "realm1", ApplicationSession, reactor=FakeReactor(), max_retries=1)
    assert service.state is State.IDLE
    assert len(list(service)) == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        Service(URL, "realm1", ApplicationSession, retries=3)  # type: ignore[call-arg]


# -- pieces --


def test_an_application_makes_a_session_per_connection() -> None:
    """autobahn's Application asserts it makes one session in its life; wampd clears
    app.session before each new one, so reconnecting works."""
    app = Application("com.example")
    make = fresh_sessions(app)
    first = make(ComponentConfig("realm1"))
    second = make(ComponentConfig("realm1"))
    assert first is not second
    assert app.session is second
    with pytest.raises(AssertionError):
        app(ComponentConfig("realm1"))  # what autobahn's own runner would do on a reconnect


def test_twisted_logger_lines_reach_twisted_observers() -> None:
    """Embedded use logs through twisted.logger (namespace wampd), secrets masked."""
    seen: list[LogEvent] = []
    observer = as_observer(seen.append)
    globalLogPublisher.addObserver(observer)
    try:
        twisted_logger(secrets=["s3cret"]).warning("connect.failed", error="bad s3cret")
    finally:
        globalLogPublisher.removeObserver(observer)
    mine = [e for e in seen if e.get("log_namespace") == "wampd"]
    assert len(mine) == 1
    assert mine[0]["log_level"].name == "warn"
    assert mine[0]["wampd_line"] == "event='connect.failed' error='bad ***'"


def test_a_run_that_ends_by_itself_leaves_no_unhandled_error() -> None:
    """The run ends inside the supervisor's last transition; closing up after it must not
    ask the supervisor to stop again (automat refuses a reentrant input, and the refusal
    would surface as an unhandled error in a Deferred)."""
    failures: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    observer = as_observer(observe)
    globalLogPublisher.addObserver(observer)
    try:
        reactor, endpoint = FakeReactor(), RefusingEndpoint()
        d, _ = start(ApplicationRunner(URL, "realm1"), reactor, endpoint)
        assert isinstance(outcome(d), RetriesExhausted)
        del d
        gc.collect()  # an unhandled failure is logged when its Deferred is collected
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
