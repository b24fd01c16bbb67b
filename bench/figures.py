"""The nine figures, each a function of the :class:`~bench.procs.Lab` and the
:class:`Settings`, returning its :class:`~bench.report.Row` list.

Repeated measurements alternate the sides (wampd, baseline, then baseline, wampd, ...) so the
machine's drift hits both; the rows hold medians (or the percentile named). Where the two
sides can share one event without disturbing each other (a router SIGSTOP, a router
restart that every host sees), they are measured in the very same event.
"""

from __future__ import annotations

import http.client
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from harness.poll import INTERVAL, PollTimeout, poll
from harness.ports import free_port
from harness.procs import REPO_ROOT, Proc, harness_env
from wampd.backoff import Backoff
from wampd.config import ReconnectConfig

from .bridge import bridge
from .outbox import outbox
from .policies import (
    FULL_SCALE,
    SMOKE_SCALE,
    Figures,
    Scale,
    grid,
    plot,
    report,
    search,
    wampd_policy,
)
from .procs import NAMES, BenchError, ClientProc, Host, HostOptions, Lab
from .report import Row

_T0 = time.monotonic()

T = TypeVar("T")


def progress(text: str) -> None:
    """One progress line on stderr, with the seconds since the bench started."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Outage:
    """One router outage: ``kill -9``, then start it again.

    A counting outage keeps the port closed for ``down`` seconds and counts the attempts
    made in them (then starts the router). A recovery outage starts the router early by
    the last boot time, so that its port is closed for about ``down`` seconds, and times
    each host's way back.
    """

    down: float
    #: Count each host's connection attempts during the ``down`` seconds.
    count: bool = False
    #: Measure the time from the port opening to each host's procedure answering.
    recovery: bool = True


@dataclass(frozen=True)
class Settings:
    """Counts and durations of one run (:data:`FULL` or :data:`SMOKE`)."""

    smoke: bool
    #: Figures 1-2: seconds per throughput sample, samples per side and workload.
    sample_seconds: float
    rounds: int
    warmup_seconds: float
    #: Seconds to let hosts settle after joining, before measuring.
    settle: float = 1.0
    inflight: int = 50
    batch: int = 100
    #: Figure 3: SIGSTOPs; Component takes part in the first ``component_detect_reps``.
    detect_reps: int = 3
    component_detect_reps: int = 1
    detect_cap: float = 60.0
    #: Figure 4: each phase runs on freshly started hosts.
    recovery_phases: tuple[tuple[Outage, ...], ...] = ()
    recovery_cap: float = 30.0
    #: The router stays up at least this long after its port opened (see _recovery_phase).
    recovery_min_up: float = 6.0
    #: Figure 5: sessions per host, and the hosts of each trial (one router restart each).
    storm_sessions: int = 100
    storm_trials: tuple[tuple[str, ...], ...] = ()
    storm_window: float = 0.1
    #: Seconds the router's port stays closed in each storm trial (about: it is started
    #: early by its last boot time, as in figure 4).
    storm_outage: float = 5.0
    #: Figure 6.
    scrape_components: int = 100
    scrape_requests: int = 200
    scrape_block: int = 20
    #: Seconds of each reactor-lag window (scraped 10 times a second, and not scraped).
    scrape_lag_seconds: float = 10.0
    #: Figure 7: the simulated fleet and the policy search (bench.policies).
    fleet_scale: Scale = FULL_SCALE
    #: Where figure 7 draws the trade-off; None: into the lab's work directory.
    fleet_plot: Path | None = REPO_ROOT / "docs" / "backoff-tradeoff.png"
    #: Figure 8 (bench.bridge): seconds per sample, rounds, warm-up seconds per side and
    #: route, and the numbers of concurrent clients measured.
    bridge_seconds: float = 1.5
    bridge_rounds: int = 7
    bridge_warmup: float = 1.0
    bridge_clients: tuple[int, ...] = (1, 32)
    #: Figure 8's webhook rows: events per burst, rounds (each side one burst a round),
    #: events of the warm-up burst per side (0: none), events acknowledged together by
    #: the publisher, and the seconds without a delivery after which the rest are lost.
    webhook_events: int = 1500
    webhook_rounds: int = 5
    webhook_warmup: int = 300
    webhook_batch: int = 100
    webhook_stall: float = 10.0
    #: Figure 9 (bench.outbox): intake samples -- seconds each, rounds, warm-up seconds per
    #: workload, concurrent keep-alive clients, entries per batch request; the messages of
    #: each drain and the drain rounds; the backlog for memory and start-up, its rounds, and
    #: the seconds wampd settles after opening its store before its RSS is read; and the
    #: seconds without an arrival after which a drain's missing messages are lost.
    outbox_seconds: float = 1.0
    outbox_rounds: int = 5
    outbox_warmup: float = 0.5
    outbox_clients: int = 32
    outbox_batch: int = 100
    outbox_drain_messages: int = 50_000
    outbox_drain_rounds: int = 3
    outbox_backlog_messages: int = 1_000_000
    outbox_backlog_rounds: int = 3
    outbox_settle: float = 2.0
    outbox_stall: float = 10.0
    #: Deviations from the hosts' defaults (the smoke run only).
    options: HostOptions = field(default_factory=HostOptions)
    #: Figures in one lane run one after the other on one router; lanes run side by side,
    #: each with a router of its own (the smoke run only: it does not measure, it checks).
    lanes: tuple[tuple[str, ...], ...] = (
        ("overhead", "detection", "recovery", "storm", "scrape", "fleet", "bridge", "outbox"),
    )

    @property
    def stable_after(self) -> float:
        """wampd's ``stable_after`` in this run."""
        for section, items in self.options.wampd_sections:
            if section == "reconnect":
                return float(dict(items).get("stable_after", ReconnectConfig().stable_after))
        return ReconnectConfig().stable_after


