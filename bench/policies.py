"""``python -m bench.policies``: search the backoff policy space for one that beats
ApplicationRunner's on every reconnect figure at once, simulated with wampd's own backoff
function (no router, no network), and draw the trade-off.

Three simulations, each run for a policy and for Twisted's ``backoffPolicy()`` (behind
autobahn's ApplicationRunner) with the same seeds:

``single``
    One client, one outage of about ``outage`` seconds (each trial draws it from 0.8 to 1.2
    times that, so a deterministic schedule cannot line up with it by chance): the wait
    from the router's return to the client's first attempt after it (p50, p95 over the
    trials) and the attempts made during the outage -- figure 4 of the bench.
``fleet``
    ``clients`` independent processes (one session each, so no shared gate) lose the router
    in the same instant; it is back after an outage of 2 to 10 s (evenly spread over the
    trials). Per trial: the seconds from its return until every client has made its first
    attempt after it (all back), and the most attempts in a 100 ms window from the loss to
    then (the peak). Medians over the trials.
``storm``
    The same for 100 clients and one 5.5 s outage, plus the peak over the mean per 100 ms.

Attempts are taken as instant (a refused connect), so the figures are the policies' own,
without the router's boot or the join. A *target* is the issue's: a single session's
p50, p95 and attempts in a 30 s outage no worse than ApplicationRunner's; a fleet all back
no later, with at most half its peak. docs/BENCHMARKS.md shows a run.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from wampd.backoff import Backoff, Jitter

#: A policy: the delay before retry ``n`` (1-based), given the delay before (or None).
Policy = Callable[[int, float | None, random.Random], float]

RUNNER = "ApplicationRunner (Twisted backoffPolicy)"


def wampd_policy(backoff: Backoff) -> Policy:
    """wampd's backoff function with these parameters, as the supervisor calls it."""
    return lambda n, previous, rng: backoff.delay(n, rng.random, previous)


def twisted_policy(n: int, previous: float | None, rng: random.Random) -> float:
    """Twisted's ``backoffPolicy()``, behind autobahn's ApplicationRunner: the n-th retry
    waits ``min(1.5 ** n, 60) + U(0, 1)`` seconds."""
    return min(1.0 * 1.5**n, 60.0) + rng.random()


def describe(backoff: Backoff) -> str:
    """``phase 3 s, x2.5 after 3 steady``: a policy's name in tables and the plot."""
    if backoff.jitter is Jitter.DECORRELATED:
        return f"decorrelated {backoff.initial_delay:g} s"
    steady = f" after {backoff.steady_retries} steady" if backoff.steady_retries else ""
    return f"{backoff.jitter.value} {backoff.initial_delay:g} s, x{backoff.growth:g}{steady}"


# -- the simulations -------------------------------------------------------------------------


def _attempts_until(policy: Policy, until: float, rng: random.Random) -> list[float]:
    """Times of one client's attempts after a loss at 0, up to the first at ``until`` or
    later (which is the last in the list)."""
    times: list[float] = []
    elapsed, retry, previous = 0.0, 0, None
    while elapsed < until:
        retry += 1
        previous = policy(retry, previous, rng)
        elapsed += previous
        times.append(elapsed)
    return times


