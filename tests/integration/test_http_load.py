"""wampd's HTTP endpoints under load and hostile requests while its session flaps."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from harness.crossbar import CrossbarRouter
from harness.fault_proxy import FaultProxy
from harness.http_load import run_load
from harness.ports import free_port

from .figures import record_figures
from .wampd_proc import Launch

LOAD_SECONDS = float(os.environ.get("WAMPD_LOAD_SECONDS", "5"))


def test_endpoints_under_load_while_flapping(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """A paced mix of probes, scrapes and hostile requests: 4xx where due, never 5xx."""
    port = free_port()
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        daemon = launch(
            proxy.url(),
            http=f"127.0.0.1:{port}",
            keepalive={"ping_interval": 1.0, "ping_timeout": 1.0},
            reconnect={"max_delay": 1.0, "stable_after": 1.0},
        )
        daemon.wait_for("session.joined")
        stop = threading.Event()

        def flap() -> None:
            modes = ["reset", "pass", "blackhole", "pass", "refuse", "pass"]
            while not stop.is_set():
                for mode in modes:
                    if stop.wait(0.7):
                        break
                    proxy.mode(mode)
            proxy.mode("pass")

        flapper = threading.Thread(target=flap)
        flapper.start()
        try:
            result = run_load(port, rate=1000, seconds=LOAD_SECONDS)
        finally:
            stop.set()
            flapper.join()
        assert daemon.proc.running
        # 503 is readiness saying "not joined" while the link flaps: an answer, not a fault.
        for request, statuses in result.by_request.items():
            allowed = {200, 503} if request == "GET /readyz" else {200, 400, 404, 405, 431}
            assert set(statuses) <= allowed, (request, statuses)
        assert set(result.by_request["GET /healthz"]) == {200}
        unexpected = {k: v for k, v in result.errors.items() if k != "expected-close"}
        assert unexpected == {}, result.errors
        assert result.statuses[200] > 0.5 * result.sent
        assert result.statuses[404] > 0 and result.statuses[405] > 0
        assert daemon.terminate() == 0

    figures = {
        "seconds": round(result.seconds, 1),
        "requests": result.sent,
        "achieved_rps": round(result.sent / result.seconds),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "p50_ms": round(1000 * result.percentile(50), 1),
        "p99_ms": round(1000 * result.percentile(99), 1),
    }
    record_figures("http_load", figures)
    print("http load:", figures)