FULL = Settings(
    smoke=False,
    sample_seconds=2.0,
    rounds=10,
    warmup_seconds=1.0,
    # Four counted 30 s outages, each on fresh hosts (a phase), then ten recoveries.
    recovery_phases=(
        *((Outage(30.0, count=True, recovery=False),) for _ in range(4)),
        tuple(Outage(5.0) for _ in range(10)),
    ),
    storm_trials=(("wampd",), ("runner",)) * 4,
)

SMOKE = Settings(
    smoke=True,
    sample_seconds=0.2,
    rounds=1,
    warmup_seconds=0.0,
    settle=0.1,
    detect_reps=1,
    detect_cap=3.0,
    # The counted outage outlasts the smoke policy's first retry (at most 0.3 s after the
    # loss, below) with room for a loaded machine, so at least one attempt always falls in it.
    recovery_phases=((Outage(1.0, count=True, recovery=True),),),
    recovery_cap=10.0,
    recovery_min_up=2.0,
    storm_sessions=3,
    storm_trials=(("wampd", "runner"),),
    storm_outage=1.0,
    fleet_scale=SMOKE_SCALE,
    fleet_plot=None,
    scrape_components=3,
    scrape_requests=20,
    scrape_block=5,
    scrape_lag_seconds=1.0,
    bridge_seconds=0.25,
    bridge_rounds=1,
    bridge_warmup=0.0,
    webhook_events=200,
    webhook_rounds=1,
    webhook_warmup=0,
    webhook_stall=5.0,
    outbox_seconds=0.25,
    outbox_rounds=1,
    outbox_warmup=0.0,
    outbox_drain_messages=300,
    outbox_drain_rounds=1,
    outbox_backlog_messages=2000,
    outbox_backlog_rounds=1,
    outbox_settle=0.3,
    outbox_stall=5.0,
    options=HostOptions(
        wampd_sections=(
            ("keepalive", (("ping_interval", 1.0), ("ping_timeout", 1.0))),
            ("reconnect", (("initial_delay", 0.1), ("max_delay", 0.5), ("stable_after", 0.2))),
        ),
        runner_ping=1.0,
        retry=(0.1, 0.5),
    ),
    lanes=(
        ("overhead", "storm", "scrape", "bridge"),
        ("recovery", "detection", "fleet", "outbox"),
    ),
)


