"""How long to wait before the n-th retry of an outage: a pure function of its inputs.

The un-jittered delay of retry ``n`` (1-based) is::

    ceiling(n) = min(max_delay, initial_delay * growth ** max(0, n - 1 - steady_retries))

that is ``initial_delay`` for the first ``steady_retries + 1`` retries, then growing by
``growth`` each time. Jitter is then applied *under* that ceiling, so no delay ever exceeds
``max_delay`` (unlike Twisted's ``backoffPolicy``, which adds its jitter after the cap):

``phase``
    ``uniform(0, ceiling(1))`` for the first retry, ``ceiling(n)`` exactly after it. The
    first draw gives each client a random phase in the first ``initial_delay`` seconds of
    the outage and the later retries keep it: a fleet that lost its router in the same
    instant stays as evenly spread as that draw made it (about ``N / initial_delay``
    attempts a second for ``N`` clients, at any point of the outage), and no client waits
    longer than its ceiling. The default; docs/BENCHMARKS.md shows why.
``full``
    ``uniform(0, ceiling(n))`` -- AWS's "full jitter".
``equal``
    ``ceiling(n) / 2 + uniform(0, ceiling(n) / 2)`` -- never less than half the ceiling.
``decorrelated``
    ``min(max_delay, uniform(initial_delay, 3 * previous))`` where ``previous`` is the delay
    chosen for the retry before (``initial_delay`` for the first) -- AWS's "decorrelated
    jitter"; it uses neither ``growth`` nor ``steady_retries``.
``none``
    ``ceiling(n)``.
``added``
    ``min(max_delay, ceiling(n) + noise * r)`` where ``r`` is the draw from ``rand`` (any
    finite number >= 0; negative or non-finite draws count as 0): seconds *added*, like
    Twisted's ``backoffPolicy`` and autobahn's ``retry_delay_jitter``, but under the cap.
    :class:`wampd.ApplicationRunner` uses it for ``retry_delay_jitter`` (a float is
    ``noise``; a callable is ``rand``).

Randomness comes in through ``rand``, a 0-argument callable returning a float in
``[0, 1)`` (``random.random`` in production, a constant in tests), so the function stays
deterministic for a given ``rand``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Backoff", "Jitter"]


class Jitter(StrEnum):
    """Where in ``[0, ceiling]`` a retry delay may land; see the module docstring."""

    PHASE = "phase"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"
    NONE = "none"
    ADDED = "added"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a cap and a choice of jitter.

    :param initial_delay: seconds before the first retry (its ceiling).
    :param max_delay: no delay is ever longer than this.
    :param growth: factor by which the ceiling grows from one retry to the next (>= 1).
    :param jitter: how the delay is spread under the ceiling.
    :param noise: the most seconds ``added`` jitter adds for a draw of 1 (other modes
        ignore it).
    :param steady_retries: retries after the first whose ceiling is still
        ``initial_delay``, before it starts to grow.

    The defaults are the daemon's (``[reconnect]``): a phase in the first 3 s, then a
    retry every 3 s until 9 s after it, then 7.5 s, 18.75 s, ... up to 60 s.
    """

    initial_delay: float = 3.0
    max_delay: float = 60.0
    growth: float = 2.5
    jitter: Jitter = Jitter.PHASE
    noise: float = 1.0
    steady_retries: int = 3

    def __post_init__(self) -> None:
        if not (self.initial_delay >= 0 and math.isfinite(self.initial_delay)):
            raise ValueError(f"initial_delay must be a finite number >= 0: {self.initial_delay}")
        if not (self.max_delay >= self.initial_delay and math.isfinite(self.max_delay)):
            raise ValueError(f"max_delay must be finite and >= initial_delay: {self.max_delay}")
        if not (self.growth >= 1 and math.isfinite(self.growth)):
            raise ValueError(f"growth must be a finite number >= 1: {self.growth}")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ValueError(f"noise must be a finite number >= 0: {self.noise}")
        if isinstance(self.steady_retries, bool) or not (
            isinstance(self.steady_retries, int) and self.steady_retries >= 0
        ):
            raise ValueError(f"steady_retries must be an integer >= 0: {self.steady_retries}")

    def ceiling(self, retry: int) -> float:
        """The un-jittered delay of the ``retry``-th retry (1-based), capped at ``max_delay``."""
        if retry < 1:
            raise ValueError(f"retries are counted from 1, got {retry}")
        if self.initial_delay == 0:
            return 0.0
        # Compare logarithms first: growth ** exponent alone may overflow.
        exponent = max(0, retry - 1 - self.steady_retries)
        log_ceiling = math.log(self.initial_delay) + exponent * math.log(self.growth)
        if log_ceiling >= math.log(self.max_delay):
            return self.max_delay
        try:
            return min(self.max_delay, self.initial_delay * self.growth**exponent)
        except OverflowError:  # a tiny initial_delay times a huge power: still under the cap
            return min(self.max_delay, math.exp(log_ceiling))

    def delay(self, retry: int, rand: Callable[[], float], previous: float | None = None) -> float:
        """Seconds to wait before the ``retry``-th retry of an outage.

        :param retry: which retry of the current outage this is, from 1.
        :param rand: a source of floats in ``[0, 1)``.
        :param previous: the delay chosen for the retry before, used by ``decorrelated``
            jitter only; ``None`` at the start of an outage.
        """
        ceiling = self.ceiling(retry)  # which also checks ``retry``, for every jitter
        if self.jitter is Jitter.DECORRELATED:
            low = self.initial_delay
            high = max(low, 3 * (previous if previous is not None else low))
            return min(self.max_delay, low + (high - low) * _unit(rand))
        if self.jitter is Jitter.FULL or (self.jitter is Jitter.PHASE and retry == 1):
            return ceiling * _unit(rand)
        if self.jitter is Jitter.EQUAL:
            return ceiling / 2 + ceiling / 2 * _unit(rand)
        if self.jitter is Jitter.ADDED:
            draw = rand()
            if not (math.isfinite(draw) and draw > 0):
                return ceiling
            return min(self.max_delay, ceiling + self.noise * draw)
        return ceiling  # none, and phase after the first retry


def _unit(rand: Callable[[], float]) -> float:
    """One draw from ``rand``, clamped into ``[0, 1]`` so a bad source cannot break the cap."""
    value = rand()
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
