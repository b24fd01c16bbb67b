"""wampd always stops: with the reader of its stdout gone, with stdout closed from the
start, and at once on a second signal while it is stuck leaving a frozen router.

The router is wampd's own test router (``harness.fake_router``): it records the
GOODBYE a client sends, which is what these tests must see.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.fake_router import FakeRouter
from harness.poll import poll
from harness.ports import free_port
from harness.procs import REPO_ROOT, harness_env

from .wampd_proc import FAST, HELLO, REALM, Launch, write_config

SHUTDOWN = 5.0


def _config(tmp_path: Path, url: str, *, http: str = "", shutdown: float = SHUTDOWN) -> Path:
    return write_config(
        tmp_path / "wampd.toml",
        {
            "router": {"url": url, "realm": REALM},
            "reconnect": FAST,
            "keepalive": {"ping_interval": 0},  # nothing but GOODBYE ends a frozen session
            "http": {"listen": http},
            "log": {"format": "json"},
            "shutdown": {"timeout": shutdown},
        },
        [HELLO],
    )


@contextlib.contextmanager
def _wampd(config: Path, *, stderr: Path, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``wampd run`` with the given stdout arrangement, killed at the end if still there."""
    argv = [sys.executable, "-m", "wampd", "run", "--config", str(config)]
    setpriv = shutil.which("setpriv")
    if setpriv:  # dies with the test process, however that dies
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            popen.pop("wrap", []) + argv,
            stdin=subprocess.DEVNULL,
            stderr=err,
            env=harness_env(),
            cwd=REPO_ROOT,
            start_new_session=True,
            **popen,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _read_until(fd: int, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> None:
    """Read JSON lines from ``fd`` until one satisfies ``predicate``."""
    buffer = b""

    def seen() -> bool:
        """Read what is there now; True once a complete line satisfies ``predicate``."""
        nonlocal buffer
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"wampd closed its stdout; read so far:\n{buffer.decode()}")
            buffer += chunk
            *lines, rest = buffer.split(b"\n")
            if any(predicate(json.loads(line)) for line in lines if line.strip()):
                return True
            buffer = rest
        return False

    poll(seen, timeout, describe=lambda: f"no such line; read so far:\n{buffer.decode()}")


def _ends_within(proc: subprocess.Popen[bytes], seconds: float, stderr: Path) -> float:
    """Wait for the exit, at most ``seconds``: how long it took."""
    started = time.monotonic()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wampd still running {seconds} s later\n{stderr.read_text()[-3000:]}")
    return time.monotonic() - started


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sigterm_stops_wampd_after_the_reader_of_its_stdout_has_gone(
    fake_router_factory: Callable[..., FakeRouter], tmp_path: Path
) -> None:
    """``wampd run | reader``, the reader exits: SIGTERM still ends wampd with status 0
    within shutdown.timeout + 1 s, and the router gets the component's GOODBYE."""
    router = fake_router_factory()
    stderr = tmp_path / "wampd.err"
    with _wampd(_config(tmp_path, router.url()), stderr=stderr, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        _read_until(proc.stdout.fileno(), lambda e: e["event"] == "session.joined", 30)
        proc.stdout.close()  # the reader is gone
        proc.send_signal(signal.SIGTERM)
        _ends_within(proc, SHUTDOWN + 1.0, stderr)
        assert proc.returncode == 0, stderr.read_text()
    (goodbye,) = router.wait_for("goodbye", timeout=5)
    assert goodbye["reason"] == "wamp.close.normal"
    said = stderr.read_text()
    assert "writing to standard output failed (BrokenPipeError" in said
    assert said.count("log lines are dropped") == 1
    assert "Traceback" not in said


def test_wampd_with_stdout_closed_joins_and_stops_cleanly(
    fake_router_factory: Callable[..., FakeRouter], tmp_path: Path
) -> None:
    """Started with stdout closed (``>&-``, as some init systems do): it joins, counts its
    log lines as dropped, and SIGTERM ends it with status 0 after a GOODBYE."""
    router = fake_router_factory()
    port = free_port()
    stderr = tmp_path / "wampd.err"
    config = _config(tmp_path, router.url(), http=f"127.0.0.1:{port}")
    closed = ["sh", "-c", 'exec "$@" >&-', "sh"]
    with _wampd(config, stderr=stderr, wrap=closed) as proc:
        router.wait_for("welcome", timeout=30)

        def describe() -> str:
            status = proc.poll()
            said = stderr.read_text()
            return f"never ready\n{said}" if status is None else f"exited ({status})\n{said}"

        poll(
            lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
            30,
            describe=describe,
            stop=lambda: proc.poll() is not None,
            interval=0.1,
        )
        metrics = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        dropped = [
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("wampd_log_lines_dropped_total ")
        ]
        assert dropped and dropped[0] > 0, metrics
        proc.send_signal(signal.SIGTERM)
        _ends_within(proc, SHUTDOWN + 1.0, stderr)
        assert proc.returncode == 0, stderr.read_text()
    assert router.wait_for("goodbye", timeout=5)[0]["reason"] == "wamp.close.normal"
    assert "standard output is closed" in stderr.read_text()


def test_a_second_sigterm_ends_a_daemon_stuck_leaving_at_once(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """The router freezes (SIGSTOP) with the session joined; SIGTERM starts a GOODBYE that
    cannot be answered within the 30 s shutdown.timeout; a second SIGTERM ends wampd at
    once, with status 0."""
    router = fake_router_factory()
    daemon = launch(router.url(), shutdown=30.0, keepalive={"ping_interval": 0})
    daemon.wait_for("session.joined")
    os.kill(router.pid, signal.SIGSTOP)
    try:
        daemon.proc.signal(signal.SIGTERM)
        daemon.wait_for("supervisor.stopping")
        time.sleep(1.0)  # it really is stuck: still running, still leaving
        assert daemon.proc.running
        assert daemon.events("daemon.stopped") == []
        started = time.monotonic()
        daemon.proc.signal(signal.SIGTERM)
        status = daemon.wait(20)
        took = time.monotonic() - started
    finally:
        os.kill(router.pid, signal.SIGCONT)
    assert status == 0
    assert took < 5.0, took  # "at once": well inside the 30 s it would have waited
    (forced,) = daemon.events("daemon.stop_forced")
    assert forced["signal"] == "SIGTERM"
    assert forced["states"] == {"hello": "stopping"}
    assert daemon.events("daemon.stop_timeout") == []


def test_the_log_stream_has_no_twisted_chatter_and_one_line_per_event(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """A run with the HTTP listener, a lost session and a stop: at info, no "Starting
    factory", "starting on", "Port ... Closed" or "Main loop terminated" line, and no
    second line (autobahn's "session closed") for a session.left."""
    router = fake_router_factory(drop_after=0.5, drop_count=1)
    daemon = launch(router.url(), http=f"127.0.0.1:{free_port()}")
    daemon.wait_for("session.joined", count=2)
    assert daemon.terminate() == 0
    lines = daemon.proc.json_lines()
    messages = [line.get("message", "") for line in lines if line["event"] == "twisted.log"]
    for chatter in ("Starting factory", "Stopping factory", "starting on", "Closed)", "Main loop"):
        assert not [m for m in messages if chatter in m], (chatter, messages)
    assert not [m for m in messages if "session closed" in m], messages
    assert len(daemon.events("session.left")) == 2  # the drop, and the GOODBYE at the end
    for line in lines:
        assert "time" not in line, line
        if "previous" in line:  # only on a state change
            assert line["previous"] != line["state"], line
    assert any("previous" in line for line in lines)
