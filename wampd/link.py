"""The contract between a supervisor and the WAMP connections it supervises.

A *connector* makes one attempt: given a router URL (and a reporter) it returns a
``Deferred`` that fires with a :class:`Link` once the WAMP session has joined, or fails with
:class:`AttemptError`. Cancelling that ``Deferred`` abandons the attempt (and drops its
connection). The supervisor knows nothing else about WAMP, which is what lets its state
machine be tested with hand-fired Deferreds (see ``tests/unit/test_supervisor.py``) and
driven by the real autobahn connector (``wampd.wamp``) in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from twisted.internet.defer import Deferred

from .events import EventName

__all__ = ["AttemptError", "Connector", "Link", "Loss", "Reporter"]


class AttemptError(Exception):
    """One connection attempt failed before its session joined.

    :param error: what went wrong, for people (e.g. ``"connection refused"``).
    :param reason: the WAMP URI the router gave when it refused the session (its ABORT
        reason, e.g. ``wamp.error.not_authorized``), ``None`` when it never got that far.
    """

    def __init__(self, error: str, reason: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Loss:
    """Why a joined session's connection is gone."""

    #: The WAMP close reason (``wamp.close.transport_lost`` when the TCP connection died).
    reason: str
    message: str | None = None
    #: The component left its session on its own (called ``leave()``): it is done.
    by_component: bool = False
    #: The component's join handler raised; its session was closed because of that.
    component_error: bool = False
    #: The connection was dropped because a keepalive PONG did not come back in time.
    keepalive: bool = False


class Link(Protocol):
    """A joined WAMP session, as its supervisor sees it."""

    @property
    def url(self) -> str: ...

    @property
    def session_id(self) -> int: ...

    @property
    def realm(self) -> str: ...

    @property
    def lost(self) -> Deferred[Loss]:
        """Fires once, when the connection is gone, with why."""

    def leave(self, timeout: float) -> None:
        """Leave the session with GOODBYE and close the connection.

        If the connection is not closed ``timeout`` seconds later, drop it.
        """

    def abort(self) -> None:
        """Drop the connection at once."""


class Reporter(Protocol):
    """What a connector calls to report events that happen inside a state."""

    def __call__(
        self,
        name: Literal[EventName.COMPONENT_ERROR, EventName.KEEPALIVE_TIMEOUT],
        *,
        error: str | None = None,
        traceback: str | None = None,
        reason: str | None = None,
    ) -> None: ...


class Connector(Protocol):
    """Makes one connection attempt to ``url``; see the module docstring.

    ``report`` is how the attempt, and the session it leads to, tell the supervisor about
    events inside a state (``component.error``, ``keepalive.timeout``).
    """

    def __call__(self, url: str, report: Reporter) -> Deferred[Link]: ...
