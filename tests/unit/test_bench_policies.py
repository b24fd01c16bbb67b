"""The backoff simulation behind docs/BENCHMARKS.md "Choosing a backoff" (bench.policies)."""

from __future__ import annotations

import random

from bench.policies import POLICIES, simulate, storm, twisted_policy, wampd_policy
from wampd.backoff import Jitter


def test_a_deterministic_policy_gives_the_exact_waits() -> None:
    """No jitter, 1 s doubling: attempts at 1, 3, 7 s; an outage of 4-6 s is over before
    the third, so 2 attempts during it and a wait of 7 s minus its length."""
    p50, p95, attempts = simulate(wampd_policy(Jitter.NONE, 2.0), 5.0, 2000, seed=3)
    assert attempts == 2.0
    assert 1.0 <= p50 <= p95 <= 3.0


def test_twisted_policy_is_autobahns_default() -> None:
    """ApplicationRunner without retry arguments: 1.5 ** n + U(0, 1), 60 s cap."""
    rng = random.Random(1)
    assert 1.5 <= twisted_policy(1, None, rng) < 2.5
    assert 60.0 <= twisted_policy(40, None, rng) < 61.0


def test_the_default_row_is_wampds_default_and_spreads_a_storm() -> None:
    """The first row is named after Backoff()'s jitter; in a storm of 20 clients it
    spreads the first retries (a lower peak than Twisted's one-second window)."""
    name = next(iter(POLICIES))
    assert name == "wampd default (decorrelated jitter)"
    _, default_peak, _ = storm(POLICIES[name], 5.5, 20, 20, seed=1)
    _, twisted_peak, _ = storm(twisted_policy, 5.5, 20, 20, seed=1)
    assert default_peak < twisted_peak
