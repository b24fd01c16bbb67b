"""How the daemon turns its supervisors' ends into an exit status and a shutdown.

The daemon's supervisors connect through :class:`wampd.testing.FakeConnector`s (one per
component, in the configuration's order), so each test settles their attempts by hand.
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from wampd import tree
from wampd.backoff import Backoff, Jitter
from wampd.config import parse_config
from wampd.daemon import Daemon, plan, retry_policy, secrets
from wampd.logs import LineOutput, make_logger

from .fakes import FakeConnector, outcome
from .sample_entries import Plain


def make_daemon(
    components: int = 2,
    clock: Clock | None = None,
    *,
    connectors: list[FakeConnector] | None = None,
    rand: Callable[[], float] = lambda: 0.5,
    **sections: Mapping[str, Any],
) -> tuple[Daemon, list[str], io.StringIO]:
    """A daemon of ``components`` components c0, c1, ... and more configuration
    ``sections``; ``connectors`` gets their fake connectors. Its random source is
    ``rand`` (a constant: every retry delay is known)."""
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "component": [
                {"name": f"c{i}", "entry": "tests.unit.sample_entries:Plain"}
                for i in range(components)
            ],
        }
        | sections,
        environ={},
    )
    made = connectors if connectors is not None else []

    def connector(*args: Any, **kwargs: Any) -> FakeConnector:
        made.append(FakeConnector())
        return made[-1]

    stops: list[str] = []
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tree, "WampConnector", connector)
        daemon = Daemon(
            config,
            {f"c{i}": Plain for i in range(components)},
            reactor=clock if clock is not None else Clock(),
            logger=make_logger(format="json", stream=out),
            stop_reactor=lambda: stops.append("stop"),
            rand=rand,
        )
    assert len(made) == components
    return daemon, stops, out


def started(
    components: int = 2, clock: Clock | None = None
) -> tuple[Daemon, list[FakeConnector], list[str], io.StringIO]:
    """A started daemon (without HTTP endpoints) whose supervisors never retry
    (``max_retries = 0``): each has made its first attempt."""
    connectors: list[FakeConnector] = []
    daemon, stops, out = make_daemon(
        components,
        clock,
        connectors=connectors,
        reconnect={"max_retries": 0},
        http={"listen": ""},
    )
    daemon.startService()
    assert [len(c.attempts) for c in connectors] == [1] * components
    return daemon, connectors, stops, out


def logged(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def stopping(out: io.StringIO) -> list[tuple[str, int]]:
    """The daemon.stopping lines' (reason, exit_code)."""
    return [(e["reason"], e["exit_code"]) for e in logged(out) if e["event"] == "daemon.stopping"]


def test_retries_exhausted_stops_the_daemon_with_69() -> None:
    """One supervisor giving up ends the process with status 69, asked for once, right
    after its retries.exhausted line; a second one giving up changes nothing."""
    daemon, connectors, stops, out = started()
    connectors[0].refuse()
    assert daemon.exit_code == 69
    assert stops == ["stop"]
    connectors[1].abort("wamp.error.not_authorized")
    assert daemon.exit_code == 69
    assert stops == ["stop"]
    assert stopping(out) == [("c0: retries.exhausted", 69)]
    events = [line["event"] for line in logged(out)]
    assert events.index("daemon.stopping") == events.index("retries.exhausted") + 1


def test_a_shared_router_that_never_returns_ends_the_daemon_with_69() -> None:
    """Three components of one router share a gate: while it refuses, they wait behind one
    probe at a time, yet each spends its own budget (max_retries = 2), and the first to
    run out ends the daemon with 69 -- in fewer attempts than three separate ones make.
    (The constant random source puts their first retries at the same moment, 1.5 s.)"""
    clock = Clock()
    connectors: list[FakeConnector] = []
    daemon, stops, out = make_daemon(
        3, clock, connectors=connectors, reconnect={"max_retries": 2}, http={"listen": ""}
    )
    daemon.startService()
    for _ in range(40):
        for connector in connectors:
            if connector.attempts and not connector.last.settled:
                connector.refuse()
        if stops:
            break
        clock.advance(0.5)
    assert stops == ["stop"]
    assert daemon.exit_code == 69
    (reason,) = [r for r, _ in stopping(out)]
    assert reason.endswith(": retries.exhausted")
    assert sum(len(c.attempts) for c in connectors) < 3 * 3
    shared = [e for e in logged(out) if "still refuses" in str(e.get("error", ""))]
    assert shared, "the components behind the probe counted its failure as their own"


