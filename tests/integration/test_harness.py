"""Smoke tests for the integration harness itself (the top-level ``harness`` package).

They prove that the tools later tests rely on do what they claim: a Crossbar router that is
WAMP-ready when start() returns, kill()/restart()/pause()/resume() that really crash, revive
and hang it, a fake router that records what a client sends, a silent server that stays
silent, a one-shot WAMP client that never hangs, and process groups that leave nothing
behind. One module-wide router serves every test that does not kill it.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.crossbar import AGENT_AUTHID, AGENT_TICKET, CrossbarRouter, crossbar_bin
from harness.fake_router import FakeRouter
from harness.ports import free_port, port_open, wait_for_port, wait_port_closed
from harness.procs import Proc, descendants, pid_alive
from harness.silent_server import SilentServer
from harness.wamp_call import (
    CONNECT_FAILED,
    NO_SUCH_PROCEDURE,
    TIMEOUT_ERROR,
    call,
    call_error,
    call_result,
    call_until_ok,
    error_uri,
)
from harness.wsprobe import RawWebSocket, wamp_hello, websocket_upgrade

REALM = "realm1"
NOBODY = "com.example.nobody_registered_this"


def assert_router_alive(router: CrossbarRouter) -> None:
    """A call to an unregistered procedure is answered with no_such_procedure."""
    completed = call(router.url(), REALM, NOBODY, timeout=5)
    assert error_uri(completed) == NO_SUCH_PROCEDURE, completed.stderr


def test_crossbar_is_wamp_ready_after_start(module_crossbar: CrossbarRouter) -> None:
    """start() returns only when /ws upgrades (101) and a HELLO gets a WELCOME; unknown
    paths are 404."""
    router = module_crossbar
    assert router.running
    assert router.url() == f"ws://127.0.0.1:{router.port}/ws"
    assert websocket_upgrade(router.port, "ws") == 101
    assert websocket_upgrade(router.port, "no-such-path") == 404
    reply = wamp_hello(router.port, "ws", REALM)
    assert reply[0] == 2, reply  # WELCOME
    assert reply[2]["authrole"] == "anonymous"


def test_kill_closes_port_and_restart_reopens_it(crossbar: CrossbarRouter) -> None:
    """kill() takes the controller and its worker down and closes the port; restart() comes
    back on the same port with a new controller and answers WAMP calls at once."""
    port, old_pid = crossbar.port, crossbar.pid
    workers = descendants(old_pid)
    assert workers, "crossbar should have a router worker child"

    crossbar.kill()
    assert not crossbar.running
    assert not port_open(port)
    assert not any(pid_alive(p) for p in [old_pid, *workers])
    failed = call(crossbar.url(), REALM, NOBODY, timeout=3)
    assert error_uri(failed) == CONNECT_FAILED

    crossbar.restart()
    assert crossbar.running
    assert crossbar.port == port
    assert crossbar.pid != old_pid
    result, attempts = call_until_ok(crossbar.url(), REALM, "wamp.session.count", 10)
    # Only our own session besides the node's (its HTTP bridge's); ready at the first try.
    assert (result, attempts) == (1 + crossbar.own_sessions, 1)


def test_pause_hangs_router_and_resume_revives_it(module_crossbar: CrossbarRouter) -> None:
    """While paused, the port still accepts but a call times out (harness.timeout);
    after resume() the router answers again (no_such_procedure proves it is alive)."""
    router = module_crossbar
    assert_router_alive(router)
    router.pause()
    try:
        assert router.paused
        assert port_open(router.port)  # the kernel still accepts: a hung, not a dead, router
        hung = call(router.url(), REALM, NOBODY, timeout=2)
        assert error_uri(hung) == TIMEOUT_ERROR, hung.stderr
    finally:
        router.resume()
    assert not router.paused
    assert_router_alive(router)


def test_ticket_auth_on_auth_path(module_crossbar: CrossbarRouter) -> None:
    """/auth rejects a wrong ticket (not_authorized) and an anonymous client
    (no_auth_method), and admits agent/secret."""
    url = module_crossbar.url("auth")
    wrong = call(url, REALM, "wamp.session.count", authid=AGENT_AUTHID, ticket="wrong")
    assert error_uri(wrong) == "wamp.error.not_authorized"
    anonymous = call(url, REALM, "wamp.session.count")
    assert error_uri(anonymous) == "wamp.error.no_auth_method"
    right = call(url, REALM, "wamp.session.count", authid=AGENT_AUTHID, ticket=AGENT_TICKET)
    assert call_result(right) >= 1


def test_fake_router_records_a_client_that_leaves(
    fake_router_factory: Callable[..., FakeRouter],
) -> None:
    """A client that calls and leaves shows up as connect, handshake, hello, welcome, call,
    goodbye, disconnect - and its call is answered with no_such_procedure."""
    router = fake_router_factory()
    completed = call(router.url(), REALM, "com.example.add", [1, 2])
    assert error_uri(completed) == NO_SUCH_PROCEDURE
    router.wait_for("disconnect")
    events = [e for e in router.events() if e["conn"] == 1]
    assert [e["event"] for e in events] == [
        "connect",
        "handshake",
        "hello",
        "welcome",
        "call",
        "goodbye",
        "disconnect",
    ]
    handshake, hello, welcome, called, goodbye = events[1:6]
    assert handshake["path"] == "/ws" and "wamp.2.json" in handshake["protocols"]
    assert hello["realm"] == REALM and hello["serializer"] == "json"
    assert welcome["session"] == 1
    assert called["procedure"] == "com.example.add" and called["args"] == [1, 2]
    assert goodbye["reason"] == "wamp.close.normal"


def test_fake_router_drops_and_aborts_on_cue(
    fake_router_factory: Callable[..., FakeRouter],
) -> None:
    """--drop-after/--drop-count drop only the first N connections after WELCOME;
    --abort-reason answers HELLO with ABORT."""
    dropper = fake_router_factory(drop_after=0.2, drop_count=1)
    with RawWebSocket(dropper.port) as first:
        assert first.connect() == 101
        assert first.hello(REALM)[:2] == [2, 1]
        with pytest.raises(OSError):  # reset by the router (WebSocketClosed is an OSError too)
            first.recv_wamp(timeout=3)
    dropper.wait_for("drop")
    with RawWebSocket(dropper.port) as second:
        assert second.connect() == 101
        assert second.hello(REALM)[:2] == [2, 2]
        with pytest.raises(TimeoutError):  # still connected: nothing arrives, nothing drops
            second.recv_wamp(timeout=0.6)
    assert len(dropper.events("drop")) == 1

    aborter = fake_router_factory(abort_reason="wamp.error.not_authorized")
    completed = call(aborter.url(), REALM, NOBODY)
    assert error_uri(completed) == "wamp.error.not_authorized"
    assert aborter.wait_for("abort")[0]["reason"] == "wamp.error.not_authorized"
    assert aborter.events("welcome") == []


def test_silent_server_accepts_and_never_answers(silent_server: SilentServer) -> None:
    """The silent server accepts TCP connections but never answers, so a WAMP client can
    only time out (and wamp_call does, instead of hanging)."""
    wait_for_port(silent_server.port, timeout=2)
    with RawWebSocket(silent_server.port) as ws, pytest.raises(TimeoutError):
        ws.connect(timeout=0.5)
    completed = call(silent_server.url(), REALM, NOBODY, timeout=1.5)
    assert call_error(completed) == (TIMEOUT_ERROR, "no answer within 1.5s (pending: websocket)")
    silent_server.wait_for_accepted(3, timeout=2)  # port probe, raw socket, wamp_call


def test_proc_collects_json_and_kills_the_whole_group(tmp_path: Path) -> None:
    """Proc parses JSON stdout lines (skipping others), times out with the log tail, and
    kill() takes grandchildren down too; ports helpers see a listener come and go."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import json, socket, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        srv = socket.socket(); srv.bind(("127.0.0.1", {port})); srv.listen()
        print("not json")
        print(json.dumps({{"event": "ready", "child": child.pid}}), flush=True)
        time.sleep(60)
        """
    )
    proc = Proc([sys.executable, "-c", script], stdout_path=tmp_path / "out.log").start()
    try:
        ready = proc.wait_for_json(lambda o: o.get("event") == "ready", timeout=10)
        assert proc.json_lines() == [ready]
        wait_for_port(port, timeout=5)
        with pytest.raises(RuntimeError, match="not json"):
            proc.wait(timeout=0.2)
        child = int(ready["child"])
        assert pid_alive(child)
    finally:
        proc.kill()
    assert proc.returncode == -9
    wait_port_closed(port, timeout=5)
    assert not pid_alive(child)


def test_missing_crossbar_binary_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a crossbar executable the error says to run scripts/install-crossbar."""
    monkeypatch.setenv("WAMPD_CROSSBAR", str(tmp_path / "no-crossbar-here"))
    with pytest.raises(RuntimeError, match="scripts/install-crossbar"):
        crossbar_bin()
    monkeypatch.delenv("WAMPD_CROSSBAR")
    monkeypatch.setenv("WAMPD_CROSSBAR_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(RuntimeError, match="scripts/install-crossbar"):
        CrossbarRouter(tmp_path / "cb").start()
