"""Metrics and probes of a live ``wampd run`` against a real Crossbar router."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import free_port

from .wampd_proc import Launch, WampdProcess


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


#: Scraped samples by (name, labels).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    status, body = fetch(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    poll(check, timeout, describe=lambda: what)


def up(port: int) -> float:
    return sample(scrape(port), "wampd_session_up", component="hello")


def start_with_http(launch: Launch, url: str, **kw: Any) -> tuple[WampdProcess, int]:
    port = free_port()
    daemon = launch(url, http=f"127.0.0.1:{port}", **kw)
    daemon.wait_for("http.listening")
    return daemon, port


def test_a_scrape_tells_the_whole_story_of_a_router_restart(
    crossbar_factory: Callable[..., CrossbarRouter], launch: Launch
) -> None:
    """Down at start, up, killed, back: probes and series say so at each step."""
    router = crossbar_factory(free_port(), start=False)
    daemon, port = start_with_http(launch, router.url(), reconnect={"max_delay": 0.5})

    daemon.wait_for("connect.failed")
    assert fetch(port, "/healthz")[0] == 200
    status, body = fetch(port, "/readyz")
    assert status == 503
    assert json.loads(body)["components"]["hello"]["state"] in ("connecting", "backoff")
    samples = scrape(port)
    assert sample(samples, "wampd_session_up", component="hello") == 0
    assert (
        sample(samples, "wampd_connect_attempts_total", component="hello", outcome="failure") >= 1
    )

    router.start()
    wait_until(lambda: up(port) == 1, 30, "wampd_session_up == 1")
    assert fetch(port, "/readyz")[0] == 200
    samples = scrape(port)
    assert sample(samples, "wampd_session_joins_total", component="hello") == 1
    assert sample(samples, "wampd_session_state", component="hello", state="joined") == 1
    assert sample(samples, "wampd_outage_duration_seconds_count", component="hello") == 1
    assert sample(samples, "wampd_last_join_timestamp_seconds", component="hello") > 1e9

    router.kill()
    daemon.wait_for("retry.scheduled", count=1, previous="joined")
    samples = scrape(port)
    assert sample(samples, "wampd_session_up", component="hello") == 0
    assert (
        sample(
            samples,
            "wampd_session_leaves_total",
            component="hello",
            reason="wamp.close.transport_lost",
        )
        == 1
    )
    assert fetch(port, "/healthz")[0] == 200  # an outage is no reason to restart the pod
    assert fetch(port, "/readyz")[0] == 503

    def waiting() -> bool:
        s = scrape(port)
        return (
            sample(s, "wampd_retry_delay_seconds", component="hello") > 0
            and sample(s, "wampd_consecutive_failures", component="hello") >= 1
        )

    wait_until(waiting, 10, "a retry delay and failures while the router is down")

    router.restart()
    wait_until(lambda: up(port) == 1, 30, "up again after the restart")
    samples = scrape(port)
    assert sample(samples, "wampd_session_joins_total", component="hello") == 2
    assert sample(samples, "wampd_outage_duration_seconds_count", component="hello") == 2
    assert sample(samples, "wampd_retry_delay_seconds", component="hello") == 0
    assert daemon.terminate() == 0


def test_keepalive_timeout_is_counted(module_crossbar: CrossbarRouter, launch: Launch) -> None:
    """A hung router shows up as a counted keepalive timeout and the session down."""
    crossbar = module_crossbar
    daemon, port = start_with_http(
        launch, crossbar.url(), keepalive={"ping_interval": 1.0, "ping_timeout": 1.0}
    )
    daemon.wait_for("session.joined")
    crossbar.pause()
    try:
        daemon.wait_for("keepalive.timeout", timeout=10)
        samples = scrape(port)
        assert sample(samples, "wampd_keepalive_timeouts_total", component="hello") == 1
        assert sample(samples, "wampd_session_up", component="hello") == 0
    finally:
        crossbar.resume()
    assert daemon.terminate() == 0


def test_promtool_finds_nothing_to_lint_in_a_live_scrape(
    module_crossbar: CrossbarRouter, launch: Launch
) -> None:
    """promtool check metrics on a real scrape reports no problem."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/bootstrap installs Debian's prometheus package"
    daemon, port = start_with_http(launch, module_crossbar.url())
    daemon.wait_for("session.joined")
    _, body = fetch(port, "/metrics")
    result = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.decode().strip() == ""
    assert result.stderr.decode().strip() == ""
    assert daemon.terminate() == 0