# -- statistics ------------------------------------------------------------------------------


def quantile(values: list[float | None], q: float) -> float | None:
    """The ``q`` quantile (linear interpolation) of ``values``, None counting as +infinity;
    None when the quantile falls on (or between) such values, or there are none."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low, high = ordered[lo], ordered[hi]
    if low is None or (high is None and pos > lo):
        return None
    if high is None or lo == hi:
        return low
    return low + (high - low) * (pos - lo)


def median(values: list[float | None]) -> float | None:
    """The median, None counting as +infinity (see :func:`quantile`)."""
    return quantile(values, 0.5)


# -- helpers ---------------------------------------------------------------------------------


def start_hosts(
    lab: Lab, kinds: tuple[str, ...], settings: Settings, *, sessions: int = 1
) -> list[Host]:
    """Start one host of each kind (in parallel), wait until every session joined."""
    hosts = [Host(lab, kind, sessions=sessions, options=settings.options) for kind in kinds]
    for host in hosts:
        host.start()
    for host in hosts:
        host.wait_joined(timeout=60 + sessions * 0.5)
    return hosts


def alternate(sides: list[T], n: int) -> list[T]:
    """``sides`` in order in even rounds, reversed in odd ones: A B, B A, A B, ... so the
    sides alternate and neither always goes first (after a change of workload, say)."""
    return list(sides) if n % 2 == 0 else list(reversed(sides))


def kill_all(hosts: list[Host]) -> None:
    """Kill the hosts."""
    for host in hosts:
        host.kill()


def sleep_until(t: float) -> None:
    """Sleep until Unix time ``t``."""
    time.sleep(max(0.0, t - time.time()))


def wait_until(done: Callable[[], bool], deadline: float, interval: float = INTERVAL) -> bool:
    """Poll ``done`` until it is true (True) or Unix time ``deadline`` passes (False)."""
    try:
        # The deadline is wall-clock time, shared with the figures' timestamps.
        poll(done, deadline - time.time(), interval=interval, clock=time.time)
    except PollTimeout:
        return False
    return True


def baseline_name(kind: str) -> str:
    """The display name of a baseline host."""
    return f"autobahn {NAMES[kind]}"


# -- figures 1 and 2: throughput and memory --------------------------------------------------


def overhead(lab: Lab, settings: Settings) -> list[Row]:
    """RPC calls/s (sequential and ``inflight`` in flight) and events/s to a hosted
    component from a separate client, wampd-hosted vs ApplicationRunner-hosted; and the
    RSS of each host process, idle and after that load."""
    lab.ensure_router()
    client = ClientProc(lab, "load").start()
    hosts = start_hosts(lab, ("wampd", "runner"), settings)
    try:
        client.wait("ready", 1, 60)
        client.run({"op": "await", "procedures": [h.procedure() for h in hosts], "seconds": 30}, 60)
        time.sleep(settings.settle)
        rss_idle = {host.kind: host.rss_mib() for host in hosts}

        def workload(name: str, host: Host, seconds: float) -> dict[str, Any]:
            """The load client's command for workload ``name`` against ``host``."""
            if name == "pubsub":
                return {
                    "op": "pubsub",
                    "topic": host.procedure(0, "topic"),
                    "count": host.procedure(0, "count"),
                    "batch": settings.batch,
                    "seconds": seconds,
                }
            inflight = 1 if name == "rpc_sequential" else settings.inflight
            return {
                "op": "rpc",
                "procedure": host.procedure(),
                "inflight": inflight,
                "seconds": seconds,
            }

        names = ("rpc_sequential", "rpc_in_flight", "pubsub")
        for name in names:
            for host in hosts:
                if settings.warmup_seconds:
                    client.run(workload(name, host, settings.warmup_seconds), timeout=60)
        rates: dict[tuple[str, str], list[float | None]] = {}
        cpu: dict[tuple[str, str], list[float | None]] = {}
        for n in range(settings.rounds):
            for name in names:
                for host in alternate(hosts, n):
                    cpu_before = host.cpu_seconds()
                    answer = client.run(workload(name, host, settings.sample_seconds), timeout=120)
                    used = host.cpu_seconds() - cpu_before
                    if answer["errors"] or not answer["ops"]:
                        raise BenchError(f"{host.name} {name}: {answer}")
                    rate = answer["ops"] / answer["seconds"]
                    rates.setdefault((name, host.kind), []).append(rate)
                    cpu.setdefault((name, host.kind), []).append(used / answer["ops"] * 1e6)
            shown = [
                f"{name} {rates[name, 'wampd'][-1] or 0:.0f} / {rates[name, 'runner'][-1] or 0:.0f}"
                for name in names
            ]
            progress(
                f"overhead: round {n + 1}/{settings.rounds}: {', '.join(shown)} "
                "(wampd / ApplicationRunner, per s)"
            )
        rss_after = {host.kind: host.rss_mib() for host in hosts}
    finally:
        client.kill()
        kill_all(hosts)
    base = baseline_name("runner")
    labels = {
        "rpc_sequential": ("rpc_calls_sequential", "calls/s"),
        "rpc_in_flight": (f"rpc_calls_{settings.inflight}_in_flight", "calls/s"),
        "pubsub": ("pubsub_events", "events/s"),
    }
    rows = [
        Row(
            label,
            unit,
            median(rates[name, "wampd"]),
            median(rates[name, "runner"]),
            base,
            "higher",
            target=(">=", 0.97),
        )
        for name, (label, unit) in labels.items()
    ]
    # The host's own CPU per operation: what wampd adds where the router, not the host,
    # limits the throughput (the host is idle part of the time).
    rows.append(
        Row(
            f"host_cpu_per_call_{settings.inflight}_in_flight",
            "us/call",
            median(cpu["rpc_in_flight", "wampd"]),
            median(cpu["rpc_in_flight", "runner"]),
            base,
            "lower",
        )
    )
    progress(
        "overhead: host CPU per operation (us), wampd / ApplicationRunner: "
        + ", ".join(
            f"{name} {median(cpu[name, 'wampd']) or 0:.0f} / {median(cpu[name, 'runner']) or 0:.0f}"
            for name in names
        )
    )
    for label, rss in (("rss_idle", rss_idle), ("rss_after_load", rss_after)):
        rows.append(
            Row(label, "MiB", rss["wampd"], rss["runner"], base, "lower", target=("<=", 1.25))
        )
    return rows