def single(policy: Policy, outage: float, trials: int, seed: int) -> tuple[float, float, float]:
    """``(p50 wait, p95 wait, mean attempts during the outage)`` over ``trials``."""
    rng = random.Random(seed)
    waits: list[float] = []
    attempts = 0
    for _ in range(trials):
        length = outage * rng.uniform(0.8, 1.2)
        times = _attempts_until(policy, length, rng)
        waits.append(times[-1] - length)
        attempts += len(times) - 1
    waits.sort()
    return waits[trials // 2], waits[int(trials * 0.95)], attempts / trials


def _herd(
    policy: Policy, outage: float, clients: int, rng: random.Random
) -> tuple[float, int, float]:
    """One trial of ``clients`` losing the router at once: (all back, peak per 100 ms,
    peak over the mean per 100 ms from the loss to the last client back)."""
    windows: dict[int, int] = {}
    last = 0.0
    for _client in range(clients):
        times = _attempts_until(policy, outage, rng)
        for t in times:
            windows[int(t * 10)] = windows.get(int(t * 10), 0) + 1
        last = max(last, times[-1])
    peak = max(windows.values())
    return last - outage, peak, peak / (sum(windows.values()) / (last * 10))


def fleet(
    policy: Policy,
    clients: int,
    trials: int,
    seed: int,
    *,
    shortest: float = 2.0,
    longest: float = 10.0,
) -> tuple[float, float, float]:
    """``(all back, peak per 100 ms, worst all back)``: medians (and the worst all back)
    over ``trials`` outages spread evenly from ``shortest`` to ``longest`` seconds,
    ``clients`` independent processes each."""
    rng = random.Random(seed)
    back: list[float] = []
    peaks: list[float] = []
    for i in range(trials):
        outage = shortest + (longest - shortest) * (i + 0.5) / trials
        all_back, peak, _ = _herd(policy, outage, clients, rng)
        back.append(all_back)
        peaks.append(peak)
    return statistics.median(back), statistics.median(peaks), max(back)


def storm(
    policy: Policy, outage: float, clients: int, trials: int, seed: int
) -> tuple[float, float, float]:
    """``clients`` lose the router at once; it is back after ``outage`` seconds. Medians
    over ``trials`` of: all back, the peak per 100 ms, and the peak over the mean."""
    rng = random.Random(seed)
    found = [_herd(policy, outage, clients, rng) for _ in range(trials)]
    return tuple(statistics.median(f[i] for f in found) for i in range(3))  # type: ignore[return-value]


# -- the search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How many trials and clients (:data:`FULL_SCALE`, or a smaller one for smoke runs)."""

    trials: int = 4000
    clients: int = 1000
    fleet_trials: int = 17


FULL_SCALE = Scale()
SMOKE_SCALE = Scale(trials=200, clients=50, fleet_trials=3)


#: Targets of :meth:`Figures.targets_met`: single p50, p95, attempts; fleet back, peak.
TARGETS = 5


@dataclass(frozen=True)
class Figures:
    """A policy's simulated figures; lower is better for every one."""

    p50: float
    p95: float
    attempts_30s: float
    fleet_back: float
    fleet_peak: float
    #: The longest all back over the outage lengths (not a target: shown).
    fleet_worst: float

    @classmethod
    def of(cls, policy: Policy, scale: Scale, seed: int) -> Figures:
        p50, p95, _ = single(policy, 5.0, scale.trials, seed)
        attempts = single(policy, 30.0, scale.trials, seed)[2]
        back, peak, worst = fleet(policy, scale.clients, scale.fleet_trials, seed)
        return cls(p50, p95, attempts, back, peak, worst)

    def targets_met(self, runner: Figures) -> int:
        """How many of the five targets hold, against ApplicationRunner's figures."""
        return sum(
            (
                self.p50 <= runner.p50,
                self.p95 <= runner.p95,
                self.attempts_30s <= runner.attempts_30s,
                self.fleet_back <= runner.fleet_back,
                self.fleet_peak <= 0.5 * runner.fleet_peak,
            )
        )

    def meets(self, runner: Figures) -> bool:
        """Every target at once."""
        return self.targets_met(runner) == TARGETS


@dataclass(frozen=True)
class Result:
    """One searched policy: its name, mode and figures, and whether it meets them all."""

    name: str
    jitter: str
    figures: Figures
    meets: bool


def grid() -> Iterable[Backoff]:
    """The policy space searched: every jitter mode of wampd's (``added`` is autobahn's,
    for the drop-ins), the first ceiling, the growth and the steady retries. The cap
    (60 s) does not reach into a 30 s outage; decorrelated jitter uses neither growth nor
    steady retries."""
    for jitter in (Jitter.PHASE, Jitter.FULL, Jitter.EQUAL, Jitter.NONE):
        for initial, growth, steady in itertools.product(
            (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0), (1.5, 2.0, 2.5, 3.0), (0, 1, 2, 3, 4)
        ):
            yield Backoff(initial, 60.0, growth, jitter, steady_retries=steady)
    for initial in (0.5, 1.0, 1.5, 2.0, 3.0):
        yield Backoff(initial, 60.0, 2.0, Jitter.DECORRELATED, steady_retries=0)


def search(backoffs: Iterable[Backoff], scale: Scale, seed: int) -> tuple[Figures, list[Result]]:
    """ApplicationRunner's figures, and every policy's with whether it meets every target."""
    runner = Figures.of(twisted_policy, scale, seed)
    results = []
    for backoff in backoffs:
        figures = Figures.of(wampd_policy(backoff), scale, seed)
        results.append(
            Result(describe(backoff), backoff.jitter.value, figures, figures.meets(runner))
        )
    return runner, results


# -- the plot --------------------------------------------------------------------------------


def plot(runner: Figures, results: Sequence[Result], default: Figures, path: Path) -> None:
    """Two panels, each policy a dot coloured by its jitter mode, ratios to
    ApplicationRunner's figures (its point is 1, 1), the target region shaded, wampd's
    default a star: a fleet's peak against its all back; a single session's attempts in a
    30 s outage against its p95 after 5 s outages."""
    fig = Figure(figsize=(12, 5.2))
    left, right = fig.subplots(1, 2)
    panels = (
        (left, "fleet_peak", "fleet_back", 0.5, "1,000 processes: peak per 100 ms", "all back"),
        (right, "attempts_30s", "p95", 1.0, "one session: attempts in a 30 s outage", "p95 wait"),
    )
    colours = {"phase": "C0", "full": "C1", "equal": "C2", "none": "C3", "decorrelated": "C4"}
    for axes, x_name, y_name, x_target, x_label, y_label in panels:
        for jitter, colour in colours.items():
            points = [r.figures for r in results if r.jitter == jitter]
            axes.scatter(
                [getattr(f, x_name) / getattr(runner, x_name) for f in points],
                [getattr(f, y_name) / getattr(runner, y_name) for f in points],
                s=12,
                c=colour,
                alpha=0.6,
                label=jitter,
            )
        axes.fill_between([0, x_target], 0, 1, color="0.88", zorder=0)
        axes.axhline(1.0, color="0.5", lw=0.8)
        axes.axvline(x_target, color="0.5", lw=0.8, ls="--")
        axes.scatter([1.0], [1.0], marker="s", s=60, c="k", label="ApplicationRunner")
        axes.scatter(
            [getattr(default, x_name) / getattr(runner, x_name)],
            [getattr(default, y_name) / getattr(runner, y_name)],
            marker="*",
            s=220,
            c="gold",
            edgecolors="k",
            label="wampd default",
            zorder=5,
        )
        axes.set_xlabel(f"{x_label}, / ApplicationRunner's")
        axes.set_ylabel(f"{y_label}, / ApplicationRunner's")
        axes.set_ylim(0, 4)
        axes.grid(alpha=0.3)
    left.set_xlim(0, 2)
    right.set_xlim(0, 2.5)
    left.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        "Backoff policies against ApplicationRunner's (lower is better; grey: the targets)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# -- the command -----------------------------------------------------------------------------


def _row(name: str, f: Figures, runner: Figures | None) -> str:
    """A policy's line of :func:`report`; ``runner`` None for ApplicationRunner's own."""
    ok = "-" if runner is None else f"{f.targets_met(runner)}/{TARGETS}"
    return (
        f"| {name} | {f.p50:.2f} s | {f.p95:.2f} s | {f.attempts_30s:.1f} | "
        f"{f.fleet_back:.2f} s | {f.fleet_worst:.2f} s | {f.fleet_peak:.0f} | {ok} |"
    )


def report(runner: Figures, results: Sequence[Result], default: Figures) -> str:
    """The Markdown summary: ApplicationRunner, wampd's default, the count of policies
    meeting every target, and the best ten of those by fleet all back."""
    header = (
        "| policy | 5 s outage: wait p50 | p95 | attempts in 30 s | 1,000 processes: all back "
        "| worst | peak per 100 ms | targets met |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [header, _row(RUNNER, runner, None), _row("wampd default", default, runner)]
    meeting = sorted(
        (r for r in results if r.meets), key=lambda r: (r.figures.fleet_back, r.figures.p95)
    )
    lines.extend(_row(r.name, r.figures, runner) for r in meeting[:10])
    # The closest of each mode that meets them all nowhere: most targets, then soonest back.
    for jitter in sorted({r.jitter for r in results} - {r.jitter for r in meeting}):
        best = min(
            (r for r in results if r.jitter == jitter),
            key=lambda r: (-r.figures.targets_met(runner), r.figures.fleet_back),
        )
        lines.append(_row(f"{best.name} (closest {jitter})", best.figures, runner))
    by_mode = {
        jitter: sum(r.meets for r in results if r.jitter == jitter)
        for jitter in sorted({r.jitter for r in results})
    }
    counts = ", ".join(f"{jitter} {n}" for jitter, n in by_mode.items())
    lines.append("")
    lines.append(f"{len(meeting)} of {len(results)} policies meet every target ({counts}).")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Search, print the summary and the storm table, draw the plot."""
    parser = argparse.ArgumentParser(prog="python -m bench.policies", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny counts (seconds)")
    parser.add_argument(
        "--plot", type=Path, default=Path("docs/backoff-tradeoff.png"), help="PNG to write"
    )
    args = parser.parse_args(argv)
    scale = SMOKE_SCALE if args.smoke else FULL_SCALE
    runner, results = search(grid(), scale, args.seed)
    default = Figures.of(wampd_policy(Backoff()), scale, args.seed)
    print(report(runner, results, default))
    print()
    print("| policy | 100 clients, 5.5 s outage: all back | peak per 100 ms | peak/mean |")
    print("|---|---|---|---|")
    for name, policy in (("wampd default", wampd_policy(Backoff())), (RUNNER, twisted_policy)):
        all_back, peak, ratio = storm(policy, 5.5, 100, 40 if not args.smoke else 3, args.seed)
        print(f"| {name} | {all_back:.1f} s | {peak:.0f} | {ratio:.1f} |")
    plot(runner, results, default, args.plot)
    print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
