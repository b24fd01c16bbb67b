"""The daemon: one supervisor per configured component, and how the process ends.

:class:`Daemon` is a Twisted ``MultiService`` that the CLI runs on the reactor. It watches
the event stream: when a supervisor fails it asks for the whole daemon to stop (the other
components leave cleanly first) and remembers the exit status -- 69 when retries ran
out, 78 for a fatal router rejection. SIGTERM and SIGINT stop it with status 0, as does
every component leaving on its own. Stopping never takes longer than
``[shutdown] timeout``; a second SIGTERM or SIGINT while stopping ends it at once (the
sessions still leaving are dropped), with the exit status the stop already had.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from ._version import __version__
from .backoff import Backoff, Jitter
from .config import ComponentSpec, Config
from .errors import EXIT_FATAL, EXIT_OK, EXIT_RETRIES_EXHAUSTED
from .events import Event, EventHub, State, names
from .health import Health
from .http import make_site
from .logs import EventLogger
from .metrics import Metrics
from .supervisor import RetryPolicy, Supervisor
from .wamp import SessionFactory, TLSSettings, WampConnector, WampSettings

__all__ = ["Daemon", "retry_policy", "wamp_settings"]

_ENDED = (State.STOPPED, State.FAILED)


def retry_policy(config: Config) -> RetryPolicy:
    """The supervisor's retry policy from ``[reconnect]``."""
    r = config.reconnect
    return RetryPolicy(
        backoff=Backoff(r.initial_delay, r.max_delay, r.growth, Jitter(r.jitter)),
        max_retries=r.max_retries,
        retry_on_start=r.retry_on_start,
        stable_after=r.stable_after,
        fatal_errors=frozenset(r.fatal_errors),
    )


def wamp_settings(config: Config, spec: ComponentSpec) -> WampSettings:
    """How ``spec``'s sessions reach the router, from ``[router]`` and ``[keepalive]``."""
    router, keepalive = config.router, config.keepalive
    auth = router.auth
    return WampSettings(
        realm=spec.realm or router.realm,
        serializers=router.serializers,
        headers=router.headers,
        tls=TLSSettings(
            ca_file=router.tls.ca_file,
            cert_file=router.tls.cert_file,
            key_file=router.tls.key_file,
            verify=router.tls.verify,
        ),
        proxy=(router.proxy.host, router.proxy.port) if router.proxy else None,
        auth_method=auth.method,
        authid=auth.authid,
        authrole=auth.authrole,
        secret=auth.secret.reveal() if auth.secret else None,
        ping_interval=keepalive.ping_interval,
        ping_timeout=keepalive.ping_timeout,
        connect_timeout=keepalive.connect_timeout,
    )


