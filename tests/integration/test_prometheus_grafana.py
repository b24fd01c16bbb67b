"""A real Prometheus scraping a live wampd: every rule and dashboard query runs there.

Prometheus (``/usr/bin/prometheus``, Debian's package) is started on a free loopback port
with a generated config: a 1 s scrape of the daemon's ``/metrics`` as job ``wampd`` and the
shipped rule file. The dashboard's Grafana variables are replaced the way Grafana would
(``$__rate_interval`` by ``1m``, ...), each panel query goes to the HTTP API as a range or
instant query like its panel asks, and each ``label_values()`` variable becomes a label
values call. A missing ``prometheus`` binary fails the test (never skips it).

A second daemon runs the sidecar bridge (``[bridge] listen``, one subscription, one
procedure, and a real HTTP app behind them): requests, webhook deliveries and callbacks
go through it, every bridge series the dashboard and the rules use is scraped, every
bridge panel shows data, and the bridge alerts fire (or go pending) on the real series.

A third runs the durable outbox (``[outbox] path``, behind the bridge's ``/v1/publish``):
every outbox series is scraped, every outbox panel shows data, and messages that expire
while the router is down make ``WampdOutboxDropping`` fire.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.crossbar import CrossbarRouter
from harness.http_app import Answer, AppServer, Received
from harness.poll import poll
from harness.ports import free_port, wait_for_port
from harness.procs import Proc
from tests.unit.test_prometheus_rules import (
    BRIDGE_ALERTS,
    INVOCATION_OUTCOMES,
    OUTBOX_ALERTS,
    RULES,
    bridge_panels,
    exported,
    load_dashboard,
    outbox_panels,
    panels,
    rule_exprs,
    variable_queries,
)
from wampd import __version__

from .wampd_proc import HELLO, Launch

ONCE = {"name": "once", "entry": "tests.integration.components:LeavesAtOnce"}

#: Grafana's variables, as Grafana would fill them in for this test's selection.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$job": "wampd",
    "$instance": ".*",
    "$component": "hello|once",
}

#: Panel queries that may rightly return nothing here: leaves are shown only where a leave
#: happened in the window (``> 0``), and "once" left before the first scrape.
MAY_BE_EMPTY = {"Joins and leaves per minute / B"}


class PrometheusAPI:
    """Tiny client of the Prometheus HTTP API on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.base = f"{self.root}/api/v1"

    def ready(self) -> bool:
        """``/-/ready`` says 200: the port accepts before the TSDB is open (503 till then)."""
        try:
            with urllib.request.urlopen(f"{self.root}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:  # 400/422: a bad query, with its error
            body = json.loads(e.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, seconds: int = 30) -> list[dict[str, Any]]:
        end = time.time()
        data = self.get("query_range", query=expr, start=str(end - seconds), end=str(end), step="1")
        result: list[dict[str, Any]] = data["result"]
        return result


def fill_in(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (longest names first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, expr
    return expr


def wait_until(check: Callable[[], bool], timeout: float, what: str, describe: Proc) -> None:
    poll(check, timeout, describe=lambda: f"{what}\n{describe.describe(40)}", interval=0.1)


@pytest.fixture
def prometheus_bin() -> str:
    """The prometheus binary; FAILS the test with the install hint when it is missing."""
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if path is None:
        pytest.fail(
            "prometheus is missing: install Debian's prometheus package "
            "(scripts/bootstrap does it when run as root)",
            pytrace=False,
        )
    return path


def start_prometheus(binary: str, tmp_path: Path, target: str) -> tuple[Proc, int]:
    """Prometheus scraping ``target`` every second as job wampd, with the shipped rules."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "wampd",
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    proc = Proc(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout_path=tmp_path / "prometheus.log",
        cwd=tmp_path,
        name="prometheus",
    ).start()
    return proc, port


@pytest.fixture
def stopped_at_teardown() -> Iterator[list[Proc]]:
    """Processes the test started itself: stopped by PID (SIGTERM, then SIGKILL)."""
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop(timeout=10)


def scraping(
    binary: str, tmp_path: Path, target: str, stopped_at_teardown: list[Proc]
) -> tuple[PrometheusAPI, Proc]:
    """A ready Prometheus that has scraped ``target`` (job wampd) three times."""
    prometheus, port = start_prometheus(binary, tmp_path, target)
    stopped_at_teardown.append(prometheus)
    wait_for_port(port, 20, alive=lambda: prometheus.running, describe=prometheus.describe)
    api = PrometheusAPI(port)
    wait_until(api.ready, 20, "Prometheus is ready", prometheus)

    def target_up() -> bool:
        targets = api.get("targets", state="active")["activeTargets"]
        return any(t["labels"]["job"] == "wampd" and t["health"] == "up" for t in targets)

    wait_until(target_up, 20, "the wampd target is up", prometheus)
    # rate() needs two samples in its window; three scrapes make every panel meaningful.
    wait_until(
        lambda: bool(api.query('count_over_time(up{job="wampd"}[1m]) >= 3')),
        20,
        "three scrapes of wampd",
        prometheus,
    )
    return api, prometheus


def run_panel_queries(
    api: PrometheusAPI, only: list[dict[str, Any]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``{panel title / refId: result}`` of each query, run the way its panel asks."""
    results: dict[str, list[dict[str, Any]]] = {}
    for panel in only if only is not None else panels(load_dashboard()):
        for target in panel.get("targets", []):
            where = f"{panel['title']} / {target['refId']}"
            expr = fill_in(target["expr"])
            results[where] = api.query(expr) if target.get("instant") else api.query_range(expr)
    return results


def bridge_queries() -> set[str]:
    """``panel title / refId`` of every query of the bridge's row."""
    return {f"{p['title']} / {t['refId']}" for p in bridge_panels() for t in p["targets"]}


def outbox_queries() -> set[str]:
    """``panel title / refId`` of every query of the outbox's row."""
    return {f"{p['title']} / {t['refId']}" for p in outbox_panels() for t in p["targets"]}


def last(series: dict[str, Any]) -> float:
    """The latest value of an instant or range query's series."""
    value = series["value"] if "value" in series else series["values"][-1]
    return float(value[1])


def test_every_rule_and_dashboard_query_runs_against_a_live_wampd(
    crossbar: CrossbarRouter,
    launch: Launch,
    prometheus_bin: str,
    tmp_path: Path,
    stopped_at_teardown: list[Proc],
) -> None:
    """Every alert/recording rule and every panel query parses and evaluates on real data;
    the core panels show the live session (joined, state code 2, joins, attempts, build);
    the label_values() variables list the components; and a healthy daemon with a component
    that left on purpose (state stopped) has no alert firing or even pending."""
    http_port = free_port()
    daemon = launch(crossbar.url(), components=[HELLO, ONCE], http=f"127.0.0.1:{http_port}")
    daemon.wait_for("session.joined", component="hello")
    daemon.wait_for("supervisor.stopped", component="once")

    api, prometheus = scraping(
        prometheus_bin, tmp_path, f"127.0.0.1:{http_port}", stopped_at_teardown
    )

    # -- the rules: every expression evaluates, and Prometheus loaded and ran them all --
    for expr in rule_exprs().values():
        api.query(expr)  # asserts status success
    wait_until(
        lambda: all(
            rule.get("lastEvaluation", "").startswith("20")
            for group in api.get("rules")["groups"]
            for rule in group["rules"]
        ),
        10,
        "every rule evaluated once",
        prometheus,
    )
    loaded = {rule["name"]: rule for group in api.get("rules")["groups"] for rule in group["rules"]}
    assert set(loaded) == set(rule_exprs())
    assert {n: r["health"] for n, r in loaded.items() if r["health"] != "ok"} == {}
    # Joined, and "once" stopped on purpose: nothing fires, nothing is even pending.
    assert api.get("alerts")["alerts"] == []
    assert api.query("job:wampd_session_up:count")[0]["value"][1] == "2"
    assert api.query("job:wampd_session_up:sum")[0]["value"][1] == "1"

    # -- the dashboard: every panel query runs the way its panel asks for it --
    results = run_panel_queries(api)
    bridge, outbox = bridge_queries(), outbox_queries()
    assert bridge and bridge <= set(results)
    assert outbox and outbox <= set(results)
    empty = sorted(
        where for where, result in results.items() if not result and where not in bridge | outbox
    )
    assert set(empty) <= MAY_BE_EMPTY, f"panel queries without data: {empty}"
    # No [bridge] and no [outbox] here, so none of their series: those rows' panels rightly
    # say "No data" (the bridge and outbox tests below show them with data).
    assert sorted(where for where in bridge | outbox if results[where]) == []

    def by_component(where: str) -> dict[str, str]:
        out = {}
        for series in results[where]:
            value = series["value"] if "value" in series else series["values"][-1]
            out[series["metric"]["component"]] = value[1]
        return out

    assert by_component("Session joined / A") == {"hello": "1", "once": "0"}
    # idle 0, connecting 1, joined 2, backoff 3, stopping 4, stopped 5, failed 6
    assert by_component("Session state / A") == {"hello": "2", "once": "5"}
    assert {s["metric"]["instance"] for s in results["Scrape target up / A"]} == {
        f"127.0.0.1:{http_port}"
    }
    assert set(by_component("Joins and leaves per minute / A")) == {"hello", "once"}
    outcomes = {
        (s["metric"]["component"], s["metric"]["outcome"])
        for s in results["Connection attempts per minute, by outcome / A"]
    }
    assert ("hello", "success") in outcomes
    assert ("hello", "fatal") in outcomes
    assert by_component("Retry delay now scheduled / A")["hello"] == "0"
    assert by_component("Consecutive failures / A")["hello"] == "0"
    assert 0 <= float(by_component("Since last join / A")["hello"]) < 120
    # The reactor-lag panel shows the live daemon's timer: a number of seconds, and small
    # (nothing here holds the reactor).
    (lag,) = results["Reactor lag (p50, p99 over 5m) / B"]
    assert lag["metric"]["instance"] == f"127.0.0.1:{http_port}"
    assert 0 <= float(lag["values"][-1][1]) < 0.5, lag
    (build,) = results["Build info / A"]
    assert build["metric"]["version"] == __version__
    assert {"autobahn_version", "twisted_version", "python_version"} <= set(build["metric"])

    # -- the variables: label_values(selector, label) as Grafana asks Prometheus for it --
    expected = {"job": ["wampd"], "instance": [f"127.0.0.1:{http_port}"]}
    expected["component"] = ["hello", "once"]
    for name, query in variable_queries().items():
        match = re.fullmatch(r"label_values\((.+),\s*([a-z_]+)\)", query)
        assert match, query
        selector, label = match.groups()
        values = api.get(f"label/{label}/values", **{"match[]": fill_in(selector)})
        assert values == expected[name], (name, values)

    assert daemon.terminate() == 0


# -- the sidecar bridge ----------------------------------------------------------------

TOPIC, PROCEDURE = "com.example.x", "com.example.p"


def bridge_request(port: int, method: str, path: str, body: object = None) -> int:
    """The status of one request to the bridge on 127.0.0.1 (0 if it cannot connect)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, data, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def hook(got: Received) -> Answer:
    """The app's webhook: it takes every event but a "poison" one (a 400: dead-lettered)."""
    return Answer(400 if got.json()["args"] == ["poison"] else 204)


def callback(got: Received) -> Answer:
    """The app's callback: 42; for "fail" a 500 that is no answer (runtime_error); for
    "slow" an answer later than the bridge's call_timeout (the call gets 504)."""
    args = got.json()["args"]
    if args == ["fail"]:
        return Answer(500, b"the app broke")
    return Answer(200, {"args": [42], "kwargs": {}}, delay=2.0 if args == ["slow"] else 0.0)


@pytest.fixture
def bridge_app() -> Iterator[AppServer]:
    """The app behind the bridge: its webhook (/h) and its callback (/p), on a port of its
    own; stopped at teardown."""
    with AppServer({"/h": hook, "/p": callback}) as app:
        yield app


def test_bridge_panels_and_alerts_run_against_a_live_bridge(
    crossbar: CrossbarRouter,
    launch: Launch,
    prometheus_bin: str,
    tmp_path: Path,
    stopped_at_teardown: list[Proc],
    bridge_app: AppServer,
) -> None:
    """A daemon whose [bridge] listens, with one subscription and one procedure served by
    a real HTTP app: every bridge series the dashboard and the rules use is scraped with
    the labels wampd documents; after publishes, calls, a dead letter, failing callbacks
    and timed-out calls every bridge panel shows them, WampdBridgeDeadLetters fires,
    WampdBridgeErrors and WampdBridgeCallbackFailures are pending (for: 10m), and the
    other bridge alerts stay quiet."""
    app = bridge_app  # its webhook at /h, its callback at /p
    port, http_port = free_port(), free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        http=f"127.0.0.1:{http_port}",
        bridge={
            "listen": f"127.0.0.1:{port}",
            "call_timeout": 0.5,
            "subscription": [{"topic": TOPIC, "url": app.url("/h")}],
            "procedure": [{"uri": PROCEDURE, "url": app.url("/p")}],
        },
    )
    poll(
        lambda: bridge_request(port, "GET", "/v1/ready") == 200 or None,
        30,
        describe=daemon.describe,
    )
    instance = f"127.0.0.1:{http_port}"

    def call(*args: object) -> int:
        return bridge_request(port, "POST", "/v1/call", {"procedure": PROCEDURE, "args": args})

    api, prometheus = scraping(prometheus_bin, tmp_path, instance, stopped_at_teardown)

    # -- every bridge series the dashboard and the rules use is there, with its labels --
    exprs = [t["expr"] for p in panels(load_dashboard()) for t in p.get("targets", [])]
    used = {
        name
        for expr in [*exprs, *rule_exprs().values()]
        for name in re.findall(r"wampd_bridge_[a-z_]+", expr)
    }
    assert used >= {
        "wampd_bridge_requests_total",
        "wampd_bridge_request_duration_seconds_bucket",
        "wampd_bridge_deliveries_total",
        "wampd_bridge_queue_depth",
        "wampd_bridge_invocations_total",
        "wampd_bridge_invocation_duration_seconds_bucket",
    }
    documented = exported()
    for name in sorted(used):
        found = api.get("series", **{"match[]": f'{name}{{job="wampd"}}'})
        assert found, f"{name}: not scraped from a wampd whose bridge listens"
        for series in found:
            labels = set(series) - {"__name__", "job", "instance"}
            assert labels == documented[name], (name, series)
    (queue,) = api.query(f'wampd_bridge_queue_depth{{instance="{instance}"}}')
    assert queue["metric"]["subscription"] == TOPIC
    assert {s["metric"]["procedure"] for s in api.query("wampd_bridge_invocations_total")} == {
        PROCEDURE
    }
    # The bridge's session is one more component, named "bridge".
    (up,) = api.query('wampd_session_up{component="bridge"}')
    assert up["value"][1] == "1"

    # -- traffic: publishes delivered and dead-lettered, calls answered and not --
    assert bridge_request(port, "GET", "/v1/ready") == 200
    publish = {"topic": TOPIC, "options": {"exclude_me": False}}  # the bridge's own events
    assert bridge_request(port, "POST", "/v1/publish", {**publish, "args": ["ok"]}) == 200
    poll(lambda: app.requests("/h") or None, 15, describe=daemon.describe)
    assert bridge_request(port, "POST", "/v1/publish", {**publish, "args": ["poison"]}) == 200
    (dead,) = daemon.wait_for("bridge.dead_lettered", timeout=15)
    assert dead["subscription"] == TOPIC
    assert call(1) == 200
    assert bridge_request(port, "POST", "/v1/publish", {"args": []}) == 400  # no topic
    assert bridge_request(port, "GET", "/v1/nope") == 404  # route "other"

    # Failing callbacks (502, runtime_error) and calls over call_timeout (504), until the
    # ratio alerts see them: a (route, code) series appears with its first request, and
    # rate() needs two samples of it.
    def failing() -> bool:
        assert call("fail") == 502
        assert call("slow") == 504
        pending = {a["labels"]["alertname"] for a in api.get("alerts")["alerts"]}
        return {"WampdBridgeErrors", "WampdBridgeCallbackFailures"} <= pending

    wait_until(failing, 60, "the bridge's ratio alerts pending", prometheus)

    # -- the alerts: the right ones, in the right state, on the right labels --
    def alerts() -> dict[str, tuple[str, dict[str, str]]]:
        return {
            a["labels"]["alertname"]: (a["state"], a["labels"]) for a in api.get("alerts")["alerts"]
        }

    wait_until(
        lambda: alerts().get("WampdBridgeDeadLetters", ("",))[0] == "firing",
        20,
        "WampdBridgeDeadLetters firing",
        prometheus,
    )
    now = alerts()
    assert {name: state for name, (state, _) in now.items()} == {
        "WampdBridgeDeadLetters": "firing",
        "WampdBridgeErrors": "pending",
        "WampdBridgeCallbackFailures": "pending",
    }
    assert set(now) <= set(BRIDGE_ALERTS)
    common = {"job": "wampd", "instance": instance}
    assert now["WampdBridgeDeadLetters"][1] == {
        **common,
        "alertname": "WampdBridgeDeadLetters",
        "severity": "warning",
        "subscription": TOPIC,
        "outcome": "dead_lettered",
    }
    assert now["WampdBridgeErrors"][1] == {
        **common,
        "alertname": "WampdBridgeErrors",
        "severity": "critical",
    }
    assert now["WampdBridgeCallbackFailures"][1] == {
        **common,
        "alertname": "WampdBridgeCallbackFailures",
        "severity": "warning",
        "procedure": PROCEDURE,
    }
    loaded = {rule["name"]: rule for group in api.get("rules")["groups"] for rule in group["rules"]}
    assert {n: r["health"] for n, r in loaded.items() if r["health"] != "ok"} == {}

    # -- the dashboard's bridge row: every query has data, and shows what happened --
    results = run_panel_queries(api, bridge_panels())
    assert sorted(where for where, result in results.items() if not result) == []

    def labelled(where: str, *labels: str) -> set[tuple[str, ...]]:
        return {tuple(s["metric"][label] for label in labels) for s in results[where]}

    requests = "Bridge requests per second, by route and status class"
    assert {"/v1/publish", "/v1/call", "/v1/ready"} <= {
        r for (r,) in labelled(f"{requests} / A", "route")
    }
    assert labelled(f"{requests} / B", "route") == {("/v1/publish",), ("other",)}  # 400, 404
    # 5xx: the calls' 502s and 504s, and maybe /v1/ready's 503s from before the join
    failed = {s["metric"]["route"]: s for s in results[f"{requests} / C"]}
    assert "/v1/call" in failed and set(failed) <= {"/v1/call", "/v1/ready"}, failed
    assert any(float(v) > 0 for _, v in failed["/v1/call"]["values"]), failed
    latency = "Bridge request latency (p50, p99 over 5m)"
    for ref in ("A", "B"):
        routes = {r for (r,) in labelled(f"{latency} / {ref}", "route")}
        assert {"/v1/publish", "/v1/call"} <= routes
        (calls,) = [s for s in results[f"{latency} / {ref}"] if s["metric"]["route"] == "/v1/call"]
        assert 0 < last(calls) < 5, calls  # seconds, up to the slow calls' 0.5 s call_timeout
    deliveries = "Webhook deliveries per second, by outcome / A"
    assert labelled(deliveries, "subscription", "outcome") == {
        (TOPIC, outcome)
        for outcome in ("delivered", "retried", "dead_lettered", "dropped", "abandoned")
    }
    for outcome in ("delivered", "dead_lettered"):
        (s,) = [s for s in results[deliveries] if s["metric"]["outcome"] == outcome]
        assert any(float(v) > 0 for _, v in s["values"]), (outcome, s)
    (depth,) = results["Webhook queue depth / A"]
    assert (depth["metric"]["subscription"], last(depth)) == (TOPIC, 0.0)
    invocations = "Invocations per second, by outcome / A"
    outcomes = labelled(invocations, "procedure", "outcome")
    assert {(PROCEDURE, "ok"), (PROCEDURE, "runtime_error")} <= outcomes
    assert {outcome for _, outcome in outcomes} <= INVOCATION_OUTCOMES
    (duration,) = results["Invocation duration (p99 over 5m) / A"]
    assert duration["metric"]["procedure"] == PROCEDURE
    assert 0 < last(duration) <= 10, duration  # the slow answers take 2 s, or are cancelled

    assert daemon.terminate() == 0


# -- the durable outbox ------------------------------------------------------------------


def test_outbox_panels_and_alerts_run_against_a_live_outbox(
    crossbar: CrossbarRouter,
    launch: Launch,
    prometheus_bin: str,
    tmp_path: Path,
    stopped_at_teardown: list[Proc],
) -> None:
    """A daemon whose [outbox] has a path, fed through the bridge's /v1/publish: every
    outbox series is scraped with the labels wampd documents; messages published while
    the router is up go out (intake and publishes show on the dashboard, no outbox alert);
    messages that outlive their ttl while the router is down are dropped as expired, and
    WampdOutboxDropping fires on them with reason expired. Every outbox panel has data."""
    port, http_port = free_port(), free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        http=f"127.0.0.1:{http_port}",
        bridge={"listen": f"127.0.0.1:{port}"},
        outbox={"path": str(tmp_path / "outbox.sqlite3"), "ttl": 3.0},
    )
    daemon.wait_for("session.joined", count=2)  # the bridge's session and the outbox's
    instance = f"127.0.0.1:{http_port}"
    api, prometheus = scraping(prometheus_bin, tmp_path, instance, stopped_at_teardown)

    # -- every outbox series the dashboard and the rules use is there, with its labels --
    exprs = [t["expr"] for p in panels(load_dashboard()) for t in p.get("targets", [])]
    used = {
        name
        for expr in [*exprs, *rule_exprs().values()]
        for name in re.findall(r"wampd_outbox_[a-z_]+", expr)
    }
    documented = exported()
    assert used == {
        name
        for name in documented
        if name.startswith("wampd_outbox_") and not name.endswith(("_sum", "_count"))
    }
    for name in sorted(used):
        found = api.get("series", **{"match[]": f'{name}{{job="wampd"}}'})
        assert found, f"{name}: not scraped from a wampd whose outbox has a path"
        for series in found:
            labels = set(series) - {"__name__", "job", "instance"}
            assert labels == documented[name], (name, series)
    assert {s["metric"]["reason"] for s in api.query("wampd_outbox_dropped_total")} == {
        "evicted",
        "expired",
    }
    assert {s["metric"]["reason"] for s in api.query("wampd_outbox_rejected_total")} == {
        "full",
        "unavailable",
    }
    (up,) = api.query('wampd_session_up{component="outbox"}')
    assert up["value"][1] == "1"
    (available,) = api.query("wampd_outbox_available")
    assert available["value"][1] == "1"

    def publish(n: int) -> None:
        status = bridge_request(port, "POST", "/v1/publish", {"topic": TOPIC, "args": [n]})
        assert status == 202, status

    def value(expr: str) -> float:
        return sum(float(s["value"][1]) for s in api.query(expr))

    # -- the router up: stored, published, nothing lost, no outbox alert --
    for n in range(5):
        publish(n)
    wait_until(
        lambda: value("wampd_outbox_published_total") >= 5 and not value("wampd_outbox_messages"),
        20,
        "five messages published",
        prometheus,
    )
    assert value("wampd_outbox_enqueued_total") == 5
    outbox_alerts = set(OUTBOX_ALERTS)

    def alerts() -> dict[str, tuple[str, dict[str, str]]]:
        return {
            a["labels"]["alertname"]: (a["state"], a["labels"])
            for a in api.get("alerts")["alerts"]
            if a["labels"]["alertname"] in outbox_alerts
        }

    assert alerts() == {}

    # -- the router down: three messages stored, then dropped as expired (ttl 3 s) --
    crossbar.stop()
    daemon.wait_for("session.left", component="outbox")
    for n in range(3):
        publish(n)
    daemon.wait_for("outbox.expired", timeout=20)
    wait_until(
        lambda: alerts().get("WampdOutboxDropping", ("",))[0] == "firing",
        20,
        "WampdOutboxDropping firing",
        prometheus,
    )
    now = alerts()
    assert {name: state for name, (state, _) in now.items()} == {"WampdOutboxDropping": "firing"}
    assert now["WampdOutboxDropping"][1] == {
        "job": "wampd",
        "instance": instance,
        "alertname": "WampdOutboxDropping",
        "severity": "warning",
        "reason": "expired",
    }
    loaded = {rule["name"]: rule for group in api.get("rules")["groups"] for rule in group["rules"]}
    assert {n: r["health"] for n, r in loaded.items() if r["health"] != "ok"} == {}

    # -- the dashboard's outbox row: every query has data, and shows what happened --
    results = run_panel_queries(api, outbox_panels())
    assert sorted(where for where, result in results.items() if not result) == []

    def one(where: str) -> dict[str, Any]:
        (series,) = results[where]
        assert series["metric"]["instance"] == instance, series
        return series

    assert last(one("Outbox backlog / A")) == 0  # expired: nothing left to send
    assert last(one("Outbox store available / A")) == 1
    assert last(one("Outbox dead letters stored / A")) == 0
    intake = "Outbox intake and publishes per second"
    for ref in ("A", "B"):  # enqueued, published
        assert any(float(v) > 0 for _, v in one(f"{intake} / {ref}")["values"]), ref
    # the oldest message waited up to its ttl before it expired
    assert any(float(v) > 0 for _, v in one("Oldest stored message's age / A")["values"])
    drops = "Outbox drops, dead letters and rejections per second, by reason"
    dropped = {s["metric"]["reason"]: s for s in results[f"{drops} / A"]}
    assert set(dropped) == {"evicted", "expired"}
    assert any(float(v) > 0 for _, v in dropped["expired"]["values"])
    assert not any(float(v) > 0 for _, v in dropped["evicted"]["values"])
    assert {s["metric"]["reason"] for s in results[f"{drops} / C"]} == {"full", "unavailable"}
    (commit,) = results["Outbox commit duration (p99 over 5m) / A"]
    assert 0 < last(commit) < 5, commit  # seconds: a transaction ran within the window
    assert last(one("Outbox store resets in the time range / A")) == 0

    assert daemon.terminate() == 0
