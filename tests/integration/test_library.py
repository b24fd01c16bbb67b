"""The drop-in library API against the real router: ``wampd.ApplicationRunner``,
``wampd.Service`` and ``twist wampd``.

The programs under test are written as autobahn's docs show them, with only the import
changed (``tests/integration/library_host.py``). There is one regression test per
defect of autobahn's runners listed in the reference; each says which. Outages come from
a fault proxy in front of one shared router, which is quicker than restarting it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import AGENT_AUTHID, AGENT_TICKET, CrossbarRouter
from harness.fault_proxy import FaultProxy
from harness.ports import free_port
from harness.procs import REPO_ROOT, Proc, harness_env
from harness.wamp_call import call
from tests.integration.wampd_proc import REALM, Host, write_config

from .conftest import CrossbarFactory

pytestmark = pytest.mark.integration

#: Retries quick enough for tests (the runner's own defaults are autobahn's 1 s .. 60 s).
QUICK = {"initial_retry_delay": 0.1, "max_retry_delay": 0.3, "stable_after": 1.0}


@pytest.fixture
def proxy(module_crossbar: CrossbarRouter, tmp_path: Path) -> Iterator[FaultProxy]:
    """A fault proxy in front of the module's router, passing traffic."""
    with FaultProxy(tmp_path / "proxy", module_crossbar.port) as p:
        yield p


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    made: list[Host] = []
    yield made
    for h in made:
        h.stop()


def start(hosts: list[Host], tmp_path: Path, **spec: Any) -> Host:
    spec.setdefault("api", "runner")
    spec.setdefault("realm", REALM)
    host = Host(tmp_path, spec, name=f"host{len(hosts)}")
    hosts.append(host)
    return host


def hello(prefix: str) -> dict[str, Any]:
    return {"extra": {"prefix": prefix}}


def drop(proxy: FaultProxy, host: Host, n: int) -> None:
    """The n-th outage: reset the connection, wait for the n-th leave, let traffic pass
    again, and wait for the rejoin."""
    proxy.mode("reset")
    host.wait_event("session.left", count=n)
    proxy.mode("pass")
    host.wait_event("session.joined", count=n + 1)


def answers(url: str, procedure: str) -> bool:
    return call(url, REALM, procedure, ["wampd"], timeout=10).returncode == 0


# -- the seed's usage patterns, unchanged but for the import --


@pytest.mark.parametrize(
    ("component", "procedure"),
    [
        ("tests.integration.components:Hello", "com.lib.hello"),
        ("tests.integration.components:make", "com.made.hello"),
        ("tests.integration.components:app", "com.example.app.echo"),
    ],
    ids=["session-class", "make-factory", "application"],
)
def test_runner_hosts_each_form_and_rejoins_after_a_drop(
    component: str,
    procedure: str,
    proxy: FaultProxy,
    module_crossbar: CrossbarRouter,
    hosts: list[Host],
    tmp_path: Path,
) -> None:
    """``run(Class)``, ``run(make)`` and ``run(app)`` with ``auto_reconnect=True``: each
    joins and answers; after every connection is reset each joins again and answers
    again (an ``Application`` makes a new session per connection); SIGTERM then ends
    ``run()`` with a GOODBYE and status 0. Retry delays are given without
    ``max_retries`` (autobahn defect 4: that failed inside the policy)."""
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component=component,
        kwargs={**QUICK, **hello("com.lib")},
        run={"auto_reconnect": True},
    )
    host.wait_event("session.joined")
    assert answers(module_crossbar.url(), procedure), host.describe()
    drop(proxy, host, 1)
    assert answers(module_crossbar.url(), procedure), host.describe()
    host.proc.signal(signal.SIGTERM)
    status, end = host.end()
    assert (status, end["host"]) == (0, "returned"), host.describe()
    assert [e["reason"] for e in host.events("session.left")][-1] == "wamp.close.normal"
    assert not host.events("component.error"), host.describe()


# -- one regression test per autobahn defect --


def test_max_retries_is_exact_and_run_raises_when_it_is_spent(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """Defects 1 and 3: ``max_retries=3`` after a drop is exactly 3 retries (autobahn made
    4 of 5), then ``run()`` stops the reactor and raises ``RetriesExhausted`` (autobahn
    hung). The observer saw every step (defect 8: there was no callback)."""
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component="tests.integration.components:Hello",
        kwargs={**QUICK, **hello("com.budget"), "max_retries": 3},
        run={"auto_reconnect": True},
    )
    host.wait_event("session.joined")
    proxy.mode("refuse")
    proxy.mode("reset")
    status, end = host.end()
    assert status == 3, host.describe()
    assert end["error"] == "RetriesExhausted"
    assert "gave up after 3 retries" in end["message"]
    names = [e["name"] for e in host.events()]
    after_loss = names[names.index("session.left") :]
    assert after_loss.count("connect.attempt") == 3
    assert after_loss.count("retry.scheduled") == 3
    assert after_loss[-2:] == ["connect.failed", "retries.exhausted"]