class Daemon(MultiService):
    """Supervises every configured component; see the module docstring.

    :param stop_reactor: called (once) when the daemon decides the process should end;
        the CLI passes ``reactor.stop``, whose shutdown then calls :meth:`shutdown`.
    """

    def __init__(
        self,
        config: Config,
        factories: Mapping[str, SessionFactory],
        *,
        reactor: Any,
        logger: Any,
        stop_reactor: Callable[[], None],
        hub: EventHub | None = None,
        rand: Callable[[], float] = random.random,
        log_lines_dropped: Callable[[], float] = lambda: 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self.hub = hub if hub is not None else EventHub()
        self.exit_code = EXIT_OK
        self._reactor = reactor
        self._log = logger
        self._stop_reactor = stop_reactor
        self._states = {spec.name: State.IDLE for spec in config.components}
        self._stopping: str | None = None
        #: Why the stop was cut short (a second signal), once it was.
        self._forced: str | None = None
        #: Ends the reactor's wait for :meth:`shutdown`, once that has begun.
        self._finish_shutdown: Callable[[bool], None] | None = None
        self.supervisors: dict[str, Supervisor] = {}
        components = [spec.name for spec in config.components]
        #: The daemon's own registry: only wampd's series, never the global registry's.
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, components, log_lines_dropped=log_lines_dropped)
        self.health = Health(components)
        #: The HTTP endpoints; the CLI decides where (if at all) they listen.
        self.site = make_site(self.registry, self.health, reactor)
        for consumer in (EventLogger(logger), self.metrics, self.health, self._watch):
            self.hub.subscribe(consumer)
        policy = retry_policy(config)
        leave_timeout = max(0.1, config.shutdown.timeout * 0.8)
        for spec in config.components:
            connector = WampConnector(
                reactor, spec.name, factories[spec.name], wamp_settings(config, spec), spec.extra
            )
            supervisor = Supervisor(
                spec.name,
                connector,
                config.router.urls,
                policy=policy,
                clock=reactor,
                hub=self.hub,
                rand=rand,
                connect_timeout=config.keepalive.connect_timeout,
                leave_timeout=leave_timeout,
            )
            supervisor.setServiceParent(self)  # type: ignore[no-untyped-call]
            self.supervisors[spec.name] = supervisor

    def startService(self) -> None:
        self._log.info(
            "daemon.started",
            version=__version__,
            config=self.config.source,
            components=[spec.name for spec in self.config.components],
            urls=list(self.config.router.urls),
        )
        super().startService()  # type: ignore[no-untyped-call]

    def request_stop(self, reason: str, exit_code: int = EXIT_OK) -> None:
        """End the process: the first request decides the reason and exit status."""
        if self._stopping is not None:
            return
        self._stopping = reason
        self.exit_code = exit_code
        try:
            self._log.info("daemon.stopping", reason=reason, exit_code=exit_code)
        finally:
            self._stop_reactor()

    def signalled(self, name: str) -> None:
        """SIGTERM or SIGINT (``name``): the first stops the daemon, cleanly and in time; one
        more while it is stopping ends the stop at once."""
        if self._stopping is None:
            self.request_stop(name)
            return
        if self._forced is not None:
            return
        self._forced = name
        self._log.warning(
            "daemon.stop_forced",
            signal=name,
            states={n: s.value for n, s in self._states.items() if s not in _ENDED},
        )
        if self._finish_shutdown is not None:
            self._finish_shutdown(False)

    def shutdown(self) -> Deferred[None]:
        """Stop every supervisor (GOODBYE where joined), within ``shutdown.timeout``; at
        once after :meth:`signalled` a second time. The Deferred always fires."""
        if self._stopping is None:
            self._stopping = "reactor stopping"
            self._log.info("daemon.stopping", reason=self._stopping, exit_code=self.exit_code)
        timeout = self.config.shutdown.timeout
        done: Deferred[None] = Deferred()

        def finish(timed_out: bool) -> None:
            if done.called:
                return
            if guard.active():
                guard.cancel()
            try:
                if timed_out:
                    self._log.warning(
                        "daemon.stop_timeout",
                        timeout=timeout,
                        states={name: s.value for name, s in self._states.items()},
                    )
                self._log.info("daemon.stopped", exit_code=self.exit_code)
            finally:
                done.callback(None)

        guard = self._reactor.callLater(timeout, finish, True)
        self._finish_shutdown = finish
        if self._forced is not None:
            finish(False)
            return done
        stopping = self.stopService()  # type: ignore[no-untyped-call]
        if stopping is None:
            finish(False)
        else:
            stopping.addBoth(lambda _: finish(False))
        return done

    def _watch(self, event: Event) -> None:
        self._states[event.component] = event.state
        if event.changed and event.state is State.FAILED:
            code = EXIT_FATAL if event.name == names.FATAL_ERROR else EXIT_RETRIES_EXHAUSTED
            self.request_stop(f"{event.component}: {event.name}", code)
        elif all(state in _ENDED for state in self._states.values()) and self.running:
            self.request_stop("every component has left on its own")
