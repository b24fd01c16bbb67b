"""The bridge's other direction, against the real Crossbar router: WAMP events POSTed to
the app's webhooks, WAMP calls answered by the app's HTTP callbacks. The app is a real HTTP
server (harness.http_app); the publisher and the caller are plain autobahn clients
(harness.wamp_call)."""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.crossbar import CrossbarRouter
from harness.http_app import Answer, AppServer, Received
from harness.poll import poll
from harness.ports import free_port
from harness.procs import harness_env, python_module
from harness.wamp_call import call, call_error, call_result

from .test_bridge import RECORDER, post, ready
from .test_observability import sample, scrape
from .wampd_proc import Launch, WampdProcess

REALM = "realm1"


def publish(crossbar: CrossbarRouter, topic: str, *args: Any) -> int:
    done = call(crossbar.url(), REALM, topic, args, publish=True)
    assert done.returncode == 0, done.stderr
    publication = call_result(done)["publication"]
    assert isinstance(publication, int)
    return publication


def start_bridge(
    launch: Launch, crossbar: CrossbarRouter, **bridge: Any
) -> tuple[WampdProcess, int, int]:
    port, http = free_port(), free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        http=f"127.0.0.1:{http}",
        bridge={"listen": f"127.0.0.1:{port}", **bridge},
    )
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)
    return daemon, port, http


def test_events_reach_the_webhook_in_order_through_a_receiver_outage(
    crossbar: CrossbarRouter, launch: Launch
) -> None:
    """max_inflight = 1: every event is POSTed with its topic, args, kwargs, publication
    and details; while the receiver is down they are retried (logged, counted) and then
    delivered in publication order; a 4xx is dead-lettered, not retried."""
    app = AppServer(
        {
            "/hooks/orders": lambda got: Answer(400 if got.json()["args"] == ["poison"] else 204),
        }
    ).start()
    daemon, port, http = start_bridge(
        launch,
        crossbar,
        subscription=[{"topic": "com.example.orders", "url": app.url("/hooks/orders")}],
    )

    first = publish(crossbar, "com.example.orders", 0)  # a plain autobahn publisher
    poll(lambda: app.requests("/hooks/orders") or None, 15, describe=daemon.describe)
    (got,) = app.requests("/hooks/orders")
    event = got.json()
    assert event["topic"] == "com.example.orders" and event["args"] == [0]
    assert event["kwargs"] == {} and event["publication"] == first
    assert event["delivery_attempt"] == 1 and "subscription" in event["details"]
    assert got.headers["content-type"] == "application/json"

    app.stop()
    for n in range(1, 6):  # through the bridge itself: its own events, exclude_me off
        body = {"topic": "com.example.orders", "args": [n], "options": {"exclude_me": False}}
        assert post(port, "/v1/publish", body)[0] == 200
    daemon.wait_for("bridge.delivery_retried", count=2)
    assert sample(scrape(http), "wampd_bridge_queue_depth", subscription="com.example.orders") == 5
    app.start()  # back, on the same port

    def delivered() -> list[int] | None:
        seen = [r.json()["args"][0] for r in app.requests("/hooks/orders")]
        return seen if seen[-1:] == [5] else None

    poll(delivered, 60, describe=daemon.describe)
    ordered = [r.json()["args"][0] for r in app.requests("/hooks/orders")]
    assert ordered == [0, 1, 2, 3, 4, 5], "delivered once each, in publication order"
    retried = daemon.events("bridge.delivery_retried")
    assert retried[0]["subscription"] == "com.example.orders"
    assert "cannot connect" in retried[0]["reason"]
    assert max(r.json()["delivery_attempt"] for r in app.requests("/hooks/orders")) > 1

    poison = publish(crossbar, "com.example.orders", "poison")
    (dead,) = daemon.wait_for("bridge.dead_lettered")
    assert dead["publication"] == poison and dead["reason"] == "HTTP 400"
    samples = scrape(http)
    counted = {
        outcome: sample(
            samples,
            "wampd_bridge_deliveries_total",
            subscription="com.example.orders",
            outcome=outcome,
        )
        for outcome in ("delivered", "dead_lettered", "dropped")
    }
    assert counted == {"delivered": 6, "dead_lettered": 1, "dropped": 0}
    assert len([r for r in app.requests("/hooks/orders") if r.json()["args"] == ["poison"]]) == 1
    app.stop()


