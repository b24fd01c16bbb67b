"""``python -m bench.policies``: how long each backoff policy keeps a client waiting once
the router is back, and how it spreads a reconnect storm, simulated with wampd's own
backoff function (no router, no network).

For an outage of about a given length (each trial draws it from 0.8 to 1.2 times that, so
a deterministic schedule cannot line up with it by chance), each trial starts retrying
when the connection is lost and stops at the first attempt after the router is back. The
figures are the wait from the router's return to that attempt (p50, p95 over the trials)
and the attempts made during the outage. Attempts are taken as instant (a refused
connect), so the figures are the policies' own, without the router's boot or the join.
docs/BENCHMARKS.md shows a run of it next to the measured figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Sequence

from wampd.backoff import Backoff, Jitter

#: A policy: the delay before retry ``n`` (1-based), given the delay before (or None).
Policy = Callable[[int, float | None, random.Random], float]


def wampd_policy(jitter: Jitter, growth: float, initial: float = 1.0, cap: float = 60.0) -> Policy:
    """wampd's backoff with ``jitter`` and ``growth``."""
    backoff = Backoff(initial, cap, growth, jitter)
    return lambda n, previous, rng: backoff.delay(n, rng.random, previous)


def twisted_policy(n: int, previous: float | None, rng: random.Random) -> float:
    """Twisted's ``backoffPolicy()``, behind autobahn's ApplicationRunner: the n-th retry
    waits ``min(1.5 ** n, 60) + U(0, 1)`` seconds."""
    return min(1.0 * 1.5**n, 60.0) + rng.random()


def default_policy() -> Policy:
    """wampd's default backoff, whatever it is: ``Backoff()``, as the daemon uses it."""
    backoff = Backoff()
    return lambda n, previous, rng: backoff.delay(n, rng.random, previous)


POLICIES: dict[str, Policy] = {
    f"wampd default ({Backoff().jitter.value} jitter)": default_policy(),
    "full jitter, growth 2": wampd_policy(Jitter.FULL, 2.0),
    "full jitter, growth 1.5": wampd_policy(Jitter.FULL, 1.5),
    "equal jitter, growth 2": wampd_policy(Jitter.EQUAL, 2.0),
    "equal jitter, growth 1.5": wampd_policy(Jitter.EQUAL, 1.5),
    "ApplicationRunner (Twisted backoffPolicy)": twisted_policy,
}


def simulate(policy: Policy, outage: float, trials: int, seed: int) -> tuple[float, float, float]:
    """``(p50 wait, p95 wait, mean attempts during the outage)`` over ``trials``."""
    rng = random.Random(seed)
    waits: list[float] = []
    attempts = 0
    for _ in range(trials):
        length = outage * rng.uniform(0.8, 1.2)
        elapsed, retry, previous = 0.0, 0, None
        while elapsed < length:
            retry += 1
            previous = policy(retry, previous, rng)
            elapsed += previous
            attempts += elapsed < length
        waits.append(elapsed - length)
    waits.sort()
    return waits[trials // 2], waits[int(trials * 0.95)], attempts / trials


def storm(
    policy: Policy, outage: float, clients: int, trials: int, seed: int
) -> tuple[float, float, float]:
    """``clients`` lose the router at once; it is back after ``outage`` seconds. Medians
    over ``trials`` of: seconds from its return until every client has made its first
    attempt after it (all back), the most attempts in a 100 ms window from the loss to
    then, and that peak over the mean per 100 ms (figure 5 of the bench)."""
    rng = random.Random(seed)
    back: list[float] = []
    peaks: list[float] = []
    ratios: list[float] = []
    for _ in range(trials):
        windows: dict[int, int] = {}
        last = 0.0
        for _client in range(clients):
            elapsed, retry, previous = 0.0, 0, None
            while elapsed < outage:
                retry += 1
                previous = policy(retry, previous, rng)
                elapsed += previous
                windows[int(elapsed * 10)] = windows.get(int(elapsed * 10), 0) + 1
            last = max(last, elapsed)
        peak = max(windows.values())
        back.append(last - outage)
        peaks.append(peak)
        ratios.append(peak / (sum(windows.values()) / (last * 10)))
    return statistics.median(back), statistics.median(peaks), statistics.median(ratios)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the two Markdown tables: waits after an outage, and a reconnect storm."""
    parser = argparse.ArgumentParser(prog="python -m bench.policies", description=__doc__)
    parser.add_argument("--outage", type=float, action="append", help="seconds (default 5, 30)")
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=100, help="storm size (default 100)")
    args = parser.parse_args(argv)
    outages = args.outage or [5.0, 30.0]
    print("| policy | outage | wait after return p50 | p95 | attempts during outage |")
    print("|---|---|---|---|---|")
    for name, policy in POLICIES.items():
        for outage in outages:
            p50, p95, attempts = simulate(policy, outage, args.trials, args.seed)
            print(f"| {name} | {outage:g} s | {p50:.1f} s | {p95:.1f} s | {attempts:.1f} |")
    print()
    print(
        f"| policy | {args.clients} clients, 5.5 s outage: all back | peak per 100 ms | peak/mean |"
    )
    print("|---|---|---|---|")
    for name, policy in POLICIES.items():
        all_back, peak, ratio = storm(policy, 5.5, args.clients, 40, args.seed)
        print(f"| {name} | {all_back:.1f} s | {peak:.0f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
