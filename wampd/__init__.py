"""wampd: a resilient reconnecting WAMP client daemon.

It hosts WAMP components written against autobahn's Twisted API and keeps each one joined
to its router through every outage. The daemon is the ``wampd`` command
(``wampd run --config wampd.toml``; see ``wampd --help``). Programs change one import to
get the same supervisor. The public names, most used first:

ApplicationRunner(url, realm, extra, serializers, ssl, proxy, headers, websocket_options,
        max_retries, initial_retry_delay, max_retry_delay, retry_delay_growth,
        retry_delay_jitter, *, jitter, fatal_errors, stable_after, ...)
    A drop-in for ``autobahn.twisted.wamp.ApplicationRunner``. ``run(make)`` runs the
    component (a session class, an ``Application`` or a ``make(config)`` factory) and
    keeps it joined; it raises ``RetriesExhausted`` or ``FatalRouterError`` when it gives up.
Service(url, realm, make, extra, context_factory, *, max_retries, ...)
    A drop-in for ``autobahn.twisted.wamp.Service``: the same, as a Twisted service;
    ``whenFinished()`` fires when the session is over for good.
RetriesExhausted
    The retry budget (``max_retries``) of one outage ran out (exit status 69).
FatalRouterError
    The router rejected the session with an error in ``fatal_errors`` (exit status 78).
Event, State, EventHub
    What ``subscribe(observer)`` delivers: each state change and failure of a session.
Backoff, Jitter, RetryPolicy
    The pure backoff function and the retry policy the supervisor follows.
Supervisor
    The state machine of one supervised session, for embedding it another way.
Config, load_config, ConfigError
    The daemon's validated TOML configuration, and the error listing every problem in it.
WampdError
    The base class of wampd's errors.

``wampd.testing`` has test doubles (a fake connector, an event recorder) for unit tests of
code that embeds wampd.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .backoff import Backoff, Jitter
from .config import Config, load_config
from .errors import ConfigError, FatalRouterError, RetriesExhausted, WampdError
from .events import Event, EventHub, State
from .supervisor import RetryPolicy, Supervisor

if TYPE_CHECKING:
    from .runner import ApplicationRunner
    from .service import Service

__all__ = [
    "ApplicationRunner",
    "Backoff",
    "Config",
    "ConfigError",
    "Event",
    "EventHub",
    "FatalRouterError",
    "Jitter",
    "RetriesExhausted",
    "RetryPolicy",
    "Service",
    "State",
    "Supervisor",
    "WampdError",
    "__version__",
    "load_config",
]


def __dir__() -> list[str]:
    # The lazy names too, so help(wampd) and pydoc document them.
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    # The drop-in runner and service import autobahn's WebSocket client; load them on
    # first use so `wampd probe` and `wampd --version` stay quick.
    if name == "ApplicationRunner":
        from .runner import ApplicationRunner  # noqa: PLC0415 -- loaded on first use

        return ApplicationRunner
    if name == "Service":
        from .service import Service  # noqa: PLC0415 -- loaded on first use

        return Service
    raise AttributeError(f"module 'wampd' has no attribute {name!r}")
