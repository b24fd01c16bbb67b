"""Prometheus metrics: a consumer of the supervisor event stream.

:class:`Metrics` registers every series in a ``CollectorRegistry`` the daemon owns (never
the global one) and creates each per-component series at start-up, counters at 0, so a
dashboard never shows "no data" for a session that has not failed yet. Label values are
bounded: components are configured, states are the state machine's, outcomes are
``success``/``failure``/``fatal``, and leave reasons not in :data:`LEAVE_REASONS` count as
``other`` (a reason's series appears with its first leave).

The series change only when an event arrives, so :meth:`Metrics.exposition` renders them
once per change and answers every scrape in between from those bytes; only the few series
read at scrape time (dropped log lines, reactor lag) are rendered each time. A scrape of an
idle daemon costs the reactor next to nothing, whatever the number of components.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import autobahn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from twisted.application.service import Service

import twisted

from ._version import __version__
from .events import Event, State, names
from .wamp import COMPONENT_ERROR_REASON

__all__ = ["BRIDGE_ROUTES", "LEAVE_REASONS", "BridgeMetrics", "Metrics", "ReactorLag"]

#: The close reasons counted under their own label; anything else is ``other``.
LEAVE_REASONS = (
    "wamp.close.normal",
    "wamp.close.goodbye_and_out",
    "wamp.close.system_shutdown",
    "wamp.close.close_realm",
    "wamp.close.killed",
    "wamp.close.transport_lost",
    COMPONENT_ERROR_REASON,
    "other",
)

OUTCOMES = ("success", "failure", "fatal")

_M = TypeVar("_M", bound=MetricWrapperBase)


class _ReadCounter(Collector):
    """A counter whose value is read at scrape time from something that counts already."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


