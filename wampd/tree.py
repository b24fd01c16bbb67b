"""The service tree every entry point runs, and the one place that assembles it.

A :class:`Tree` is a Twisted ``MultiService``: one :class:`~wampd.supervisor.Supervisor`
per component and, when asked, the HTTP listener for ``/metrics`` and the probes (a
``TCPServer`` child, started and stopped with the tree). Logs, metrics and health are
consumers of the tree's one :class:`~wampd.events.EventHub`. ``wampd run``, ``twist
wampd``, :class:`wampd.Service` and :class:`wampd.ApplicationRunner` differ only in what
they build the :class:`Plan` from (the TOML configuration, autobahn's arguments) and in
what they do around the tree (signals, the reactor, the exit status).
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.web.server import Site

from .bridge import Bridge
from .config import BRIDGE_COMPONENT, OUTBOX_COMPONENT, BridgeConfig, OutboxConfig
from .events import EventHub, Observer
from .failover import shuffled
from .gate import Gate
from .health import Health
from .http import make_site, render_registry
from .logs import EventLogger
from .metrics import BridgeMetrics, Metrics, OutboxMetrics, ReactorLag
from .outbound import Poster
from .outbox import SHARED_KEY, NoOutbox, Outbox, Writer
from .supervisor import RetryPolicy, Supervisor
from .systemd import SystemdNotifier
from .wamp import SessionFactory, WampConnector, WampSettings

__all__ = [
    "BridgePlan",
    "ComponentPlan",
    "Listener",
    "OutboxPlan",
    "Plan",
    "Tree",
    "leave_timeout",
]


def leave_timeout(shutdown_timeout: float) -> float:
    """How long a session may take to leave with GOODBYE when ``shutdown_timeout`` bounds
    the whole stop: 80 % of it, so the connections still close within the bound."""
    return max(0.1, shutdown_timeout * 0.8)


@dataclass(frozen=True)
class ComponentPlan:
    """One component: what it runs, where it connects, and how it retries."""

    name: str
    make: SessionFactory
    urls: tuple[str, ...]
    wamp: WampSettings
    policy: RetryPolicy
    #: The sessions' ``config.extra``.
    extra: Mapping[str, Any] | None = None
    #: More keywords for :class:`~wampd.wamp.WampConnector` (tls, serializer instances,
    #: endpoint, websocket_options, runner).
    connector_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything a :class:`Tree` is built from, validated by whoever made it."""

    components: tuple[ComponentPlan, ...]
    #: The most a stop may take; see :func:`leave_timeout`.
    shutdown_timeout: float = 5.0
    #: ``(host, port)`` for the HTTP endpoints (port 0: any free one); None: none.
    http: tuple[str, int] | None = None
    #: Whether to keep metrics without HTTP (a caller's own registry).
    metrics: bool = True
    #: Where the series go; None: a registry of the tree's own.
    registry: CollectorRegistry | None = None
    #: Source of floats in [0, 1) for jitter.
    rand: Callable[[], float] = field(default=random.random, repr=False)
    #: Attempts a second, and at once, when a router components share is back
    #: (:class:`~wampd.gate.Gate`).
    admission_rate: float = 80.0
    admission_burst: int = 5
    probe_interval: float = 0.5
    #: The sidecar bridge (its session is one more component, named ``bridge``); None: off.
    bridge: BridgePlan | None = None
    #: The durable outbox (its session is one more component, named ``outbox``); None: off.
    outbox: OutboxPlan | None = None
    #: How supervisors move between a component's URLs (:mod:`wampd.failover`).
    failover: str = "ordered"
    prefer_first: bool = False


@dataclass(frozen=True)
class BridgePlan:
    """The sidecar bridge: its configuration, and where and how its session connects."""

    config: BridgeConfig
    urls: tuple[str, ...]
    wamp: WampSettings
    policy: RetryPolicy


@dataclass(frozen=True)
class OutboxPlan:
    """The durable outbox: its configuration, and where and how its session connects."""

    config: OutboxConfig
    urls: tuple[str, ...]
    wamp: WampSettings
    policy: RetryPolicy


