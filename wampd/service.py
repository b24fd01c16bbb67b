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

from twisted.internet.defer import Deferred

from .embed import Arguments, HostOptions, default_reactor
from .events import State
from .logs import twisted_logger
from .tree import Tree
from .wamp import SessionFactory

__all__ = ["Service"]


class Service(Tree):
    """One WAMP component, kept joined, as a Twisted service; a drop-in for autobahn's.

    The first five arguments are autobahn's ``Service``'s; the retry arguments are
    :class:`wampd.ApplicationRunner`'s, with the same meaning, and so are wampd's
    keyword-only options (``jitter``, ``fatal_errors``, ``ping_interval``,
    ``http_listen``, ``registry``, ...). It always reconnects. It is the daemon's service
    tree with one component; events are logged through ``twisted.logger``.

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
        arguments = Arguments.make(
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
        extra = extra if extra is not None else {}
        super().__init__(
            arguments.plan(make, extra=extra),
            reactor=reactor if reactor is not None else default_reactor(),
            logger=twisted_logger(),
        )
        self.url = arguments.url
        self.realm = realm
        self.make = make
        self.extra: dict[str, Any] = extra
        self.context_factory = context_factory

    @property
    def state(self) -> State:
        """The supervised session's state now."""
        return self.supervisor.state

    def whenFinished(self) -> Deferred[None]:
        """Fires when the session is over for good: ``None`` when stopped, or fails with
        :class:`~wampd.RetriesExhausted` / :class:`~wampd.FatalRouterError`."""
        return self.supervisor.whenFinished()