class _Part:
    """Some of the collectors, as the exposition encoders take a registry."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


_EOF = b"# EOF\n"  # OpenMetrics' last line


class Metrics:
    """Keeps the series of :mod:`wampd.metrics` up to date from supervisor events.

    :param log_lines_dropped: how many log lines could not be written so far
        (:attr:`wampd.logs.LineOutput.dropped`); 0 for logs that go elsewhere.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        components: Iterable[str],
        *,
        log_lines_dropped: Callable[[], float] = lambda: 0,
    ) -> None:
        self.registry = registry
        dropped = _ReadCounter(
            "wampd_log_lines_dropped",
            "Log lines that could not be written (standard output closed or gone).",
            log_lines_dropped,
        )
        registry.register(dropped)
        self.reactor_lag = Histogram(
            "wampd_reactor_lag_seconds",
            "How late a periodic reactor timer fired: the reactor was busy for that long, "
            "and every session's timers, keepalives and calls waited.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.build_info = Gauge(
            "wampd_build_info",
            "wampd's build: always 1, the versions are labels.",
            ["version", "autobahn_version", "twisted_version", "python_version"],
            registry=registry,
        )

        def series(kind: type[_M], name: str, doc: str, *labels: str, **kw: Any) -> _M:
            return kind(name, doc, ["component", *labels], registry=registry, **kw)

        self.state = series(
            Gauge,
            "wampd_session_state",
            "1 for the state each supervised session is in, 0 for the others.",
            "state",
        )
        self.up = series(Gauge, "wampd_session_up", "1 when the session is joined to its realm.")
        self.joins = series(Counter, "wampd_session_joins", "Sessions that joined.")
        self.leaves = series(
            Counter, "wampd_session_leaves", "Sessions that ended, by WAMP close reason.", "reason"
        )
        self.attempts = series(
            Counter,
            "wampd_connect_attempts",
            "Finished connection attempts by outcome (success, failure, fatal).",
            "outcome",
        )
        self.retry_delay = series(
            Gauge, "wampd_retry_delay_seconds", "Delay of the retry now scheduled; 0 when none is."
        )
        self.failures = series(
            Gauge,
            "wampd_consecutive_failures",
            "Failures in the current outage (0 when there is none).",
        )
        self.last_join = series(
            Gauge,
            "wampd_last_join_timestamp_seconds",
            "Unix time of the last join (0 before the first).",
        )
        # One per process, not per component: the components of one daemon share its link.
        self.connect_duration = Histogram(
            "wampd_connect_duration_seconds",
            "Seconds from the start of an attempt to the join, over every component.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.outage_duration = series(
            Histogram,
            "wampd_outage_duration_seconds",
            "Seconds from the start of an outage to the join that ended it.",
            buckets=(1.0, 5.0, 15.0, 60.0, 300.0, 1800.0),
        )
        self.keepalive_timeouts = series(
            Counter,
            "wampd_keepalive_timeouts",
            "Connections dropped because a keepalive PONG did not come back in time.",
        )
        self.build_info.labels(
            __version__,
            getattr(autobahn, "__version__", "unknown"),
            twisted.__version__,
            platform.python_version(),
        ).set(1)
        #: The components whose series exist.
        self.components: set[str] = set()
        #: Events (and components) so far: the series have changed when this has.
        self._changes = 0
        self._rendered: dict[str, tuple[int, bytes]] = {}
        for component in components:
            self.add_component(component)
        self._live = _Part(dropped, self.reactor_lag)
        self._events = _Part(
            self.build_info,
            self.state,
            self.up,
            self.joins,
            self.leaves,
            self.attempts,
            self.retry_delay,
            self.failures,
            self.last_join,
            self.connect_duration,
            self.outage_duration,
            self.keepalive_timeouts,
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and content type of a scrape that sent ``accept``: the series that
        events change rendered once per change, the live ones each time."""
        encoder, content_type = choose_encoder(accept)
        changes, body = self._rendered.get(content_type, (-1, b""))
        if changes != self._changes:
            body = encoder(self._events).removesuffix(_EOF)
            self._rendered[content_type] = (self._changes, body)
        return body + encoder(self._live), content_type

    def add_live(self, *collectors: Collector) -> None:
        """Render ``collectors`` at every scrape too (series that change without events)."""
        self._live = _Part(*self._live.collectors, *collectors)

    def add_component(self, component: str) -> None:
        """Create ``component``'s series (state idle, counters at 0)."""
        self.components.add(component)
        self._changes += 1
        for state in State:
            self.state.labels(component, state.value).set(1 if state is State.IDLE else 0)
        for outcome in OUTCOMES:
            self.attempts.labels(component, outcome)
        for gauge in (self.up, self.retry_delay, self.failures, self.last_join):
            gauge.labels(component).set(0)
        for metric in (self.joins, self.outage_duration):
            metric.labels(component)
        self.keepalive_timeouts.labels(component)

    def __call__(self, event: Event) -> None:
        c = event.component
        self._changes += 1
        self.failures.labels(c).set(event.failures)
        if event.changed:
            self.state.labels(c, event.previous.value).set(0)
            self.state.labels(c, event.state.value).set(1)
            self.up.labels(c).set(1 if event.state is State.JOINED else 0)
            if event.state is not State.BACKOFF:
                self.retry_delay.labels(c).set(0)
        if event.name == names.SESSION_JOINED:
            self.joins.labels(c).inc()
            self.attempts.labels(c, "success").inc()
            self.last_join.labels(c).set(event.time)
            if event.connect_duration is not None:
                self.connect_duration.observe(event.connect_duration)
            if event.outage_duration is not None:
                self.outage_duration.labels(c).observe(event.outage_duration)
        elif event.name == names.CONNECT_FAILED:
            self.attempts.labels(c, "failure").inc()
        elif event.name == names.FATAL_ERROR:
            self.attempts.labels(c, "fatal").inc()
        elif event.name == names.SESSION_LEFT:
            reason = event.reason if event.reason in LEAVE_REASONS else "other"
            self.leaves.labels(c, reason).inc()
        elif event.name == names.RETRY_SCHEDULED:
            self.retry_delay.labels(c).set(event.delay or 0)
        elif event.name == names.KEEPALIVE_TIMEOUT:
            self.keepalive_timeouts.labels(c).inc()


#: The bridge's routes, as ``wampd_bridge_requests_total`` labels them.
BRIDGE_ROUTES = (
    "/v1/publish",
    "/v1/publish/batch",
    "/v1/call",
    "/v1/ready",
    "/publish",
    "/call",
    "other",
)


class BridgeMetrics:
    """The sidecar bridge's series. They change with every request, so they are rendered
    at each scrape (a few dozen series, whatever the request rate), next to the live ones.

    Label values are bounded: routes are :data:`BRIDGE_ROUTES`, codes the statuses the
    bridge answers with, subscriptions and procedures those configured, outcomes those of
    :mod:`wampd.webhooks` and :mod:`wampd.callbacks`.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        subscriptions: Iterable[str] = (),
        procedures: Iterable[str] = (),
    ) -> None:
        self.requests = Counter(
            "wampd_bridge_requests",
            "Requests the bridge answered, by route and HTTP status.",
            ["route", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "wampd_bridge_request_duration_seconds",
            "Seconds from a request's arrival to its answer, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=registry,
        )
        self.deliveries = Counter(
            "wampd_bridge_deliveries",
            "Webhook outcomes of events, by subscription: delivered, retried (an attempt "
            "to be made again), dead_lettered, dropped (queue full), abandoned (at stop).",
            ["subscription", "outcome"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "wampd_bridge_queue_depth",
            "Events accepted for a subscription and not delivered yet.",
            ["subscription"],
            registry=registry,
        )
        self.invocations = Counter(
            "wampd_bridge_invocations",
            "Invocations answered by the app's HTTP callback, by procedure and outcome: ok, "
            "error, runtime_error, timeout, unavailable, cancelled.",
            ["procedure", "outcome"],
            registry=registry,
        )
        self.invocation_duration = Histogram(
            "wampd_bridge_invocation_duration_seconds",
            "Seconds the app took to answer an invocation, by procedure.",
            ["procedure"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=registry,
        )
        for route in BRIDGE_ROUTES[:-1]:
            self.requests.labels(route, "200")
            self.request_duration.labels(route)
        for subscription in subscriptions:
            for outcome in ("delivered", "retried", "dead_lettered", "dropped", "abandoned"):
                self.deliveries.labels(subscription, outcome)
            self.queue_depth.labels(subscription).set(0)
        for procedure in procedures:
            for outcome in ("ok", "error", "timeout", "unavailable"):
                self.invocations.labels(procedure, outcome)
            self.invocation_duration.labels(procedure)

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return (
            self.requests,
            self.request_duration,
            self.deliveries,
            self.queue_depth,
            self.invocations,
            self.invocation_duration,
        )


class _ReadGauge(Collector):
    """A gauge whose value is read at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, value=self._read())


