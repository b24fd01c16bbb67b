"""Each supervisor event updates exactly the expected Prometheus series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.task import Clock

from wampd.events import Event, State, names
from wampd.metrics import LEAVE_REASONS, Metrics, ReactorLag


def fresh() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, ["a", "b"]), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def ev(name: str, previous: State, state: State, **fields: object) -> Event:
    return Event(name=name, component="a", previous=previous, state=state, time=1000.0, **fields)  # type: ignore[arg-type]


#: Every sample's value by (name, sorted labels).
Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(registry: CollectorRegistry) -> Snapshot:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def changes(
    registry: CollectorRegistry, before: Snapshot, event: Event, metrics: Metrics
) -> Snapshot:
    metrics(event)
    after = snapshot(registry)
    return {k: v for k, v in after.items() if before.get(k) != v}


def test_every_series_exists_at_start_up() -> None:
    """Counters at 0, the state one-hot on idle, for every component, before any event."""
    _, registry = fresh()
    for c in ("a", "b"):
        assert value(registry, "wampd_session_up", component=c) == 0
        assert value(registry, "wampd_session_joins_total", component=c) == 0
        assert value(registry, "wampd_keepalive_timeouts_total", component=c) == 0
        assert value(registry, "wampd_retry_delay_seconds", component=c) == 0
        assert value(registry, "wampd_consecutive_failures", component=c) == 0
        assert value(registry, "wampd_last_join_timestamp_seconds", component=c) == 0
        assert value(registry, "wampd_outage_duration_seconds_count", component=c) == 0
        for outcome in ("success", "failure", "fatal"):
            assert (
                value(registry, "wampd_connect_attempts_total", component=c, outcome=outcome) == 0
            )
        # A leave reason's series appears with its first leave (eight per component
        # would be most of a scrape, and nearly all of them stay at 0).
        for reason in LEAVE_REASONS:
            assert value(registry, "wampd_session_leaves_total", component=c, reason=reason) is None
        states = {
            s.value: value(registry, "wampd_session_state", component=c, state=s.value)
            for s in State
        }
        assert states == {s.value: (1 if s is State.IDLE else 0) for s in State}
    # One connect-duration histogram for the process: its components share the link.
    assert value(registry, "wampd_connect_duration_seconds_count") == 0
    assert value(registry, "wampd_connect_duration_seconds_count", component="a") is None
    info = [s for m in registry.collect() for s in m.samples if s.name == "wampd_build_info"]
    assert len(info) == 1 and info[0].value == 1
    assert set(info[0].labels) == {
        "version",
        "autobahn_version",
        "twisted_version",
        "python_version",
    }


def test_joined_updates_exactly_its_series() -> None:
    """session.joined: up, one-hot state, joins, success, last join, both histograms."""
    metrics, registry = fresh()
    metrics(ev(names.CONNECT_ATTEMPT, State.IDLE, State.CONNECTING))
    before = snapshot(registry)
    event = ev(
        names.SESSION_JOINED,
        State.CONNECTING,
        State.JOINED,
        connect_duration=0.02,
        outage_duration=3.0,
    )
    changed = changes(registry, before, event, metrics)
    names_changed = {name for name, _ in changed}
    assert names_changed == {
        "wampd_session_state",
        "wampd_session_up",
        "wampd_session_joins_total",
        "wampd_connect_attempts_total",
        "wampd_last_join_timestamp_seconds",
        "wampd_connect_duration_seconds_bucket",
        "wampd_connect_duration_seconds_count",
        "wampd_connect_duration_seconds_sum",
        "wampd_outage_duration_seconds_bucket",
        "wampd_outage_duration_seconds_count",
        "wampd_outage_duration_seconds_sum",
    }
    assert all(
        dict(labels).get("component") == "a"
        for name, labels in changed
        if not name.startswith("wampd_connect_duration")
    )
    assert value(registry, "wampd_connect_duration_seconds_count") == 1
    assert value(registry, "wampd_session_up", component="a") == 1
    assert value(registry, "wampd_session_state", component="a", state="joined") == 1
    assert value(registry, "wampd_session_state", component="a", state="connecting") == 0
    assert value(registry, "wampd_connect_attempts_total", component="a", outcome="success") == 1
    assert value(registry, "wampd_last_join_timestamp_seconds", component="a") == 1000.0


def test_lost_session_then_retry() -> None:
    """session.left counts its reason; retry.scheduled sets the delay until the next attempt."""
    metrics, registry = fresh()
    metrics(ev(names.SESSION_JOINED, State.CONNECTING, State.JOINED))
    metrics(
        ev(
            names.SESSION_LEFT,
            State.JOINED,
            State.JOINED,
            failures=1,
            reason="wamp.close.transport_lost",
        )
    )
    assert (
        value(
            registry,
            "wampd_session_leaves_total",
            component="a",
            reason="wamp.close.transport_lost",
        )
        == 1
    )
    assert value(registry, "wampd_session_up", component="a") == 1  # still joined until...
    metrics(ev(names.RETRY_SCHEDULED, State.JOINED, State.BACKOFF, failures=1, delay=2.5))
    assert value(registry, "wampd_session_up", component="a") == 0
    assert value(registry, "wampd_retry_delay_seconds", component="a") == 2.5
    assert value(registry, "wampd_consecutive_failures", component="a") == 1
    metrics(ev(names.CONNECT_ATTEMPT, State.BACKOFF, State.CONNECTING, failures=1))
    assert value(registry, "wampd_retry_delay_seconds", component="a") == 0
    assert value(registry, "wampd_consecutive_failures", component="a") == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("wamp.close.killed", "wamp.close.killed"),
        ("com.example.whatever", "other"),
        (None, "other"),
    ],
)
def test_leave_reasons_are_bounded(reason: str | None, label: str) -> None:
    """Unknown close reasons are counted as other: no unbounded labels."""
    metrics, registry = fresh()
    metrics(ev(names.SESSION_LEFT, State.JOINED, State.JOINED, reason=reason))
    assert value(registry, "wampd_session_leaves_total", component="a", reason=label) == 1


def test_attempt_outcomes() -> None:
    """connect.failed counts a failure, fatal.error a fatal attempt, nothing twice."""
    metrics, registry = fresh()
    metrics(ev(names.CONNECT_FAILED, State.CONNECTING, State.CONNECTING, failures=1))
    metrics(ev(names.FATAL_ERROR, State.CONNECTING, State.FAILED, failures=2))
    assert value(registry, "wampd_connect_attempts_total", component="a", outcome="failure") == 1
    assert value(registry, "wampd_connect_attempts_total", component="a", outcome="fatal") == 1
    assert value(registry, "wampd_session_state", component="a", state="failed") == 1


def test_keepalive_timeouts_are_counted() -> None:
    """keepalive.timeout increments its counter and nothing else."""
    metrics, registry = fresh()
    metrics(ev(names.SESSION_JOINED, State.CONNECTING, State.JOINED))
    before = snapshot(registry)
    changed = changes(
        registry,
        before,
        ev(names.KEEPALIVE_TIMEOUT, State.JOINED, State.JOINED, keepalive=True),
        metrics,
    )
    assert list(changed) == [("wampd_keepalive_timeouts_total", (("component", "a"),))]


def test_outage_over_resets_consecutive_failures() -> None:
    """session.stable brings the failure gauge back to 0."""
    metrics, registry = fresh()
    metrics(ev(names.SESSION_JOINED, State.CONNECTING, State.JOINED, failures=3))
    assert value(registry, "wampd_consecutive_failures", component="a") == 3
    metrics(ev(names.SESSION_STABLE, State.JOINED, State.JOINED, failures=0))
    assert value(registry, "wampd_consecutive_failures", component="a") == 0


OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def test_a_scrape_between_events_reuses_the_rendering() -> None:
    """Between two events a scrape re-renders only the live series; an event makes the next
    scrape render the event-driven ones again. The body is always what the registry says."""
    metrics, registry = fresh()
    first, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    cached = metrics._rendered[content_type][1]
    again, _ = metrics.exposition()
    assert again == first and metrics._rendered[content_type][1] is cached  # not rendered again
    assert b'wampd_session_up{component="a"} 0.0' in first
    metrics(ev(names.SESSION_JOINED, State.CONNECTING, State.JOINED))
    after, _ = metrics.exposition()
    assert b'wampd_session_up{component="a"} 1.0' in after
    assert metrics._rendered[content_type][1] is not cached
    assert sorted(after.splitlines()) == sorted(generate_latest(registry).splitlines())


def test_live_series_are_fresh_in_every_scrape() -> None:
    """Dropped log lines and reactor lag change without events; each scrape reads them."""
    dropped = [0.0]
    metrics = Metrics(CollectorRegistry(), ["a"], log_lines_dropped=lambda: dropped[0])
    metrics.exposition()
    dropped[0] = 7
    metrics.reactor_lag.observe(0.2)
    body, _ = metrics.exposition()
    assert b"wampd_log_lines_dropped_total 7.0" in body
    assert b"wampd_reactor_lag_seconds_count 1.0" in body


def test_openmetrics_scrape_ends_once_with_eof() -> None:
    """The two parts of an OpenMetrics body make one document: a single # EOF, at the end."""
    metrics, _ = fresh()
    metrics.exposition(OPENMETRICS)
    body, content_type = metrics.exposition(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert body.count(b"# EOF") == 1 and body.endswith(b"# EOF\n")
    assert b"wampd_session_up" in body and b"wampd_reactor_lag_seconds" in body
    plain, _ = metrics.exposition("text/plain")
    assert b"# EOF" not in plain


def test_reactor_lag_observes_how_late_the_timer_fires() -> None:
    """A timer due every 0.25 s: on time it observes 0; a reactor held for 0.4 s past the
    due time shows as 0.4 s; stopping cancels the timer."""
    clock = Clock()
    seen: list[float] = []
    lag = ReactorLag(clock, seen.append, interval=0.25)
    lag.startService()
    clock.advance(0.25)
    assert seen == [0.0]
    clock.advance(0.65)  # due at 0.5, fired at 0.9
    assert seen == [0.0, pytest.approx(0.4)]
    lag.stopService()
    assert clock.getDelayedCalls() == []


def test_a_component_costs_at_most_half_the_bytes_it_used_to() -> None:
    """What one component adds to a scrape: at most half the 4,063 bytes (54 lines) it
    added before the series were cut (b6c0538, names like these, no *_created samples)."""
    names = [f"component-{i:03d}" for i in range(100)]

    def size(components: list[str]) -> int:
        body, _ = Metrics(CollectorRegistry(), components).exposition()
        # As the daemon serves it: disable_created_metrics() (a process-wide switch).
        return sum(len(line) + 1 for line in body.splitlines() if b"_created" not in line)

    per_component = (size(names) - size(names[:1])) / 99
    assert per_component <= 4063 / 2, per_component
