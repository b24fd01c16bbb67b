"""Exceptions that wampd raises to its callers, and the exit statuses they map to."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FATAL",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_RETRIES_EXHAUSTED",
    "ConfigError",
    "FatalRouterError",
    "OutboxFull",
    "OutboxUnavailable",
    "RetriesExhausted",
    "WampdError",
]

#: Clean stop (SIGTERM, SIGINT, or every component left on its own).
EXIT_OK = 0
#: Internal error: a bug in wampd.
EXIT_INTERNAL = 1
#: Bad configuration or usage (sysexits ``EX_USAGE`` is 64; 2 is what argparse uses).
EXIT_CONFIG = 2
#: The retry budget of an outage ran out (sysexits ``EX_UNAVAILABLE``).
EXIT_RETRIES_EXHAUSTED = 69
#: The router rejected a session for good, e.g. a wrong ticket (sysexits ``EX_CONFIG``).
EXIT_FATAL = 78


class WampdError(Exception):
    """Base class of wampd's own errors."""


class ConfigError(WampdError):
    """The configuration has one or more problems; each names the key it is about."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


class RetriesExhausted(WampdError):
    """A supervised session used up its retry budget in one outage."""

    def __init__(self, component: str, retries: int, last_error: str | None) -> None:
        self.component = component
        self.retries = retries
        self.last_error = last_error
        super().__init__(
            f"component {component!r}: gave up after {retries} retries"
            + (f" (last error: {last_error})" if last_error else "")
        )


class FatalRouterError(WampdError):
    """The router rejected a session with an error configured as fatal."""

    def __init__(self, component: str, reason: str, message: str | None) -> None:
        self.component = component
        self.reason = reason
        self.message = message
        super().__init__(
            f"component {component!r}: router rejected the session with {reason}"
            + (f": {message}" if message else "")
        )


class OutboxFull(WampdError):
    """The outbox holds ``max_messages`` or ``max_bytes`` and ``when_full = "reject"``
    (the bridge answers 503 ``wampd.error.outbox_full``)."""

    error = "wampd.error.outbox_full"


class OutboxUnavailable(WampdError):
    """The outbox's store cannot be written (an unwritable path, a full disk), or there
    is no ``[outbox]`` (the bridge answers 503 ``wampd.error.outbox_unavailable``)."""

    error = "wampd.error.outbox_unavailable"