def test_a_full_queue_drops_and_says_so(crossbar: CrossbarRouter, launch: Launch) -> None:
    """max_queued = 2, receiver down: the third waiting event is dropped (drop_newest),
    logged with its publication id and counted; the two kept are delivered later."""
    app = AppServer({"/hooks/q": Answer(204)})  # not started: down
    daemon, _port, http = start_bridge(
        launch,
        crossbar,
        subscription=[
            {"topic": "com.example.q", "url": app.url("/hooks/q"), "max_queued": 2, "timeout": 1}
        ],
    )
    ids = [publish(crossbar, "com.example.q", n) for n in range(4)]  # 1 in flight, 2 queued
    (dropped,) = daemon.wait_for("bridge.event_dropped")
    assert dropped["publication"] == ids[3] and "queue is full" in dropped["reason"]
    assert (
        sample(
            scrape(http),
            "wampd_bridge_deliveries_total",
            subscription="com.example.q",
            outcome="dropped",
        )
        == 1
    )
    app.start()
    poll(lambda: len(app.requests("/hooks/q")) >= 3 or None, 60, describe=daemon.describe)
    assert [r.json()["args"][0] for r in app.requests("/hooks/q")] == [0, 1, 2]
    app.stop()


def rpc_add(got: Received) -> Answer:
    args = got.json()["args"]
    if not all(isinstance(a, int | float) for a in args):
        return Answer(400, {"error": "com.example.error.not_numbers", "args": ["numbers only"]})
    return Answer(200, {"args": [sum(args)]})


def test_the_app_serves_procedures(crossbar: CrossbarRouter, launch: Launch) -> None:
    """A plain autobahn caller gets the app's result, its error, runtime_error for a bad
    reply, timeout (the app's request cancelled), unavailable for an app that is not
    listening; a caller's cancel cancels the app's request."""
    app = AppServer(
        {
            "/rpc/add": rpc_add,
            "/rpc/kw": Answer(200, {"args": [1], "kwargs": {"x": 2}}),
            "/rpc/plain": Answer(200, "just a string"),
            "/rpc/broken": Answer(500, b"<html>oops</html>"),
            "/rpc/slow": Answer(200, {"args": ["late"]}, delay=8.0),
        }
    ).start()
    closed = free_port()
    daemon, _port, http = start_bridge(
        launch,
        crossbar,
        procedure=[
            {"uri": "com.example.add", "url": app.url("/rpc/add")},
            {"uri": "com.example.kw", "url": app.url("/rpc/kw")},
            {"uri": "com.example.plain", "url": app.url("/rpc/plain")},
            {"uri": "com.example.broken", "url": app.url("/rpc/broken")},
            {"uri": "com.example.slow", "url": app.url("/rpc/slow"), "timeout": 1.0},
            {"uri": "com.example.slow2", "url": app.url("/rpc/slow"), "timeout": 30.0},
            {"uri": "com.example.gone", "url": f"http://127.0.0.1:{closed}/rpc"},
        ],
    )
    url = crossbar.url()
    assert call_result(call(url, REALM, "com.example.add", [2, 3])) == 5
    (got,) = app.requests("/rpc/add")
    invocation = got.json()
    assert invocation["procedure"] == "com.example.add" and invocation["args"] == [2, 3]
    assert invocation["kwargs"] == {} and invocation["details"]["procedure"] == "com.example.add"
    assert call_error(call(url, REALM, "com.example.add", ["a"])) == (
        "com.example.error.not_numbers",
        "numbers only",
    )
    assert call_result(call(url, REALM, "com.example.kw")) == {"args": [1], "kwargs": {"x": 2}}
    assert call_result(call(url, REALM, "com.example.plain")) == "just a string"
    error = call_error(call(url, REALM, "com.example.broken"))
    assert error is not None and error[0] == "wamp.error.runtime_error" and "500" in error[1]
    error = call_error(call(url, REALM, "com.example.slow"))
    assert error is not None and error[0] == "wamp.error.timeout"
    poll(lambda: app.cancelled or None, 10, describe=daemon.describe)
    error = call_error(call(url, REALM, "com.example.gone"))
    assert error is not None and error[0] == "wamp.error.unavailable"

    before = len(app.cancelled)
    error = call_error(call(url, REALM, "com.example.slow2", cancel_after=1.0))
    assert error is not None and error[0] == "wamp.error.canceled"
    poll(lambda: len(app.cancelled) > before or None, 10, describe=daemon.describe)

    samples = scrape(http)
    outcomes = {
        (procedure, outcome): sample(
            samples, "wampd_bridge_invocations_total", procedure=procedure, outcome=outcome
        )
        for procedure, outcome in [
            ("com.example.add", "ok"),
            ("com.example.add", "error"),
            ("com.example.slow", "timeout"),
            ("com.example.gone", "unavailable"),
        ]
    }
    assert set(outcomes.values()) == {1.0}, outcomes
    app.stop()


