"""Structured log output: events, Twisted's log, secrets."""

from __future__ import annotations

import errno
import io
import json
import os
import re
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, LogPublisher

from wampd.backoff import Backoff
from wampd.events import EventHub, State, names
from wampd.logs import EventLogger, LineOutput, TwistedBridge, make_logger
from wampd.supervisor import RetryPolicy, Supervisor

from .fakes import FakeConnector, Recorder, event


def as_observer(observer: Callable[[LogEvent], None]) -> ILogObserver:
    """``observer`` as the ILogObserver it provides: Twisted declares its own with zope's
    ``@implementer``, which mypy does not see, and the bridge is a plain callable."""
    return cast(ILogObserver, observer)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_are_json_lines_with_dotted_names_and_fields() -> None:
    """An event becomes one JSON object with event, level, timestamp and its fields."""
    out = io.StringIO()
    log = EventLogger(make_logger(format="json", stream=out))
    log(
        event(
            names.RETRY_SCHEDULED,
            State.CONNECTING,
            State.BACKOFF,
            component="backend",
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
        event(
            names.CONNECT_ATTEMPT,
            State.IDLE,
            State.CONNECTING,
            component="c",
            time=0.0,
        )
    )
    log(
        event(
            names.FATAL_ERROR,
            State.CONNECTING,
            State.FAILED,
            component="c",
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
    publisher = LogPublisher(
        as_observer(TwistedBridge(make_logger(format="json", stream=out), "info"))
    )
    log = Logger(namespace="autobahn.test", observer=as_observer(publisher))
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
    logged_changes = [(line["previous"], line["state"]) for line in logged if "previous" in line]
    assert logged_changes == changes
    for line, emitted in zip(logged, recorder.events, strict=True):
        assert line["failures"] == emitted.failures
        assert line["component"] == "c"


# ----------------------------------------------------------------------------------------
# Clean lines
# ----------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LONG_FLOAT = re.compile(r"\d\.\d{4,}")


def test_console_lines_on_a_tty_have_one_timestamp_and_short_floats() -> None:
    """On a TTY (format auto), a line of each event kind has no ``time=`` next to its
    timestamp, no float with more than 3 decimals, and ``previous`` only on a change."""
    kinds = [getattr(names, attr) for attr in dir(names) if attr.isupper()]
    for name in kinds:
        out = _Terminal()
        changed = name in (names.CONNECT_ATTEMPT, names.RETRY_SCHEDULED)
        EventLogger(make_logger(format="auto", stream=out))(
            event(
                name,
                State.CONNECTING if changed else State.JOINED,
                State.BACKOFF if changed else State.JOINED,
                component="c",
                time=1796152279.7297783,
                failures=2,
                retry=2,
                delay=0.7400000000000001,
                connect_duration=0.0123456789,
                outage_duration=12.345678901,
                error="an error",
            )
        )
        text = _ANSI.sub("", out.getvalue())
        timestamp, _, fields = text.partition(" ")
        assert timestamp.endswith("Z"), text  # the one timestamp, ISO 8601
        assert name in fields
        assert "time=" not in fields, text
        assert not _LONG_FLOAT.search(fields), text
        assert ("previous=" in fields) is changed, text
        if name == names.RETRY_SCHEDULED:
            assert "delay=0.74" in fields, text


def test_durations_are_rounded_to_the_millisecond_in_json_too() -> None:
    """JSON lines carry the same rounded durations and no ``time`` field."""
    out = io.StringIO()
    EventLogger(make_logger(format="json", stream=out))(
        event(
            names.SESSION_JOINED,
            State.CONNECTING,
            State.JOINED,
            component="c",
            time=1796152279.7297783,
            connect_duration=0.0123456789,
        )
    )
    (line,) = lines(out)
    assert line["connect_duration"] == 0.012
    assert "time" not in line


def test_twisted_lifecycle_chatter_is_debug_only() -> None:
    """A listener starting, a factory starting or stopping, a port closing, the main loop
    ending, and autobahn's "session closed" (wampd logs session.left) are not info lines;
    at debug they are there, and real warnings are never demoted."""

    def emit_all(publisher: LogPublisher) -> None:
        observer = as_observer(publisher)
        Logger(namespace="twisted.internet.protocol.Factory", observer=observer).info(
            "Starting factory {factory!r}", factory=Factory()
        )
        Logger(namespace="twisted.internet.protocol.Factory", observer=observer).info(
            "Stopping factory {factory!r}", factory=Factory()
        )
        Logger(namespace="twisted.internet.base", observer=observer).info("Main loop terminated.")
        Logger(namespace="autobahn.wamp.protocol", observer=observer).warn(
            "session closed with reason {reason} [{message}]",
            reason="wamp.close.transport_lost",
            message="",
        )
        for text in ("QuietSite starting on 9100", "(TCP Port 9100 Closed)"):
            publisher({"log_format": "{log_text}", "log_text": text, "log_level": LogLevel.info})
        Logger(namespace="autobahn.wamp.protocol", observer=observer).warn("a real {x}", x=1)

    at_info, at_debug = io.StringIO(), io.StringIO()
    emit_all(
        LogPublisher(as_observer(TwistedBridge(make_logger(format="json", stream=at_info), "info")))
    )
    emit_all(
        LogPublisher(
            as_observer(
                TwistedBridge(make_logger(level="debug", format="json", stream=at_debug), "debug")
            )
        )
    )
    assert [line["message"] for line in lines(at_info)] == ["a real 1"]
    debug = lines(at_debug)
    assert len(debug) == 7
    assert [line["level"] for line in debug] == ["debug"] * 6 + ["warn"]


# ----------------------------------------------------------------------------------------
# A stdout that is closed or gone
# ----------------------------------------------------------------------------------------


class _Dead(io.StringIO):
    """A stream whose reader has gone: every write raises EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


class _Full(io.StringIO):
    """A non-blocking pipe that is full for the first write only."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    def write(self, text: str) -> int:
        if self.refusals:
            self.refusals -= 1
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return super().write(text)


def test_a_dead_stdout_drops_lines_counts_them_and_says_so_once() -> None:
    """Logging to a stream whose reader died never raises: each line is counted as
    dropped, and stderr hears about it once."""
    err = io.StringIO()
    output = LineOutput(_Dead(), stderr=err)
    logger = make_logger(format="json", output=output)
    for i in range(3):
        logger.info("x.y", i=i)
        logger.warning("x.z")
    assert output.dropped == 6
    (said,) = err.getvalue().splitlines()
    assert said.startswith("wampd: writing to standard output failed (BrokenPipeError")
    assert "wampd_log_lines_dropped_total" in said


def test_a_closed_stdout_drops_every_line() -> None:
    """Standard output closed from the start (``sys.stdout is None``) drops every line."""
    err = io.StringIO()
    output = LineOutput(None, stderr=err)
    logger = make_logger(format="auto", output=output)  # auto must not need a TTY check
    logger.info("x.y")
    logger.error("x.z")
    assert output.dropped == 2
    assert err.getvalue() == (
        "wampd: standard output is closed: log lines are dropped and counted in "
        "wampd_log_lines_dropped_total\n"
    )


def test_a_full_pipe_drops_only_the_line_it_refused() -> None:
    """A transient write error drops one line; the next lines are written."""
    stream = _Full()
    output = LineOutput(stream, stderr=io.StringIO())
    logger = make_logger(format="json", output=output)
    logger.info("first")
    logger.info("second")
    assert output.dropped == 1
    assert [line["event"] for line in lines(stream)] == ["second"]


def test_a_broken_pipe_is_pointed_at_devnull() -> None:
    """After EPIPE on a real pipe, its descriptor writes to /dev/null: a component's
    ``print()`` and the interpreter's last flush no longer fail on it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    try:
        output = LineOutput(stream, stderr=io.StringIO())
        output.msg("lost")
        assert output.dropped == 1
        assert os.write(write_end, b"now harmless") == len(b"now harmless")
        assert os.readlink(f"/proc/self/fd/{write_end}") == os.devnull
    finally:
        stream.close()
