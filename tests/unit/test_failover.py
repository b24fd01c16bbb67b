"""Which URL each attempt goes to (wampd/failover.py), and ``shuffle`` across a fleet."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from wampd.config import parse_config
from wampd.errors import ConfigError
from wampd.failover import Failover, shuffled

A, B, C = "ws://a/ws", "ws://b/ws", "ws://c/ws"


def walk(failover: Failover, steps: str) -> list[str]:
    """The URL of each attempt while ``steps`` happen: f(ailed), j(oined), l(ost)."""
    seen = [failover.url]
    for step in steps:
        if step == "f":
            failover.failed()
        elif step == "j":
            failover.joined()
            continue
        else:
            failover.lost()
        seen.append(failover.url)
    return seen


def test_ordered_goes_down_the_list_and_stays_where_it_joined() -> None:
    # A refuses, B joins; B's session is lost: B again first, not A (no flapping back).
    assert walk(Failover((A, B, C)), "fjl") == [A, B, B]
    # B down too: on to C, then around to A.
    assert walk(Failover((A, B, C)), "fjlff") == [A, B, B, C, A]


def test_ordered_with_prefer_first_starts_every_outage_from_the_first() -> None:
    assert walk(Failover((A, B, C), prefer_first=True), "fjl") == [A, B, A]


def test_round_robin_moves_on_after_a_loss_too() -> None:
    assert walk(Failover((A, B, C), "round_robin"), "jljlf") == [A, B, C, A]


def test_one_url_is_always_that_url() -> None:
    for mode in ("ordered", "round_robin"):
        assert set(walk(Failover((A,), mode), "fjlflf")) == {A}


def test_bad_modes_and_no_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one router URL"):
        Failover(())
    with pytest.raises(ValueError, match="ordered or round_robin"):
        Failover((A,), "shuffle")  # shuffle is ordered over shuffled URLs


def test_shuffle_spreads_a_fleets_first_choices() -> None:
    """1,000 daemons, each its own seeded random source: every router is the first choice
    of about a third of them, and each daemon's order holds every URL once."""
    firsts: Counter[str] = Counter()
    for seed in range(1000):
        order = shuffled((A, B, C), random.Random(seed).random)
        assert sorted(order) == [A, B, C]
        firsts[order[0]] += 1
    assert set(firsts) == {A, B, C}
    assert all(280 <= n <= 390 for n in firsts.values()), firsts
    # The same source gives the same order: one draw per process.
    assert shuffled((A, B, C), random.Random(7).random) == shuffled(
        (A, B, C), random.Random(7).random
    )


def test_the_router_table_takes_failover_and_prefer_first() -> None:
    base = {"url": [A, B], "realm": "r"}
    component = [{"name": "x", "entry": "m:X"}]
    config = parse_config({"router": base, "component": component}, environ={})
    assert (config.router.failover, config.router.prefer_first) == ("ordered", False)
    router = {**base, "failover": "shuffle", "prefer_first": True}
    config = parse_config({"router": router, "component": component}, environ={})
    assert (config.router.failover, config.router.prefer_first) == ("shuffle", True)
    bad = {**base, "failover": "round_robin", "prefer_first": True}
    with pytest.raises(ConfigError) as info:
        parse_config({"router": bad, "component": component}, environ={})
    assert list(info.value.problems) == [
        'router.prefer_first: only with failover = "ordered" or "shuffle"'
    ]
