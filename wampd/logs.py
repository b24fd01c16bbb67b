"""Structured logs: one stream for wampd's events and for Twisted's and autobahn's logs.

The output is one JSON object per line (or readable console lines on a TTY), each with
``timestamp``, ``level`` and a dotted ``event`` name. Supervisor events are logged by
:class:`EventLogger`, a consumer of the event stream; Twisted's and autobahn's (txaio's)
log events come in through :class:`TwistedBridge` as ``twisted.log`` events with their
``namespace`` and ``message``. Standard output is *not* redirected into the log, so a
component's ``print()`` still reaches stdout.

Known secrets are masked in every string value that is written, whatever its source.
Floats are written with at most three decimals (durations to the millisecond).

Writing a line never raises and never blocks shutdown: :class:`LineOutput` drops the
lines it cannot write (standard output closed from the start, or its reader gone), counts
them for ``wampd_log_lines_dropped_total``, and says so once on stderr.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog
import txaio
from structlog.typing import EventDict, Processor, WrappedLogger
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogBeginner

from .events import Event, State, names

__all__ = [
    "EventLogger",
    "LineOutput",
    "TwistedBridge",
    "log_to_stdout",
    "make_logger",
    "start_logging",
    "twisted_logger",
]

#: Config level names (txaio's too), and their numbers for structlog.
_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40, "critical": 50}
_TWISTED_LEVELS = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "critical",
}

MASK = "***"


class _Redact:
    """A processor that masks every known secret in every string value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if self._secrets:
            for key, value in event.items():
                event[key] = self._mask(value)
        return event

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, MASK)
            return value
        if isinstance(value, (list, tuple)):
            return [self._mask(v) for v in value]
        if isinstance(value, dict):
            return {k: self._mask(v) for k, v in value.items()}
        return value