def test_fatal_rejection_stops_the_daemon_with_78() -> None:
    """A fatal router rejection ends the process with status 78."""
    daemon, connectors, stops, out = started()
    connectors[1].abort("wamp.error.not_authorized")
    assert daemon.exit_code == 78
    assert stops == ["stop"]
    assert stopping(out) == [("c1: fatal.error", 78)]


def test_every_component_done_stops_with_0_only_when_all_are() -> None:
    """The daemon ends by itself with status 0 once every component has left on its own."""
    daemon, connectors, stops, out = started()
    links = [connector.join() for connector in connectors]
    links[0].lose(by_component=True)
    assert stops == []
    links[1].lose(by_component=True)
    assert stops == ["stop"]
    assert daemon.exit_code == 0
    assert stopping(out) == [("every component has left on its own", 0)]


def test_a_component_left_and_one_that_gives_up_is_a_failure() -> None:
    """One component leaving on its own, then the other giving up: status 69, not 0."""
    _, connectors, stops, out = started()
    connectors[0].join().lose(by_component=True)
    connectors[1].refuse()
    assert stops == ["stop"]
    assert stopping(out) == [("c1: retries.exhausted", 69)]


def test_the_daemons_own_stop_is_not_every_component_leaving() -> None:
    """Stopping the daemon ends every supervisor, which is not a reason to stop again."""
    daemon, connectors, stops, out = started()
    links = [connector.join() for connector in connectors]
    daemon.signalled("SIGTERM")
    done = daemon.shutdown()
    for link in links:
        link.lose("wamp.close.normal")
    assert outcome(done) is None
    assert stops == ["stop"]
    assert stopping(out) == [("SIGTERM", 0)]
    assert [line["event"] for line in logged(out)].count("daemon.stopped") == 1


def test_stopping_the_tree_is_not_every_component_leaving() -> None:
    """The tree stopped as a service (not by a stop request): its supervisors ending is
    no reason for the daemon to end the process."""
    daemon, _, stops, out = started()
    assert outcome(daemon.stopService()) is None
    assert stops == []
    assert stopping(out) == []


def test_a_supervisor_that_gives_up_leaves_no_unhandled_error() -> None:
    """The daemon handles the failure of a supervisor's whenFinished(): nothing is left
    for Twisted to log as an unhandled error in a Deferred."""
    failures: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        daemon, connectors, _, _ = started()
        connectors[0].refuse()
        connectors[1].abort("wamp.error.not_authorized")
        assert daemon.exit_code == 69
        del daemon, connectors
        gc.collect()  # an unhandled failure is logged when its Deferred is collected
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []


def test_the_start_logs_the_config_warnings_first_and_the_secret_is_masked() -> None:
    """Every configuration warning is a config.warning line before daemon.started (for
    ``wampd run`` and ``twist wampd`` alike); secrets() is what their loggers mask."""
    router = {
        "url": "ws://127.0.0.1:1/ws",
        "realm": "realm1",
        "auth": {"method": "ticket", "authid": "a", "secret": "t0pSecret"},
    }
    daemon, _, out = make_daemon(1, router=router, http={"listen": ""})
    assert secrets(daemon.config) == ["t0pSecret"]
    assert secrets(make_daemon(1)[0].config) == []
    daemon.startService()
    lines = logged(out)
    assert [line["event"] for line in lines][:2] == ["config.warning", "daemon.started"]
    assert lines[0]["warning"].startswith("router.auth.secret: inline secret")


def test_shutdown_of_idle_supervisors_is_immediate_and_logged() -> None:
    """Stopping supervisors that never connected finishes at once and logs daemon.stopped."""
    daemon, _, out = make_daemon()
    done = daemon.shutdown()
    assert done.called
    events = [line["event"] for line in logged(out)]
    assert events.count("supervisor.stopped") == 2
    assert events[-1] == "daemon.stopped"


