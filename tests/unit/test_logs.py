"""Structured log output: events, Twisted's log, secrets."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher

from wampd.backoff import Backoff
from wampd.events import Event, EventHub, State, names
from wampd.logs import EventLogger, TwistedBridge, make_logger
from wampd.supervisor import RetryPolicy, Supervisor

from .fakes import FakeConnector, Recorder


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_are_json_lines_with_dotted_names_and_fields() -> None:
    """An event becomes one JSON object with event, level, timestamp and its fields."""
    out = io.StringIO()
    log = EventLogger(make_logger(format="json", stream=out))
    log(
        Event(
            name=names.RETRY_SCHEDULED,
            component="backend",
            previous=State.CONNECTING,
            state=State.BACKOFF,
            time=1.0,
            failures=2,
            retry=2,
            delay=1.5,
        )
    )
    (line,) = lines(out)
    assert line["event"] == "retry.scheduled"
    assert line["level"] == "info"
    assert line["component"] == "backend"
    assert (line["previous"], line["state"]) == ("connecting", "backoff")
    assert (line["retry"], line["delay"], line["failures"]) == (2, 1.5, 2)
    assert "timestamp" in line
    assert "url" not in line  # empty fields are left out


def test_level_filters_events() -> None:
    """Below the configured level nothing is written."""
    out = io.StringIO()
    log = EventLogger(make_logger(level="error", format="json", stream=out))
    log(
        Event(
            name=names.CONNECT_ATTEMPT,
            component="c",
            previous=State.IDLE,
            state=State.CONNECTING,
            time=0.0,
        )
    )
    log(
        Event(
            name=names.FATAL_ERROR,
            component="c",
            previous=State.CONNECTING,
            state=State.FAILED,
            time=0.0,
        )
    )
    assert [line["event"] for line in lines(out)] == ["fatal.error"]


def test_secrets_are_masked_in_every_field() -> None:
    """A known secret never reaches the output, whatever field it hides in."""
    out = io.StringIO()
    logger = make_logger(format="json", stream=out, secrets=["s3cret-ticket"])
    logger.info("x.y", message="the ticket is s3cret-ticket", nested={"k": ["s3cret-ticket"]})
    text = out.getvalue()
    assert "s3cret-ticket" not in text
    assert lines(out)[0]["message"] == "the ticket is ***"


def test_twisted_and_autobahn_logs_join_the_stream() -> None:
    """Twisted log events, failures included, become twisted.log events at their level."""
    out = io.StringIO()
    publisher = LogPublisher(TwistedBridge(make_logger(format="json", stream=out), "info"))
    log = Logger(namespace="autobahn.test", observer=publisher)
    log.debug("hidden {x}", x=1)
    log.warn("shown {x}", x=2)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("it broke")
    first, second = lines(out)
    assert first == {
        **first,
        "event": "twisted.log",
        "level": "warn",
        "namespace": "autobahn.test",
        "message": "shown 2",
    }
    assert second["level"] == "critical"
    assert "ZeroDivisionError" in second["traceback"]


def test_a_broken_value_still_writes_a_line() -> None:
    """Logging never raises: an unrenderable value still gives one JSON line."""
    out = io.StringIO()
    logger = make_logger(format="json", stream=out)
    logger.info("x.y", value=object())
    assert lines(out)[0]["event"] == "x.y"


def test_console_format_is_readable_text() -> None:
    """format = console writes text lines, not JSON."""
    out = io.StringIO()
    make_logger(format="console", stream=out).info("session.joined", component="c")
    assert "session.joined" in out.getvalue()
    assert not out.getvalue().startswith("{")


def test_bridge_respects_level() -> None:
    """Twisted events under the configured level are dropped."""
    out = io.StringIO()
    bridge = TwistedBridge(make_logger(format="json", stream=out), "error")
    bridge({"log_level": LogLevel.warn, "log_format": "w", "log_namespace": "n"})
    bridge({"log_level": LogLevel.error, "log_format": "e", "log_namespace": "n"})
    assert [line["message"] for line in lines(out)] == ["e"]


def test_each_state_change_is_logged_exactly_once_with_the_metric_fields() -> None:
    """Driving a supervisor through an outage logs one line per event, fields included."""
    out = io.StringIO()
    hub = EventHub()
    recorder = Recorder(hub)
    hub.subscribe(EventLogger(make_logger(format="json", stream=out)))
    clock, connector = Clock(), FakeConnector()
    supervisor = Supervisor(
        "c",
        connector,
        ["ws://127.0.0.1:1/ws"],
        policy=RetryPolicy(backoff=Backoff()),
        clock=clock,
        hub=hub,
        rand=lambda: 0.5,
    )
    supervisor.startService()
    connector.refuse()
    clock.advance(10)
    link = connector.join()
    clock.advance(10)
    link.lose()
    clock.advance(10)
    supervisor.stopService()

    logged = lines(out)
    assert [line["event"] for line in logged] == recorder.names
    changes = [(e.previous.value, e.state.value) for e in recorder.events if e.changed]
    logged_changes = [
        (line["previous"], line["state"]) for line in logged if line["previous"] != line["state"]
    ]
    assert logged_changes == changes
    for line, event in zip(logged, recorder.events, strict=True):
        assert line["failures"] == event.failures
        assert line["component"] == "c"
