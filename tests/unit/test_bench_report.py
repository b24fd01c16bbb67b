"""The bench's rows: ratios, targets on the ratio or on wampd's own value, the table."""

from __future__ import annotations

from bench.report import Row, table


def test_a_ratio_target_is_met_or_missed_by_the_ratio() -> None:
    """<= 0.8 on wampd / baseline: 1.6 s against 2.5 s meets it, 2.4 s does not."""
    met = Row("storm_all_joined", "s", 1.6, 2.5, "runner", "lower", target=("<=", 0.8))
    missed = Row("storm_all_joined", "s", 2.4, 2.5, "runner", "lower", target=("<=", 0.8))
    assert (met.ratio, met.target_met) == (0.64, True)
    assert missed.target_met is False
    assert "<= 0.8x met" in table([met])
    assert "<= 0.8x MISSED" in table([missed])


def test_an_absolute_target_bounds_wampds_value_whatever_the_baseline() -> None:
    """scrape p99 <= 20 ms: 25 ms misses it even against a baseline of 40 ms (ratio 0.625),
    and 1.9 ms meets it; a missing value meets nothing."""
    slow = Row("scrape_p99", "ms", 25.0, 40.0, "exporter", "lower", ("<=", 20.0), absolute=True)
    fast = Row("scrape_p99", "ms", 1.9, 40.0, "exporter", "lower", ("<=", 20.0), absolute=True)
    none = Row("scrape_p99", "ms", None, 40.0, "exporter", "lower", ("<=", 20.0), absolute=True)
    assert slow.ratio == 0.625 and slow.target_met is False
    assert fast.target_met is True
    assert none.target_met is None
    assert "<= 20 ms MISSED" in table([slow])
    assert "<= 20 ms met" in table([fast])