def test_bad_requests_get_4xx_and_the_listener_keeps_serving(launch: Launch) -> None:
    """Wrong paths, methods, huge headers and garbage: 4xx or a closed socket, never a crash."""
    daemon, port = start_with_http(launch, f"ws://127.0.0.1:{free_port()}/ws")
    for path in ("/nope", "/metrics/x", "/..%2f..%2fetc/passwd", "/" + "a" * 5000):
        assert fetch(port, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert fetch(port, "/metrics", method)[0] == 405, method

    def raw(data: bytes) -> bytes:
        """Send ``data``, read the answer until the server closes. A server that rejects a
        request early closes while the rest is still arriving, and the kernel answers that
        with a reset: the answer read before it is what counts."""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            chunks = []
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already closed by the server; its answer is still to be read
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                pass
            return b"".join(chunks)

    huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    assert raw(huge).startswith(b"HTTP/1.1 431")
    many = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n"
    assert raw(many).startswith(b"HTTP/1.1 400")
    raw(b"\x00\xff garbage that is not HTTP\r\n\r\n")
    raw(b"GET / HTTP/9.9\r\n\r\n")

    assert fetch(port, "/healthz")[0] == 200
    assert daemon.proc.running
    assert daemon.events("twisted.log", level="critical") == []
    assert daemon.terminate() == 0


def test_http_port_in_use_is_a_configuration_error(launch: Launch) -> None:
    """A listen address that cannot be bound exits 2 with one line naming http.listen."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = launch(f"ws://127.0.0.1:{free_port()}/ws", http=f"127.0.0.1:{port}")
        assert daemon.wait(20) == 2
    assert "http.listen: cannot listen on" in daemon.stderr()


def test_probe_command_for_healthchecks(launch: Launch) -> None:
    """wampd probe: 0 for a 2xx answer, 1 for a 503 or nothing listening."""
    daemon, port = start_with_http(launch, f"ws://127.0.0.1:{free_port()}/ws")

    def probe(*args: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "wampd", "probe", *args],
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    assert probe(f"http://127.0.0.1:{port}/healthz") == 0
    assert probe(f"http://127.0.0.1:{port}/readyz") == 1  # no router: not ready
    assert probe(f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "2") == 1
    assert daemon.terminate() == 0


def test_sd_notify_ready_watchdog_status_stopping(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """Under systemd: READY=1, WATCHDOG=1 at half of WATCHDOG_USEC, STATUS, STOPPING=1."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(10)
        daemon = launch(
            module_crossbar.url(), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
        )
        messages: list[str] = []

        def until(text: str) -> None:
            while not any(text in m for m in messages):
                messages.append(notify.recv(4096).decode())

        until("READY=1")
        until("STATUS=hello joined")
        # Pings in a 3 s window: one per 0.2 s (half of WATCHDOG_USEC) promises 15. A
        # LoopingCall never fires faster than its interval, so more than 16 is a bug; a
        # loaded machine may delay some, but fewer than 8 would trip a 0.4 s watchdog.
        window, pings = 3.0, 0
        ends = time.monotonic() + window
        while (left := ends - time.monotonic()) > 0:
            notify.settimeout(left)
            try:
                message = notify.recv(4096).decode()
            except TimeoutError:
                break
            messages.append(message)
            pings += message == "WATCHDOG=1"
        notify.settimeout(10)
        assert 8 <= pings <= window / 0.2 + 1, pings
        assert daemon.terminate() == 0
        until("STOPPING=1")
    assert messages[0].startswith("READY=1\nSTATUS=hello ")
