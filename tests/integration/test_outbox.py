"""The durable outbox against the real Crossbar router, counted by a subscriber inside the
router (:mod:`harness.counter`): nothing that got a 202 is lost -- through outages, a
flapping router and ``kill -9`` of wampd -- and every repeat is of a msg_id seen before."""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

from harness.counter import read_events
from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import free_port
from harness.procs import REPO_ROOT, harness_env
from harness.wamp_call import call_until_ok

from .conftest import CrossbarFactory
from .figures import record_figures
from .wampd_proc import Launch, WampdProcess

TOPIC = "com.example.outbox.reading"


def counted_router(
    crossbar_factory: CrossbarFactory, tmp_path: Path
) -> tuple[CrossbarRouter, Path]:
    """A router whose own subscriber writes every event of com.example.outbox.* to a file."""
    events = tmp_path / "events.jsonl"
    counter = {
        "type": "class",
        "classname": "harness.counter.Counter",
        "realm": "realm1",
        "role": "anonymous",
        "extra": {"path": str(events), "topic": "com.example.outbox"},
    }
    return crossbar_factory(free_port(), components=[counter]), events


def request(
    port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None, response.headers
    finally:
        conn.close()


def publish(port: int, n: int, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    return request(port, "POST", "/v1/publish", {"topic": TOPIC, "args": [n]}, headers)


def wait_events(
    path: Path, wanted: int | Collection[str], timeout: float, describe: Any
) -> list[dict[str, Any]]:
    """The subscriber's events once there are ``wanted`` distinct msg_ids -- or, given
    msg_ids, once every one of them was seen (a burst cut by ``kill -9`` also publishes
    messages committed whose 202 never reached the client: counting would stop early).
    Fails after ``timeout`` seconds, saying how many there were."""
    need = set(wanted) if not isinstance(wanted, int) else None
    count = wanted if isinstance(wanted, int) else len(need or ())

    def missing(seen: list[dict[str, Any]]) -> int:
        ids = {e["msg_id"] for e in seen}
        return len(need - ids) if need is not None else max(0, count - len(ids))

    def enough() -> list[dict[str, Any]] | None:
        seen = read_events(str(path))
        return seen if not missing(seen) else None

    def say() -> str:
        seen = read_events(str(path))
        return f"{count - missing(seen)} of {count} msg_ids seen\n{describe()}"

    result: list[dict[str, Any]] = poll(enough, timeout, describe=say)
    return result


def first_seen(events: list[dict[str, Any]]) -> list[str]:
    """Each msg_id where it was first seen: what a subscriber that drops repeats keeps."""
    order: dict[str, None] = {}
    for event in events:
        order.setdefault(event["msg_id"], None)
    return list(order)


def test_published_through_the_outbox_with_msg_ids(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    router, events = counted_router(crossbar_factory, tmp_path)
    port = free_port()
    daemon = launch(
        router.url(),
        components=[],
        bridge={"listen": f"127.0.0.1:{port}"},
        outbox={"path": str(tmp_path / "outbox.sqlite3")},
    )
    daemon.wait_for("session.joined", count=2)
    ids = []
    for n in range(10):
        status, body, _ = publish(port, n)
        assert status == 202 and body["status"] == "queued", body
        ids.append(body["msg_id"])
    seen = wait_events(events, 10, 30, daemon.describe)
    assert [e["msg_id"] for e in seen] == ids
    assert [e["args"] for e in seen] == [[n] for n in range(10)]


class Intake:
    """POSTs to /v1/publish from a thread, one message after another over one keep-alive
    connection (reconnecting when it breaks), at most ``rate`` a second; remembers the
    msg_id of every 202, in order, and counts the rest."""

    def __init__(self, port: int, rate: float = 0.0) -> None:
        self.port, self.rate = port, rate
        self.accepted: list[str] = []
        self.refused: dict[int, int] = {}
        self.broken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def start(self) -> Intake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        started = time.monotonic()
        while not self._stop.is_set():
            if self.rate and self._n > (time.monotonic() - started) * self.rate:
                self._stop.wait(0.005)
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                body = json.dumps({"topic": TOPIC, "args": [self._n]})
                conn.request("POST", "/v1/publish", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                self.broken += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)
                continue
            self._n += 1
            if response.status == 202:
                self.accepted.append(answer["msg_id"])
            else:
                self.refused[response.status] = self.refused.get(response.status, 0) + 1
        if conn is not None:
            conn.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def outbox_daemon(
    launch: Launch, router: CrossbarRouter, store: Path, port: int, **outbox: Any
) -> WampdProcess:
    return launch(
        router.url(),
        components=[],
        bridge={"listen": f"127.0.0.1:{port}"},
        outbox={"path": str(store), **outbox},
    )


def bridge_up(port: int, describe: Any) -> None:
    def answers() -> bool | None:
        try:
            return request(port, "GET", "/v1/ready")[0] in (200, 503) or None
        except OSError:
            return None

    poll(answers, 30, describe=describe)


def test_a_30_s_outage_loses_nothing_and_repeats_nothing(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """Router down for 30 s while 5,000 messages get their 202; back up: all 5,000 arrive,
    in the order they were accepted, none twice."""
    router, events = counted_router(crossbar_factory, tmp_path)
    port = free_port()
    daemon = outbox_daemon(launch, router, tmp_path / "outbox.sqlite3", port)
    daemon.wait_for("session.joined", count=2)
    router.stop()
    down = time.monotonic()
    daemon.wait_for("session.left", component="outbox")
    ids = [publish(port, n)[1]["msg_id"] for n in range(5000)]
    assert len(set(ids)) == 5000
    intake_seconds = time.monotonic() - down
    time.sleep(max(0.0, 30 - (time.monotonic() - down)))
    router.start()
    back = time.monotonic()
    seen = wait_events(events, 5000, 120, daemon.describe)
    drain_seconds = time.monotonic() - back
    assert first_seen(seen) == ids
    assert len(seen) == 5000, f"{len(seen) - 5000} repeats"
    record_figures(
        "outbox_outage",
        {
            "messages": 5000,
            "outage_seconds": round(back - down, 1),
            "intake_seconds": round(intake_seconds, 2),
            "delivered_seconds_after_router_back": round(drain_seconds, 2),
            "lost": 0,
            "repeats": len(seen) - 5000,
        },
    )


def test_kill_9_of_wampd_five_times_mid_burst(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """kill -9 of wampd in the middle of a burst, five times, restarted each time: every
    message that got a 202 arrives, in order of first sight; repeats are fewer than the
    sender's window (max_inflight) at each kill."""
    router, events = counted_router(crossbar_factory, tmp_path)
    port, store, window = free_port(), tmp_path / "outbox.sqlite3", 100
    accepted: list[str] = []
    kills = 5
    for _ in range(kills):
        daemon = outbox_daemon(launch, router, store, port, max_inflight=window)
        bridge_up(port, daemon.describe)
        intake = Intake(port).start()
        poll(partial(busy, intake), 30, describe=daemon.describe)
        daemon.proc.kill()
        intake.stop()
        accepted += intake.accepted
    daemon = outbox_daemon(launch, router, store, port, max_inflight=window)
    seen = wait_events(events, accepted, 120, daemon.describe)
    seen_ids = {e["msg_id"] for e in seen}
    lost = [m for m in accepted if m not in seen_ids]
    assert not lost, f"{len(lost)} of {len(accepted)} accepted messages never arrived"
    order = [m for m in first_seen(seen) if m in set(accepted)]
    assert order == accepted
    repeats = len(seen) - len(seen_ids)
    assert repeats <= kills * window, repeats
    record_figures(
        "outbox_kill_9",
        {
            "kills": kills,
            "accepted": len(accepted),
            "lost": 0,
            "repeats": repeats,
            "repeat_bound": kills * window,
        },
    )


def test_a_flapping_router_for_two_minutes(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """The router killed and restarted for 2 minutes (down 2-4 s, up 4-8 s) under steady
    intake: nothing accepted is lost, and wampd's RSS stays flat."""
    router, events = counted_router(crossbar_factory, tmp_path)
    port = free_port()
    daemon = outbox_daemon(launch, router, tmp_path / "outbox.sqlite3", port)
    daemon.wait_for("session.joined", count=2)
    intake = Intake(port, rate=100).start()
    rng = random.Random(15)
    end = time.monotonic() + 120
    rss: list[int] = []
    outages = 0
    while time.monotonic() < end:
        time.sleep(rng.uniform(4, 8))
        rss.append(rss_kib(daemon.proc.pid))
        router.kill()
        outages += 1
        time.sleep(rng.uniform(2, 4))
        router.start()
    intake.stop()
    accepted = intake.accepted
    seen = wait_events(events, accepted, 120, daemon.describe)
    seen_ids = {e["msg_id"] for e in seen}
    lost = [m for m in accepted if m not in seen_ids]
    assert not lost, f"{len(lost)} of {len(accepted)} accepted messages never arrived"
    assert [m for m in first_seen(seen) if m in set(accepted)] == accepted
    assert not intake.refused, intake.refused
    # The first sample is taken once the daemon has served a few hundred requests.
    first, last = rss[1], rss_kib(daemon.proc.pid)
    assert last <= first * 1.15 + 4096, (first, last, rss)
    record_figures(
        "outbox_flapping",
        {
            "seconds": 120,
            "outages": outages,
            "accepted": len(accepted),
            "lost": 0,
            "repeats": len(seen) - len(seen_ids),
            "rss_kib_first": first,
            "rss_kib_last": last,
        },
    )


def drained(http_port: int) -> bool | None:
    return metric(http_port, "wampd_outbox_messages") == 0 or None


def busy(intake: Intake) -> bool | None:
    return len(intake.accepted) > 300 or None


def metric(port: int, name: str) -> float:
    """One sample of wampd's /metrics (``name`` with its labels, as exposed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


def outbox_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wampd", "outbox", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=harness_env(None),
        cwd=REPO_ROOT,
        check=False,
    )


def latest_config(tmp_path: Path) -> Path:
    return max(tmp_path.glob("wampd-*.toml"), key=lambda p: int(p.stem.split("-")[1]))


def test_limits_and_ttl(crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path) -> None:
    """when_full = "reject": 503 outbox_full with Retry-After, nothing stored;
    "drop_oldest": the oldest go, counted; ttl: a message older than it is dropped unsent,
    counted. The router is down while they are accepted."""
    router, events = counted_router(crossbar_factory, tmp_path)
    router.stop()
    rejecting, evicting, expiring = free_port(), free_port(), free_port()
    metrics = {p: free_port() for p in (rejecting, evicting, expiring)}
    daemons = []
    for port, outbox in (
        (rejecting, {"max_messages": 3}),
        (evicting, {"max_messages": 3, "when_full": "drop_oldest"}),
        (expiring, {"ttl": 4.0}),
    ):
        daemons.append(
            launch(
                router.url(),
                components=[],
                http=f"127.0.0.1:{metrics[port]}",
                bridge={"listen": f"127.0.0.1:{port}"},
                outbox={"path": str(tmp_path / f"outbox-{port}.sqlite3"), **outbox},
            )
        )
        bridge_up(port, daemons[-1].describe)

    def say(port: int, n: int) -> tuple[int, Any, Any]:
        return request(port, "POST", "/v1/publish", {"topic": f"{TOPIC}.{port}", "args": [n]})

    assert [say(rejecting, n)[0] for n in range(3)] == [202, 202, 202]
    status, body, headers = say(rejecting, 3)
    assert (status, body["error"]) == (503, "wampd.error.outbox_full"), body
    assert headers["Retry-After"] == "1"
    assert metric(metrics[rejecting], 'wampd_outbox_rejected_total{reason="full"}') == 1
    assert [say(evicting, n)[0] for n in range(5)] == [202] * 5
    assert metric(metrics[evicting], 'wampd_outbox_dropped_total{reason="evicted"}') == 2
    assert [say(expiring, n)[0] for n in range(2)] == [202, 202]
    poll(
        lambda: (
            metric(metrics[expiring], 'wampd_outbox_dropped_total{reason="expired"}') == 2 or None
        ),
        15,
        describe=daemons[2].describe,
    )
    router.start()
    assert say(expiring, 2)[0] == 202  # younger than the ttl when the sender is back
    wait_events(events, 3 + 3 + 1, 60, lambda: "\n".join(d.describe() for d in daemons))
    time.sleep(1.0)  # anything more would have arrived by now
    got: dict[str, list[int]] = {}
    for event in read_events(str(events)):
        got.setdefault(event["topic"], []).append(event["args"][0])
    assert got == {
        f"{TOPIC}.{rejecting}": [0, 1, 2],
        f"{TOPIC}.{evicting}": [2, 3, 4],
        f"{TOPIC}.{expiring}": [2],
    }
    for port in metrics.values():
        poll(partial(drained, port), 30)


def test_dead_letters_and_the_outbox_command_on_a_live_daemon(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """A topic the router refuses for good (Crossbar: a restricted wamp.* URI) becomes a
    dead letter, logged and counted, and the messages after it still go; ``wampd outbox``
    lists it, queues it again (refused again) and purges it while the daemon runs."""
    router, events = counted_router(crossbar_factory, tmp_path)
    port, http_port = free_port(), free_port()
    daemon = launch(
        router.url(),
        components=[],
        http=f"127.0.0.1:{http_port}",
        bridge={"listen": f"127.0.0.1:{port}"},
        outbox={"path": str(tmp_path / "outbox.sqlite3")},
    )
    daemon.wait_for("session.joined", count=2)
    status, refused, _ = request(port, "POST", "/v1/publish", {"topic": "wamp.example.nope"})
    assert status == 202, refused
    after = publish(port, 1)[1]["msg_id"]
    assert [e["msg_id"] for e in wait_events(events, 1, 30, daemon.describe)] == [after]
    logged = daemon.wait_for("outbox.dead_letter")[0]
    assert logged["msg_id"] == refused["msg_id"] and "invalid_uri" in logged["reason"]
    assert metric(http_port, "wampd_outbox_deadlettered_total") == 1
    config = latest_config(tmp_path)

    listed = outbox_cli(config, "list", "--dead", "--json")
    assert listed.returncode == 0, listed.stderr
    (dead,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert dead["msg_id"] == refused["msg_id"] and "invalid_uri" in dead["reason"]
    status_cli = outbox_cli(config, "status", "--json")
    assert status_cli.returncode == 0, status_cli.stderr
    assert json.loads(status_cli.stdout)["dead_letters"] == 1

    again = outbox_cli(config, "retry", "--all")
    assert again.returncode == 0, again.stderr
    poll(
        lambda: metric(http_port, "wampd_outbox_deadlettered_total") == 2 or None,
        30,
        describe=daemon.describe,
    )
    purged = outbox_cli(config, "purge", "--dead")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(outbox_cli(config, "status", "--json").stdout)["dead_letters"] == 0
    poll(lambda: metric(http_port, "wampd_outbox_dead_letters") == 0 or None, 30)
    # The daemon goes on as before.
    later = publish(port, 2)[1]["msg_id"]
    wait_events(events, 2, 30, daemon.describe)
    assert read_events(str(events))[-1]["msg_id"] == later


def test_idempotency_keys_and_batches(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """A repeated Idempotency-Key or msg_id answers with the first msg_id, stored once; a
    batch answers per entry, a bad entry refused alone."""
    router, events = counted_router(crossbar_factory, tmp_path)
    port = free_port()
    daemon = outbox_daemon(launch, router, tmp_path / "outbox.sqlite3", port)
    daemon.wait_for("session.joined", count=2)
    key = {"Idempotency-Key": "order-7"}
    first, repeat = publish(port, 1, key)[1], publish(port, 1, key)[1]
    assert first["status"] == "queued" and repeat == {
        "msg_id": first["msg_id"],
        "status": "duplicate",
    }
    given = {"topic": TOPIC, "args": [2], "msg_id": "reading-2"}
    assert request(port, "POST", "/v1/publish", given)[1]["status"] == "queued"
    assert request(port, "POST", "/v1/publish", given)[1] == {
        "msg_id": "reading-2",
        "status": "duplicate",
    }
    batch = [{"topic": TOPIC, "args": [3]}, {"topic": "not a uri"}, {"topic": TOPIC, "args": [4]}]
    status, body, _ = request(port, "POST", "/v1/publish/batch", batch, {"Idempotency-Key": "b"})
    assert status == 202 and (body["queued"], body["rejected"]) == (2, 1), body
    assert body["results"][1]["error"] == "wamp.error.invalid_uri"
    status, again, _ = request(port, "POST", "/v1/publish/batch", batch, {"Idempotency-Key": "b"})
    assert status == 202 and again["duplicates"] == 2
    assert [r.get("msg_id") for r in again["results"]] == [r.get("msg_id") for r in body["results"]]
    seen = wait_events(events, 4, 30, daemon.describe)
    time.sleep(1.0)
    assert [e["args"] for e in read_events(str(events))] == [[1], [2], [3], [4]], seen
    status, body, _ = request(port, "POST", "/v1/publish/batch", {"topic": TOPIC})
    assert status == 400 and "array" in body["args"][0]


def test_a_corrupt_store_is_moved_aside_and_an_unwritable_one_refuses_intake(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """A store file that is not a database is moved aside (kept, never deleted), logged
    and counted, and wampd starts with a fresh one; a store path nobody can write (under
    /proc, read-only for root too) answers 503 outbox_unavailable, never a 202, and
    wampd stays up, saying so in /readyz."""
    router, events = counted_router(crossbar_factory, tmp_path)
    store = tmp_path / "outbox.sqlite3"
    garbage = b"this is not an SQLite database\n" * 100
    store.write_bytes(garbage)
    port, http_port = free_port(), free_port()
    daemon = launch(
        router.url(),
        components=[],
        http=f"127.0.0.1:{http_port}",
        bridge={"listen": f"127.0.0.1:{port}"},
        outbox={"path": str(store)},
    )
    logged = daemon.wait_for("outbox.store_corrupt")[0]
    moved = Path(logged["moved_to"])
    assert moved.parent == tmp_path and moved.name.startswith("outbox.sqlite3.corrupt-")
    assert moved.read_bytes() == garbage
    assert metric(http_port, "wampd_outbox_store_resets_total") == 1
    bridge_up(port, daemon.describe)
    assert publish(port, 1)[0] == 202
    wait_events(events, 1, 30, daemon.describe)

    port2, http2 = free_port(), free_port()
    stuck = launch(
        router.url(),
        components=[],
        http=f"127.0.0.1:{http2}",
        bridge={"listen": f"127.0.0.1:{port2}"},
        outbox={"path": "/proc/wampd-outbox.sqlite3"},
    )
    stuck.wait_for("outbox.unavailable")
    bridge_up(port2, stuck.describe)
    status, body, headers = publish(port2, 2)
    assert (status, body["error"]) == (503, "wampd.error.outbox_unavailable"), body
    assert headers["Retry-After"] == "1"
    assert metric(http2, "wampd_outbox_available") == 0
    readyz = request(http2, "GET", "/readyz")[1]
    assert readyz["outbox"]["available"] is False and readyz["outbox"]["error"]
    assert stuck.proc.running


def test_a_hosted_component_publishes_through_the_outbox(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """A component written for autobahn, one line changed: its publish fires with the
    msg_id once committed, and the event carries it. Without [outbox] the same line fails
    with an error that says so."""
    router, events = counted_router(crossbar_factory, tmp_path)
    telemetry = {"name": "telemetry", "entry": "tests.integration.components:Telemetry"}
    daemon = launch(
        router.url(),
        components=[{**telemetry, "extra": {"n": 3}}],
        outbox={"path": str(tmp_path / "outbox.sqlite3")},
    )
    seen = wait_events(events, 3, 30, daemon.describe)
    assert [e["args"] for e in seen] == [[0], [1], [2]]
    ids, _ = call_until_ok(router.url(), "realm1", "com.example.telemetry.ids", 30)
    assert ids == [e["msg_id"] for e in seen]

    plain = launch(router.url(), components=[{**telemetry, "extra": {"n": 1}}])
    failed = plain.wait_for("component.error")[0]
    assert "wampd has no outbox" in json.dumps(failed), failed