# -- figure 3: dead-router detection ---------------------------------------------------------


def detection(lab: Lab, settings: Settings) -> list[Row]:
    """SIGSTOP the router: seconds until each host notices (its session ends), with each
    host's defaults; not within ``detect_cap`` seconds = not detected (None)."""
    lab.ensure_router()
    found: dict[str, list[float | None]] = {"wampd": [], "runner": [], "component": []}
    with_component: list[float | None] = []
    for rep in range(settings.detect_reps):
        kinds: tuple[str, ...] = ("wampd", "runner")
        if rep < settings.component_detect_reps:
            kinds += ("component",)
        progress(f"detection: SIGSTOP {rep + 1}/{settings.detect_reps} ({', '.join(kinds)})")
        hosts = start_hosts(lab, kinds, settings)
        try:
            time.sleep(settings.settle)
            t0 = time.time()
            lab.router.pause()
            try:
                wait_until(partial(_all_left, hosts, t0), t0 + settings.detect_cap)
            finally:
                lab.router.resume()
            shown = []
            for host in hosts:
                left = host.events("left", t0)
                seconds = left[0].t - t0 if left else None
                if seconds is not None and seconds > settings.detect_cap:
                    seconds = None
                found[host.kind].append(seconds)
                if host.kind == "wampd" and "component" in kinds:
                    with_component.append(seconds)
                shown.append(
                    f"{host.name} " + ("not detected" if seconds is None else f"{seconds:.2f} s")
                )
            progress("detection: noticed after " + ", ".join(shown))
        finally:
            kill_all(hosts)
    return [
        Row(
            "dead_router_detection_vs_runner",
            "s",
            median(found["wampd"]),
            median(found["runner"]),
            baseline_name("runner"),
            "lower",
        ),
        Row(
            "dead_router_detection_vs_component",
            "s",
            median(with_component),
            median(found["component"]),
            baseline_name("component"),
            "lower",
        ),
    ]


