"""The backoff search behind docs/BENCHMARKS.md "Choosing a backoff" (bench.policies)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.policies import (
    Figures,
    Scale,
    fleet,
    grid,
    main,
    search,
    single,
    storm,
    twisted_policy,
    wampd_policy,
)
from wampd.backoff import Backoff, Jitter


def test_a_deterministic_policy_gives_the_exact_waits() -> None:
    """No jitter, 1 s doubling: attempts at 1, 3, 7 s; an outage of 4-6 s is over before
    the third, so 2 attempts during it and a wait of 7 s minus its length."""
    policy = wampd_policy(Backoff(1.0, 60.0, 2.0, Jitter.NONE, steady_retries=0))
    p50, p95, attempts = single(policy, 5.0, 2000, seed=3)
    assert attempts == 2.0
    assert 1.0 <= p50 <= p95 <= 3.0


def test_twisted_policy_is_autobahns_default() -> None:
    """ApplicationRunner without retry arguments: 1.5 ** n + U(0, 1), 60 s cap."""
    rng = random.Random(1)
    assert 1.5 <= twisted_policy(1, None, rng) < 2.5
    assert 60.0 <= twisted_policy(40, None, rng) < 61.0


def test_a_fleet_in_lockstep_has_every_client_in_one_window() -> None:
    """No jitter: 30 clients retry at 1, 3, 7, 15 s together, so the peak is all 30; the
    outages of 2.8, 4.4, 6.0, 7.6 and 9.2 s end 0.2, 2.6, 1.0, 7.4 and 5.8 s before the
    next attempt."""
    policy = wampd_policy(Backoff(1.0, 60.0, 2.0, Jitter.NONE, steady_retries=0))
    back, peak, worst = fleet(policy, 30, 5, seed=1)
    assert peak == 30
    assert back == pytest.approx(2.6)
    assert worst == pytest.approx(7.4)


def test_phase_spreads_a_fleet_evenly_and_never_leaves_one_behind() -> None:
    """The default: 1,000 clients draw a phase in the first 3 s, then retry every 3 s;
    each 100 ms window holds about 1000 / 30 attempts, and for an outage of 2-8 s the
    last client is back within 3 s."""
    back, peak, worst = fleet(wampd_policy(Backoff()), 1000, 9, seed=2, longest=8.0)
    assert 25 <= peak <= 60
    assert 2.5 <= back <= worst <= 3.0


def test_the_search_finds_the_default_meets_every_target() -> None:
    """A small search, with the default among the candidates: the default meets every
    target against Twisted's policy; a policy without jitter cannot (a fleet in lockstep)."""
    scale = Scale(trials=2000, clients=300, fleet_trials=5)
    candidates = [Backoff(), Backoff(1.0, 60.0, 2.0, Jitter.NONE, steady_retries=0)]
    runner, results = search(candidates, scale, seed=1)
    assert [r.meets for r in results] == [True, False]
    default = results[0].figures
    assert default.fleet_peak <= 0.5 * runner.fleet_peak
    assert default.p95 <= runner.p95
    assert Figures.of(twisted_policy, scale, seed=1) == runner


def test_the_grid_covers_every_mode_of_the_daemon() -> None:
    """Every jitter the daemon accepts is searched, and the default is one of the points."""
    points = list(grid())
    assert {b.jitter for b in points} == set(Jitter) - {Jitter.ADDED}
    assert Backoff() in points


def test_the_storm_of_the_default_is_gentler_than_twisteds() -> None:
    """100 clients, one 5.5 s outage: a lower peak per 100 ms and no later all back."""
    default = storm(wampd_policy(Backoff()), 5.5, 100, 10, seed=1)
    runner = storm(twisted_policy, 5.5, 100, 10, seed=1)
    assert default[1] < runner[1]
    assert default[0] <= runner[0]


def test_the_command_prints_the_summary_and_draws_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--smoke`` runs the whole search at tiny counts, prints the summary with
    ApplicationRunner's and the default's rows, and writes a PNG."""
    out = tmp_path / "plot.png"
    main(["--smoke", "--plot", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "| ApplicationRunner (Twisted backoffPolicy) |" in printed
    assert "| wampd default |" in printed
    assert "policies meet every target" in printed
