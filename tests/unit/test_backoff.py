"""The backoff function: properties that hold for every input."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wampd.backoff import Backoff, Jitter

delays = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
growths = st.floats(min_value=1.0, max_value=100.0, allow_nan=False)
retries = st.integers(min_value=1, max_value=10_000)
units = st.floats(min_value=0.0, max_value=0.999999, allow_nan=False)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    initial = draw(delays)
    maximum = draw(st.floats(min_value=initial, max_value=max(initial, 1e6) * 2))
    noise = draw(st.floats(min_value=0.0, max_value=1e3))
    steady = draw(st.integers(min_value=0, max_value=20))
    jitter = draw(st.sampled_from(Jitter))
    return Backoff(initial, maximum, draw(growths), jitter, noise, steady_retries=steady)


@settings(max_examples=300, deadline=None)
@given(backoffs(), retries, units, st.none() | delays)
def test_delay_never_exceeds_max_delay_nor_goes_negative(
    backoff: Backoff, retry: int, u: float, previous: float | None
) -> None:
    """Whatever the jitter, a delay is within [0, max_delay]."""
    delay = backoff.delay(retry, lambda: u, previous)
    assert 0.0 <= delay <= backoff.max_delay
    assert math.isfinite(delay)


@settings(max_examples=300, deadline=None)
@given(backoffs(), retries)
def test_ceiling_is_the_documented_formula(backoff: Backoff, retry: int) -> None:
    """ceiling(n) = min(max_delay, initial_delay * growth ** max(0, n - 1 - steady_retries)),
    without overflow."""
    exponent = max(0, retry - 1 - backoff.steady_retries)
    try:
        expected = min(backoff.max_delay, backoff.initial_delay * backoff.growth**exponent)
    except OverflowError:  # growth ** exponent alone is too large for a float
        log = math.log(backoff.initial_delay) if backoff.initial_delay else -math.inf
        log += exponent * math.log(backoff.growth)
        expected = min(backoff.max_delay, math.exp(log)) if log < 709 else backoff.max_delay
    assert backoff.ceiling(retry) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(backoffs(), retries)
def test_ceiling_never_shrinks(backoff: Backoff, retry: int) -> None:
    """Later retries never have a lower ceiling than earlier ones."""
    assert backoff.ceiling(retry + 1) >= backoff.ceiling(retry)


@settings(max_examples=200, deadline=None)
@given(backoffs(), retries, units)
def test_each_jitter_lands_where_documented(backoff: Backoff, retry: int, u: float) -> None:
    """phase in [0, d] first then d, full in [0, d], equal in [d/2, d], none = d,
    decorrelated in [initial, 3 * previous]."""
    d = backoff.ceiling(retry)
    delay = backoff.delay(retry, lambda: u, previous=2.0)
    if backoff.jitter is Jitter.PHASE:
        assert delay == (pytest.approx(d * u) if retry == 1 else d)
    elif backoff.jitter is Jitter.FULL:
        assert delay == pytest.approx(d * u)
    elif backoff.jitter is Jitter.EQUAL:
        assert d / 2 - 1e-9 <= delay <= d + 1e-9
    elif backoff.jitter is Jitter.NONE:
        assert delay == d
    elif backoff.jitter is Jitter.ADDED:
        assert delay == pytest.approx(min(backoff.max_delay, d + backoff.noise * u))
    else:
        assert backoff.initial_delay - 1e-9 <= delay
        assert delay <= min(backoff.max_delay, max(backoff.initial_delay, 6.0)) + 1e-9


@settings(max_examples=300, deadline=None)
@given(
    backoffs(),
    retries,
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_added_jitter_stays_under_the_cap_whatever_the_source_returns(
    backoff: Backoff, retry: int, value: float
) -> None:
    """added jitter takes seconds from any callable (autobahn's retry_delay_jitter), and a
    huge, negative or NaN draw still gives a delay in [ceiling, max_delay]."""
    added = Backoff(backoff.initial_delay, backoff.max_delay, backoff.growth, Jitter.ADDED, 2.5)
    delay = added.delay(retry, lambda: value)
    assert added.ceiling(retry) <= delay <= added.max_delay
    assert math.isfinite(delay)


def test_added_jitter_is_seconds_on_top_of_the_ceiling() -> None:
    """ceiling 1.5 s, noise 0.4 s, draw 0.5: 1.7 s; the cap still wins near max_delay."""
    backoff = Backoff(1.5, 3.0, 1.5, Jitter.ADDED, 0.4, steady_retries=0)
    assert backoff.delay(1, lambda: 0.5) == pytest.approx(1.7)
    assert backoff.delay(3, lambda: 0.99) == 3.0
    with pytest.raises(ValueError, match="noise"):
        Backoff(1, 2, 2, Jitter.ADDED, -1.0)


def test_documented_defaults() -> None:
    """The defaults are the ones the README and the config reference document."""
    backoff = Backoff()
    settings = (backoff.initial_delay, backoff.max_delay, backoff.growth, backoff.steady_retries)
    assert settings == (3.0, 60.0, 2.5, 3)
    assert backoff.jitter is Jitter.PHASE
    assert [backoff.ceiling(n) for n in range(1, 9)] == [3, 3, 3, 3, 7.5, 18.75, 46.875, 60]


def test_phase_draws_once_then_keeps_the_ceilings() -> None:
    """The first retry lands anywhere in [0, initial_delay); every later one waits its
    ceiling exactly, whatever the random source says, so the phase drawn first is kept."""
    backoff = Backoff()
    assert backoff.delay(1, lambda: 0.0) == 0.0
    assert backoff.delay(1, lambda: 0.5) == 1.5
    for draw in (0.0, 0.5, 0.999):
        later = [backoff.delay(n, _constant(draw)) for n in range(2, 8)]
        assert later == [3, 3, 3, 7.5, 18.75, 46.875]
    # The schedule that figure 4 of docs/BENCHMARKS.md counts: 5 attempts in 30 s.
    for phase in (0.0, 0.5, 0.999):
        times, t = [], 0.0
        for n in range(1, 8):
            t += backoff.delay(n, _constant(phase))
            times.append(t)
        assert len([t for t in times if t <= 30]) == 5


def _constant(value: float) -> Callable[[], float]:
    return lambda: value


def test_steady_retries_hold_the_ceiling_before_it_grows() -> None:
    """steady_retries = 2: the first three ceilings are initial_delay; 0 grows at once."""
    assert [Backoff(1, 60, 2, Jitter.NONE, steady_retries=2).ceiling(n) for n in range(1, 6)] == [
        1,
        1,
        1,
        2,
        4,
    ]
    assert [Backoff(1, 60, 2, Jitter.NONE, steady_retries=0).ceiling(n) for n in range(1, 4)] == [
        1,
        2,
        4,
    ]


def test_no_jitter_is_deterministic() -> None:
    """jitter = none ignores the random source entirely."""
    backoff = Backoff(0.5, 10, 3, Jitter.NONE, steady_retries=0)
    assert [backoff.delay(n, lambda: 0.99) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]


def test_a_bad_random_source_cannot_break_the_cap() -> None:
    """A rand() outside [0, 1) is clamped; NaN counts as 0."""
    backoff = Backoff(1, 4, 2, Jitter.FULL, steady_retries=0)
    assert backoff.delay(3, lambda: 7.0) == 4.0
    assert backoff.delay(3, lambda: float("nan")) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay": -1}, "initial_delay"),
        ({"initial_delay": 5, "max_delay": 1}, "max_delay"),
        ({"growth": 0.5}, "growth"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"steady_retries": -1}, "steady_retries"),
        ({"steady_retries": 1.5}, "steady_retries"),
        ({"steady_retries": True}, "steady_retries"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    """Nonsense parameters raise a ValueError that names the parameter."""
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_retries_count_from_one() -> None:
    """Retry 0 does not exist."""
    with pytest.raises(ValueError, match="from 1"):
        Backoff().delay(0, lambda: 0.5)