def _all_left(hosts: list[Host], after: float) -> bool:
    """True once every host has reported its session gone after ``after``."""
    return all(host.events("left", after) for host in hosts)


# -- figure 4: recovery ----------------------------------------------------------------------


def recovery(lab: Lab, settings: Settings) -> list[Row]:
    """Router ``kill -9``, down, up: seconds from the port opening to each host's procedure
    answering again (p50, p95), and connection attempts during a fixed outage -- every
    host with its defaults, all in the same outages."""
    lab.ensure_router()
    kinds = ("wampd", "runner", "component")
    back: dict[str, list[float | None]] = {kind: [] for kind in kinds}
    attempts: dict[str, list[float | None]] = {kind: [] for kind in kinds}
    prober = ClientProc(lab, "probe").start()
    try:
        for p, phase in enumerate(settings.recovery_phases):
            hosts = start_hosts(lab, kinds, settings)
            try:
                _recovery_phase(
                    lab, settings, prober, hosts, phase, p=p, back=back, attempts=attempts
                )
            finally:
                kill_all(hosts)
    finally:
        prober.kill()
    rows: list[Row] = []
    count_seconds = next(
        (o.down for phase in settings.recovery_phases for o in phase if o.count), 0.0
    )
    for kind in ("runner", "component"):
        base = baseline_name(kind)
        # The targets are against ApplicationRunner, the runner wampd replaces.
        target = ("<=", 1.0) if kind == "runner" else None
        for q in (0.5, 0.95):
            rows.append(
                Row(
                    f"recovery_p{q * 100:.0f}_vs_{kind}",
                    "s",
                    quantile(back["wampd"], q),
                    quantile(back[kind], q),
                    base,
                    "lower",
                    target=target,
                    missing="not back",
                )
            )
        rows.append(
            Row(
                f"outage_attempts_vs_{kind}",
                f"attempts in {count_seconds:g} s",
                median(attempts["wampd"]),
                median(attempts[kind]),
                base,
                "lower",
                target=target,
            )
        )
    return rows


