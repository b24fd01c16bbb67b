"""wampd: a resilient reconnecting WAMP client daemon.

The daemon is the ``wampd`` command (:mod:`wampd.cli`). The pieces it is built from are
public for applications that embed the supervisor in their own Twisted program.
"""

from ._version import __version__
from .backoff import Backoff, Jitter
from .config import Config, load_config
from .errors import ConfigError, FatalRouterError, RetriesExhausted, WampdError
from .events import Event, EventHub, State
from .supervisor import RetryPolicy, Supervisor

__all__ = [
    "Backoff",
    "Config",
    "ConfigError",
    "Event",
    "EventHub",
    "FatalRouterError",
    "Jitter",
    "RetriesExhausted",
    "RetryPolicy",
    "State",
    "Supervisor",
    "WampdError",
    "__version__",
    "load_config",
]
