"""The daemon: one supervisor per configured component, and how the process ends.

:class:`Daemon` is a Twisted ``MultiService`` that the CLI runs on the reactor. It waits for
each supervisor to finish (``whenFinished()``): when one gives up it asks for the whole
daemon to stop (the other components leave cleanly first) and remembers the exit status --
69 when retries ran out, 78 for a fatal router rejection. SIGTERM and SIGINT stop it with
status 0, as does every component leaving on its own. Stopping never takes longer than
``[shutdown] timeout``; a second SIGTERM or SIGINT while stopping ends it at once (the
sessions still leaving are dropped), with the exit status the stop already had.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ._version import __version__
from .backoff import Backoff, Jitter
from .config import BRIDGE_COMPONENT, OUTBOX_COMPONENT, ComponentSpec, Config
from .errors import EXIT_FATAL, EXIT_OK, EXIT_RETRIES_EXHAUSTED, FatalRouterError
from .events import EventName, State, names
from .supervisor import RetryPolicy, Supervisor
from .tree import BridgePlan, ComponentPlan, OutboxPlan, Plan, Tree
from .wamp import SessionFactory, TLSSettings, WampSettings

__all__ = ["Daemon", "plan", "retry_policy", "secrets", "wamp_settings"]

_ENDED = (State.STOPPED, State.FAILED)


def secrets(config: Config) -> list[str]:
    """What every log line of ``config``'s daemon masks: the router secret, and the
    bridge's token and signing secret as their files hold them at start, if any."""
    secret = config.router.auth.secret
    found = [secret.reveal()] if secret else []
    b = config.bridge
    for path in (b.token_file, b.signing.secret_file if b.signing else None):
        if path is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = Path(path).read_text().strip()
                if len(text) >= 4:  # not so short that masking it garbles every line
                    found.append(text)
    return found


def _gave_up(error: object) -> tuple[EventName, int]:
    """How the error a supervisor gave up with (its ``whenFinished()`` failure) ends the
    process: the event it gave up with, which the stop's reason names, and the status."""
    if isinstance(error, FatalRouterError):
        return names.FATAL_ERROR, EXIT_FATAL
    return names.RETRIES_EXHAUSTED, EXIT_RETRIES_EXHAUSTED


def retry_policy(config: Config) -> RetryPolicy:
    """The supervisor's retry policy from ``[reconnect]``."""
    r = config.reconnect
    return RetryPolicy(
        backoff=Backoff(
            r.initial_delay,
            r.max_delay,
            r.growth,
            Jitter(r.jitter),
            steady_retries=r.steady_retries,
        ),
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
        secret=(
            auth.key.seed_hex
            if auth.key is not None
            else auth.secret.reveal()
            if auth.secret
            else None
        ),
        authextra=auth.authextra,
        channel_binding=None if auth.channel_binding == "none" else auth.channel_binding,
        ping_interval=keepalive.ping_interval,
        ping_timeout=keepalive.ping_timeout,
        connect_timeout=keepalive.connect_timeout,
        force_reregister=spec.force_reregister,
        compression=router.compression,
    )


def plan(
    config: Config,
    factories: Mapping[str, SessionFactory],
    *,
    rand: Callable[[], float] = random.random,
) -> Plan:
    """The service tree's plan from the TOML configuration."""
    policy = retry_policy(config)
    host, port = config.http.host, config.http.port
    components = [
        ComponentPlan(
            name=spec.name,
            make=factories[spec.name],
            urls=config.router.urls,
            wamp=wamp_settings(config, spec),
            policy=policy,
            extra=spec.extra,
        )
        for spec in config.components
    ]
    bridge = None
    if config.bridge.address is not None:
        spec = ComponentSpec(name=BRIDGE_COMPONENT, entry="wampd.bridge:Bridge")
        bridge = BridgePlan(config.bridge, config.router.urls, wamp_settings(config, spec), policy)
    outbox = None
    if config.outbox.enabled:
        spec = ComponentSpec(name=OUTBOX_COMPONENT, entry="wampd.outbox:Outbox")
        outbox = OutboxPlan(config.outbox, config.router.urls, wamp_settings(config, spec), policy)
    return Plan(
        components=tuple(components),
        bridge=bridge,
        outbox=outbox,
        shutdown_timeout=config.shutdown.timeout,
        http=(host or "", port) if port is not None else None,
        rand=rand,
        admission_rate=config.reconnect.admission_rate,
        admission_burst=config.reconnect.admission_burst,
        probe_interval=config.reconnect.probe_interval,
        failover=config.router.failover,
        prefer_first=config.router.prefer_first,
    )


