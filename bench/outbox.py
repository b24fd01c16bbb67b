"""Figure 9: the durable outbox (``[outbox]``) -- intake, drain, and memory and start-up
with a backlog -- against wampd without an outbox and a plain autobahn publisher.

::

    python -m bench.outbox subscriber --url URL --realm R --commands FILE   # the counter

**Intake** (:class:`IntakeRig`; the ``outbox_intake_*`` and ``outbox_batch_*`` rows). Three
wampd processes of the same build, each with ``[bridge] listen`` and no components, on the
lab's router: one without an outbox, one with ``[outbox] sync = "normal"``, one with
``"full"`` (every other outbox setting its default: ``max_inflight = 100``). The router is
up and one plain autobahn subscriber (:class:`bench.components.CountingSubscriber`)
listens on the topic, so an outbox's sender drains what it stores while it is measured, in
the same process -- what a sidecar does in production. bench.bridge's load generator
(``clients = 32`` keep-alive connections, each sending its next request when the last is
answered) POSTs the same body to each: ``{"topic", "args": [PAYLOAD], "kwargs": {}}`` to
``/v1/publish`` (200 ``{"id"}`` without an outbox, once the router acknowledged the
publication; 202 ``{"msg_id", "status": "queued"}`` with one, once it is committed), and a
JSON array of ``outbox_batch`` (100) such entries to ``/v1/publish/batch`` (202, ``"queued":
100``); a request answered otherwise fails the figure. Messages/s is requests/s, times 100
for the batches. Before every sample the bench waits until both outboxes hold nothing and
wait for no acknowledgement (``/readyz``), so no side is measured while another one still
drains the last sample's backlog through the same router and CPUs; the progress line shows
how long that took, and the CPU of the measured wampd and of the router (controller and
worker) over the sample. Each round measures the five workloads once, in alternating order;
the rows are medians across the rounds. Every intake row's baseline is the no-outbox
``/v1/publish`` (one message a request): rates, and p99 latency (the batch p99 is that of a
request carrying 100 messages).

**Drain** (``outbox_drain_msgs``): the bench fills a store offline with ``wampd.store``'s
own API (:func:`fill`: ``outbox_drain_messages`` entries built as
:func:`wampd.outbox.message` builds them, ``[i, PAYLOAD]`` for i = 0 ... N-1, a fresh
``msg_id`` each) -- the backlog an outage leaves -- and starts wampd with it and the lab's
router; the counting subscriber times the events from the first arrival to the last and
counts the distinct numbers. The baseline is a plain autobahn ``ApplicationRunner``
(:class:`bench.components.WebhookPublisher`'s ``window`` command) publishing the same N
events with ``acknowledge=True``, 100 unacknowledged at most (wampd's default
``max_inflight``), to a topic of its own, counted by the same subscriber the same way.
Every sample must deliver each number exactly once (N events, N distinct), and wampd's
store must be empty afterwards, or the figure fails. Rounds alternate the sides; the row
is the median.

**Memory and start-up** (``outbox_rss_1m_queued``, ``outbox_startup_1m_seconds``): one store
of ``outbox_backlog_messages`` (1,000,000) messages, filled once and copied for each
sample; wampd is started with it -- and with a router URL on a port the bench holds bound
and never listening (:func:`bench.procs.reserve_port`), so its connections are refused and
nothing drains -- and, the baseline, with an empty store the same way. VmRSS once it has
logged ``outbox.opened`` and settled ``outbox_settle`` seconds; the ``seconds`` of that
event (the opening: ``PRAGMA quick_check``, the counts, from the daemon's start of it to
its end, as wampd measures it); the progress line also shows the seconds from the
process's start to that event. Targets: RSS at most 1.2x the empty outbox's; the opening
at most 2 s.

What the runs showed (2-core VM, shared, 2026-12-02; the full run and the profiling in
docs/BENCHMARKS.md, figure 9):

- Single requests: with ``sync = "normal"`` as fast as without an outbox (6,620 against
  6,584 requests/s; 1.06x in an earlier run), ``"full"`` 0.80-0.87x. With the router up
  the sender publishes the growing backlog in the same process: wampd takes 81-87 % of a
  core (64-75 % without an outbox), the router 65-75 %, and the two cores are full. With
  no router to drain to, the same intake takes 11,900 (``"normal"``) and 10,200 (``"full"``)
  requests/s. ``"full"`` fsyncs every commit of the store's one writer thread -- the
  intake's and the sender's removals alike, one after the other: 0.95 ms a commit under
  this load against 0.21 ms with ``"normal"`` (``wampd_outbox_commit_duration_seconds``;
  0.13 and 0.04 ms unloaded), so a request waits longer for its commit.
- Batches: medians of 59,000-73,000 messages/s with either setting (the target is
  20,000), the same with the router down: wampd's reactor thread is at a full core doing
  the intake itself (the writer thread, SQLite's inserts and commits, ~7 us of CPU an
  entry). cProfile (router down): checking and building each entry is 60 % of the
  reactor's time, ~15 us a message in ``wampd.outbox.message()`` -- a ``uuid4`` (an
  ``os.urandom`` system call), the payload's JSON, the URI and option checks.
- Drain: 0.87-0.90x the plain publisher (5,400-5,600 against 6,000-6,500 messages/s). The
  publisher is at the router's limit at any window (6,000-6,600 messages/s with 100, 200
  or 400 in flight); wampd reaches it only with ``max_inflight = 400``: its window counts a
  message until its removal is committed, and every read and removal is a round trip
  through the writer thread, so fewer than 100 are in flight at a time.
- A million queued messages: +2 MiB of RSS (78.1 against 76.3 MiB: no message is read),
  and the store opens in 0.09 s instead of 0.003 s (``quick_check`` of 141 MB in the page
  cache); the process logs ``outbox.opened`` 0.43-0.45 s after it started (0.32-0.36 s
  with an empty store).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.poll import poll
from harness.ports import HOST
from harness.procs import descendants
from wampd.config import OutboxConfig
from wampd.outbox import message
from wampd.store import Entry, Limits, open_store, payload

from .bridge import PAYLOAD, Endpoint, _ready
from .procs import REALM, BenchError, ClientProc, Host, Lab, _stamp, cpu_seconds, reserve_port
from .report import Better, Row

if TYPE_CHECKING:
    from .figures import Settings

#: The outbox's settings measured (``[outbox] sync``).
SYNCS = ("normal", "full")
#: Where the intake's messages go (one plain subscriber listens).
INTAKE_TOPIC = "bench.outbox.intake"
#: The no-outbox side of the intake rows.
PLAIN = "plain"
#: Messages stored by one transaction when the bench fills a store.
FILL_BATCH = 20_000
#: Seconds between two looks at a draining outbox's counts.
DRAIN_POLL = 0.05
#: The baselines' names.
INTAKE_BASE = "wampd without an outbox, /v1/publish"
DRAIN_BASE = "autobahn ApplicationRunner, acknowledged, 100 in flight"
BACKLOG_BASE = "the same wampd, empty outbox"


# -- the counting subscriber (a subprocess) ---------------------------------------------------


def subscriber(url: str, realm: str, commands: str) -> None:
    """Run :class:`bench.components.CountingSubscriber` in an ``ApplicationRunner`` until
    its session ends."""
    from autobahn.twisted.wamp import ApplicationRunner  # noqa: PLC0415 -- Twisted, here only

    from .components import CountingSubscriber  # noqa: PLC0415

    runner = ApplicationRunner(url, realm, extra={"commands": commands})
    runner.run(CountingSubscriber, log_level="warn")


def main(argv: Sequence[str] | None = None) -> int:
    """``subscriber`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.outbox")
    modes = parser.add_subparsers(dest="mode", required=True)
    sub = modes.add_parser("subscriber", help="the counting subscriber, following --commands")
    sub.add_argument("--url", required=True)
    sub.add_argument("--realm", required=True)
    sub.add_argument("--commands", required=True)
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    subscriber(opts.url, opts.realm, opts.commands)
    return 0


# -- the bench's side --------------------------------------------------------------------------


def fill(path: Path, topic: str, count: int) -> float:
    """Store ``count`` messages ``[i, PAYLOAD]`` (i = 0 ... count-1) for ``topic`` in a new
    store at ``path``, the way wampd's intake stores them (:func:`wampd.outbox.message`'s
    entries: a fresh msg_id, the compact JSON payload); close it (its WAL checkpointed).
    The seconds it took."""
    started = time.perf_counter()
    # The first entry through wampd's own checks; the rest built as message() builds it.
    message(topic, [0, PAYLOAD], {}, {})
    store = open_store(str(path))
    limits = Limits(max_messages=max(count, 1), max_bytes=1 << 62)
    try:
        now = time.time()
        for first in range(0, count, FILL_BATCH):
            entries = [
                Entry(uuid.uuid4().hex, topic, payload([i, PAYLOAD], {}, {}))
                for i in range(first, min(count, first + FILL_BATCH))
            ]
            outcome = store.enqueue(entries, now, limits)
            refused = [a for a in outcome.accepted if a.status != "queued"]
            if refused:
                raise BenchError(f"filling {path}: {len(refused)} refused, e.g. {refused[0]}")
        if store.stats().messages != count:
            raise BenchError(f"filling {path}: {store.stats()} instead of {count} messages")
    finally:
        store.close()
    return time.perf_counter() - started


def outbox_report(port: int) -> dict[str, Any]:
    """The ``"outbox"`` part of wampd's ``/readyz`` (its counts, its sender's state)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        body = conn.getresponse().read()
    finally:
        conn.close()
    report: dict[str, Any] = json.loads(body)["outbox"]
    return report


def wait_drained(host: Host, timeout: float) -> float:
    """Wait until ``host``'s outbox holds nothing and awaits no acknowledgement; the
    seconds it took."""
    assert host.http_port is not None
    port = host.http_port
    started = time.monotonic()

    def empty() -> bool:
        report = outbox_report(port)
        return bool(report["messages"] == 0 and report["unacknowledged"] == 0)

    poll(
        empty,
        timeout,
        interval=DRAIN_POLL,
        describe=lambda: (
            f"{host.name}'s outbox never drained: {outbox_report(port)}\n{host.describe()}"
        ),
        stop=lambda: not host.proc.running,
    )
    return time.monotonic() - started


class Counter:
    """The counting subscriber's process (:class:`bench.components.CountingSubscriber`)."""

    def __init__(self, lab: Lab) -> None:
        """Prepare (not start) it."""
        argv = [sys.executable, "-m", "bench.outbox", "subscriber", "--url", lab.router.url()]
        self.client = ClientProc(lab, "subscriber", argv=[*argv, "--realm", REALM])

    def start(self) -> Counter:
        """Start it and wait until it joined."""
        self.client.start()
        self.client.wait("ready", 1, 60)
        return self

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.client.proc.pid

    def arm(self, topic: str, events: int, stall: float) -> int:
        """Subscribe to ``topic`` (once) and count its events from now on, until ``events``
        distinct ones arrived or none for ``stall`` seconds; the number of ``counted``
        answers before this one (for :meth:`counted`)."""
        before = len(self.client.answers("counted"))
        armed = len(self.client.answers("armed"))
        self.client.send({"op": "count", "topic": topic, "events": events, "stall": stall})
        found = self.client.wait("armed", armed + 1, 30)
        if found[armed].get("topic") != topic:
            raise BenchError(f"the subscriber armed {found[armed]} instead of {topic}")
        return before

    def counted(self, topic: str, before: int, timeout: float) -> dict[str, Any]:
        """Wait for the subscriber's answer about ``topic`` (armed after ``before``
        answers)."""
        answer = self.client.wait("counted", before + 1, timeout)[before]
        if answer.get("topic") != topic:
            raise BenchError(f"the subscriber counted {answer} instead of {topic}")
        return answer

    def kill(self) -> None:
        """Stop it."""
        self.client.kill()


# -- intake ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """One intake workload: a side (``plain`` or a sync setting) and a route."""

    side: str
    batch: bool

    @property
    def label(self) -> str:
        """Its name in progress lines."""
        side = "no outbox" if self.side == PLAIN else f"sync={self.side}"
        return f"{side} {'batch' if self.batch else 'single'}"


def _wait_bridge(host: Host) -> None:
    """Wait until ``host``'s bridge answers ``GET /v1/ready`` with 200."""
    port = host.bridge_port
    assert port is not None
    poll(
        lambda: _ready(port),
        60,
        describe=lambda: f"wampd's bridge never ready\n{host.describe()}",
        stop=lambda: not host.proc.running,
    )


class IntakeRig:
    """Three wampd bridges on the lab's router -- without an outbox, with ``sync =
    "normal"``, with ``sync = "full"`` -- one plain subscriber of their topic, and the load
    generator; started together, killed together."""

    def __init__(self, lab: Lab, settings: Settings) -> None:
        """Prepare the processes (the lab's router must run)."""
        self.lab = lab
        self.settings = settings
        self.hosts: dict[str, Host] = {}
        for side in (PLAIN, *SYNCS):
            outbox = None
            if side != PLAIN:
                path = lab.workdir / f"intake-{side}-{lab.next_serial()}.sqlite3"
                outbox = {"path": str(path), "sync": side}
            self.hosts[side] = Host(
                lab, "wampd", sessions=0, options=settings.options, bridge=True, outbox=outbox
            )
        self.counter = Counter(lab)
        self.load = ClientProc(
            lab, "http-load", argv=[sys.executable, "-m", "bench.bridge", "load"]
        )

    def start(self) -> IntakeRig:
        """Start everything; wait until every bridge is ready and answers as it should, and
        the subscriber listens."""
        self.load.start()
        for host in self.hosts.values():
            host.start()
        self.counter.start()
        # Armed for ever: it only listens (and counts) while the intake is measured.
        self.counter.arm(INTAKE_TOPIC, 1 << 62, 1e9)
        self.load.wait("ready", 1, 60)
        for side, host in self.hosts.items():
            _wait_bridge(host)
            if side != PLAIN:
                host.wait_logged("outbox.opened")
        for workload in self.workloads():
            endpoint = self.endpoint(workload)
            poll(endpoint.answers, 30, describe=endpoint.describe)
        for side in SYNCS:
            wait_drained(self.hosts[side], 60)
        return self

    def workloads(self) -> list[Intake]:
        """Every workload measured, in the order of an even round."""
        return [Intake(PLAIN, False), *(Intake(s, b) for b in (False, True) for s in SYNCS)]

    def endpoint(self, workload: Intake) -> Endpoint:
        """The route, body and good answer of ``workload``."""
        port = self.hosts[workload.side].bridge_port
        assert port is not None
        one = {"topic": INTAKE_TOPIC, "args": [PAYLOAD], "kwargs": {}}
        if workload.side == PLAIN:
            return Endpoint(workload.side, "publish", port, "/v1/publish", one, '"id"')
        if not workload.batch:
            return Endpoint(workload.side, "publish", port, "/v1/publish", one, '"queued"', 202)
        n = self.settings.outbox_batch
        body = [one] * n
        path = "/v1/publish/batch"
        return Endpoint(workload.side, "batch", port, path, body, f'"queued": {n},', 202)

    def measure(self, workload: Intake, seconds: float) -> dict[str, Any]:
        """One sample (a failed request or none answered fails the figure), after the
        outboxes drained what the last one stored; also the CPU time of the host and the
        router over the sample's wall time (``cpu``; 1.0 is one core), and the seconds the
        drain before it took (``drain``)."""
        drain = 0.0
        for side in SYNCS:
            drain += wait_drained(self.hosts[side], 120 + seconds * 20)
        host = self.hosts[workload.side]
        pids = {
            "wampd": [host.pid],
            "router": [self.lab.router.pid, *descendants(self.lab.router.pid)],
        }
        cpu0 = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
        wall0 = time.monotonic()
        endpoint = self.endpoint(workload)
        answer = self.load.run(endpoint.command(self.settings.outbox_clients, seconds), 60)
        wall = time.monotonic() - wall0
        if answer["errors"] or answer["ops"] < 2:
            raise BenchError(f"{workload.label}: {answer}")
        answer["cpu_share"] = {
            name: (sum(map(cpu_seconds, group)) - cpu0[name]) / wall for name, group in pids.items()
        }
        answer["drain"] = drain
        return answer

    def kill(self) -> None:
        """Kill every process of the rig."""
        self.load.kill()
        self.counter.kill()
        for host in self.hosts.values():
            host.kill()


def _intake_rows(lab: Lab, settings: Settings) -> list[Row]:
    """Rows 1-2 of the figure: single requests and batches, each sync setting against the
    same wampd without an outbox (see the module docstring)."""
    from .figures import alternate, median, progress  # noqa: PLC0415 -- figures imports us

    rig = IntakeRig(lab, settings)
    found: dict[tuple[Intake, str], list[float | None]] = {}
    try:
        rig.start()
        workloads = rig.workloads()
        if settings.outbox_warmup:
            for workload in workloads:
                rig.measure(workload, settings.outbox_warmup)
        n_batch = settings.outbox_batch
        for n in range(settings.outbox_rounds):
            shown = []
            load_cpu = 0.0
            for workload in alternate(workloads, n):
                answer = rig.measure(workload, settings.outbox_seconds)
                rps = answer["ops"] / answer["seconds"]
                values = {
                    "rps": rps,
                    "msgs": rps * (n_batch if workload.batch else 1),
                    "p99": float(answer["p99_ms"]),
                }
                for key, value in values.items():
                    found.setdefault((workload, key), []).append(value)
                load_cpu = max(load_cpu, float(answer["cpu"]))
                share = answer["cpu_share"]
                shown.append(
                    f"{workload.label} {values['msgs']:,.0f} msgs/s p99 {values['p99']:.1f} ms "
                    f"(wampd {share['wampd']:.0%}, router {share['router']:.0%}; "
                    f"drained before it in {answer['drain']:.1f} s)"
                )
            progress(
                f"outbox: intake round {n + 1}/{settings.outbox_rounds}: {'; '.join(shown)}; "
                f"load generator at most {load_cpu:.0%} of a core"
            )
    finally:
        rig.kill()

    plain = Intake(PLAIN, False)
    rows = []
    labels: list[tuple[str, str, bool, str, Better, tuple[str, float] | None]] = []
    for sync in SYNCS:
        labels.append(
            (f"outbox_intake_rps_{sync}", "requests/s", False, "rps", "higher", (">=", 0.8))
        )
    for sync in SYNCS:
        labels.append((f"outbox_intake_p99_ms_{sync}", "ms", False, "p99", "lower", None))
    for name, unit, batch, key, better, target in labels:
        sync = name.rsplit("_", 1)[1]
        rows.append(
            Row(
                name,
                unit,
                median(found[Intake(sync, batch), key]),
                median(found[plain, key]),
                INTAKE_BASE,
                better,
                target=target,
            )
        )
    for sync in SYNCS:
        rows.append(
            Row(
                f"outbox_batch_msgs_{sync}",
                "msgs/s",
                median(found[Intake(sync, True), "msgs"]),
                median(found[plain, "msgs"]),
                INTAKE_BASE + " (1 message a request)",
                "higher",
                target=(">=", 20000.0) if sync == "normal" else None,
                absolute=True,
            )
        )
    for sync in SYNCS:
        rows.append(
            Row(
                f"outbox_batch_p99_ms_{sync}",
                "ms",
                median(found[Intake(sync, True), "p99"]),
                median(found[plain, "p99"]),
                INTAKE_BASE + " (1 message a request)",
                "lower",
            )
        )
    return rows


# -- drain -------------------------------------------------------------------------------------


def _drain_rows(lab: Lab, settings: Settings) -> list[Row]:
    """Row 3: messages/s from a filled outbox to a subscriber, against a plain autobahn
    publisher's acknowledged publishes with as many in flight (see the module docstring)."""
    from .figures import alternate, median, progress  # noqa: PLC0415 -- figures imports us

    n_msgs = settings.outbox_drain_messages
    window = OutboxConfig().max_inflight
    stall = settings.outbox_stall
    counter = Counter(lab)
    argv = [sys.executable, "-m", "bench.bridge", "publish", "--url", lab.router.url()]
    publisher = ClientProc(lab, "publisher", argv=[*argv, "--realm", REALM])
    rates: dict[str, list[float | None]] = {"wampd": [], "autobahn": []}
    try:
        publisher.start()
        counter.start()
        publisher.wait("ready", 1, 60)
        for n in range(settings.outbox_drain_rounds):
            shown = []
            for side in alternate(list(rates), n):
                topic = f"bench.outbox.drain.{side}{lab.next_serial()}"
                if side == "wampd":
                    got, extra = _drain_wampd(lab, settings, counter, topic)
                else:
                    got, extra = _drain_publisher(
                        publisher, counter, topic, n_msgs=n_msgs, window=window, stall=stall
                    )
                if got["distinct"] != n_msgs or got["count"] != n_msgs:
                    raise BenchError(
                        f"outbox: drain, {side}: {n_msgs} messages published, the subscriber "
                        f"got {got['count']} ({got['distinct']} distinct): {got}"
                    )
                seconds = float(got["last"]) - float(got["first"])
                rate = (n_msgs - 1) / seconds if seconds > 0 else None
                rates[side].append(rate)
                cpu = got.get("cpu")
                shown.append(
                    f"{side} {rate or 0:,.0f} msgs/s ({n_msgs:,} in {seconds:.2f} s; "
                    f"subscriber {cpu or 0:.0%}, {extra})"
                )
            progress(
                f"outbox: drain round {n + 1}/{settings.outbox_drain_rounds}: {'; '.join(shown)}"
            )
    finally:
        publisher.kill()
        counter.kill()
    return [
        Row(
            "outbox_drain_msgs",
            "msgs/s",
            median(rates["wampd"]),
            median(rates["autobahn"]),
            DRAIN_BASE,
            "higher",
            target=(">=", 0.8),
        )
    ]


def _router_pids(lab: Lab) -> list[int]:
    return [lab.router.pid, *descendants(lab.router.pid)]


def _drain_wampd(
    lab: Lab, settings: Settings, counter: Counter, topic: str
) -> tuple[dict[str, Any], str]:
    """Fill a store with the messages for ``topic``, start wampd with it, count them at the
    subscriber; check the store is empty afterwards."""
    from .figures import progress  # noqa: PLC0415 -- figures imports us

    n_msgs = settings.outbox_drain_messages
    path = lab.workdir / f"drain-{lab.next_serial()}.sqlite3"
    filled = fill(path, topic, n_msgs)
    progress(f"outbox: drain: filled {n_msgs:,} messages in {filled:.2f} s")
    before = counter.arm(topic, n_msgs, settings.outbox_stall)
    host = Host(
        lab, "wampd", sessions=0, options=settings.options, bridge=True, outbox={"path": str(path)}
    )
    host.start()
    try:
        host.wait_logged("outbox.opened")
        router = _router_pids(lab)
        cpu0 = host.cpu_seconds(), sum(map(cpu_seconds, router))
        wall0 = time.monotonic()
        got = counter.counted(topic, before, 120 + n_msgs / 100)
        wall = time.monotonic() - wall0
        cpu = (
            (host.cpu_seconds() - cpu0[0]) / wall,
            (sum(map(cpu_seconds, router)) - cpu0[1]) / wall,
        )
        wait_drained(host, 30)
        # A session that joins before the store is open makes the sender's first read
        # fail and wait out a retry delay (shown; the rate counts from the first arrival).
        retries = len(host.log_events("outbox.retry"))
    finally:
        host.kill()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shown = f"wampd {cpu[0]:.0%}, router {cpu[1]:.0%}"
    return got, shown + (f", {retries} outbox.retry logged" if retries else "")


def _drain_publisher(
    publisher: ClientProc, counter: Counter, topic: str, *, n_msgs: int, window: int, stall: float
) -> tuple[dict[str, Any], str]:
    """The plain publisher publishes the messages to ``topic``, ``window`` unacknowledged at
    most; count them at the subscriber."""
    before = counter.arm(topic, n_msgs, stall)
    pid = publisher.proc.pid
    cpu0 = cpu_seconds(pid)
    cmd = {"op": "window", "topic": topic, "events": n_msgs, "inflight": window}
    sent = publisher.run(cmd, timeout=120 + n_msgs / 100)
    cpu = (cpu_seconds(pid) - cpu0) / max(float(sent["seconds"]), 1e-9)
    if sent["errors"]:
        raise BenchError(f"outbox: drain: the publisher's publishes failed: {sent}")
    got = counter.counted(topic, before, 60)
    return got, f"publisher {cpu:.0%}"


# -- memory and start-up with a backlog ----------------------------------------------------------


def _backlog_rows(lab: Lab, settings: Settings) -> list[Row]:
    """Row 4: RSS and the store's opening time of wampd with ``outbox_backlog_messages``
    queued, against the same wampd with an empty outbox, both with no router to drain to."""
    from .figures import alternate, median, progress  # noqa: PLC0415 -- figures imports us

    n_msgs = settings.outbox_backlog_messages
    template = lab.workdir / "backlog-template.sqlite3"
    filled = fill(template, "bench.outbox.backlog", n_msgs)
    size = template.stat().st_size
    progress(
        f"outbox: backlog: filled {n_msgs:,} messages in {filled:.1f} s "
        f"({size / 1e6:,.0f} MB, {n_msgs / filled:,.0f} messages/s)"
    )
    # A port of 127.0.0.1 held bound (never listening) by the bench: wampd's connection
    # attempts are refused, and nothing drains its outbox.
    nowhere = reserve_port()
    url = f"ws://{HOST}:{nowhere.getsockname()[1]}/ws"
    found: dict[tuple[str, str], list[float | None]] = {}
    try:
        for n in range(settings.outbox_backlog_rounds):
            shown = []
            for side in alternate(["backlog", "empty"], n):
                path = lab.workdir / f"backlog-{lab.next_serial()}.sqlite3"
                if side == "backlog":
                    shutil.copyfile(template, path)
                host = Host(
                    lab,
                    "wampd",
                    sessions=0,
                    options=settings.options,
                    # wampd needs a component or a bridge; the bridge is the lighter.
                    bridge=True,
                    outbox={"path": str(path)},
                    router_url=url,
                )
                started = time.time()
                host.start()
                try:
                    opened = host.wait_logged("outbox.opened", 120)
                    expected = n_msgs if side == "backlog" else 0
                    if opened.get("messages") != expected:
                        raise BenchError(f"outbox: {side}: opened with {opened}, not {expected}")
                    time.sleep(settings.outbox_settle)
                    rss = host.rss_mib()
                    joined = host.log_events("session.joined")
                    if joined:
                        raise BenchError(f"outbox: {side}: joined a router at {url}: {joined}")
                finally:
                    host.kill()
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
                wall = _stamp(opened["timestamp"]) - started
                found.setdefault((side, "rss"), []).append(rss)
                found.setdefault((side, "seconds"), []).append(float(opened["seconds"]))
                shown.append(
                    f"{side} RSS {rss:.1f} MiB, store opened in {opened['seconds']:.3f} s "
                    f"({wall:.2f} s after the process started)"
                )
            progress(
                f"outbox: backlog round {n + 1}/{settings.outbox_backlog_rounds} "
                f"({n_msgs:,} messages): {'; '.join(shown)}"
            )
    finally:
        nowhere.close()
        template.unlink(missing_ok=True)
    return [
        Row(
            "outbox_rss_1m_queued",
            "MiB",
            median(found["backlog", "rss"]),
            median(found["empty", "rss"]),
            BACKLOG_BASE,
            "lower",
            target=("<=", 1.2),
        ),
        Row(
            "outbox_startup_1m_seconds",
            "s",
            median(found["backlog", "seconds"]),
            median(found["empty", "seconds"]),
            BACKLOG_BASE,
            "lower",
            target=("<=", 2.0),
            absolute=True,
        ),
    ]


def outbox(lab: Lab, settings: Settings) -> list[Row]:
    """Intake (single requests and batches, both sync settings), drain, and memory and
    start-up with a backlog of wampd's durable outbox (see the module docstring)."""
    lab.ensure_router()
    return [
        *_intake_rows(lab, settings),
        *_drain_rows(lab, settings),
        *_backlog_rows(lab, settings),
    ]


if __name__ == "__main__":
    sys.exit(main())
