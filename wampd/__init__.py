"""wampd: a resilient reconnecting WAMP client daemon.

The daemon is the ``wampd`` command (:mod:`wampd.cli`). Programs that run components with
autobahn's ``ApplicationRunner`` or ``Service`` change one import to get wampd's
supervisor (:class:`ApplicationRunner`, :class:`Service`). The pieces the daemon is built
from are public too, for applications that embed the supervisor in their own way.
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
