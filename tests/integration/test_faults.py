"""The fault matrix: each row injects one kind of fault between wampd and a real router.

Counts and durations are short by default so CI stays fast; ``scripts/reliability`` runs
the full matrix (``WAMPD_FAULT_FULL=1``) and writes the figures that
``docs/RELIABILITY.md`` reports (``WAMPD_RELIABILITY_OUT=file.json``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import CrossbarRouter
from harness.fake_router import FakeRouter
from harness.fault_proxy import FaultProxy
from harness.poll import poll
from harness.ports import free_port
from harness.procs import REPO_ROOT, harness_env
from harness.silent_server import SilentServer
from harness.wamp_call import call, call_result, call_until_ok

from .conftest import CrossbarFactory
from .figures import record_figures
from .wampd_proc import HELLO, REALM, Launch, WampdProcess, write_config

FULL = os.environ.get("WAMPD_FAULT_FULL") == "1"
KILL_CYCLES = 20 if FULL else 2
STOP_CYCLES = 5 if FULL else 2
RESET_CYCLES = 30 if FULL else 6
DOWN_AT_START = 10.0 if FULL else 3.0
PING = {"ping_interval": 1.0, "ping_timeout": 1.0}
DETECTION_BOUND = PING["ping_interval"] + PING["ping_timeout"] + 0.5
#: Keepalive rounds the slow link must carry without being dropped.
SLOW_ROUNDS = 3
#: autobahn's (debug) line for a keepalive round that completed: its PONG came back in time.
PONG_LINE = re.compile(r"Auto ping/pong: received pending pong .* in RTT of (\d+) ms")


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, Any]]:
    """Figures the tests of this module measured, recorded at its end."""
    found: dict[str, Any] = {}
    yield found
    for section, values in found.items():
        record_figures(section, values)


def stamp(event: dict[str, Any]) -> float:
    """The wall-clock time of a log event."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def keepalive_rtts(daemon: WampdProcess) -> list[int]:
    """The round-trip time (ms) of each keepalive round the daemon has completed so far
    (it logs them at ``log_level="debug"``)."""
    return [
        int(m.group(1))
        for e in daemon.events("twisted.log")
        if (m := PONG_LINE.search(e["message"]))
    ]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def callees(router: CrossbarRouter, procedure: str) -> list[Any]:
    registration = call_result(call(router.url(), REALM, "wamp.registration.lookup", [procedure]))
    if registration is None:
        return []
    result = call_result(
        call(router.url(), REALM, "wamp.registration.list_callees", [registration])
    )
    return list(result)


def test_router_kill_and_restart_cycles(
    crossbar: CrossbarRouter, launch: Launch, figures: dict[str, Any]
) -> None:
    """kill -9 and restart, random 0.2-3 s down: rejoined every time, registered once."""
    rng = random.Random(1234)
    daemon = launch(crossbar.url(), reconnect={"max_delay": 2.0, "jitter": "full"})
    daemon.wait_for("session.joined")
    back: list[float] = []
    for cycle in range(1, KILL_CYCLES + 1):
        assert call_result(call(crossbar.url(), REALM, "com.example.hello", ["x"])) == "hello, x"
        crossbar.kill()
        time.sleep(rng.uniform(0.2, 3.0))
        crossbar.restart()
        port_open = time.time()
        call_until_ok(crossbar.url(), REALM, "com.example.hello", 30, args=["again"])
        back.append(time.time() - port_open)
        daemon.wait_for("session.joined", count=cycle + 1)
        assert len(callees(crossbar, "com.example.hello")) == 1
    assert len(daemon.events("session.joined")) == KILL_CYCLES + 1
    assert daemon.terminate() == 0
    figures["kill_restart"] = {
        "cycles": KILL_CYCLES,
        "rejoined": len(back),
        "back_p50_s": round(statistics.median(back), 2),
        "back_p95_s": round(percentile(back, 95), 2),
        "back_max_s": round(max(back), 2),
    }


def test_router_sigstop_is_detected_within_the_keepalive_bound(
    module_crossbar: CrossbarRouter, launch: Launch, figures: dict[str, Any]
) -> None:
    """SIGSTOP of the router: detected within ping_interval + ping_timeout (+0.5 s)."""
    crossbar = module_crossbar  # proxies and pauses only: a shared router will do
    daemon = launch(crossbar.url(), keepalive=PING)
    daemon.wait_for("session.joined")
    detected: list[float] = []
    for cycle in range(1, STOP_CYCLES + 1):
        time.sleep(0.5)
        crossbar.pause()
        paused = time.time()
        try:
            timeout = daemon.wait_for("keepalive.timeout", count=cycle, timeout=15)[-1]
            detected.append(stamp(timeout) - paused)
        finally:
            crossbar.resume()
        daemon.wait_for("session.joined", count=cycle + 1, timeout=30)
    assert max(detected) <= DETECTION_BOUND, detected
    assert daemon.terminate() == 0
    figures["sigstop"] = {
        "cycles": STOP_CYCLES,
        "bound_s": DETECTION_BOUND,
        "detect_p50_s": round(statistics.median(detected), 2),
        "detect_max_s": round(max(detected), 2),
    }


