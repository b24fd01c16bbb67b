"""A real Prometheus scraping a live wampd: every rule and dashboard query runs there.

Prometheus (``/usr/bin/prometheus``, Debian's package) is started on a free loopback port
with a generated config: a 1 s scrape of the daemon's ``/metrics`` as job ``wampd`` and the
shipped rule file. The dashboard's Grafana variables are replaced the way Grafana would
(``$__rate_interval`` by ``1m``, ...), each panel query goes to the HTTP API as a range or
instant query like its panel asks, and each ``label_values()`` variable becomes a label
values call. A missing ``prometheus`` binary fails the test (never skips it).
"""

from __future__ import annotations

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
from harness.poll import poll
from harness.ports import free_port, wait_for_port
from harness.procs import Proc
from tests.unit.test_prometheus_rules import (
    RULES,
    load_dashboard,
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

    prometheus, port = start_prometheus(prometheus_bin, tmp_path, f"127.0.0.1:{http_port}")
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
    results: dict[str, list[dict[str, Any]]] = {}
    for panel in panels(load_dashboard()):
        for target in panel.get("targets", []):
            where = f"{panel['title']} / {target['refId']}"
            expr = fill_in(target["expr"])
            results[where] = api.query(expr) if target.get("instant") else api.query_range(expr)
    empty = sorted(where for where, result in results.items() if not result)
    assert set(empty) <= MAY_BE_EMPTY, f"panel queries without data: {empty}"

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