def _rename_level(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    if event.get("level") == "warning":
        event["level"] = "warn"
    return event


def _round_floats(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Every float to at most three decimals: durations to the millisecond, no noise."""
    for key, value in event.items():
        if isinstance(value, float):
            event[key] = round(value, 3)
    return event


def make_logger(
    *,
    level: str = "info",
    format: str = "auto",
    stream: TextIO | None = None,
    output: LineOutput | None = None,
    secrets: Iterable[str] = (),
) -> Any:
    """A structlog logger writing to ``output`` (else ``stream``, else stdout) at ``level``
    and above.

    :param format: ``json``, ``console``, or ``auto`` (console on a TTY, else JSON).
    """
    out = output if output is not None else LineOutput(stream if stream else sys.stdout)
    if format == "auto":
        format = "console" if out.isatty() else "json"
    renderer: Processor
    if format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    processors: list[Processor] = [
        structlog.processors.add_log_level,
        _rename_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _round_floats,
        _Redact(secrets),
        _Safe(renderer),
    ]
    return structlog.wrap_logger(
        out,
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=True,
    )


#: Write errors after which a stream never works again: its reader is gone, or it is closed.
_DEAD = (errno.EPIPE, errno.EBADF, errno.ECONNRESET)


class LineOutput:
    """structlog's output end for wampd's own stream: one rendered line per call, written
    and flushed to ``stream``, and never an exception.

    A line that cannot be written is dropped and counted in :attr:`dropped`; the first drop
    is said once on ``stderr`` (if that works). A stream that is ``None`` (standard output
    closed from the start) drops every line. A stream whose reader has gone (a broken pipe)
    stays gone: its file descriptor is pointed at ``/dev/null``, so neither a component's
    ``print()`` nor the interpreter's last flush at exit fails on it either. Any other write
    error (a full disk, a full non-blocking pipe) drops that line only.
    """

    def __init__(self, stream: TextIO | None, *, stderr: TextIO | None = None) -> None:
        self._stream = stream
        self._stderr = stderr
        #: Lines that could not be written.
        self.dropped = 0
        self._said = False

    def isatty(self) -> bool:
        """Whether the stream is a terminal (for ``format = "auto"``)."""
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def msg(self, message: str) -> None:
        """Write ``message`` and a newline, or drop it."""
        stream = self._stream
        if stream is None:
            self._drop("standard output is closed")
            return
        try:
            stream.write(message + "\n")
            stream.flush()
        except (OSError, ValueError) as e:
            if isinstance(e, ValueError) or e.errno in _DEAD:
                self._stream = None
                _point_at_devnull(stream)
            self._drop(f"writing to standard output failed ({type(e).__name__}: {e})")

    # structlog calls the method named after the level.
    log = debug = info = warn = warning = err = error = critical = fatal = exception = msg

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self._said:
            return
        self._said = True
        stderr = self._stderr if self._stderr is not None else sys.stderr
        if stderr is None:
            return
        try:
            stderr.write(
                f"wampd: {why}: log lines are dropped and counted in "
                "wampd_log_lines_dropped_total\n"
            )
            stderr.flush()
        except (OSError, ValueError):
            _point_at_devnull(stderr)


def _point_at_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at ``/dev/null``, if it has one."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


class _Safe:
    """Renders with ``renderer``; if that fails, still writes one JSON line saying so.

    Logging must never raise into the code that logs: a daemon whose log call fails
    in a signal handler would not stop.
    """

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> Any:
        try:
            return self._renderer(logger, method, event)
        except Exception as e:
            return json.dumps(
                {
                    "event": "log.render_failed",
                    "level": "error",
                    "original": str(event.get("event")),
                    "error": f"{type(e).__name__}: {e}",
                },
                default=repr,
            )


class EventLogger:
    """Logs each supervisor event once, with its fields, at a level that fits it."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __call__(self, event: Event) -> None:
        level = event.name.level
        if event.name is names.SESSION_LEFT and event.state is State.STOPPING:
            level = "info"  # leaving because we were asked to is no warning
        fields = event.fields()
        # The line has its own timestamp; "previous" says something only on a change.
        del fields["name"], fields["time"]
        if not event.changed:
            del fields["previous"]
        self._logger.log(_LEVELS[level], event.name.value, **fields)


_TO_TWISTED = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warning": LogLevel.warn,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
    "msg": LogLevel.info,
}


class _TwistedSink:
    """structlog's output end, writing each rendered line to ``twisted.logger`` at the
    level of the method structlog calls."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def __getattr__(self, method: str) -> Any:
        level = _TO_TWISTED.get(method, LogLevel.info)

        def write(message: str) -> None:
            self._logger.emit(level, "{wampd_line}", wampd_line=message)

        return write


def twisted_logger(*, secrets: Iterable[str] = (), namespace: str = "wampd") -> Any:
    """A structlog logger whose lines go to ``twisted.logger`` (namespace ``wampd``).

    For programs that embed wampd (``wampd.Service``, ``ApplicationRunner.run`` with
    ``start_reactor=False``, ``twist wampd``): their own Twisted log observers decide
    where the lines go and which levels they keep.
    """
    processors: list[Processor] = [
        _Redact(secrets),
        _Safe(structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True)),
    ]
    return structlog.wrap_logger(
        _TwistedSink(Logger(namespace=namespace)),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS["debug"]),
        cache_logger_on_first_use=True,
    )


#: Twisted's and autobahn's messages that say nothing wampd's own events do not: a
#: listener or factory starting and stopping, the main loop ending, and autobahn's
#: "session closed" next to wampd's ``session.left``. Written at debug, not above.
_CHATTER_FORMATS = frozenset(
    {
        "Starting factory {factory!r}",
        "Stopping factory {factory!r}",
        "Main loop terminated.",
        "session closed with reason {reason} [{message}]",
    }
)
#: The same for Twisted's legacy ``log.msg`` lines: "Site starting on 9100", "(TCP Port
#: 9100 Closed)".
_CHATTER_TEXT = re.compile(r"\S+ starting on \S+|\((\w+ )?Port \S+ Closed\)")


def _is_chatter(event: MutableMapping[str, Any]) -> bool:
    log_format = event.get("log_format")
    if log_format in _CHATTER_FORMATS:
        return True
    text = event.get("log_text")
    return (
        log_format == "{log_text}" and isinstance(text, str) and bool(_CHATTER_TEXT.fullmatch(text))
    )


class TwistedBridge:
    """A ``twisted.logger`` observer that writes Twisted's and autobahn's logs to ``logger``
    (their lifecycle chatter at debug)."""

    def __init__(self, logger: Any, level: str = "info") -> None:
        self._logger = logger
        self._minimum = _LEVELS[level]

    def __call__(self, event: MutableMapping[str, Any]) -> None:
        level = _TWISTED_LEVELS.get(event.get("log_level", LogLevel.info), "info")
        if _is_chatter(event):
            level = "debug"
        number = _LEVELS["warn" if level == "warning" else level]
        if number < self._minimum:
            return
        fields: dict[str, Any] = {"namespace": event.get("log_namespace", "?")}
        try:
            fields["message"] = formatEvent(event)  # type: ignore[arg-type]
        except Exception:  # a broken format string must not break logging
            fields["message"] = repr(event.get("log_format"))
        failure = event.get("log_failure")
        if failure is not None:
            try:
                fields["traceback"] = failure.getTraceback()
            except Exception:
                fields["traceback"] = repr(failure)
        self._logger.log(number, "twisted.log", **fields)


def start_logging(logger: Any, level: str) -> None:
    """Route Twisted's global log, and autobahn's txaio loggers, into ``logger``.

    Call once per process. Standard output and error are left alone.
    """
    txaio.use_twisted()
    # txaio's level names are wampd's.
    txaio.set_global_log_level(level)  # type: ignore[attr-defined]
    globalLogBeginner.beginLoggingTo(
        [cast(ILogObserver, TwistedBridge(logger, level))],
        discardBuffer=True,
        redirectStandardIO=False,
    )


def log_to_stdout(
    level: str = "info", format: str = "auto", secrets: Iterable[str] = ()
) -> tuple[Any, LineOutput]:
    """wampd's stream on standard output (:func:`make_logger`), with Twisted's and
    autobahn's logs routed into it (:func:`start_logging`): for a process whose reactor
    wampd runs (``wampd run``, ``ApplicationRunner.run()``). Call once per process.

    :returns: the logger, and its :class:`LineOutput` (``dropped`` counts the lines lost).
    """
    output = LineOutput(sys.stdout)
    logger = make_logger(level=level, format=format, output=output, secrets=secrets)
    start_logging(logger, level)
    return logger, output
