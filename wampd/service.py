"""``wampd.Service``: autobahn's Twisted ``Service``, on wampd's supervisor.

Change one import in a ``.tac`` file or a program with its own ``MultiService``::

    from wampd import Service               # was: from autobahn.twisted.wamp import Service

    Service("ws://127.0.0.1:8080/ws", "realm1", MyComponent).setServiceParent(application)

Starting the service starts one :class:`~wampd.supervisor.Supervisor`; stopping it
leaves with GOODBYE and returns a Deferred that fires when the connection is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

from twisted.application.internet import TCPServer
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from .embed import Hosted, HostOptions, Plan, default_reactor
from .events import Observer, State
from .logs import EventLogger, twisted_logger
from .wamp import SessionFactory

__all__ = ["Service"]


class Service(MultiService):
    """One WAMP component, kept joined, as a Twisted service; a drop-in for autobahn's.

    The first five arguments are autobahn's ``Service``'s; the retry arguments are
    :class:`wampd.ApplicationRunner`'s, with the same meaning, and so are wampd's
    keyword-only options (``jitter``, ``fatal_errors``, ``ping_interval``,
    ``http_listen``, ``registry``, ...). It always reconnects.

    When the supervisor gives up (retries spent, fatal rejection) that is logged as an
    error and :meth:`whenFinished` fails with the reason; the application decides whether
    that ends the process.

    :param context_factory: TLS client options for ``wss://`` (default: the platform's
        trust roots, verifying the host name).
    :param reactor: the reactor (default: the global one).
    """

    def __init__(
        self,
        url: str,
        realm: str | None,
        make: SessionFactory,
        extra: dict[str, Any] | None = None,
        context_factory: Any = None,
        *,
        max_retries: int | None = None,
        initial_retry_delay: float | None = None,
        max_retry_delay: float | None = None,
        retry_delay_growth: float | None = None,
        retry_delay_jitter: float | Callable[[], float] | None = None,
        reactor: Any = None,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        plan = Plan.make(
            url,
            realm=realm,
            tls=context_factory,
            options=options,
            max_retries=max_retries,
            initial_retry_delay=initial_retry_delay,
            max_retry_delay=max_retry_delay,
            retry_delay_growth=retry_delay_growth,
            retry_delay_jitter=retry_delay_jitter,
        )
        self.url = plan.url
        self.realm = realm
        self.make = make
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self.context_factory = context_factory
        if reactor is None:
            reactor = default_reactor()
        self._hosted = Hosted(plan, make, reactor=reactor, extra=self.extra)
        self._hosted.subscribe(EventLogger(twisted_logger()))
        self._hosted.supervisor.setServiceParent(self)  # type: ignore[no-untyped-call]
        if self._hosted.site is not None and self._hosted.listen is not None:
            host, port = self._hosted.listen
            listener = TCPServer(port, self._hosted.site, interface=host, reactor=reactor)
            listener.setServiceParent(self)
            self._listener: TCPServer | None = listener
        else:
            self._listener = None

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with every :class:`~wampd.events.Event` of the session."""
        return self._hosted.subscribe(observer)

    @property
    def state(self) -> State:
        """The supervised session's state now."""
        return self._hosted.state

    @property
    def registry(self) -> Any:
        """The Prometheus registry with wampd's series, if metrics are on."""
        return self._hosted.registry

    @property
    def http_port(self) -> int | None:
        """The port the HTTP endpoints listen on, while the service runs."""
        port = getattr(self._listener, "_port", None)
        return int(port.getHost().port) if port is not None else None

    def whenFinished(self) -> Deferred[None]:
        """Fires when the session is over for good: ``None`` when stopped, or fails with
        :class:`~wampd.RetriesExhausted` / :class:`~wampd.FatalRouterError`."""
        return self._hosted.supervisor.whenFinished()

    def stopService(self) -> Deferred[None]:
        """Leave with GOODBYE (or cancel the retry); fires when the connection is closed."""
        stopping: Deferred[None] = super().stopService()  # type: ignore[no-untyped-call]
        return stopping