def test_signal_decides_the_reason_and_status_0() -> None:
    """A stop request (SIGTERM) exits 0; later failures do not change the status."""
    daemon, connectors, stops, out = started()
    daemon.request_stop("SIGTERM")
    connectors[0].refuse()
    assert daemon.exit_code == 0
    assert stops == ["stop"]
    assert stopping(out) == [("SIGTERM", 0)]


def test_the_daemons_default_backoff_is_the_documented_one() -> None:
    """Without a [reconnect] section the daemon backs off as Backoff() does, and that is
    what the README's reference shows: phase jitter, 3 s steady for 3 retries, then x2.5 up
    to 60 s."""
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "component": [{"name": "c", "entry": "tests.unit.sample_entries:Plain"}],
        },
        environ={},
    )
    assert retry_policy(config).backoff == Backoff()
    assert Backoff().jitter is Jitter.PHASE
    assert Backoff().steady_retries == config.reconnect.steady_retries == 3


def _stuck(daemon: Daemon) -> Deferred[None]:
    """Supervisors that do not finish leaving (a frozen router) until the test fires the
    Deferred returned."""
    leaving: Deferred[None] = Deferred()
    daemon.stopService = lambda: leaving  # type: ignore[method-assign]
    return leaving


def test_a_second_signal_while_stopping_ends_the_stop_at_once() -> None:
    """SIGTERM, then SIGINT while the sessions are still leaving: the shutdown is over at
    once, with the first stop's exit status, and the forced stop is logged; the sessions
    finishing later change nothing."""
    clock = Clock()
    daemon, stops, out = make_daemon(clock=clock)
    leaving = _stuck(daemon)
    daemon.signalled("SIGTERM")
    assert stops == ["stop"]
    done = daemon.shutdown()
    clock.advance(1)
    assert not done.called
    daemon.signalled("SIGINT")
    assert outcome(done) is None
    assert daemon.exit_code == 0
    assert stops == ["stop"]  # the reactor was asked to stop once
    events = [line["event"] for line in logged(out)]
    assert events[-2:] == ["daemon.stop_forced", "daemon.stopped"]
    assert clock.getDelayedCalls() == []  # the timeout guard is gone
    leaving.callback(None)
    daemon.signalled("SIGINT")
    clock.advance(10)
    assert [line["event"] for line in logged(out)] == events


def test_a_second_signal_keeps_a_failure_exit_status() -> None:
    """A forced stop of a daemon that was ending with 69 still exits 69."""
    clock = Clock()
    daemon, connectors, _, out = started(clock=clock)
    connectors[0].refuse()
    _stuck(daemon)
    done = daemon.shutdown()
    daemon.signalled("SIGTERM")
    assert outcome(done) is None
    assert daemon.exit_code == 69
    assert [e["exit_code"] for e in logged(out) if e["event"] == "daemon.stopped"] == [69]


def test_a_second_signal_before_the_shutdown_began_makes_it_immediate() -> None:
    """Two signals in a row, before the reactor's shutdown calls in: no wait at all."""
    clock = Clock()
    daemon, _, out = make_daemon(clock=clock)
    _stuck(daemon)
    daemon.signalled("SIGTERM")
    daemon.signalled("SIGTERM")
    assert outcome(daemon.shutdown()) is None
    assert clock.getDelayedCalls() == []
    assert [line["event"] for line in logged(out)][-2:] == ["daemon.stop_forced", "daemon.stopped"]


def test_a_stop_that_hangs_ends_at_the_timeout() -> None:
    """Sessions that never finish leaving: the shutdown still ends (it does not fail)
    after shutdown.timeout (default 5 s), saying which states were left; the sessions
    finishing later change nothing."""
    clock = Clock()
    daemon, _, out = make_daemon(clock=clock)
    leaving = _stuck(daemon)
    daemon.signalled("SIGTERM")
    done = daemon.shutdown()
    clock.advance(4.9)
    assert not done.called
    clock.advance(0.2)
    assert outcome(done) is None
    lines = logged(out)
    assert [line["event"] for line in lines][-2:] == ["daemon.stop_timeout", "daemon.stopped"]
    assert lines[-2]["timeout"] == 5.0
    assert lines[-2]["states"] == {"c0": "idle", "c1": "idle"}
    assert lines[-1]["exit_code"] == 0
    assert clock.getDelayedCalls() == []
    leaving.callback(None)
    daemon.signalled("SIGINT")
    assert len(logged(out)) == len(lines) + 1  # daemon.stop_forced only
    assert logged(out)[-1]["event"] == "daemon.stop_forced"