def _recovery_phase(
    lab: Lab,
    settings: Settings,
    prober: ClientProc,
    hosts: list[Host],
    phase: tuple[Outage, ...],
    *,
    p: int,
    back: dict[str, list[float | None]],
    attempts: dict[str, list[float | None]],
) -> None:
    """One phase of :func:`recovery` on freshly started ``hosts``."""
    procedures = {host.procedure(): host for host in hosts}
    label = f"{p}-ready"
    prober.send({"op": "arm", "label": label, "procedures": list(procedures)})
    if not wait_until(lambda: len(_answered(prober, label)) == len(hosts), time.time() + 60):
        raise BenchError(
            f"procedures never answered before the outages: {_answered(prober, label)}"
        )
    wampd = next(host for host in hosts if host.kind == "wampd")
    # Fresh hosts have no failures to forget: the first outage needs no stable_after wait.
    ready = time.time() + settings.settle
    for n, outage in enumerate(phase):
        sleep_until(ready)
        label = f"{p}-{n}"
        t_kill = lab.kill_router()
        prober.send({"op": "arm", "label": label, "procedures": list(procedures)})
        if outage.count:
            sleep_until(t_kill + outage.down)
        else:
            sleep_until(t_kill + outage.down - lab.boot_seconds)
        t_open = lab.start_router()
        line = f"recovery: outage {n + 1}/{len(phase)} of phase {p + 1}: port closed for "
        line += f"{t_open - t_kill:.1f} s"
        if outage.count:
            made = {
                host: len(
                    [e for e in host.events("attempt", t_kill) if e.t <= t_kill + outage.down]
                )
                for host in hosts
            }
            for host, count in made.items():
                attempts[host.kind].append(count)
            line += "; attempts in the first {:g} s: {}".format(
                outage.down, ", ".join(f"{h.name} {c}" for h, c in made.items())
            )
        if outage.recovery:
            # The router stays up until wampd and ApplicationRunner are back and wampd has
            # been joined for stable_after (+ settle) -- wampd only counts an outage as over
            # then -- and at least recovery_min_up, but no longer than the cap. A host not
            # back by then is "not back" this time.
            deadline = t_open + settings.recovery_cap
            others = [host for host in hosts if host.kind != "component"]
            wait_until(partial(_all_back, prober, label, others), deadline)
            wampd_back = _answered(prober, label).get(wampd.procedure(), time.time())
            ready = max(time.time(), wampd_back + settings.stable_after + settings.settle)
            up_until = min(max(ready, t_open + settings.recovery_min_up), deadline)
            wait_until(partial(_all_back, prober, label, hosts), up_until)
            answered = _answered(prober, label)
            shown = []
            for procedure, host in procedures.items():
                t = answered.get(procedure)
                value = None if t is None or t > up_until else t - t_open
                back[host.kind].append(value)
                shown.append(f"{host.name} " + ("not back" if value is None else f"{value:.2f} s"))
            line += "; back after " + ", ".join(shown)
        progress(line)


def _all_back(prober: ClientProc, label: str, hosts: list[Host]) -> bool:
    """True once every host's procedure answered the prober for ``label``."""
    answered = _answered(prober, label)
    return all(host.procedure() in answered for host in hosts)


def _answered(prober: ClientProc, label: str) -> dict[str, float]:
    """The procedures the prober found answering for ``label``, with the times."""
    return {
        str(a["procedure"]): float(a["t"])
        for a in prober.answers("answered")
        if a.get("label") == label
    }


# -- figure 5: reconnect storm ---------------------------------------------------------------