class Listener(Service):
    """A TCP listener as a child service; :attr:`port` is the listening port while it runs.

    Starting it raises ``CannotListenError`` when the address cannot be bound.
    """

    def __init__(self, host: str, port: int, site: Site, *, reactor: Any) -> None:
        self._host, self._port_number, self._site, self._reactor = host, port, site, reactor
        #: The listening port (an ``IListeningPort``) while the service runs.
        self.port: Any = None

    def startService(self) -> None:
        self.port = self._reactor.listenTCP(self._port_number, self._site, interface=self._host)
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        return None if port is None else maybeDeferred(port.stopListening)

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` while listening."""
        if self.port is None:
            return None
        bound = self.port.getHost()
        return str(bound.host), int(bound.port)


class UnixListener(Service):
    """A unix socket listener (mode 0660) as a child service; a stale socket file left by
    a killed process is replaced, any other file at the path is an error."""

    def __init__(self, path: str, site: Site, *, reactor: Any) -> None:
        self._path, self._site, self._reactor = path, site, reactor
        self.port: Any = None

    def startService(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self._path).st_mode):
                os.unlink(self._path)
        self.port = self._reactor.listenUNIX(self._path, self._site, mode=0o660)
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        return None if port is None else maybeDeferred(port.stopListening)


class _BridgeService(MultiService):
    """The bridge's listener and its session's supervisor. A stop drains the bridge first
    (:meth:`~wampd.bridge.Bridge.drain`, for :data:`DRAIN_SHARE` of the shutdown timeout,
    the listener still answering, with 503), then stops the listener and the session."""

    def __init__(self, bridge: Bridge, drain_timeout: float, reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.bridge, self._drain_timeout = bridge, drain_timeout
        address, site = bridge.config.address, bridge.site()
        assert address is not None
        self.listener: Service = (
            UnixListener(address, site, reactor=reactor)
            if isinstance(address, str)
            else Listener(*address, site, reactor=reactor)
        )
        self.listener.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.poster: Poster | None = None

    def stopService(self) -> Deferred[None]:
        drained = self.bridge.drain(self._drain_timeout)
        stopping: Deferred[Any] = drained.addCallback(lambda _: MultiService.stopService(self))
        if self.poster is not None:
            poster = self.poster
            stopping.addCallback(lambda _: poster.close())
        return stopping.addCallback(lambda _: None)


class _OutboxService(MultiService):
    """The outbox's writer thread, store and session. It starts the writer and opens the
    store before its session connects. A stop waits for the bridge's drain (whose
    publishes are still being committed), then for the sender's publications in flight
    (:data:`OUTBOX_SEND_SHARE` of the shutdown timeout at most), then lets the session
    leave, and closes the store last."""

    def __init__(
        self, outbox: Outbox, writer: Writer, send_timeout: float, bridge: Bridge | None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.outbox, self._writer, self._send_timeout = outbox, writer, send_timeout
        self._bridge = bridge

    def startService(self) -> None:
        self._writer.start()
        self.outbox.start()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        outbox, clock = self.outbox, self.outbox.clock
        drained = self._bridge.drained() if self._bridge is not None else succeed(None)

        def sent(_: object) -> Deferred[None]:
            return _within(outbox.sender.stop(), self._send_timeout, clock)

        stopping: Deferred[Any] = drained.addCallback(sent)
        stopping.addCallback(lambda _: MultiService.stopService(self))
        stopping.addCallback(lambda _: outbox.stop())
        stopping.addCallback(lambda _: self._writer.stop())
        return stopping.addCallback(lambda _: None)


def _within(d: Deferred[None], timeout: float, clock: Any) -> Deferred[None]:
    """``d``, or None after ``timeout`` seconds if it has not fired by then."""
    out: Deferred[None] = Deferred()

    def late() -> None:
        if not out.called:
            out.callback(None)

    timer = clock.callLater(timeout, late)

    def done(_: object) -> None:
        if timer.active():
            timer.cancel()
        if not out.called:
            out.callback(None)

    d.addBoth(done)
    return out


#: The share of ``shutdown.timeout`` the outbox's sender may take to see its publications
#: in flight acknowledged, after the bridge's drain.
OUTBOX_SEND_SHARE = 0.1

#: The share of ``shutdown.timeout`` the bridge's drain may take; its session then has
#: :data:`BRIDGE_LEAVE_SHARE` to leave, so the whole stop stays within :func:`leave_timeout`.
DRAIN_SHARE = 0.6
BRIDGE_LEAVE_SHARE = 0.2


class _Notify(Service):
    """sd_notify as a child service: READY=1 once the tree has started, STOPPING=1 as soon
    as it begins to stop, STATUS= on every state change in between."""

    def __init__(self, notifier: SystemdNotifier, hub: EventHub) -> None:
        self._notifier, self._hub = notifier, hub

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._hub.subscribe(self._notifier)
        self._notifier.ready()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self._notifier.stopping()


def _bridge(
    plan: Plan, b: BridgePlan, reactor: Any, logger: Any, metrics: Metrics | None
) -> tuple[_BridgeService, ComponentPlan]:
    """The bridge's service (its listener; its supervisor goes in it too) and component."""
    bridge_metrics = None
    if metrics is not None:
        bridge_metrics = BridgeMetrics(
            metrics.registry,
            [s.label for s in b.config.subscriptions],
            [p.uri for p in b.config.procedures],
        )
        metrics.add_live(*bridge_metrics.collectors)
    poster = Poster(reactor, max_reply=b.config.max_body)
    bridge = Bridge(
        b.config, clock=reactor, post=poster, rand=plan.rand, logger=logger, metrics=bridge_metrics
    )
    service = _BridgeService(bridge, plan.shutdown_timeout * DRAIN_SHARE, reactor)
    service.poster = poster
    component = ComponentPlan(
        name=BRIDGE_COMPONENT, make=bridge.make_session, urls=b.urls, wamp=b.wamp, policy=b.policy
    )
    return service, component


def _outbox(
    plan: Plan, o: OutboxPlan, reactor: Any, logger: Any, metrics: Metrics | None
) -> tuple[Outbox, Writer, ComponentPlan]:
    """The outbox, its writer thread and its session's component."""
    holder: list[Outbox] = []

    def read() -> tuple[float, float, float, float]:
        box = holder[0]
        return box.stats.messages, box.stats.bytes, box.oldest_age(), box.stats.dead

    outbox_metrics = None
    if metrics is not None:
        outbox_metrics = OutboxMetrics(metrics.registry, read)
        metrics.add_live(*outbox_metrics.collectors)
    writer = Writer(reactor)
    outbox = Outbox(
        o.config, clock=reactor, run=writer, logger=logger, metrics=outbox_metrics, rand=plan.rand
    )
    holder.append(outbox)
    component = ComponentPlan(
        name=OUTBOX_COMPONENT, make=outbox.make_session, urls=o.urls, wamp=o.wamp, policy=o.policy
    )
    return outbox, writer, component


class Tree(MultiService):
    """The supervisors of :class:`Plan`'s components, their event hub, health, metrics,
    logs and (optionally) HTTP listener and systemd notifier, as one service.

    Children start in this order: the HTTP listener (so an address that cannot be bound
    fails the start before any session connects), the supervisors, the notifier; they stop
    in the reverse order.

    :param logger: a structlog logger for the events (:mod:`wampd.logs`).
    :param environ: where systemd says whether it wants sd_notify (``NOTIFY_SOCKET``);
        None for programs that embed wampd.
    :param metrics: the series of an earlier tree to keep counting in (a registry takes
        each series once).
    :param log_lines_dropped: for ``wampd_log_lines_dropped_total``.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        reactor: Any,
        logger: Any,
        environ: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        log_lines_dropped: Callable[[], float] = lambda: 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        names = [component.name for component in plan.components]
        if plan.bridge is not None:
            names.append(BRIDGE_COMPONENT)
        if plan.outbox is not None:
            names.append(OUTBOX_COMPONENT)
        self.plan = plan
        self.hub = EventHub()
        self.health = Health(names)
        self.hub.subscribe(self.health)
        self.hub.subscribe(EventLogger(logger))
        if metrics is None and (plan.metrics or plan.http is not None):
            registry = plan.registry if plan.registry is not None else CollectorRegistry()
            metrics = Metrics(registry, names, log_lines_dropped=log_lines_dropped)
        elif metrics is not None:
            for name in names:
                if name not in metrics.components:
                    metrics.add_component(name)
        #: The series (None when metrics are off).
        self.metrics = metrics
        self.registry = metrics.registry if metrics is not None else None
        if metrics is not None:
            self.hub.subscribe(metrics)
        #: The HTTP endpoints' listener, a child service (None without ``plan.http``).
        self.listener: Listener | None = None
        if metrics is not None:
            ReactorLag(reactor, metrics.reactor_lag.observe).setServiceParent(self)  # type: ignore[no-untyped-call]
        if plan.http is not None and metrics is not None:
            host, port = plan.http
            # A registry of the tree's own holds only wampd's series: answer from the
            # rendering of the last change. A caller's may hold anything: render it all.
            own = plan.registry is None
            site = make_site(
                metrics.exposition if own else render_registry(metrics.registry),
                self.health,
                reactor,
            )
            self.listener = Listener(host, port, site, reactor=reactor)
            self.listener.setServiceParent(self)  # type: ignore[no-untyped-call]
        #: The sidecar bridge (None without ``plan.bridge``), and its listener.
        self.bridge: Bridge | None = None
        self.bridge_listener: Service | None = None
        #: The durable outbox (None without ``plan.outbox``).
        self.outbox: Outbox | None = None
        held = self._own_sessions(plan, reactor, logger, metrics)
        components = [*plan.components, *(component for component, _ in held.values())]
        # What hosted components find in config.shared.
        shared = {SHARED_KEY: self.outbox if self.outbox is not None else NoOutbox()}
        self.supervisors: dict[str, Supervisor] = {}
        #: ``shuffle``: each URL list's order, drawn once for every supervisor of the tree.
        self._orders: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Components that reach the same router (URLs and realm) share what they know of it.
        sharing = Counter((c.urls, c.wamp.realm) for c in components)
        gates = {
            key: Gate(
                reactor, plan.rand, plan.admission_rate, plan.admission_burst, plan.probe_interval
            )
            for key, n in sharing.items()
            if n > 1
        }
        for component in components:
            connector = WampConnector(
                reactor,
                component.make,
                component.wamp,
                component.extra,
                shared=shared,
                **component.connector_options,
            )
            supervisor = Supervisor(
                component.name,
                connector,
                self._order(component.urls, plan),
                policy=component.policy,
                clock=reactor,
                hub=self.hub,
                rand=plan.rand,
                connect_timeout=component.wamp.connect_timeout,
                leave_timeout=(
                    max(0.1, plan.shutdown_timeout * BRIDGE_LEAVE_SHARE)
                    if component.name in held
                    else leave_timeout(plan.shutdown_timeout)
                ),
                gate=gates.get((component.urls, component.wamp.realm)),
                failover="round_robin" if plan.failover == "round_robin" else "ordered",
                prefer_first=plan.prefer_first,
            )
            # The bridge's session stops after its drain: a child of the bridge's service;
            # the outbox's after its sender: a child of the outbox's.
            parent = held[component.name][1] if component.name in held else self
            supervisor.setServiceParent(parent)  # type: ignore[no-untyped-call]
            self.supervisors[component.name] = supervisor
        notifier = (
            None
            if environ is None
            else SystemdNotifier.from_environ(environ, clock=reactor, states=self.health.states)
        )
        if notifier is not None:
            _Notify(notifier, self.hub).setServiceParent(self)  # type: ignore[no-untyped-call]

    def _order(self, urls: tuple[str, ...], plan: Plan) -> tuple[str, ...]:
        """``urls`` in the order the supervisors try them: as given, or (``shuffle``) in
        one random order the whole tree shares."""
        if plan.failover != "shuffle":
            return urls
        if urls not in self._orders:
            self._orders[urls] = shuffled(urls, plan.rand)
        return self._orders[urls]

    def _own_sessions(
        self, plan: Plan, reactor: Any, logger: Any, metrics: Metrics | None
    ) -> dict[str, tuple[ComponentPlan, MultiService]]:
        """The bridge's and the outbox's services (children of the tree), and each one's
        session, whose supervisor goes in that service."""
        own: dict[str, tuple[ComponentPlan, MultiService]] = {}
        outbox_parts = None
        if plan.outbox is not None:
            outbox_parts = _outbox(plan, plan.outbox, reactor, logger, metrics)
            self.outbox = outbox_parts[0]
            self.health.extras["outbox"] = self.outbox.report
        bridge_service = None
        if plan.bridge is not None:
            bridge_service, bridge_component = _bridge(plan, plan.bridge, reactor, logger, metrics)
            self.bridge, self.bridge_listener = bridge_service.bridge, bridge_service.listener
            self.bridge.outbox = self.outbox
            own[BRIDGE_COMPONENT] = (bridge_component, bridge_service)
        if outbox_parts is not None:
            outbox, writer, outbox_component = outbox_parts
            # Added before the bridge's service: a stop reaches the bridge first (its drain
            # still commits to the outbox), and the outbox waits for that drain.
            outbox_service = _OutboxService(
                outbox, writer, plan.shutdown_timeout * OUTBOX_SEND_SHARE, self.bridge
            )
            outbox_service.setServiceParent(self)  # type: ignore[no-untyped-call]
            own[OUTBOX_COMPONENT] = (outbox_component, outbox_service)
        if bridge_service is not None:
            bridge_service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return own

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor of a one-component tree (the drop-ins')."""
        (supervisor,) = self.supervisors.values()
        return supervisor

    @property
    def http_port(self) -> int | None:
        """The port ``/metrics`` and the probes listen on, while they do."""
        address = None if self.listener is None else self.listener.address
        return None if address is None else address[1]

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with every :class:`~wampd.events.Event`; returns an unsubscribe."""
        return self.hub.subscribe(observer)

    # Twisted's service methods, typed once here for every shell.

    def startService(self) -> None:
        """Start the listener, the supervisors and the notifier, in that order."""
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        """Stop them in the reverse order; fires when every session has left."""
        stopping: Deferred[Any] = super().stopService()  # type: ignore[no-untyped-call]
        return stopping.addCallback(lambda _: None)