def test_blackholed_link_is_detected_within_the_keepalive_bound(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """A link that swallows everything with TCP still open: detected like a hung router."""
    crossbar = module_crossbar  # proxies and pauses only: a shared router will do
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        daemon = launch(proxy.url(), keepalive=PING)
        daemon.wait_for("session.joined")
        proxy.mode("blackhole")
        started = time.time()
        timeout = daemon.wait_for("keepalive.timeout", timeout=15)[0]
        detection = stamp(timeout) - started
        assert detection <= DETECTION_BOUND
        proxy.mode("pass")
        daemon.wait_for("session.joined", count=2, timeout=30)
        assert daemon.terminate() == 0
    figures["blackhole"] = {"bound_s": DETECTION_BOUND, "detect_s": round(detection, 2)}


def test_reset_soon_after_every_join_backs_off_as_the_policy_says(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Connections reset 0.5 s after they open: delays grow as the policy says, no faster."""
    crossbar = module_crossbar  # proxies and pauses only: a shared router will do
    reconnect = {
        "initial_delay": 0.2,
        "growth": 2.0,
        "max_delay": 3.2,
        "jitter": "none",
        "stable_after": 5.0,
    }
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        proxy.mode("reset_after", 0.5)
        daemon = launch(proxy.url(), reconnect=reconnect)
        started = time.time()
        daemon.wait_for("retry.scheduled", count=RESET_CYCLES, timeout=200)
        elapsed = time.time() - started
        retries = daemon.events("retry.scheduled")[:RESET_CYCLES]
        attempts = daemon.events("connect.attempt")
        assert daemon.terminate() == 0
    expected = [min(3.2, 0.2 * 2 ** (n - 1)) for n in range(1, RESET_CYCLES + 1)]
    assert [round(e["delay"], 6) for e in retries] == [round(d, 6) for d in expected]
    # Each retry starts only once its delay has passed after the session it follows was
    # lost: the gap from one attempt to the next is the session's life (reset after
    # 0.5 s) plus the delay, never less.
    starts = [stamp(a) for a in attempts]
    ratios = []
    for previous, nxt, retry in zip(starts, starts[1:], retries, strict=False):
        assert nxt - previous >= retry["delay"] - 0.01  # never faster than the policy
        ratios.append((nxt - previous) / (retry["delay"] + 0.5))
    spanned = starts[RESET_CYCLES] - starts[0] if len(starts) > RESET_CYCLES else elapsed
    figures["reset_after_join"] = {
        "resets": RESET_CYCLES,
        "attempts_per_min": round(60 * RESET_CYCLES / spanned, 1),
        # The most the policy allows, even if every session died at once: N / sum(delays).
        "policy_max_attempts_per_min": round(60 * RESET_CYCLES / sum(expected), 1),
        "min_gap_vs_policy": round(min(ratios), 3),
    }


def test_reset_after_join_honours_the_budget(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """The same flapping link with max_retries = 3 ends with status 69 after 4 sessions."""
    crossbar = module_crossbar  # proxies and pauses only: a shared router will do
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        proxy.mode("reset_after", 0.5)
        daemon = launch(proxy.url(), reconnect={"max_retries": 3, "stable_after": 5.0})
        assert daemon.wait(60) == 69
        assert len(daemon.events("session.joined")) == 4


def test_slow_link_stays_joined_and_calls_succeed(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """500 ms each way: the session stays joined and calls through it succeed."""
    crossbar = module_crossbar  # proxies and pauses only: a shared router will do
    with FaultProxy(tmp_path / "proxy", crossbar.port) as proxy:
        proxy.mode("delay", 500)
        daemon = launch(
            proxy.url(),
            keepalive={"ping_interval": 1.0, "ping_timeout": 3.0, "connect_timeout": 15.0},
            log_level="debug",  # for autobahn's line per keepalive round
        )
        daemon.wait_for("session.joined", timeout=30)
        result, _ = call_until_ok(crossbar.url(), REALM, "com.example.hello", 20, args=["slow"])
        assert result == "hello, slow"
        # Several keepalive rounds over the slow link, each a ping and its PONG 1 s in
        # flight (2 s per round with the 1 s interval): waited for as the daemon reports
        # them, not for a fixed time; a drop (session.left) ends the wait as a failure.
        before = len(keepalive_rtts(daemon))

        def rounds_since_the_call() -> list[int] | None:
            rtts = keepalive_rtts(daemon)[before:]
            return rtts if len(rtts) >= SLOW_ROUNDS else None

        rtts = poll(
            rounds_since_the_call,
            30,
            stop=lambda: not daemon.proc.running or bool(daemon.events("session.left")),
            describe=lambda: (
                f"{SLOW_ROUNDS} keepalive rounds after the call; saw"
                f" {len(keepalive_rtts(daemon)) - before}\n{daemon.describe()}"
            ),
        )
        # Each round crossed the slow link (500 ms each way; a direct one takes a few ms).
        assert min(rtts) >= 900, rtts
        assert call_result(call(crossbar.url(), REALM, "com.example.hello", ["y"])) == "hello, y"
        assert daemon.events("session.left") == []
        assert daemon.terminate() == 0


def test_router_down_at_start_joins_within_max_delay_of_it_coming_up(
    crossbar_factory: Callable[..., CrossbarRouter], launch: Launch, figures: dict[str, Any]
) -> None:
    """A router that comes up late is joined within max_delay of its port opening."""
    router = crossbar_factory(free_port(), start=False)
    daemon = launch(router.url(), reconnect={"max_delay": 2.0, "jitter": "full"})
    time.sleep(DOWN_AT_START)
    router.start()
    ready = time.time()
    joined = daemon.wait_for("session.joined", timeout=30)[0]
    lag = max(0.0, stamp(joined) - ready)
    assert lag <= 2.0 + 0.5, lag
    assert daemon.terminate() == 0
    figures["down_at_start"] = {
        "down_s": DOWN_AT_START,
        "join_after_up_s": round(lag, 2),
        "max_delay_s": 2.0,
    }


def _sigterm(daemon: WampdProcess) -> float:
    started = time.monotonic()
    assert daemon.terminate() == 0
    return time.monotonic() - started


def test_sigterm_in_every_state(
    silent_server: SilentServer,
    fake_router_factory: Callable[..., FakeRouter],
    launch: Launch,
    figures: dict[str, Any],
) -> None:
    """SIGTERM while connecting and in backoff: exit 0 within 1 s; joined: GOODBYE, in time."""
    connecting = launch(
        f"ws://127.0.0.1:{silent_server.port}/ws", keepalive={"connect_timeout": 30.0}
    )
    connecting.wait_for("connect.attempt")
    silent_server.wait_for_accepted(1, 10)
    t_connecting = _sigterm(connecting)

    backoff = launch(
        f"ws://127.0.0.1:{free_port()}/ws", reconnect={"initial_delay": 30.0, "max_delay": 30.0}
    )
    backoff.wait_for("retry.scheduled")
    t_backoff = _sigterm(backoff)

    router = fake_router_factory()
    joined = launch(router.url(), shutdown=5.0)
    joined.wait_for("session.joined")
    t_joined = _sigterm(joined)
    assert router.wait_for("goodbye", timeout=5)[0]["reason"] == "wamp.close.normal"

    # The process start-up and pytest's polling add ~0.1 s to each figure.
    assert t_connecting < 1.0 + 0.5, t_connecting
    assert t_backoff < 1.0 + 0.5, t_backoff
    assert t_joined < 5.0, t_joined
    figures["sigterm"] = {
        "connecting_s": round(t_connecting, 2),
        "backoff_s": round(t_backoff, 2),
        "joined_s": round(t_joined, 2),
    }


def test_unresolvable_name_is_a_transient_failure_with_a_clear_error(tmp_path: Path) -> None:
    """A host name that does not resolve is retried like any failure, saying why.

    wampd runs in a private network namespace, so the lookup fails without a packet
    leaving the machine.
    """
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to isolate the DNS lookup"
    config = write_config(
        tmp_path / "wampd.toml",
        {
            "router": {"url": "ws://wampd-test-host.invalid:8080/ws", "realm": REALM},
            "reconnect": {"initial_delay": 0.1, "max_retries": 2, "jitter": "none"},
            "http": {"listen": ""},
            "log": {"format": "json"},
        },
        [{"name": "hello", "entry": "tests.integration.components:Hello"}],
    )
    result = subprocess.run(
        [unshare, "-n", "--", sys.executable, "-m", "wampd", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=harness_env(),
        check=False,
    )
    assert result.returncode == 69, result.stderr
    failed = [
        json.loads(line)
        for line in result.stdout.splitlines()
        if line.startswith("{") and '"connect.failed"' in line
    ]
    assert len(failed) == 3
    assert all("DNS" in f["error"] or "resolution" in f["error"] for f in failed), failed


def test_garbage_from_the_router_is_a_failed_attempt(
    fake_router_factory: Callable[..., FakeRouter], launch: Launch
) -> None:
    """A router that answers HELLO with garbage or a malformed WELCOME: failed attempts."""
    for mode in ("garbage", "bad-welcome"):
        router = fake_router_factory(misbehave=mode)
        daemon = launch(router.url(), reconnect={"max_retries": 2})
        assert daemon.wait(30) == 69, mode
        assert len(daemon.events("connect.failed")) == 3, mode
        unhandled = [e for e in daemon.events("twisted.log") if "Unhandled" in e["message"]]
        assert unhandled == [], mode
        assert daemon.events("retries.exhausted"), mode


def test_sigkill_of_wampd_leaves_no_stale_session(crossbar: CrossbarRouter, launch: Launch) -> None:
    """After wampd is killed and started again, the procedure is registered once, again."""
    daemon = launch(crossbar.url())
    daemon.wait_for("session.joined")
    daemon.proc.signal(signal.SIGKILL)
    daemon.wait(10)
    again = launch(crossbar.url(), reconnect={"max_delay": 1.0})
    again.wait_for("session.joined", timeout=30)
    call_until_ok(crossbar.url(), REALM, "com.example.hello", 20, args=["z"])
    assert len(callees(crossbar, "com.example.hello")) == 1
    assert again.terminate() == 0


def _stale_registration(
    router: CrossbarRouter, proxy: FaultProxy, launch: Launch, *, force: bool
) -> WampdProcess:
    """wampd's first session reaches a router that never pings its clients through the
    fault proxy, whose link then goes dead without a FIN (blackhole): wampd notices by its
    keepalive and joins again on the router's second URL, while the router still holds the
    old session and its registration of ``com.example.hello``."""
    daemon = launch(
        [proxy.url(), router.url()],
        components=[{**HELLO, "force_reregister": force}],
        keepalive={"ping_interval": 1.0, "ping_timeout": 1.0},
        reconnect={"max_retries": -1},
    )
    first = daemon.wait_for("session.joined")[0]
    assert first["url"] == proxy.url()
    proxy.mode("blackhole")
    daemon.wait_for("keepalive.timeout", timeout=15)
    return daemon


def test_force_reregister_takes_the_procedure_back_at_once(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """With force_reregister the new session's registration succeeds at once and calls
    reach it, though the router never noticed the old session die."""
    router = crossbar_factory(pings=False)
    with FaultProxy(tmp_path / "proxy", router.port) as proxy:
        daemon = _stale_registration(router, proxy, launch, force=True)
        second = daemon.wait_for("session.joined", count=2, timeout=30)[1]
        assert second["url"] == router.url()
        session_id, _ = call_until_ok(router.url(), REALM, "com.example.session_id", 10)
        assert session_id == second["session_id"]  # the new callee, not the stale one
        hello, _ = call_until_ok(router.url(), REALM, "com.example.hello", 10, args=["x"])
        assert hello == "hello, x"
        assert daemon.events("component.error") == []
        assert daemon.terminate() == 0


def test_without_force_reregister_the_stale_registration_blocks_the_rejoin(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    """The same without the option: procedure_already_exists, left and retried with
    backoff, for as long as the router holds the old session (here: for good)."""
    router = crossbar_factory(pings=False)
    with FaultProxy(tmp_path / "proxy", router.port) as proxy:
        daemon = _stale_registration(router, proxy, launch, force=False)
        errors = daemon.wait_for("component.error", count=2, timeout=30)
        assert all("procedure_already_exists" in e["error"] for e in errors)
        assert daemon.events("retry.scheduled")
        assert daemon.terminate() == 0


def test_compression_deflates_what_goes_over_the_wire(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """[router] compression = true against a router that accepts permessage-deflate: a
    100 kB answer of the hosted component crosses the link in a few kB; without the
    option, whole."""
    crossbar = module_crossbar  # proxies only: a shared router will do
    name = "z" * 100_000  # the caller is a subprocess: its argument stays under 128 kB
    sent: dict[bool, int] = {}
    for compression in (True, False):
        with FaultProxy(tmp_path / f"proxy-{compression}", crossbar.port) as proxy:
            daemon = launch(proxy.url(), router={"compression": compression})
            daemon.wait_for("session.joined")
            before = proxy.stats()["up"]
            result, _ = call_until_ok(crossbar.url(), REALM, "com.example.hello", 10, args=[name])
            assert result == f"hello, {name}"
            sent[compression] = proxy.stats()["up"] - before
            assert daemon.terminate() == 0
    assert sent[False] > 100_000, sent
    assert sent[True] < 10_000, sent