def test_max_inflight_makes_more_invocations_unavailable(
    crossbar: CrossbarRouter, launch: Launch
) -> None:
    app = AppServer({"/rpc/slow": Answer(200, {"args": ["done"]}, delay=3.0)}).start()
    daemon, _port, _http = start_bridge(
        launch,
        crossbar,
        procedure=[{"uri": "com.example.one", "url": app.url("/rpc/slow"), "max_inflight": 1}],
    )
    argv = ["--url", crossbar.url(), "--realm", REALM, "--procedure", "com.example.one"]
    first = subprocess.Popen(
        python_module("harness.wamp_call", *argv),
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    poll(lambda: app.requests("/rpc/slow") or None, 15, describe=daemon.describe)
    error = call_error(call(crossbar.url(), REALM, "com.example.one"))
    assert error is not None and error[0] == "wamp.error.unavailable" and "max_inflight" in error[1]
    out, err = first.communicate(timeout=30)
    assert first.returncode == 0 and out.strip() == '"done"', err
    app.stop()


def test_subscriptions_and_registrations_come_back_with_the_router(
    crossbar: CrossbarRouter, launch: Launch
) -> None:
    """Router kill -9 and restart: /v1/ready goes 503 -> 200, and the bridge's
    subscription and registration are in place again."""
    app = AppServer({"/hooks/e": Answer(204), "/rpc/add": rpc_add}).start()
    daemon, port, _http = start_bridge(
        launch,
        crossbar,
        subscription=[{"topic": "com.example.e", "url": app.url("/hooks/e")}],
        procedure=[{"uri": "com.example.add", "url": app.url("/rpc/add")}],
    )
    crossbar.kill()
    poll(lambda: ready(port) == 503 or None, 15, describe=daemon.describe)
    crossbar.restart()
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)
    assert call_result(call(crossbar.url(), REALM, "com.example.add", [20, 22])) == 42
    publication = publish(crossbar, "com.example.e", "after")
    poll(lambda: app.requests("/hooks/e") or None, 15, describe=daemon.describe)
    assert app.requests("/hooks/e")[0].json()["publication"] == publication
    assert len(daemon.events("bridge.ready")) == 2
    app.stop()


def refused_publish(port: int) -> tuple[int, Any, Any] | None:
    answer = post(port, "/v1/publish", {"topic": "com.example.t"})
    return answer if answer[0] == 503 else None


def test_sigterm_drains_the_bridge(crossbar: CrossbarRouter, launch: Launch) -> None:
    """SIGTERM with a call, an invocation and a delivery in flight: each completes, new
    requests get 503 from the moment the drain begins, the session leaves with GOODBYE."""
    callee = launch(crossbar.url(), components=[{**RECORDER, "extra": {"slow": 2.0}}])
    callee.wait_for("session.joined", component="recorder")
    app = AppServer(
        {
            "/rpc/slow": Answer(200, {"args": ["served"]}, delay=1.5),
            "/hooks/e": Answer(204, delay=1.5),
        }
    ).start()
    port = free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        shutdown=6.0,
        log_level="debug",
        bridge={
            "listen": f"127.0.0.1:{port}",
            "subscription": [{"topic": "com.example.e", "url": app.url("/hooks/e")}],
            "procedure": [{"uri": "com.example.served", "url": app.url("/rpc/slow")}],
        },
    )
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)

    with ThreadPoolExecutor(4) as pool:
        in_flight = pool.submit(post, port, "/v1/call", {"procedure": "com.example.bridge.slow"})
        invocation = pool.submit(call, crossbar.url(), REALM, "com.example.served")
        publish(crossbar, "com.example.e", "last")
        poll(
            lambda: (app.requests("/rpc/slow") and app.requests("/hooks/e")) or None,
            15,
            describe=daemon.describe,
        )
        daemon.proc.signal(signal.SIGTERM)
        refused: tuple[int, Any, Any] = poll(
            lambda: refused_publish(port), 5, describe=daemon.describe
        )
        _, body, headers = refused
        assert body["error"] == "wampd.error.shutting_down" and headers["Retry-After"] == "1"
        assert in_flight.result(timeout=15)[:2] == (200, {"args": ["late"], "kwargs": {}})
        assert call_result(invocation.result(timeout=15)) == "served"
    assert daemon.wait(15) == 0
    (drained,) = daemon.events("bridge.drained")
    assert drained["seconds"] < 3.6
    assert daemon.events("bridge.delivered") and not daemon.events("bridge.delivery_abandoned")
    (left,) = daemon.events("session.left", component="bridge")
    assert left["reason"] == "wamp.close.normal", left
    app.stop()
