"""``wampd.ApplicationRunner``: autobahn's ``ApplicationRunner``, on wampd's supervisor.

Change one import::

    from wampd import ApplicationRunner     # was: from autobahn.twisted.wamp import ...

    runner = ApplicationRunner("ws://127.0.0.1:8080/ws", "realm1", max_retries=5)
    runner.run(MyComponent, auto_reconnect=True)

The constructor and :meth:`ApplicationRunner.run` take autobahn's arguments, with the
semantics autobahn documents, and keep none of its reconnect defects: the reconnecting is
done by one :class:`~wampd.supervisor.Supervisor`, as in the daemon. What differs, and
why, is in the README's "Coming from ApplicationRunner".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from .embed import Arguments, HostOptions, default_reactor
from .events import EventHub, Observer, State
from .logs import log_to_stdout, twisted_logger
from .tree import Tree
from .wamp import SessionFactory

__all__ = ["ApplicationRunner"]

#: autobahn's (txaio's) level names, and the wampd level each one means.
_LOG_LEVELS = {
    "none": "critical",
    "critical": "critical",
    "error": "error",
    "warn": "warn",
    "warning": "warn",
    "info": "info",
    "debug": "debug",
    "trace": "debug",
}


class ApplicationRunner:
    """Runs one WAMP component and keeps it joined; a drop-in for autobahn's.

    Positional and keyword arguments are autobahn's (``websocket_options`` included);
    wampd's own are keyword-only, see :class:`~wampd.embed.HostSettings` (``name``,
    ``jitter``, ``fatal_errors``, ``stable_after``, ``ping_interval``, ``ping_timeout``,
    ``connect_timeout``, ``shutdown_timeout``, ``http_listen``, ``registry``, ``rand``).
    Every argument is checked here; a bad one raises ``ValueError`` or ``TypeError``
    naming it.

    :param max_retries: retries per outage: ``None`` or ``-1`` no limit, ``0`` none,
        ``N`` exactly N. An outage ends when a session stays joined ``stable_after`` s.
    :param initial_retry_delay: seconds before the first retry (default 1.0).
    :param max_retry_delay: no delay is longer (default 60).
    :param retry_delay_growth: factor from one retry's delay to the next (default 1.5).
    :param retry_delay_jitter: seconds of noise added to each delay, under the cap: a
        number multiplies ``random.random()``, a 0-argument callable is called (default
        ``random.random``). ``jitter=`` chooses one of wampd's modes instead.
    """

    def __init__(
        self,
        url: str,
        realm: str | None = None,
        extra: dict[str, Any] | None = None,
        serializers: Sequence[Any] | None = None,
        ssl: Any = None,
        proxy: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        websocket_options: Mapping[str, Any] | None = None,
        max_retries: int | None = None,
        initial_retry_delay: float | None = None,
        max_retry_delay: float | None = None,
        retry_delay_growth: float | None = None,
        retry_delay_jitter: float | Callable[[], float] | None = None,
        **options: Unpack[HostOptions],
    ) -> None:
        self._arguments = Arguments.make(
            url,
            realm=realm,
            tls=ssl,
            options=options,
            serializers=serializers,
            proxy=proxy,
            headers=headers,
            max_retries=max_retries,
            initial_retry_delay=initial_retry_delay,
            max_retry_delay=max_retry_delay,
            retry_delay_growth=retry_delay_growth,
            retry_delay_jitter=retry_delay_jitter,
        )
        if websocket_options is not None and not isinstance(websocket_options, Mapping):
            raise ValueError(f"websocket_options must be a dict, got {websocket_options!r}")
        self.url = self._arguments.url
        self.realm = realm
        #: The sessions' ``config.extra`` (one dict, shared, as autobahn does). A session
        #: that stores an exception under ``"error"`` makes :meth:`run` raise it.
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self.ssl = ssl
        self.proxy = proxy
        self.headers = headers
        self.websocket_options = websocket_options
        self.max_retries = max_retries
        self.initial_retry_delay = initial_retry_delay
        self.max_retry_delay = max_retry_delay
        self.retry_delay_growth = retry_delay_growth
        self.retry_delay_jitter = retry_delay_jitter
        self._observers = EventHub()
        self._tree: Tree | None = None
        self._reactor: Any = None
        self._trigger: Any = None
        self._shutting_down = False

    # -- observability --

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with every :class:`~wampd.events.Event` of the supervised
        session ("connect.failed", "retry.scheduled", "session.joined",
        "retries.exhausted", ...); may be called before :meth:`run`. Returns a function
        that unsubscribes."""
        return self._observers.subscribe(observer)

    @property
    def state(self) -> State:
        """The session's state: ``idle`` before :meth:`run`, then the supervisor's."""
        return self._tree.supervisor.state if self._tree is not None else State.IDLE

    @property
    def registry(self) -> Any:
        """The Prometheus registry with wampd's series, if metrics are on."""
        return self._arguments.settings.registry if self._tree is None else self._tree.registry

    @property
    def http_port(self) -> int | None:
        """The port ``/metrics`` and the probes listen on, while :meth:`run` runs."""
        return None if self._tree is None else self._tree.http_port

    # -- autobahn's API --

    def stop(self) -> Deferred[None]:
        """Stop retrying and leave with GOODBYE; fires when the connection is closed.
        With ``start_reactor=True`` the reactor then stops and :meth:`run` returns."""
        if self._tree is None:
            return succeed(None)
        stopping: Deferred[None] = self._tree.supervisor.stopService()
        return stopping

    def run(
        self,
        make: SessionFactory,
        start_reactor: bool = True,
        auto_reconnect: bool = False,
        log_level: str = "info",
        endpoint: Any = None,
        reactor: Any = None,
    ) -> Deferred[None] | None:
        """Run the component ``make`` makes: a session class, an ``Application``, or a
        ``make(config)`` callable.

        ``auto_reconnect=False``: one attempt; failing to join, or losing the session,
        ends the run with :class:`~wampd.RetriesExhausted` (0 retries).
        ``auto_reconnect=True``: reconnect with the retry policy; give up with
        :class:`~wampd.RetriesExhausted` when an outage spends ``max_retries``, or at once
        with :class:`~wampd.FatalRouterError` on a fatal router rejection.

        With ``start_reactor=True`` (default) this starts the reactor, logs to stdout
        at ``log_level`` (stdout itself is not redirected), and returns when the session
        is over: ``None`` if it was stopped (:meth:`stop`, the reactor stopping, the
        component leaving), else the reactor is stopped and the error raised. With
        ``start_reactor=False`` it returns a Deferred that fires with ``None`` or fails
        with that error; the reactor is left alone and events are logged through
        ``twisted.logger``. Either way, reactor shutdown leaves with GOODBYE.
        """
        if self._tree is not None and self.state not in (State.STOPPED, State.FAILED):
            raise RuntimeError("this ApplicationRunner is already running a component")
        if log_level not in _LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}; got {log_level!r}"
            )
        if reactor is None:
            reactor = default_reactor()
        if start_reactor:
            logger, _ = log_to_stdout(_LOG_LEVELS[log_level])
        else:
            logger = twisted_logger()
        plan = self._arguments.plan(
            make,
            extra=self.extra,
            once=not auto_reconnect,
            endpoint=endpoint,
            websocket_options=self.websocket_options,
            runner=self,
        )
        earlier = self._tree.metrics if self._tree is not None else None
        tree = Tree(plan, reactor=reactor, logger=logger, metrics=earlier)
        tree.subscribe(self._observers.emit)
        self._tree, self._reactor, self._shutting_down = tree, reactor, False
        self._trigger = reactor.addSystemEventTrigger("before", "shutdown", self._on_shutdown)
        finished = tree.supervisor.whenFinished()
        finished.addBoth(self._finished, stop_reactor=start_reactor)
        if not start_reactor:
            tree.startService()
            return finished
        outcome: list[Failure] = []
        finished.addErrback(outcome.append)
        reactor.callWhenRunning(tree.startService)
        reactor.run()
        if outcome:
            outcome[0].raiseException()
        error = self.extra.get("error")
        if isinstance(error, BaseException):
            raise error
        return None

    # -- inside --

    def _on_shutdown(self) -> Deferred[None] | None:
        """Reactor shutdown: leave with GOODBYE, however many reconnects there were."""
        self._shutting_down = True
        if self._tree is None or not self._tree.running:
            return None
        return self._tree.stopService()

    def _finished(self, result: Any, *, stop_reactor: bool) -> Any:
        reactor = self._reactor
        if not self._shutting_down and self._trigger is not None:
            reactor.removeSystemEventTrigger(self._trigger)
        self._trigger = None
        # The supervisor is done (this runs inside its last transition, so it must not be
        # asked to stop again); only the HTTP listener is left to close.
        listener = self._tree.listener if self._tree is not None else None
        if listener is not None and listener.running:
            listener.stopService()
        if stop_reactor and not self._shutting_down:
            with contextlib.suppress(ReactorNotRunning):
                reactor.stop()
        return result