#: Why the outbox dropped a message it had stored, and why it refused one.
OUTBOX_DROP_REASONS = ("evicted", "expired")
OUTBOX_REJECT_REASONS = ("full", "unavailable")


class OutboxMetrics:
    """The durable outbox's series; the gauges are read from the outbox at each scrape.

    :param read: ``(messages, bytes, oldest age in seconds, dead letters)`` now.
    """

    def __init__(
        self, registry: CollectorRegistry, read: Callable[[], tuple[float, float, float, float]]
    ) -> None:
        self._read = read
        self.gauges = (
            _ReadGauge(
                "wampd_outbox_messages",
                "Messages stored and not yet published.",
                lambda: self._read()[0],
            ),
            _ReadGauge(
                "wampd_outbox_bytes",
                "Bytes of the messages stored (payload and topic).",
                lambda: self._read()[1],
            ),
            _ReadGauge(
                "wampd_outbox_oldest_age_seconds",
                "Seconds the oldest stored message has waited; 0 when there is none.",
                lambda: self._read()[2],
            ),
            _ReadGauge(
                "wampd_outbox_dead_letters",
                "Dead letters in the store now.",
                lambda: self._read()[3],
            ),
        )
        self.available = Gauge(
            "wampd_outbox_available",
            "1 while the store can be written; 0 while intake is refused (503).",
            registry=None,
        )
        self.enqueued = Counter(
            "wampd_outbox_enqueued", "Messages committed to the store.", registry=None
        )
        self.published = Counter(
            "wampd_outbox_published",
            "Messages acknowledged by the router and removed from the store.",
            registry=None,
        )
        self.dropped = Counter(
            "wampd_outbox_dropped",
            "Stored messages dropped unpublished: evicted (when_full = drop_oldest) or "
            "expired (ttl).",
            ["reason"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "wampd_outbox_deadlettered",
            "Messages the router refused for good, moved to the dead letters.",
            registry=None,
        )
        self.rejected = Counter(
            "wampd_outbox_rejected",
            "Messages refused at intake, never stored: full (when_full = reject) or "
            "unavailable (the store cannot be written).",
            ["reason"],
            registry=None,
        )
        self.store_resets = Counter(
            "wampd_outbox_store_resets",
            "Stores that failed to open or SQLite's check, moved aside for a fresh one.",
            registry=None,
        )
        self.commit_duration = Histogram(
            "wampd_outbox_commit_duration_seconds",
            "Seconds each store transaction took, its commit included.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=None,
        )
        for reason in OUTBOX_DROP_REASONS:
            self.dropped.labels(reason)
        for reason in OUTBOX_REJECT_REASONS:
            self.rejected.labels(reason)
        for collector in self.collectors:
            registry.register(collector)

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return (
            *self.gauges,
            self.available,
            self.enqueued,
            self.published,
            self.dropped,
            self.dead_lettered,
            self.rejected,
            self.store_resets,
            self.commit_duration,
        )


class ReactorLag(Service):
    """Observes how late a timer due every ``interval`` seconds fires, into ``observe``: a
    callback that holds the reactor (a slow scrape, a component computing in its handler)
    shows up as lag, before it shows up as missed keepalives."""

    def __init__(
        self, clock: Any, observe: Callable[[float], None], interval: float = 0.25
    ) -> None:
        self._clock, self._observe, self._interval = clock, observe, interval
        self._call: Any = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._schedule()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._fired)

    def _fired(self) -> None:
        self._observe(max(0.0, self._clock.seconds() - self._due))
        self._schedule()