def storm(lab: Lab, settings: Settings) -> list[Row]:
    """``storm_sessions`` supervised sessions in one host; router ``kill -9``, its port closed
    for about ``storm_outage`` seconds, started again: seconds from the port opening until
    all are joined again; connection attempts while the port was closed; attempts per
    ``storm_window``: the peak, and the peak divided by the mean over the recovery window
    (from the router going down to the last join)."""
    lab.ensure_router()
    found: dict[tuple[str, str], list[float | None]] = {}
    for n, kinds in enumerate(settings.storm_trials):
        hosts = start_hosts(lab, kinds, settings, sessions=settings.storm_sessions)
        try:
            time.sleep(settings.settle)
            t_kill = lab.kill_router()
            sleep_until(t_kill + settings.storm_outage - lab.boot_seconds)
            t_open = lab.start_router()
            shown = []
            for host in hosts:
                t_all = host.wait_joined(after=t_kill, timeout=120)
                made = [e.t for e in host.events("attempt", t_kill) if e.t <= t_all]
                down = len([t for t in made if t < t_open])
                windows = max(1, math.ceil((t_all - t_kill) / settings.storm_window))
                per_window = [0] * windows
                for t in made:
                    per_window[min(windows - 1, int((t - t_kill) / settings.storm_window))] += 1
                figures = {
                    "all_joined": t_all - t_open,
                    "during_outage": float(down),
                    "peak": float(max(per_window)),
                    "peak_to_mean": max(per_window) / (len(made) / windows),
                }
                for key, value in figures.items():
                    found.setdefault((key, host.kind), []).append(value)
                shown.append(
                    f"{host.name}: port closed {t_open - t_kill:.1f} s, {down} attempts in "
                    f"it; all joined {figures['all_joined']:.2f} s after it opened, "
                    f"{len(made)} attempts in {t_all - t_kill:.1f} s, peak "
                    f"{max(per_window)} per {settings.storm_window:g} s, peak/mean "
                    f"{figures['peak_to_mean']:.1f}"
                )
            progress(f"storm: trial {n + 1}/{len(settings.storm_trials)}: " + "; ".join(shown))
        finally:
            kill_all(hosts)
    base = baseline_name("runner")
    window = f"{settings.storm_window * 1000:.0f}ms"
    labels: dict[str, tuple[str, str, tuple[str, float] | None]] = {
        "all_joined": ("storm_all_joined", "s", ("<=", 0.8)),
        "during_outage": ("storm_attempts_during_outage", "attempts", ("<=", 0.25)),
        "peak": (f"storm_attempts_peak_per_{window}", "attempts", ("<=", 1.0)),
        "peak_to_mean": ("storm_attempts_peak_to_mean", "x", None),
    }
    return [
        Row(
            label,
            unit,
            median(found[key, "wampd"]),
            median(found[key, "runner"]),
            base,
            "lower",
            target=target,
        )
        for key, (label, unit, target) in labels.items()
    ]


# -- figure 6: scrape cost -------------------------------------------------------------------


def _get(port: int) -> tuple[float, int]:
    """GET /metrics on a fresh connection; return the seconds until the body was read, and
    the body's size."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - start
    if response.status != 200 or b"wampd_session_up" not in body:
        raise BenchError(f"GET 127.0.0.1:{port}/metrics answered {response.status}")
    return elapsed, len(body)


def _lag_buckets(port: int) -> dict[float, float]:
    """``wampd_reactor_lag_seconds``' cumulative bucket counts by upper bound, now."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    buckets: dict[float, float] = {}
    for line in body.splitlines():
        if line.startswith('wampd_reactor_lag_seconds_bucket{le="'):
            bound = line.split('"')[1]
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    if not buckets:
        raise BenchError(f"127.0.0.1:{port}/metrics has no wampd_reactor_lag_seconds")
    return buckets


def _lag_p99(port: int, seconds: float, per_second: float) -> float | None:
    """The reactor lag's p99 (ms, the bucket bound it falls under) in a window of ``seconds``
    during which /metrics is scraped ``per_second`` times a second (0: not at all)."""
    before = _lag_buckets(port)
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        if per_second:
            _get(port)
            time.sleep(max(0.0, 1 / per_second - (time.monotonic() - now)))
        else:
            time.sleep(min(0.1, end - now))
    after = _lag_buckets(port)
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[math.inf]
    if total <= 0:
        return None
    bound = next(b for b, count in counts.items() if count >= 0.99 * total)
    return None if math.isinf(bound) else bound * 1000


