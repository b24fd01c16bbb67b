"""How one connection attempt ended, decided from what happened to it.

The connector (:mod:`wampd.wamp`) records the facts of an attempt as they happen --
the router's ABORT or GOODBYE, a GOODBYE this side sent, the component leaving or
raising, a keepalive timeout, the WebSocket's own account of an unclean close, the error
that ended the TCP connection -- in one :class:`Facts`. When the connection is gone,
:func:`outcome` turns them into what the supervisor gets: an
:class:`~wampd.link.AttemptError` if the session never joined, else the
:class:`~wampd.link.Loss` of the joined session. It is pure: no autobahn, no reactor.
"""

from __future__ import annotations

from dataclasses import dataclass

from .link import AttemptError, Loss

__all__ = ["TRANSPORT_LOST", "Facts", "outcome"]

#: autobahn's close reason for a connection that died under its session.
TRANSPORT_LOST = "wamp.close.transport_lost"


@dataclass
class Facts:
    """What happened to one attempt, recorded by the connector as it happens."""

    #: The router's ABORT (before the join) or GOODBYE reason, and its message.
    router_reason: str | None = None
    router_message: str | None = None
    #: The reason of the GOODBYE this side sent first (the router's reply only echoes it).
    sent_reason: str | None = None
    #: The component called ``leave()`` itself.
    left_by_component: bool = False
    #: What the component's code raised (its session factory, or its join handler).
    component_error: str | None = None
    #: No PONG came back in time, and the connection was dropped for it.
    keepalive: bool = False
    #: The WebSocket's reason for an unclean close (e.g. the HTTP status of a failed
    #: upgrade, a handshake that was cut off).
    not_clean: str | None = None
    #: The error that ended the TCP connection (``ConnectionDone: ...``, a TLS error).
    transport: str | None = None


def outcome(facts: Facts, *, joined: bool) -> AttemptError | Loss:
    """What the supervisor is told once the connection is gone: the joined session's
    :class:`~wampd.link.Loss`, else the first fact that says why it never joined."""
    if joined:
        return Loss(
            reason=facts.sent_reason or facts.router_reason or TRANSPORT_LOST,
            message=facts.component_error or facts.router_message or facts.not_clean,
            by_component=facts.left_by_component,
            component_error=facts.component_error is not None,
            keepalive=facts.keepalive,
        )
    if facts.component_error is not None:
        why = facts.component_error
    elif facts.router_reason is not None:
        why = f"router refused the session: {facts.router_reason}"
        why += f" ({facts.router_message})" if facts.router_message else ""
    elif facts.keepalive:
        why = "no PONG from the router in time"
    elif facts.not_clean:
        why = f"WebSocket: {facts.not_clean}"
    else:
        why = f"connection closed before the session joined ({facts.transport})"
    return AttemptError(why, facts.router_reason)
