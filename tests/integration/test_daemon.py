"""``wampd run`` against a real Crossbar router: every outage the daemon must survive.

Each test runs the daemon as a subprocess and asserts on its exit status and its JSON log
events; a plain WAMP client (harness.wamp_call) checks what users would check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.connect_proxy import ConnectProxy
from harness.crossbar import (
    AGENT_AUTHID,
    AGENT_TICKET,
    CRA_AUTHID,
    CRA_SECRET,
    CrossbarRouter,
)
from harness.fake_router import FakeRouter
from harness.ports import free_port
from harness.silent_server import SilentServer
from harness.wamp_call import call, call_result, call_until_ok, error_uri

from .conftest import CrossbarFactory
from .wampd_proc import HELLO, REALM, Launch


def hello(router: CrossbarRouter, who: str = "wampd") -> Any:
    return call_result(call(router.url(), REALM, "com.example.hello", [who]))


def test_router_kill_and_restart_with_a_client_calling_before_and_after(
    crossbar: CrossbarRouter, launch: Launch
) -> None:
    """kill -9 of the router, then a restart: the component rejoins and answers again."""
    daemon = launch(crossbar.url())
    daemon.wait_for("session.joined")
    assert hello(crossbar) == "hello, wampd"

    crossbar.kill()
    left = daemon.wait_for("session.left")[0]
    assert left["reason"] == "wamp.close.transport_lost"
    daemon.wait_for("retry.scheduled")

    crossbar.restart()
    daemon.wait_for("session.joined", count=2, timeout=30)
    result, _ = call_until_ok(crossbar.url(), REALM, "com.example.hello", 15, args=["again"])
    assert result == "hello, again"

    assert daemon.terminate() == 0
    assert daemon.events("daemon.stopped")[0]["exit_code"] == 0


def test_hung_router_is_detected_by_keepalive(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """SIGSTOP of the router: a missed PONG drops the session within interval + timeout."""
    crossbar = module_crossbar
    daemon = launch(crossbar.url(), keepalive={"ping_interval": 1.0, "ping_timeout": 1.0})
    daemon.wait_for("session.joined")
    crossbar.pause()
    try:
        paused_at = time.time()
        daemon.wait_for("keepalive.timeout", timeout=10)
        left = daemon.wait_for("session.left", timeout=5)[0]
        detected = time.time() - paused_at
        assert left.get("keepalive") is True
        assert detected < 1.0 + 1.0 + 1.5, detected
        daemon.wait_for("retry.scheduled")
    finally:
        crossbar.resume()
    daemon.wait_for("session.joined", count=2, timeout=30)
    assert hello(crossbar) == "hello, wampd"
    assert daemon.terminate() == 0


def test_router_down_at_start_is_retried_until_it_comes_up(
    crossbar_factory: Callable[..., CrossbarRouter], launch: Launch
) -> None:
    """A router that is not there yet is an outage like any other: wampd joins once it is."""
    port = free_port()
    router = crossbar_factory(port, start=False)
    daemon = launch(router.url())
    daemon.wait_for("connect.failed", count=2)
    router.start()
    joined = daemon.wait_for("session.joined", timeout=30)[0]
    assert joined["outage_duration"] > 0
    assert hello(router) == "hello, wampd"
    assert daemon.terminate() == 0


def test_exact_retry_count_then_exit_69(launch: Launch) -> None:
    """max_retries = 3: one attempt plus exactly three retries, then exit status 69."""
    daemon = launch(f"ws://127.0.0.1:{free_port()}/ws", reconnect={"max_retries": 3})
    assert daemon.wait(30) == 69
    assert len(daemon.events("connect.attempt")) == 4
    assert [e["retry"] for e in daemon.events("retry.scheduled")] == [1, 2, 3]
    assert len(daemon.events("retries.exhausted")) == 1
    assert daemon.events("daemon.stopped")[0]["exit_code"] == 69


def test_wrong_ticket_exits_78_after_one_attempt(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """A rejected ticket is not retried: one attempt, fatal.error, exit status 78."""
    secret = tmp_path / "ticket"
    secret.write_text("not-the-ticket\n")
    secret.chmod(0o600)
    daemon = launch(
        module_crossbar.url("auth"),
        router={"auth": {"method": "ticket", "authid": AGENT_AUTHID, "secret_file": str(secret)}},
    )
    assert daemon.wait(30) == 78
    assert len(daemon.events("connect.attempt")) == 1
    fatal = daemon.events("fatal.error")[0]
    assert fatal["reason"] == "wamp.error.not_authorized"
    assert "not-the-ticket" not in daemon.proc.output() + daemon.stderr()


def test_right_ticket_joins(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """Ticket authentication with the secret from an environment variable joins."""
    daemon = launch(
        module_crossbar.url("auth"),
        router={"auth": {"method": "ticket", "authid": AGENT_AUTHID, "secret_env": "TICKET"}},
        env={"TICKET": AGENT_TICKET},
    )
    daemon.wait_for("session.joined")
    result = call_result(
        call(
            module_crossbar.url("auth"),
            REALM,
            "com.example.hello",
            ["agent"],
            authid=AGENT_AUTHID,
            ticket=AGENT_TICKET,
        )
    )
    assert result == "hello, agent"
    assert daemon.terminate() == 0
    assert AGENT_TICKET not in daemon.proc.output()


def test_unknown_realm_exits_78(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """A realm the router does not have is fatal: exit status 78 after one attempt."""
    daemon = launch(module_crossbar.url(), components=[{**HELLO, "realm": "no.such.realm"}])
    assert daemon.wait(30) == 78
    assert len(daemon.events("connect.attempt")) == 1
    assert daemon.events("fatal.error")[0]["reason"] == "wamp.error.no_such_realm"


def test_fatal_errors_empty_makes_rejections_transient(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """fatal_errors = [] retries a rejection with backoff, up to the budget (then 69)."""
    daemon = launch(
        module_crossbar.url(),
        components=[{**HELLO, "realm": "no.such.realm"}],
        reconnect={"fatal_errors": [], "max_retries": 2},
    )
    assert daemon.wait(30) == 69
    assert len(daemon.events("connect.attempt")) == 3


def test_silent_tcp_server_is_a_failed_attempt_not_a_hang(
    silent_server: SilentServer, launch: Launch
) -> None:
    """A server that accepts TCP and never answers: each attempt times out, then exit 69."""
    daemon = launch(
        f"ws://127.0.0.1:{silent_server.port}/ws",
        keepalive={"connect_timeout": 1.0},
        reconnect={"max_retries": 1},
    )
    assert daemon.wait(30) == 69
    failed = daemon.events("connect.failed")
    assert len(failed) == 2
    assert all("connect_timeout" in e["error"] for e in failed)
    assert silent_server.accepted == 2


def test_http_error_on_the_websocket_path_is_transient(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """An HTTP 404 instead of a WebSocket upgrade is retried with backoff, never fatal."""
    daemon = launch(module_crossbar.url("no-such-path"), reconnect={"max_retries": 2})
    assert daemon.wait(30) == 69
    failed = daemon.events("connect.failed")
    assert len(failed) == 3
    assert "404" in failed[0]["error"]
    assert daemon.events("fatal.error") == []


def test_goodbye_on_shutdown_after_several_reconnects(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """After three dropped connections, SIGTERM still leaves the fourth session with GOODBYE."""
    router = fake_router_factory(drop_after=0.3, drop_count=3)
    daemon = launch(router.url(), reconnect={"stable_after": 0.1})
    daemon.wait_for("session.joined", count=4, timeout=30)
    assert daemon.terminate() == 0
    goodbyes = router.wait_for("goodbye", timeout=5)
    assert len(goodbyes) == 1
    assert goodbyes[0]["conn"] == 4
    assert goodbyes[0]["reason"] == "wamp.close.normal"


def test_sigterm_while_in_backoff_exits_at_once(launch: Launch) -> None:
    """SIGTERM during a long backoff cancels the retry and exits 0 at once."""
    daemon = launch(
        f"ws://127.0.0.1:{free_port()}/ws",
        reconnect={"initial_delay": 30.0, "max_delay": 30.0},
    )
    daemon.wait_for("retry.scheduled")
    started = time.monotonic()
    assert daemon.terminate() == 0
    assert time.monotonic() - started < 3
    assert daemon.events("daemon.stopping")[0]["reason"] == "SIGTERM"


def test_every_entry_form_joins_and_serves(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """ApplicationSession, Session, Application, a make factory and the seed's
    ApplicationSessionFactory (with its config.extra) all work as components."""
    daemon = launch(
        module_crossbar.url(),
        components=[
            HELLO,
            {"name": "snake", "entry": "tests.integration.components:Snake"},
            {"name": "app", "entry": "tests.integration.components:app"},
            {"name": "made", "entry": "tests.integration.components:make"},
            {"name": "factory", "entry": "tests.integration.components:greeter_factory"},
        ],
    )
    daemon.wait_for("session.joined", count=5)
    url = module_crossbar.url()
    assert call_until_ok(url, REALM, "com.example.hello", 10, args=["x"])[0] == "hello, x"
    assert call_until_ok(url, REALM, "com.example.snake.add", 10, args=[2, 3])[0] == 5
    assert call_until_ok(url, REALM, "com.example.app.echo", 10, args=["e"])[0] == "e"
    assert call_until_ok(url, REALM, "com.made.hello", 10, args=["m"])[0] == "hello, m"
    assert call_until_ok(url, REALM, "com.factory.greet", 10, args=["f"])[0] == "howdy, f"
    assert daemon.terminate() == 0
    assert len(daemon.events("supervisor.stopped")) == 5


def test_failing_join_handler_is_retried_and_others_are_unaffected(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """A join handler that raises is logged with its traceback, leaves and is retried."""
    daemon = launch(
        module_crossbar.url(),
        components=[HELLO, {"name": "broken", "entry": "tests.integration.components:Broken"}],
        reconnect={"max_retries": -1},
    )
    errors = daemon.wait_for("component.error", count=2, component="broken")
    assert "procedure_already_exists" in errors[0]["error"]
    assert "Traceback" in errors[0]["traceback"]
    left = daemon.wait_for("session.left", component="broken")[0]
    assert left["reason"] == "wampd.close.component_error"
    retries = daemon.wait_for("retry.scheduled", count=2, component="broken")
    assert retries[1]["retry"] == 2  # the count keeps growing: no hammering
    assert hello(module_crossbar) == "hello, wampd"
    assert daemon.events("session.left", component="hello") == []
    assert daemon.terminate() == 0


def test_component_that_leaves_is_done_and_the_daemon_exits_0(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """A component leaving on its own is not reconnected; when all are done, exit 0."""
    daemon = launch(
        module_crossbar.url(),
        components=[{"name": "once", "entry": "tests.integration.components:LeavesAtOnce"}],
    )
    assert daemon.wait(30) == 0
    assert len(daemon.events("session.joined")) == 1
    assert daemon.events("retry.scheduled") == []
    assert daemon.events("supervisor.stopped")[0]["reason"] == "component left"


def test_failover_to_the_second_url(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """With a dead first URL, the daemon fails over to the next one and joins there."""
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    daemon = launch([dead, module_crossbar.url()])
    joined = daemon.wait_for("session.joined")[0]
    assert joined["url"] == module_crossbar.url()
    assert daemon.events("connect.failed")[0]["url"] == dead
    assert daemon.terminate() == 0


def test_logs_are_json_events_and_a_components_print_reaches_stdout(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """Every log line is a JSON event; a component's print() is not swallowed."""
    daemon = launch(
        module_crossbar.url(),
        components=[HELLO, {"name": "printer", "entry": "tests.integration.components:Printer"}],
    )
    daemon.wait_for("session.joined", count=2)
    assert daemon.terminate() == 0
    lines = daemon.proc.output().splitlines()
    assert "printed by a component" in lines
    events = daemon.proc.json_lines()
    assert len(events) == len(lines) - 1, daemon.describe()
    assert all("event" in e and "level" in e and "timestamp" in e for e in events)
    assert error_uri(call(module_crossbar.url(), REALM, "com.example.hello", ["x"])) == (
        "wamp.error.no_such_procedure"
    )