def test_every_outage_gets_a_full_budget_and_a_backoff(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """autobahn's ``Component`` spent one budget across separate outages (#1597), or,
    with ``main``, reconnected at once after every drop. Here ``max_retries=1`` survives
    three drops, each one retry 1 after a delay > 0, because each session stayed joined
    ``stable_after`` seconds."""
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component="tests.integration.components:Hello",
        kwargs={**QUICK, **hello("com.outages"), "max_retries": 1, "stable_after": 0.3},
        run={"auto_reconnect": True},
    )
    for outage in (1, 2, 3):
        host.wait_event("session.stable", count=outage)
        drop(proxy, host, outage)
    retries = host.events("retry.scheduled")
    assert [r["retry"] for r in retries] == [1, 1, 1], host.describe()
    assert all(r["delay"] > 0 for r in retries)
    assert not host.events("retries.exhausted")
    host.proc.signal(signal.SIGTERM)
    assert host.end()[0] == 0


def test_router_down_at_start_is_retried_with_max_retries_alone(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """Defects 2 and 4: with only ``max_retries`` given (autobahn: ``TypeError``) and the
    router down at start (autobahn: "hit stop" and a hang), the runner retries with
    autobahn's documented 1 s first delay and joins once the router is there."""
    proxy.mode("refuse")
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component="tests.integration.components:Hello",
        kwargs={**hello("com.late"), "max_retries": 5},
        run={"auto_reconnect": True},
    )
    failed = host.wait_event("connect.failed")
    retry = host.wait_event("retry.scheduled")
    assert 1.0 <= retry["delay"] <= 2.0, retry  # 1 s + up to 1 s of added jitter
    assert "refused" in failed["error"].lower()
    proxy.mode("pass")
    joined = host.wait_event("session.joined", timeout=10)
    assert joined["url"] == proxy.url()
    host.proc.signal(signal.SIGTERM)
    assert host.end()[0] == 0


@pytest.mark.parametrize("fatal", [True, False], ids=["fatal", "budget"])
def test_wrong_ticket_is_not_retried_forever(
    fatal: bool, module_crossbar: CrossbarRouter, hosts: list[Host], tmp_path: Path
) -> None:
    """Defect 5: a router that accepts TCP and then rejects the ticket. By default
    ``not_authorized`` is fatal: one attempt, ``FatalRouterError``. Made non-fatal, the
    TCP connects do not refill the budget: exactly 1 + 2 attempts for
    ``max_retries=2`` (autobahn made 21 in 8 s)."""
    kwargs: dict[str, Any] = {**QUICK, "max_retries": 2}
    if not fatal:
        kwargs["fatal_errors"] = []
    host = start(
        hosts,
        tmp_path,
        url=module_crossbar.url("auth"),
        component="tests.integration.components:WrongTicket",
        kwargs=kwargs,
        run={"auto_reconnect": True},
    )
    status, end = host.end()
    assert status == 3, host.describe()
    attempts = host.events("connect.attempt")
    if fatal:
        assert end["error"] == "FatalRouterError"
        assert "wamp.error.not_authorized" in end["message"]
        assert len(attempts) == 1
    else:
        assert end["error"] == "RetriesExhausted"
        assert len(attempts) == 3
    assert not host.events("session.joined")


def test_goodbye_on_shutdown_after_reconnects(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """Defect 6: after two reconnects, SIGTERM (reactor shutdown) still sends GOODBYE:
    the router's GOODBYE reply (Crossbar echoes the reason) reaches the component's
    ``onLeave``; a connection closed without it would say ``transport_lost``."""
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component="tests.integration.components:ReportsLeave",
        kwargs={**QUICK, **hello("com.bye")},
        run={"auto_reconnect": True},
    )
    for joins in (1, 2):
        host.wait_event("session.joined", count=joins)
        drop(proxy, host, joins)
    host.proc.signal(signal.SIGTERM)
    status, _ = host.end()
    assert status == 0, host.describe()
    leaves = [line["left"] for line in host.lines() if "left" in line]
    assert leaves[-1] == "wamp.close.normal", host.describe()


def test_a_component_that_leaves_is_done(
    module_crossbar: CrossbarRouter, hosts: list[Host], tmp_path: Path
) -> None:
    """Defect 7: a clean leave by the component is not reconnected; ``run()`` returns
    (status 0) after one attempt and one join."""
    host = start(
        hosts,
        tmp_path,
        url=module_crossbar.url(),
        component="tests.integration.components:LeavesAtOnce",
        kwargs=QUICK,
        run={"auto_reconnect": True},
    )
    status, end = host.end()
    assert (status, end["host"]) == (0, "returned"), host.describe()
    assert len(host.events("connect.attempt")) == 1
    assert len(host.events("session.joined")) == 1


