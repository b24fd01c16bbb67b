"""The benchmark's smoke run, so ``make bench`` keeps working (issue 7).

The full bench (``scripts/bench``, about 10 minutes) is not part of the suite. This runs
``python -m bench --smoke`` -- every figure with tiny counts (3 sessions instead of 100,
one outage of 0.3 s, a 3 s cap for "not detected", shortened keepalive and backoff, one
0.25 s sample per bridge route and client count, one burst of 200 webhook events per side,
one 0.25 s sample per outbox intake workload, a drain of 300 messages and a backlog of
2,000) against real Crossbar routers, in about 30 s -- and checks what it wrote, in a
temporary folder, never the repository root.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import crossbar_bin
from harness.procs import REPO_ROOT, harness_env, parse_json_lines

KEYS = {"name", "unit", "wampd", "baseline", "baseline_name", "ratio", "better"}

#: Every row of a run, in order, with the direction that is better.
EXPECTED = {
    "rpc_calls_sequential": "higher",
    "rpc_calls_50_in_flight": "higher",
    "pubsub_events": "higher",
    "host_cpu_per_call_50_in_flight": "lower",
    "rss_idle": "lower",
    "rss_after_load": "lower",
    "dead_router_detection_vs_runner": "lower",
    "dead_router_detection_vs_component": "lower",
    "recovery_p50_vs_runner": "lower",
    "recovery_p95_vs_runner": "lower",
    "outage_attempts_vs_runner": "lower",
    "recovery_p50_vs_component": "lower",
    "recovery_p95_vs_component": "lower",
    "outage_attempts_vs_component": "lower",
    "storm_all_joined": "lower",
    "storm_attempts_during_outage": "lower",
    "storm_attempts_peak_per_100ms": "lower",
    "storm_attempts_peak_to_mean": "lower",
    "scrape_p50": "lower",
    "scrape_p99": "lower",
    "reactor_lag_p99_scraped_10_per_s": "lower",
    "fleet_50_all_back": "lower",
    "fleet_50_peak_per_100ms": "lower",
    "bridge_publish_rps_1": "higher",
    "bridge_publish_rps_32": "higher",
    "bridge_publish_p50_ms_1": "lower",
    "bridge_publish_p50_ms_32": "lower",
    "bridge_publish_p99_ms_1": "lower",
    "bridge_publish_p99_ms_32": "lower",
    "bridge_call_rps_1": "higher",
    "bridge_call_rps_32": "higher",
    "bridge_call_p50_ms_1": "lower",
    "bridge_call_p50_ms_32": "lower",
    "bridge_call_p99_ms_1": "lower",
    "bridge_call_p99_ms_32": "lower",
    "bridge_webhook_eps_inflight_1": "higher",
    "bridge_webhook_eps_inflight_16": "higher",
    "outbox_intake_rps_normal": "higher",
    "outbox_intake_rps_full": "higher",
    "outbox_intake_p99_ms_normal": "lower",
    "outbox_intake_p99_ms_full": "lower",
    "outbox_batch_msgs_normal": "higher",
    "outbox_batch_msgs_full": "higher",
    "outbox_batch_p99_ms_normal": "lower",
    "outbox_batch_p99_ms_full": "lower",
    "outbox_drain_msgs": "higher",
    "outbox_rss_1m_queued": "lower",
    "outbox_startup_1m_seconds": "lower",
}

#: (low, high) bounds a sane smoke value lies in, by row-name prefix.
BOUNDS = {
    "rpc_calls": (20.0, 1e6),
    "pubsub_events": (20.0, 1e6),
    "host_cpu_per_call": (0.0, 1e5),
    "rss_": (10.0, 1024.0),
    "dead_router_detection": (0.0, 3.0),  # the smoke run's cap
    "recovery_": (0.0, 10.0),  # the smoke run's cap
    "outage_attempts": (1.0, 100.0),
    "storm_all_joined": (0.0, 120.0),
    "storm_attempts_during_outage": (0.0, 300.0),
    "storm_attempts_peak_per": (1.0, 300.0),
    "storm_attempts_peak_to_mean": (1.0, 1e4),
    "scrape_": (0.01, 5000.0),
    "reactor_lag_": (0.5, 5000.0),  # ms; the smallest bucket is 1 ms
    "fleet_50_all_back": (0.0, 60.0),  # seconds (simulated)
    "fleet_50_peak_per": (1.0, 50.0),  # attempts of 50 processes
    "bridge_publish_rps": (1.0, 1e6),
    "bridge_call_rps": (1.0, 1e6),
    "bridge_webhook_eps": (1.0, 1e6),
    "bridge_": (0.001, 10_000.0),  # ms
    "outbox_intake_rps": (1.0, 1e6),  # requests/s
    "outbox_batch_msgs": (1.0, 1e7),  # messages/s
    "outbox_drain_msgs": (1.0, 1e6),  # messages/s
    "outbox_rss_": (10.0, 1024.0),  # MiB
    "outbox_startup_": (0.0, 60.0),  # s (wampd logs it to the ms: 0 can happen)
    "outbox_": (0.001, 10_000.0),  # ms
}


def bounds(name: str) -> tuple[float, float]:
    """The sane range of row ``name``."""
    return next(b for prefix, b in BOUNDS.items() if name.startswith(prefix))


def live_processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append(cmdline)
    return found


def test_bench_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    """``python -m bench --smoke`` writes every row, sane and consistent, to ``--out``; its
    connection counter agrees with wampd's own log; it leaves no process behind."""
    try:
        crossbar_bin()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    out = tmp_path / "bench-results.json"
    workdir = tmp_path / "work"
    repo_results = REPO_ROOT / "bench-results.json"
    before = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--workdir", str(workdir)],
        cwd=REPO_ROOT,
        env=harness_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stderr[-6000:]}"
    print(f"smoke bench took {elapsed:.1f} s\n{completed.stdout}")

    rows: list[dict[str, Any]] = json.loads(out.read_text())
    assert [row["name"] for row in rows] == list(EXPECTED)
    for row in rows:
        name = row["name"]
        assert set(row) == KEYS, name
        assert row["better"] == EXPECTED[name], name
        assert isinstance(row["unit"], str) and row["unit"], name
        assert isinstance(row["baseline_name"], str) and row["baseline_name"], name
        assert name in completed.stdout, f"{name} missing from the table"
        low, high = bounds(name)
        for side in ("wampd", "baseline"):
            value = row[side]
            if value is None:
                continue
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, side, value)
            assert low <= value <= high, (name, side, value)
        if row["wampd"] is None or not row["baseline"]:
            assert row["ratio"] is None, name
        else:
            assert row["ratio"] == pytest.approx(row["wampd"] / row["baseline"], rel=1e-3), name

    by_name = {row["name"]: row for row in rows}
    # Only one value may be missing: autobahn's Component has no keepalive by default and
    # never notices a hung router; wampd and ApplicationRunner (1 s pings here) do.
    missing = [(r["name"], side) for r in rows for side in ("wampd", "baseline") if r[side] is None]
    assert missing == [("dead_router_detection_vs_component", "baseline")]
    assert by_name["dead_router_detection_vs_component"]["baseline_name"] == "autobahn Component"
    assert "not detected" in completed.stdout
    # Figure 7 searched the policy space and drew the trade-off into the work directory.
    (plot,) = workdir.glob("lane-*/backoff-tradeoff.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "policies meet every target" in completed.stderr
    # Figure 8: both bridges answered every route at every client count, and delivered
    # every webhook event (wampd at both max_inflight, Crossbar's MessageForwarder).
    bridge_rows = [row for row in rows if row["name"].startswith("bridge_")]
    assert len(bridge_rows) == 14
    for row in bridge_rows:
        assert row["baseline_name"] == "crossbar-bridge", row["name"]
        for side in ("wampd", "baseline"):
            assert isinstance(row[side], (int, float)) and row[side] > 0, (row["name"], side)
    webhook_rows = [row for row in bridge_rows if row["name"].startswith("bridge_webhook_")]
    assert [row["unit"] for row in webhook_rows] == ["events/s", "events/s"]
    # Both rows compare with the same Crossbar measurement.
    assert webhook_rows[0]["baseline"] == webhook_rows[1]["baseline"]
    assert "the load generator alone" in completed.stderr
    assert "bridge: webhooks round 1/1, 200 events" in completed.stderr
    assert "events lost" not in completed.stderr
    assert "the webhook receiver under the load generator" in completed.stderr
    # Figure 9: every outbox row has both sides (the drain's counts were checked by the
    # bench: a message missing or repeated fails it), each from its own measurement.
    outbox_rows = [row for row in rows if row["name"].startswith("outbox_")]
    assert len(outbox_rows) == 11
    for row in outbox_rows:
        for side in ("wampd", "baseline"):
            assert isinstance(row[side], (int, float)), (row["name"], side)
    assert by_name["outbox_drain_msgs"]["baseline_name"].startswith("autobahn ApplicationRunner")
    assert "outbox: drain round 1/1" in completed.stderr
    assert "outbox: backlog round 1/1 (2,000 messages)" in completed.stderr

    # The bench counts every host's connection attempts the same way (reactor.connectTCP);
    # for wampd that count (of those to its router: the bridge's webhooks connect through it
    # too) must equal wampd's own connect.attempt events. Its router is its lane's, but for
    # figure 9's backlog hosts, given a port where nothing listens.
    wampd_dirs = sorted(workdir.glob("lane-*/wampd-*"))
    assert wampd_dirs
    elsewhere = []
    for folder in wampd_dirs:
        config = json.loads((folder.parent / "router" / ".crossbar" / "config.json").read_text())
        lane_port = config["workers"][0]["transports"][0]["endpoint"]["port"]
        url = tomllib.loads((folder / "wampd.toml").read_text())["router"]["url"]
        router_port = urllib.parse.urlsplit(url).port
        if router_port != lane_port:
            elsewhere.append(folder.name)
        counted = [
            e
            for e in parse_json_lines((folder / "events.jsonl").read_text())
            if e["event"] == "attempt" and e["port"] == router_port
        ]
        logged = [
            e
            for e in parse_json_lines((folder / "stdout.log").read_text())
            if e.get("event") == "connect.attempt"
        ]
        assert len(counted) == len(logged) > 0, folder.name
    # The backlog's two hosts (one round: 2,000 queued, and empty).
    assert len(elsewhere) == 2, elsewhere

    assert live_processes_mentioning(str(workdir)) == []
    after = repo_results.stat().st_mtime_ns if repo_results.exists() else None
    assert after == before, "the smoke run must not write bench-results.json at the repo root"