def test_router_that_drops_every_session_at_once_spends_the_budget(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """Sessions dropped before stable_after are one outage: delays grow, then exit 69."""
    router = fake_router_factory(drop_after=0.1, drop_count=100)
    daemon = launch(
        router.url(),
        reconnect={"max_retries": 2, "stable_after": 5.0, "initial_delay": 0.2, "max_delay": 5.0},
    )
    assert daemon.wait(30) == 69
    assert len(daemon.events("session.joined")) == 3
    delays = [e["delay"] for e in daemon.events("retry.scheduled")]
    assert delays == [0.2, 0.4]
    assert len(router.events("welcome")) == 3


def test_every_outage_gets_a_full_budget(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """Sessions that lasted stable_after end their outage: many drops never exhaust the budget."""
    router = fake_router_factory(drop_after=1.0, drop_count=4)
    daemon = launch(router.url(), reconnect={"max_retries": 1, "stable_after": 0.5})
    daemon.wait_for("session.joined", count=5, timeout=40)
    assert daemon.events("retries.exhausted") == []
    assert [e["retry"] for e in daemon.events("retry.scheduled")] == [1, 1, 1, 1]
    assert daemon.terminate() == 0


def test_wampcra_authentication_joins(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """WAMP-CRA with the secret from a file joins; the secret never reaches the log."""
    secret = module_crossbar.workdir / "cra-secret"
    secret.write_text(CRA_SECRET + "\n")
    secret.chmod(0o600)
    daemon = launch(
        module_crossbar.url("cra"),
        router={"auth": {"method": "wampcra", "authid": CRA_AUTHID, "secret_file": str(secret)}},
    )
    daemon.wait_for("session.joined")
    assert daemon.terminate() == 0
    assert CRA_SECRET not in daemon.proc.output() + daemon.stderr()


def test_sigterm_with_a_hung_router_still_exits_within_the_shutdown_timeout(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """GOODBYE cannot complete against a hung router: the connection is dropped in time."""
    crossbar = module_crossbar
    daemon = launch(crossbar.url(), shutdown=2.0, keepalive={"ping_interval": 30.0})
    daemon.wait_for("session.joined")
    crossbar.pause()
    try:
        started = time.monotonic()
        assert daemon.terminate() == 0
        assert time.monotonic() - started < 2.0 + 1.5
    finally:
        crossbar.resume()


def test_serializers_and_headers_reach_the_router(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """router.serializers limits the WAMP subprotocols offered; router.headers are sent."""
    router = fake_router_factory()
    daemon = launch(
        router.url(), router={"serializers": ["json"], "headers": {"X-Edge-Id": "edge-7"}}
    )
    daemon.wait_for("session.joined")
    handshake = router.wait_for("handshake")[0]
    assert handshake["protocols"] == ["wamp.2.json"]
    assert handshake["headers"].get("x-edge-id") == "edge-7"
    assert daemon.terminate() == 0


def test_http_connect_proxy(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """router.proxy: the WebSocket goes through an HTTP CONNECT proxy and joins."""
    with ConnectProxy() as proxy:
        daemon = launch(
            module_crossbar.url(), router={"proxy": {"host": "127.0.0.1", "port": proxy.port}}
        )
        daemon.wait_for("session.joined")
        assert proxy.requests == [f"127.0.0.1:{module_crossbar.port}"]
        assert hello(module_crossbar) == "hello, wampd"
        assert daemon.terminate() == 0


def test_failover_between_two_routers_stays_on_the_one_that_works(
    crossbar_factory: CrossbarFactory, launch: Launch
) -> None:
    """Joined on A; A is killed: joined on B within the backoff bound (A tried once more
    first: it was the router that worked), a plain caller on B reaches the component; A
    comes back, and the component stays on B, in the same session."""
    a, b = crossbar_factory(), crossbar_factory()
    daemon = launch([a.url(), b.url()], reconnect={"max_retries": -1})
    assert daemon.wait_for("session.joined")[0]["url"] == a.url()
    a.kill()
    killed = time.monotonic()
    joined = daemon.wait_for("session.joined", count=2, timeout=30)[1]
    took = time.monotonic() - killed
    assert joined["url"] == b.url()
    # Two retries at most (0.2 s then 0.4 s, FAST) and their attempts; slack for the
    # machine and the noticing of the loss.
    assert took < 0.2 + 0.4 + 3.0, took
    attempts = [e["url"] for e in daemon.events("connect.attempt")]
    assert attempts[-2:] == [a.url(), b.url()]
    assert call_until_ok(b.url(), REALM, "com.example.hello", 10, args=["b"])[0] == "hello, b"
    a.start()  # returns once A is ready
    session_id, _ = call_until_ok(b.url(), REALM, "com.example.session_id", 10)
    time.sleep(2.0)  # a real router's return, given time to pull the component back
    assert len(daemon.events("session.joined")) == 2
    assert len(daemon.events("session.left")) == 1  # A's, when it was killed
    assert call_until_ok(b.url(), REALM, "com.example.session_id", 10)[0] == session_id
    assert daemon.terminate() == 0
