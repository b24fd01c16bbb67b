"""A flapping soak: random faults for WAMPD_SOAK_SECONDS, then a health check of wampd.

CI runs 120 s; ``scripts/reliability`` runs 600 s for the figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from harness.crossbar import CrossbarRouter
from harness.fault_proxy import FaultProxy
from harness.poll import poll
from harness.ports import free_port
from harness.wamp_call import call_until_ok

from .figures import record_figures
from .wampd_proc import HELLO, REALM, Launch, WampdProcess

SOAK_SECONDS = float(os.environ.get("WAMPD_SOAK_SECONDS", "120"))
COMPONENTS = [HELLO, {"name": "snake", "entry": "tests.integration.components:Snake"}]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def settle(daemon: WampdProcess, port: int, timeout: float = 60) -> None:
    """Wait until every component is joined and its outage is over (stable)."""

    def settled() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            report = json.loads(r.read())
        components = report["components"].values()
        return all(c["state"] == "joined" and c["consecutive_failures"] == 0 for c in components)

    poll(
        settled,
        timeout,
        describe=lambda: f"wampd did not settle\n{daemon.describe()}",
        interval=0.2,
    )


def test_flapping_soak(crossbar: CrossbarRouter, launch: Launch, tmp_path: Path) -> None:
    """Random faults for the soak's duration; afterwards wampd is healthy and leak-free."""
    rng = random.Random(int(os.environ.get("WAMPD_SOAK_SEED", "7")))
    http_port = free_port()
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        daemon = launch(
            proxy.url(),
            components=COMPONENTS,
            http=f"127.0.0.1:{http_port}",
            keepalive={"ping_interval": 1.0, "ping_timeout": 1.0, "connect_timeout": 5.0},
            reconnect={
                "initial_delay": 0.1,
                "max_delay": 1.0,
                "jitter": "full",
                "stable_after": 1.0,
            },
        )
        daemon.wait_for("session.joined", count=2, timeout=30)
        settle(daemon, http_port)
        time.sleep(2)  # let the interpreter's allocations reach their working size
        pid = daemon.proc.pid
        rss_start, fds_start = rss_kib(pid), open_fds(pid)

        faults: Counter[str] = Counter()
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            fault = rng.choice(
                ["blackhole", "reset", "delay", "refuse", "reset_after", "kill", "sigstop"]
            )
            faults[fault] += 1
            if fault == "kill":
                crossbar.kill()
                time.sleep(rng.uniform(0.2, 2.0))
                crossbar.restart()
            elif fault == "sigstop":
                crossbar.pause()
                time.sleep(rng.uniform(1.0, 3.0))
                crossbar.resume()
            else:
                arg = {"delay": 200, "reset_after": 0.5}.get(fault)
                proxy.mode(fault, arg)
                time.sleep(rng.uniform(1.0, 3.0))
                proxy.mode("pass")
            time.sleep(rng.uniform(0.5, 2.0))

        proxy.mode("pass")
        settle(daemon, http_port, timeout=90)
        result, _ = call_until_ok(crossbar.url(), REALM, "com.example.hello", 30, args=["end"])
        assert result == "hello, end"
        time.sleep(2)
        rss_end, fds_end = rss_kib(pid), open_fds(pid)
        assert probe(http_port, "/healthz") == 200
        assert probe(http_port, "/readyz") == 200
        assert daemon.terminate() == 0

    events = daemon.proc.json_lines()
    unhandled = [e for e in events if "Unhandled" in str(e.get("message", ""))]
    assert unhandled == [], unhandled[:3]
    joins = [e for e in events if e["event"] == "session.joined"]
    leaves = [e for e in events if e["event"] == "session.left"]
    for component in ("hello", "snake"):
        mine = [e for e in joins if e["component"] == component]
        left = [e for e in leaves if e["component"] == component]
        assert len(mine) == len(left), component  # the last leave is the GOODBYE at SIGTERM
    growth_mib = (rss_end - rss_start) / 1024
    assert growth_mib < 10, (rss_start, rss_end)
    assert abs(fds_end - fds_start) <= 2, (fds_start, fds_end)
    record_figures(
        "soak",
        {
            "seconds": SOAK_SECONDS,
            "faults": dict(faults),
            "faults_total": sum(faults.values()),
            "joins": len(joins),
            "leaves": len(leaves),
            "rss_start_mib": round(rss_start / 1024, 1),
            "rss_end_mib": round(rss_end / 1024, 1),
            "rss_growth_mib": round(growth_mib, 2),
            "fds_start": fds_start,
            "fds_end": fds_end,
            "unhandled_errors": len(unhandled),
        },
    )