def test_print_reaches_stdout_at_log_level_warn(
    module_crossbar: CrossbarRouter, hosts: list[Host], tmp_path: Path
) -> None:
    """Defect 9: with ``log_level="warn"`` a component's ``print()`` still reaches stdout
    (autobahn redirected stdout into the log and dropped it), and info lines are not
    logged."""
    host = start(
        hosts,
        tmp_path,
        url=module_crossbar.url(),
        component="tests.integration.components:Printer",
        kwargs=QUICK,
        run={"auto_reconnect": True, "log_level": "warn"},
    )
    host.proc.wait_for_line(lambda line: line == "printed by a component", 15)
    host.proc.signal(signal.SIGTERM)
    assert host.end()[0] == 0
    logged = [line for line in host.lines() if "event" in line and "host" not in line]
    assert all(line["level"] != "info" for line in logged), logged


def test_keepalive_detects_a_dead_link(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """No keepalive knob in autobahn's runner (10 s + 5 s, hard-coded); here sub-second
    ``ping_interval``/``ping_timeout`` keep a healthy link joined through many pings
    (txaio's whole-second timers used to drop it at the first one) and find a
    black-holed link within their sum."""
    host = start(
        hosts,
        tmp_path,
        url=proxy.url(),
        component="tests.integration.components:Hello",
        kwargs={
            **QUICK,
            **hello("com.ka"),
            "ping_interval": 0.3,
            "ping_timeout": 0.3,
            "stable_after": 2.0,
        },
        run={"auto_reconnect": True},
    )
    host.wait_event("session.stable")
    assert not host.events("keepalive.timeout"), host.describe()
    assert not host.events("session.left"), host.describe()
    proxy.mode("blackhole")
    blackholed = time.time()  # the proxy answered, so the link is dead by now
    # Dropped within ping_interval + ping_timeout of the link dying. Timed by the event's
    # own time (the host reactor's time.time(): no stdout or polling latency), with 2 s of
    # slack for a loaded machine's timers; a ping_timeout left at its default (5 s, as in
    # autobahn's runner) could not be this quick.
    detected = host.wait_event("keepalive.timeout", timeout=15)["time"] - blackholed
    assert detected < 0.3 + 0.3 + 2.0, f"keepalive.timeout {detected:.2f} s after the blackhole"
    proxy.mode("pass")
    host.wait_event("session.joined", count=2, timeout=10)


def test_without_auto_reconnect_a_lost_session_ends_run(
    proxy: FaultProxy, hosts: list[Host], tmp_path: Path
) -> None:
    """``auto_reconnect=False`` with ``start_reactor=False``: losing the session fails
    the Deferred ``run()`` returned (autobahn left a silent reactor), after one
    attempt."""
    host = start(
        hosts,
        tmp_path,
        api="runner-deferred",
        url=proxy.url(),
        component="tests.integration.components:Hello",
        kwargs=hello("com.once"),
    )
    host.wait_event("session.joined")
    proxy.mode("reset")
    status, end = host.end()
    assert (status, end["error"]) == (3, "RetriesExhausted"), host.describe()
    assert "after 0 retries" in end["message"]
    assert len(host.events("connect.attempt")) == 1


def test_service_in_a_multiservice_rejoins_and_leaves_on_stop(
    proxy: FaultProxy,
    module_crossbar: CrossbarRouter,
    hosts: list[Host],
    tmp_path: Path,
) -> None:
    """``Service(url, realm, make)`` inside a ``MultiService``: joins, rejoins after a
    drop, and ``stopService`` leaves with GOODBYE (the router's reply, echoing
    ``wamp.close.normal``, reaches ``onLeave``) before its Deferred fires."""
    host = start(
        hosts,
        tmp_path,
        api="service",
        url=proxy.url(),
        component="tests.integration.components:ReportsLeave",
        kwargs={**QUICK, "extra": {"prefix": "com.svc"}},
    )
    host.wait_event("session.joined")
    drop(proxy, host, 1)
    assert answers(module_crossbar.url(), "com.svc.hello"), host.describe()
    host.proc.signal(signal.SIGTERM)
    status, end = host.end()
    assert (status, end["host"]) == (0, "returned"), host.describe()
    leaves = [line["left"] for line in host.lines() if "left" in line]
    assert leaves[-1] == "wamp.close.normal", host.describe()


def test_the_runner_example_runs(module_crossbar: CrossbarRouter, tmp_path: Path) -> None:
    """``examples/runner.py``: joins, answers ``com.example.hello``, serves /healthz and
    /metrics (session up) on the port it is given, prints its events, and ends with
    status 0 on SIGTERM."""
    port = free_port()
    with Proc(
        [sys.executable, "runner.py", module_crossbar.url(), f"127.0.0.1:{port}"],
        stdout_path=tmp_path / "example.out",
        env=harness_env(),
        cwd=REPO_ROOT / "examples",
        name="example",
    ) as proc:
        proc.wait_for_line(lambda line: line == "session.joined: Hello is joined", 20)
        result = call(module_crossbar.url(), REALM, "com.example.hello", ["wampd"])
        assert json.loads(result.stdout) == "hello, wampd", proc.describe()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'wampd_session_up{component="Hello"} 1.0' in metrics, metrics
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.describe()


# -- twist wampd --


def twist(tmp_path: Path, config: Path) -> Proc:
    return Proc(
        [sys.executable, "-m", "twisted", "wampd", "--config", str(config)],
        stdout_path=tmp_path / "twist.out",
        env=harness_env(),
        cwd=REPO_ROOT,
        name="twist",
    ).start()


def test_twist_plugin_runs_the_daemon(module_crossbar: CrossbarRouter, tmp_path: Path) -> None:
    """``twist wampd --config FILE`` joins the configured component (its log lines go
    through Twisted's log) and, on SIGTERM, leaves with GOODBYE before the process ends."""
    config = write_config(
        tmp_path / "wampd.toml",
        {"router": {"url": module_crossbar.url(), "realm": REALM}, "http": {"listen": ""}},
        [
            {
                "name": "hello",
                "entry": "tests.integration.components:Hello",
                "extra": {"prefix": "com.twist"},
            }
        ],
    )
    with twist(tmp_path, config) as proc:
        proc.wait_for_line(lambda line: "event='session.joined'" in line, 20)
        assert answers(module_crossbar.url(), "com.twist.hello"), proc.describe()
        proc.signal(signal.SIGTERM)
        # twist ends by re-raising the signal once the reactor has stopped (Twisted's way).
        assert proc.wait(15) == -signal.SIGTERM, proc.describe()
    out = proc.output()
    assert "event='session.left'" in out
    assert "reason='wamp.close.normal'" in out
    assert out.index("event='session.left'") < out.index("event='daemon.stopped' exit_code=0")


def test_twist_plugin_exit_statuses(module_crossbar: CrossbarRouter, tmp_path: Path) -> None:
    """``twist wampd`` ends like ``wampd run``: 2 for a bad config (one line naming the
    key), 78 for a fatal router rejection (a wrong ticket)."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[router]\nurl = "ws://127.0.0.1:1/ws"\nrealm = "r"\nretries = 3\n')
    with twist(tmp_path / "bad", bad) as proc:
        assert proc.wait(15) == 2, proc.describe()
    assert "wampd: config error: router.retries" in proc.output()
    wrong = write_config(
        tmp_path / "wrong.toml",
        {
            "router": {
                "url": module_crossbar.url("auth"),
                "realm": REALM,
                "auth": {"method": "ticket", "authid": AGENT_AUTHID, "secret": "wrong"},
            },
            "http": {"listen": ""},
        },
        [{"name": "hello", "entry": "tests.integration.components:Hello"}],
    )
    assert AGENT_TICKET != "wrong"
    with twist(tmp_path / "wrong", wrong) as proc:
        assert proc.wait(15) == 78, proc.describe()
    assert "event='fatal.error'" in proc.output()


@pytest.mark.parametrize("kind", ["rs", "rs-unix-autobahn"])
def test_the_runner_takes_rawsocket_urls_as_autobahns_does(
    crossbar_factory: CrossbarFactory, hosts: list[Host], tmp_path: Path, kind: str
) -> None:
    """``ApplicationRunner("rs://host:port", realm)`` (and autobahn's ``rs://unix:/path``
    for a Unix socket) hosts the component over RawSocket, with wampd's heartbeat."""
    router = crossbar_factory(rawsocket=True)
    url = router.rs_url() if kind == "rs" else f"rs://unix:{router.unix_socket}"
    host = start(
        hosts,
        tmp_path,
        url=url,
        component="tests.integration.components:Hello",
        kwargs={**QUICK, **hello("com.lib.rs"), "ping_interval": 1.0, "ping_timeout": 1.0},
        run={"auto_reconnect": True},
    )
    host.wait_event("session.joined")
    assert answers(router.url(), "com.lib.rs.hello"), host.describe()
    host.proc.signal(signal.SIGTERM)
    status, end = host.end()
    assert (status, end["host"]) == (0, "returned"), host.describe()
    assert not host.events("keepalive.timeout"), host.describe()