def test_the_stop_is_bounded_by_the_configured_timeout() -> None:
    """[shutdown] timeout = 2: the wait ends at 2 s, not at the default 5 s."""
    clock = Clock()
    daemon, _, out = make_daemon(clock=clock, shutdown={"timeout": 2})
    _stuck(daemon)
    done = daemon.shutdown()
    clock.advance(1.9)
    assert not done.called
    clock.advance(0.1)
    assert outcome(done) is None
    assert [line["event"] for line in logged(out)][-2:] == ["daemon.stop_timeout", "daemon.stopped"]


def test_a_stop_that_finishes_in_time_cancels_the_timeout() -> None:
    """The sessions leaving within the timeout end the shutdown then, with no warning."""
    clock = Clock()
    daemon, _, out = make_daemon(clock=clock)
    leaving = _stuck(daemon)
    done = daemon.shutdown()
    clock.advance(1)
    assert not done.called
    leaving.callback(None)
    assert outcome(done) is None
    assert clock.getDelayedCalls() == []
    events = [line["event"] for line in logged(out)]
    assert "daemon.stop_timeout" not in events
    assert events[-1] == "daemon.stopped"


def test_a_log_line_that_cannot_be_written_does_not_stop_the_shutdown() -> None:
    """With standard output gone, the shutdown still completes."""
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "component": [{"name": "c0", "entry": "tests.unit.sample_entries:Plain"}],
        },
        environ={},
    )
    output = LineOutput(None, stderr=io.StringIO())
    stops: list[str] = []
    daemon = Daemon(
        config,
        {"c0": Plain},
        reactor=Clock(),
        logger=make_logger(format="json", output=output),
        stop_reactor=lambda: stops.append("stop"),
        log_lines_dropped=lambda: output.dropped,
    )
    daemon.signalled("SIGTERM")
    assert daemon.shutdown().called
    assert stops == ["stop"]
    assert output.dropped > 0
    assert daemon.registry is not None
    assert daemon.registry.get_sample_value("wampd_log_lines_dropped_total") == output.dropped


def test_the_bridge_is_a_supervised_component_with_a_listener_of_its_own() -> None:
    """[bridge] adds a component named "bridge" on the router's URLs and realm, with the
    daemon's retry policy, and a listener on its address, besides /metrics."""
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "bridge": {"listen": "127.0.0.1:8091"},
            "http": {"listen": ""},
        },
        environ={},
    )
    the_plan = plan(config, {})
    assert the_plan.components == ()
    bridge = the_plan.bridge
    assert bridge is not None and bridge.config == config.bridge
    assert bridge.wamp.realm == "realm1" and bridge.urls == ("ws://127.0.0.1:1/ws",)
    assert bridge.policy == retry_policy(config)
    reactor = MemoryReactorClock()
    daemon = Daemon(
        config,
        {},
        reactor=reactor,
        logger=make_logger(format="json", stream=io.StringIO()),
        stop_reactor=lambda: None,
    )
    daemon.startService()
    assert [(port, host) for port, _site, _backlog, host in reactor.tcpServers] == [
        (8091, "127.0.0.1")
    ]
    assert list(daemon.supervisors) == ["bridge"]


def test_the_bridge_token_and_signing_secret_are_masked_too(tmp_path: Path) -> None:
    token, signing = tmp_path / "token", tmp_path / "signing"
    token.write_text("bridge-t0ken\n")
    signing.write_text("signing-s3cret\n")
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "bridge": {
                "listen": "127.0.0.1:8091",
                "token_file": str(token),
                "signing": {"key": "app", "secret_file": str(signing)},
            },
        },
        environ={},
    )
    assert secrets(config) == ["bridge-t0ken", "signing-s3cret"]
