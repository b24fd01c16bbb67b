"""RawSocket against Crossbar (issue 16): a component hosted over ``rs://`` and
``rs+unix://`` joins, serves a plain client's call, and rejoins after ``kill -9`` and a
restart of the router; a frozen router is found by the WAMP-level heartbeat within the
keepalive bound; a missing socket file is an attempt that fails, saying why, and is retried
until the router makes it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.crossbar import CrossbarRouter
from harness.wamp_call import call_until_ok

from .conftest import CrossbarFactory
from .wampd_proc import REALM, Launch

PING = {"ping_interval": 1.0, "ping_timeout": 1.0}


@pytest.fixture
def rs_router(crossbar_factory: CrossbarFactory) -> CrossbarRouter:
    return crossbar_factory(rawsocket=True)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_a_component_over_rawsocket_serves_and_rejoins_after_kill_9(
    rs_router: CrossbarRouter, launch: Launch, kind: str
) -> None:
    url = rs_router.rs_url() if kind == "tcp" else rs_router.rs_unix_url()
    daemon = launch(url, keepalive=PING)
    first = daemon.wait_for("session.joined")[0]
    assert first["url"] == url
    assert call_until_ok(rs_router.url(), REALM, "com.example.hello", 10, args=["rs"])[0] == (
        "hello, rs"
    )
    rs_router.kill()
    daemon.wait_for("session.left", timeout=10)
    rs_router.start()
    daemon.wait_for("session.joined", count=2, timeout=30)
    result, _ = call_until_ok(rs_router.url(), REALM, "com.example.hello", 10, args=["again"])
    assert result == "hello, again"
    # No heartbeat was missed while the router was up.
    assert daemon.events("keepalive.timeout") == []
    assert daemon.terminate() == 0


def test_a_frozen_router_is_found_by_the_heartbeat(
    rs_router: CrossbarRouter, launch: Launch
) -> None:
    """RawSocket has no pings in autobahn: wampd's heartbeat (a WAMP call any router
    answers) notices a SIGSTOPped router within ping_interval + ping_timeout + 0.5 s."""
    daemon = launch(rs_router.rs_url(), keepalive=PING)
    daemon.wait_for("session.joined")
    time.sleep(2.5)  # several heartbeats answered: the router is alive, nothing is dropped
    assert daemon.events("keepalive.timeout") == []
    rs_router.pause()
    try:
        paused_at = time.time()
        timeout = daemon.wait_for("keepalive.timeout", timeout=10)[0]
        left = daemon.wait_for("session.left", timeout=5)[0]
        detected = time.time() - paused_at
        assert "RawSocket heartbeat" in timeout["error"]
        assert left.get("keepalive") is True
        assert detected <= 1.0 + 1.0 + 0.5, detected
    finally:
        rs_router.resume()
    daemon.wait_for("session.joined", count=2, timeout=30)
    assert daemon.terminate() == 0


def test_a_missing_socket_file_is_retried_and_said_clearly(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    router = crossbar_factory(rawsocket=True, start=False)
    assert not os.path.exists(router.unix_socket)
    daemon = launch(router.rs_unix_url(), reconnect={"max_retries": -1})
    failed = daemon.wait_for("connect.failed", count=2, timeout=15)
    assert f"no Unix socket at {router.unix_socket}" in failed[0]["error"]
    assert daemon.events("retry.scheduled")
    router.start()
    daemon.wait_for("session.joined", timeout=30)
    assert daemon.terminate() == 0