def scrape(lab: Lab, settings: Settings) -> list[Row]:
    """/metrics latency (p50, p99) of wampd with ``scrape_components`` joined components,
    against the stock ``prometheus_client`` exporter serving the same series."""
    lab.ensure_router()
    n = settings.scrape_components
    hosts = start_hosts(lab, ("wampd",), settings, sessions=n)
    port = free_port()
    workdir = lab.workdir / "exporter"
    exporter = Proc(
        [sys.executable, "-m", "bench.exporter", "--port", str(port), "--components", str(n)],
        stdout_path=workdir / "stdout.log",
        env=harness_env(),
        cwd=REPO_ROOT,
        name="exporter",
    )
    lab.track(exporter)
    exporter.start()
    try:
        exporter.wait_for_line(lambda line: line.strip() == "READY", timeout=30)
        # The steady state a scraper meets: every session joined for stable_after (its
        # session.stable event, the last one a join brings, has come), the daemon idle.
        time.sleep(settings.stable_after + settings.settle)
        ports = {"wampd": hosts[0].http_port, "exporter": port}
        latencies: dict[str, list[float | None]] = {side: [] for side in ports}
        sizes = {}
        for side, side_port in ports.items():
            assert side_port is not None
            for _ in range(5):
                _seconds, sizes[side] = _get(side_port)
        for n in range(max(1, settings.scrape_requests // settings.scrape_block)):
            for side, side_port in alternate(list(ports.items()), n):
                assert side_port is not None
                for _ in range(settings.scrape_block):
                    latencies[side].append(_get(side_port)[0] * 1000)
        progress(
            f"scrape: {len(latencies['wampd'])} scrapes each; body wampd {sizes['wampd']:,} "
            f"bytes ({sizes['wampd'] / settings.scrape_components:,.0f} a component), "
            f"exporter {sizes['exporter']:,} bytes"
        )
        wampd_port = ports["wampd"]
        assert wampd_port is not None
        lag = {
            "idle": _lag_p99(wampd_port, settings.scrape_lag_seconds, 0),
            "scraped": _lag_p99(wampd_port, settings.scrape_lag_seconds, 10),
        }
        progress(f"scrape: reactor lag p99 {lag['scraped']} ms scraped 10/s, {lag['idle']} ms not")
    finally:
        exporter.kill()
        kill_all(hosts)
    base = "prometheus_client start_http_server"
    return [
        Row(
            f"scrape_p{q * 100:.0f}",
            "ms",
            quantile(latencies["wampd"], q),
            quantile(latencies["exporter"], q),
            base,
            "lower",
            target=None if q < 0.99 else ("<=", 20.0),
            absolute=True,
        )
        for q in (0.5, 0.99)
    ] + [
        Row(
            "reactor_lag_p99_scraped_10_per_s",
            "ms",
            lag["scraped"],
            lag["idle"],
            "the same wampd, not scraped",
            "lower",
            target=("<=", 10.0),
            absolute=True,
        )
    ]


# -- figure 7: a simulated fleet, and the policy search ---------------------------------------


def fleet(lab: Lab, settings: Settings) -> list[Row]:
    """bench.policies: the search of the backoff policy space (its summary in the
    progress lines, the trade-off drawn as a PNG), and the rows of a simulated fleet of
    independent processes -- wampd's default backoff against ApplicationRunner's."""
    scale = settings.fleet_scale
    runner, results = search(grid(), scale, seed=1)
    default = Figures.of(wampd_policy(Backoff()), scale, seed=1)
    for line in report(runner, results, default).splitlines():
        progress(f"fleet: {line}")
    path = settings.fleet_plot or lab.workdir / "backoff-tradeoff.png"
    plot(runner, results, default, path)
    progress(f"fleet: drew {path}")
    base = "ApplicationRunner's backoff, simulated"
    n = f"{scale.clients}"
    return [
        Row(
            f"fleet_{n}_all_back",
            "s",
            default.fleet_back,
            runner.fleet_back,
            base,
            "lower",
            target=("<=", 1.0),
        ),
        Row(
            f"fleet_{n}_peak_per_100ms",
            "attempts",
            default.fleet_peak,
            runner.fleet_peak,
            base,
            "lower",
            target=("<=", 0.5),
        ),
    ]


#: The figures by name, in the order they run (figures 1 and 2 share their hosts; figure 8,
#: the sidecar bridge, is in bench.bridge; figure 9, the durable outbox, in bench.outbox).
FIGURES: dict[str, Callable[[Lab, Settings], list[Row]]] = {
    "overhead": overhead,
    "detection": detection,
    "recovery": recovery,
    "storm": storm,
    "scrape": scrape,
    "fleet": fleet,
    "bridge": bridge,
    "outbox": outbox,
}
