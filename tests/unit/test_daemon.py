"""How the daemon turns supervisor events into an exit status and a shutdown."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wampd.backoff import Backoff, Jitter
from wampd.config import parse_config
from wampd.daemon import Daemon, retry_policy
from wampd.events import Event, State, names
from wampd.logs import LineOutput, make_logger

from .sample_entries import Plain


def make_daemon(
    components: int = 2, clock: Clock | None = None
) -> tuple[Daemon, list[str], io.StringIO]:
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "component": [
                {"name": f"c{i}", "entry": "tests.unit.sample_entries:Plain"}
                for i in range(components)
            ],
        },
        environ={},
    )
    stops: list[str] = []
    out = io.StringIO()
    daemon = Daemon(
        config,
        {f"c{i}": Plain for i in range(components)},
        reactor=clock if clock is not None else Clock(),
        logger=make_logger(format="json", stream=out),
        stop_reactor=lambda: stops.append("stop"),
    )
    return daemon, stops, out


def event(component: str, name: str, previous: State, state: State) -> Event:
    return Event(name=name, component=component, previous=previous, state=state, time=0.0)


def logged(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_retries_exhausted_stops_the_daemon_with_69() -> None:
    """One supervisor giving up ends the process with status 69, asked for once."""
    daemon, stops, _ = make_daemon()
    daemon.hub.emit(event("c0", names.RETRIES_EXHAUSTED, State.BACKOFF, State.FAILED))
    daemon.hub.emit(event("c1", names.FATAL_ERROR, State.CONNECTING, State.FAILED))
    assert daemon.exit_code == 69
    assert stops == ["stop"]


def test_fatal_rejection_stops_the_daemon_with_78() -> None:
    """A fatal router rejection ends the process with status 78."""
    daemon, stops, out = make_daemon()
    daemon.hub.emit(event("c1", names.FATAL_ERROR, State.CONNECTING, State.FAILED))
    assert daemon.exit_code == 78
    assert stops == ["stop"]
    stopping = [line for line in logged(out) if line["event"] == "daemon.stopping"]
    assert stopping[0]["exit_code"] == 78


def test_every_component_done_stops_with_0_only_when_all_are() -> None:
    """The daemon ends by itself with status 0 once every component has left on its own."""
    daemon, stops, _ = make_daemon()
    daemon.startService = lambda: setattr(daemon, "running", 1)  # type: ignore[method-assign]
    daemon.startService()
    daemon.hub.emit(event("c0", names.SUPERVISOR_STOPPED, State.JOINED, State.STOPPED))
    assert stops == []
    daemon.hub.emit(event("c1", names.SUPERVISOR_STOPPED, State.JOINED, State.STOPPED))
    assert stops == ["stop"]
    assert daemon.exit_code == 0


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
    daemon, stops, out = make_daemon()
    daemon.request_stop("SIGTERM")
    daemon.hub.emit(event("c0", names.RETRIES_EXHAUSTED, State.BACKOFF, State.FAILED))
    assert daemon.exit_code == 0
    assert stops == ["stop"]
    assert [line["reason"] for line in logged(out) if line["event"] == "daemon.stopping"] == [
        "SIGTERM"
    ]


def test_the_daemons_default_backoff_is_the_documented_one() -> None:
    """Without a [reconnect] section the daemon backs off as Backoff() does, and that is
    what the README's reference shows: decorrelated jitter, 1 s, 60 s."""
    config = parse_config(
        {
            "router": {"url": "ws://127.0.0.1:1/ws", "realm": "realm1"},
            "component": [{"name": "c", "entry": "tests.unit.sample_entries:Plain"}],
        },
        environ={},
    )
    assert retry_policy(config).backoff == Backoff()
    assert Backoff().jitter is Jitter.DECORRELATED


def _stuck(daemon: Daemon) -> None:
    """Supervisors that never finish leaving (a frozen router)."""
    daemon.stopService = Deferred  # type: ignore[method-assign]


def test_a_second_signal_while_stopping_ends_the_stop_at_once() -> None:
    """SIGTERM, then SIGINT while the sessions are still leaving: the shutdown is over at
    once, with the first stop's exit status, and the forced stop is logged."""
    clock = Clock()
    daemon, stops, out = make_daemon(clock=clock)
    _stuck(daemon)
    daemon.signalled("SIGTERM")
    assert stops == ["stop"]
    done = daemon.shutdown()
    clock.advance(1)
    assert not done.called
    daemon.signalled("SIGINT")
    assert done.called
    assert daemon.exit_code == 0
    assert stops == ["stop"]  # the reactor was asked to stop once
    events = [line["event"] for line in logged(out)]
    assert events[-2:] == ["daemon.stop_forced", "daemon.stopped"]
    assert clock.getDelayedCalls() == []  # the timeout guard is gone


def test_a_second_signal_keeps_a_failure_exit_status() -> None:
    """A forced stop of a daemon that was ending with 69 still exits 69."""
    clock = Clock()
    daemon, _, _ = make_daemon(clock=clock)
    _stuck(daemon)
    daemon.hub.emit(event("c0", names.RETRIES_EXHAUSTED, State.BACKOFF, State.FAILED))
    done = daemon.shutdown()
    daemon.signalled("SIGTERM")
    assert done.called
    assert daemon.exit_code == 69


def test_a_second_signal_before_the_shutdown_began_makes_it_immediate() -> None:
    """Two signals in a row, before the reactor's shutdown calls in: no wait at all."""
    daemon, _, _ = make_daemon()
    _stuck(daemon)
    daemon.signalled("SIGTERM")
    daemon.signalled("SIGTERM")
    assert daemon.shutdown().called


def test_a_stop_that_hangs_ends_at_the_timeout() -> None:
    """Sessions that never finish leaving: the shutdown still ends after shutdown.timeout
    (default 5 s), saying which states were left."""
    clock = Clock()
    daemon, _, out = make_daemon(clock=clock)
    _stuck(daemon)
    daemon.signalled("SIGTERM")
    done = daemon.shutdown()
    clock.advance(4.9)
    assert not done.called
    clock.advance(0.2)
    assert done.called
    assert [line["event"] for line in logged(out)][-2:] == ["daemon.stop_timeout", "daemon.stopped"]


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
    assert daemon.registry.get_sample_value("wampd_log_lines_dropped_total") == output.dropped
