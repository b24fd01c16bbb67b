"""How an attempt ends, from its facts alone: every ending the connector can meet."""

from __future__ import annotations

import pytest

from wampd.link import AttemptError, Loss
from wampd.outcome import TRANSPORT_LOST, Facts, outcome

DONE = "ConnectionDone: Connection was closed cleanly."


def failed(facts: Facts) -> AttemptError:
    ending = outcome(facts, joined=False)
    assert isinstance(ending, AttemptError)
    return ending


def lost(facts: Facts) -> Loss:
    ending = outcome(facts, joined=True)
    assert isinstance(ending, Loss)
    return ending


@pytest.mark.parametrize(
    ("facts", "error", "reason"),
    [
        # The router refused the session (ABORT): its reason is what fatal_errors match.
        (
            Facts(router_reason="wamp.error.not_authorized", router_message="bad ticket"),
            "router refused the session: wamp.error.not_authorized (bad ticket)",
            "wamp.error.not_authorized",
        ),
        (
            Facts(router_reason="wamp.error.no_such_realm"),
            "router refused the session: wamp.error.no_such_realm",
            "wamp.error.no_such_realm",
        ),
        # An HTTP error instead of the WebSocket upgrade: the WebSocket says so.
        (
            Facts(not_clean="WebSocket connection upgrade failed (404 - NotFound)"),
            "WebSocket: WebSocket connection upgrade failed (404 - NotFound)",
            None,
        ),
        # Keepalive before the join (a router that stopped answering mid-handshake).
        (Facts(keepalive=True, not_clean="peer dropped"), "no PONG from the router in time", None),
        # The component's session factory or join handler raised: that is the story.
        (
            Facts(
                component_error="the component's join handler raised: ApplicationError: x",
                router_reason="wampd.close.component_error",
            ),
            "the component's join handler raised: ApplicationError: x",
            "wampd.close.component_error",
        ),
        # A TLS failure or a server that closed before anything: the transport's error.
        (
            Facts(transport="SSLError: certificate verify failed"),
            "connection closed before the session joined (SSLError: certificate verify failed)",
            None,
        ),
        (Facts(transport=DONE), f"connection closed before the session joined ({DONE})", None),
    ],
)
def test_every_way_an_attempt_fails_before_the_join(
    facts: Facts, error: str, reason: str | None
) -> None:
    """Before the join, the first fact in order of importance explains the failure; only
    the router's own reason is passed on as the ABORT reason."""
    ending = failed(facts)
    assert ending.error == error
    assert ending.reason == reason


def test_a_joined_session_whose_connection_died() -> None:
    """No close from anyone: transport lost, with the WebSocket's reason as the message."""
    assert lost(Facts(not_clean="connection was closed uncleanly (peer dropped)")) == Loss(
        reason=TRANSPORT_LOST, message="connection was closed uncleanly (peer dropped)"
    )
    assert lost(Facts(transport=DONE)) == Loss(reason=TRANSPORT_LOST)


def test_the_router_closing_a_joined_session() -> None:
    """The router's GOODBYE (a killed session, a closed realm): its reason and message."""
    assert lost(Facts(router_reason="wamp.close.killed", router_message="admin")) == Loss(
        reason="wamp.close.killed", message="admin"
    )


def test_a_goodbye_this_side_sent_names_the_leave() -> None:
    """The router's reply echoes the reason; the one this side sent is the one reported."""
    facts = Facts(sent_reason="wamp.close.normal", router_reason="wamp.close.goodbye_and_out")
    assert lost(facts) == Loss(reason="wamp.close.normal")


def test_a_component_that_left_by_itself_is_done() -> None:
    """leave() from the component: by_component, so the supervisor does not reconnect."""
    facts = Facts(left_by_component=True, sent_reason="wamp.close.normal")
    assert lost(facts) == Loss(reason="wamp.close.normal", by_component=True)


def test_a_component_error_after_the_join() -> None:
    """The join handler raised: closed with wampd's reason, the error as the message."""
    facts = Facts(
        component_error="the component's join handler raised: RuntimeError: boom",
        sent_reason="wampd.close.component_error",
        router_reason="wampd.close.component_error",
        router_message="ignored",
    )
    assert lost(facts) == Loss(
        reason="wampd.close.component_error",
        message="the component's join handler raised: RuntimeError: boom",
        component_error=True,
    )


def test_a_keepalive_timeout_after_the_join() -> None:
    """No PONG in time: transport lost, marked as a keepalive drop."""
    facts = Facts(keepalive=True, not_clean="peer did not respond")
    assert lost(facts) == Loss(
        reason=TRANSPORT_LOST, message="peer did not respond", keepalive=True
    )
