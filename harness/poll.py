"""The one way the harness, the tests and the bench wait for something: :func:`poll`.

``poll(fn, timeout)`` calls ``fn`` until it returns a truthy value, and returns that value.
If ``timeout`` seconds pass first, or a ``stop`` predicate says waiting is pointless (the
process that should do the thing has exited), it raises :class:`PollTimeout`, an
``AssertionError``: pytest reports it as a test failure, with the message that the caller's
``describe`` callable builds at that moment (what was awaited, a log tail)::

    line = poll(
        lambda: find_line(proc),
        timeout=10,
        stop=lambda: not proc.running,
        describe=lambda: f"no READY line from {proc.name}\\n{proc.describe()}",
    )

``fn`` is always called at least once, and once more after ``stop`` has become true, so
something that happened just before the process exited is still seen. The clock and the
sleep function can be replaced (a fake pair makes unit tests of waiting code instant).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["INTERVAL", "PollTimeout", "poll"]

INTERVAL: float = 0.05
"""Seconds between two calls of ``fn`` unless the caller says otherwise."""

T = TypeVar("T")


class PollTimeout(AssertionError):
    """What :func:`poll` raises when it gives up: on its timeout, or when ``stop`` said so.

    :ivar timed_out: True if the timeout passed, False if ``stop`` ended the wait early.
    :ivar elapsed: seconds from the start of the wait to giving up (by poll's clock).
    :ivar attempts: how many times ``fn`` was called.
    """

    def __init__(self, message: str, *, timed_out: bool, elapsed: float, attempts: int) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.elapsed = elapsed
        self.attempts = attempts


def poll(
    fn: Callable[[], T | None],
    timeout: float,
    *,
    describe: Callable[[], str] | None = None,
    stop: Callable[[], bool] | None = None,
    interval: float = INTERVAL,
    error: type[PollTimeout] = PollTimeout,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` every ``interval`` seconds until it returns a truthy value; return it.

    :param fn: the check; exceptions it raises are not caught.
    :param timeout: seconds to keep trying (``fn`` is called at least once, even for 0).
    :param describe: builds the failure message (called once, when giving up); without
        it the message names ``fn``.
    :param stop: called before each call of ``fn``; once it returns True, ``fn`` gets one
        last call and then the wait ends, with the same failure as a timeout.
    :param interval: seconds between calls (never sleeps past the deadline).
    :param error: the failure type: :class:`PollTimeout` or a subclass of it, for callers
        whose failures must also be of a type of their own.
    :param clock: monotonic seconds (``time.monotonic``); tests pass a fake one.
    :param sleep: sleeps that many seconds (``time.sleep``); tests pass a fake one.
    :raises PollTimeout: (or ``error``) when the timeout passed or ``stop`` said so.
    """
    start = clock()
    deadline = start + timeout
    attempts = 0
    while True:
        stopped = stop is not None and stop()
        attempts += 1
        result = fn()
        if result:
            return result
        now = clock()
        if stopped or now >= deadline:
            elapsed = now - start
            if stopped:
                header = f"stopped after {elapsed:.1f} s (of {timeout:g} s)"
            else:
                header = f"timed out after {timeout:g} s"
            what = describe() if describe is not None else _name(fn)
            raise error(
                f"{header}: {what}", timed_out=not stopped, elapsed=elapsed, attempts=attempts
            )
        sleep(min(interval, deadline - now))


def _name(fn: Callable[..., object]) -> str:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{name}() returned nothing truthy"