class Daemon(Tree):
    """Supervises every configured component; see the module docstring.

    :param stop_reactor: called (once) when the daemon decides the process should end;
        the CLI passes ``reactor.stop``, whose shutdown then calls :meth:`shutdown`.
    :param environ: for sd_notify (see :class:`~wampd.tree.Tree`).
    """

    def __init__(
        self,
        config: Config,
        factories: Mapping[str, SessionFactory],
        *,
        reactor: Any,
        logger: Any,
        stop_reactor: Callable[[], None],
        environ: Mapping[str, str] | None = None,
        rand: Callable[[], float] = random.random,
        log_lines_dropped: Callable[[], float] = lambda: 0,
    ) -> None:
        super().__init__(
            plan(config, factories, rand=rand),
            reactor=reactor,
            logger=logger,
            environ=environ,
            log_lines_dropped=log_lines_dropped,
        )
        self.config = config
        self.exit_code = EXIT_OK
        self._reactor = reactor
        self._log = logger
        self._stop_reactor = stop_reactor
        self._stopping: str | None = None
        #: Why the stop was cut short (a second signal), once it was.
        self._forced: str | None = None
        #: Ends :meth:`shutdown`'s wait for the sessions, once that has begun.
        self._stop_waiting: Callable[[], None] | None = None
        #: The components whose supervisors have stopped.
        self._left: set[str] = set()

    def startService(self) -> None:
        """Log the configuration's warnings and ``daemon.started``, then start the tree."""
        for warning in self.config.warnings:
            self._log.warning("config.warning", warning=warning)
        self._log.info(
            "daemon.started",
            version=__version__,
            config=self.config.source,
            components=[spec.name for spec in self.config.components],
            urls=list(self.config.router.urls),
        )
        for name, supervisor in self.supervisors.items():
            self._watch(name, supervisor)
        super().startService()
        address = self.listener.address if self.listener is not None else None
        if address is not None:
            self._log.info("http.listening", host=address[0], port=address[1])

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
            states={n: s.value for n, s in self.health.states().items() if s not in _ENDED},
        )
        if self._stop_waiting is not None:
            self._stop_waiting()

    def shutdown(self) -> Deferred[None]:
        """Stop every supervisor (GOODBYE where joined), within ``shutdown.timeout``; at
        once after :meth:`signalled` a second time. The Deferred always fires."""
        if self._stopping is None:
            self._stopping = "reactor stopping"
            self._log.info("daemon.stopping", reason=self._stopping, exit_code=self.exit_code)
        # The wait for the sessions. Without a canceller, cancelling it (the timeout, a
        # second signal) ends the wait only; whatever ended it, the stop is over.
        waiting: Deferred[None] = Deferred()
        waiting.addTimeout(self.config.shutdown.timeout, self._reactor, self._timed_out)
        waiting.addBoth(self._stopped)
        self._stop_waiting = waiting.cancel
        if self._forced is not None:
            waiting.cancel()
        else:
            self.stopService().addBoth(waiting.callback)
        return waiting

    def _timed_out(self, result: object, timeout: float) -> None:
        self._log.warning(
            "daemon.stop_timeout",
            timeout=timeout,
            states={name: s.value for name, s in self.health.states().items()},
        )

    def _stopped(self, result: object) -> None:
        self._log.info("daemon.stopped", exit_code=self.exit_code)

    def _watch(self, name: str, supervisor: Supervisor) -> None:
        """Stop the daemon when ``supervisor`` gives up, or when it is the last to stop on
        its own (while the daemon runs)."""

        def left(_: None) -> None:
            self._left.add(name)
            if self.running and self._left == self.supervisors.keys():
                self.request_stop("every component has left on its own")

        def gave_up(failure: Failure) -> None:
            event, exit_code = _gave_up(failure.value)
            self.request_stop(f"{name}: {event}", exit_code)

        supervisor.whenFinished().addCallbacks(left, gave_up)
