"""The Prometheus rules and the Grafana dashboard: promtool's checks, and only real series.

``promtool`` (Debian's ``prometheus`` package, installed by ``scripts/bootstrap``) lints the
scrape config and the rules and runs the rules' unit tests; a missing promtool fails the
tests (never skips them). The static tests parse every expression of the rules and of the
dashboard and check each metric, label and label value against what
:class:`wampd.metrics.Metrics` (and, for a daemon whose ``[bridge]`` listens,
:class:`wampd.metrics.BridgeMetrics`; whose ``[outbox]`` has a path,
:class:`wampd.metrics.OutboxMetrics`) really registers, so a renamed series cannot leave a
silent "no data" panel or an alert that can never fire.

The helpers here (:func:`rule_exprs`, :func:`dashboard_exprs`, ...) are shared with
``tests/integration/test_prometheus_grafana.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from wampd.events import Event, EventName, State
from wampd.metrics import (
    BRIDGE_ROUTES,
    LEAVE_REASONS,
    OUTBOX_DROP_REASONS,
    OUTBOX_REJECT_REASONS,
    OUTCOMES,
    BridgeMetrics,
    Metrics,
    OutboxMetrics,
)
from wampd.webhooks import Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "wampd-rules.yml"
RULES_TESTS = PROMETHEUS_DIR / "wampd-rules.test.yml"
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "wampd.json"
GRAFANA_PROVISIONING = REPO_ROOT / "grafana" / "provisioning"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEVERITIES = {"critical", "warning", "info"}
#: Labels Prometheus adds to every scraped series (target labels).
TARGET_LABELS = {"job", "instance"}
#: Alerts about the scrape target itself: no component label exists on them.
TARGET_ALERTS = {"WampdTargetDown", "WampdTargetAbsent"}
#: Alerts on the sidecar bridge's series, which have no component label either: the label
#: each one's summary and description name instead (besides the instance).
BRIDGE_ALERTS = {
    "WampdBridgeDeadLetters": "subscription",
    "WampdBridgeEventsDropped": "subscription",
    "WampdBridgeQueueBacklog": "subscription",
    "WampdBridgeErrors": "instance",
    "WampdBridgeCallbackFailures": "procedure",
}
#: The title of the dashboard's row of bridge panels.
BRIDGE_ROW = "Sidecar bridge"
#: Alerts on the durable outbox's series (no component label either: they are about the
#: instance), and the labels each one's summary and description name.
OUTBOX_ALERTS = {
    "WampdOutboxBacklogStale": {"instance"},
    "WampdOutboxUnavailable": {"instance"},
    "WampdOutboxDropping": {"instance", "reason"},
}
#: The title of the dashboard's row of outbox panels.
OUTBOX_ROW = "Outbox"
#: The HTTP statuses the bridge answers with (wampd.routes, wampd.crossbar), as its
#: ``code`` label spells them; 499: the client went away before the answer.
BRIDGE_CODES = {"200", "400", "401", "403", "404", "405", "413", "499", "500", "502", "503", "504"}
#: The outcomes of an invocation answered by the app's callback (wampd.callbacks.Note).
INVOCATION_OUTCOMES = {"ok", "error", "runtime_error", "timeout", "unavailable", "cancelled"}

_METRIC = re.compile(r"(?<![A-Za-z0-9_:])wampd_[a-z_]+")
_SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])(wampd_[a-z_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
#: A regular expression that is only literal words, or-ed: ``timeout|unavailable``.
_ALTERNATIVES = re.compile(r"[A-Za-z0-9_/-]+(\|[A-Za-z0-9_/-]+)*")
_RECORD_NAME = re.compile(r"^[a-z_]+:(wampd_[a-z_]+):[a-z0-9_]+$")


# -- shared helpers ----------------------------------------------------------------------


def promtool() -> str:
    """Path of ``promtool``; FAILS the test with the install hint when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install Debian's prometheus package "
            "(scripts/bootstrap does it when run as root: apt-get install prometheus)",
            pytrace=False,
        )
    return path


def load_rules() -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of ``wampd-rules.yml``, in file order."""
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def rule_exprs() -> dict[str, str]:
    """``{alert or record name: expr}`` for every rule."""
    return {rule.get("alert") or rule["record"]: rule["expr"] for rule in load_rules()}


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including the ones nested in (collapsed) rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` for every query of every panel."""
    dashboard = dashboard or load_dashboard()
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_queries(dashboard: dict[str, Any] | None = None) -> dict[str, str]:
    """``{name: label_values(...) query}`` of the dashboard's query variables."""
    dashboard = dashboard or load_dashboard()
    return {
        var["name"]: var["query"]
        for var in dashboard["templating"]["list"]
        if var["type"] == "query"
    }


def exported() -> dict[str, set[str]]:
    """``{series name: label names}`` of what wampd exports, as Prometheus stores it.

    From the metric families ``Metrics`` registers: a counter family ``x`` (prometheus_client
    strips ``_total`` from counter family names) is the series ``x_total``; a histogram
    ``x`` is ``x_bucket`` (with ``le``), ``x_sum`` and ``x_count``, never ``x`` itself.
    ``_created`` series are left out: they are not part of wampd's documented metrics.
    The bridge's series are included (a daemon whose ``[bridge]`` listens has them), and
    the outbox's (a daemon whose ``[outbox]`` has a path has them).
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry, ["x"])
    BridgeMetrics(registry, ["s"], ["p"])
    OutboxMetrics(registry, lambda: (0.0, 0.0, 0.0, 0.0))
    # A leave reason's series appears with its first leave: make one.
    metrics(
        Event(
            name=EventName.SESSION_LEFT,
            component="x",
            previous=State.JOINED,
            state=State.JOINED,
            time=0.0,
            reason="wamp.close.normal",
        )
    )
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_sum"] = set(labels)
            series[f"{family.name}_count"] = set(labels)
        else:
            series[family.name] = labels
        sample_names = {s.name for s in family.samples if not s.name.endswith("_created")}
        names = {n for n in series if n == family.name or n.startswith(family.name + "_")}
        assert sample_names <= names, (family.name, sample_names, names)
    return series


def label_values() -> dict[str, set[str]]:
    """The values wampd itself gives to its bounded labels."""
    return {
        "state": {s.value for s in State},
        "outcome": set(OUTCOMES),
        "reason": set(LEAVE_REASONS),
    }


def bridge_label_values() -> dict[str, dict[str, set[str]]]:
    """``{bridge series: {label: values}}``: the bridge's bounded labels, series by series
    (its ``outcome`` labels are not the connection attempts')."""
    requests = {"route": set(BRIDGE_ROUTES), "code": BRIDGE_CODES}
    return {
        "wampd_bridge_requests_total": requests,
        "wampd_bridge_request_duration_seconds_bucket": {"route": set(BRIDGE_ROUTES)},
        "wampd_bridge_deliveries_total": {"outcome": {o.value for o in Outcome}},
        "wampd_bridge_invocations_total": {"outcome": INVOCATION_OUTCOMES},
    }


def outbox_label_values() -> dict[str, dict[str, set[str]]]:
    """``{outbox series: {label: values}}``: why a stored message was dropped, and why one
    was refused at intake (their ``reason`` is not a WAMP close reason)."""
    return {
        "wampd_outbox_dropped_total": {"reason": set(OUTBOX_DROP_REASONS)},
        "wampd_outbox_rejected_total": {"reason": set(OUTBOX_REJECT_REASONS)},
    }


def values_of(name: str) -> dict[str, set[str]]:
    """The bounded labels' values of series ``name``."""
    if name.startswith("wampd_bridge_"):
        return bridge_label_values().get(name, {})
    if name.startswith("wampd_outbox_"):
        return outbox_label_values().get(name, {})
    return label_values()


def problems_in(where: str, expr: str, series: dict[str, set[str]]) -> list[str]:
    """What is wrong with the wampd series ``expr`` selects: unknown names, labels, values
    (an equality matcher on a value that never exists, a regular expression that matches
    none of them)."""
    found: list[str] = []
    for name in _METRIC.findall(expr):
        if name not in series:
            found.append(f"{where}: {name} is not a series wampd exports")
    for name, matchers in _SELECTOR.findall(expr):
        values = values_of(name)
        for label, op, value in _MATCHER.findall(matchers):
            if name in series and label not in series[name] | TARGET_LABELS:
                found.append(f"{where}: {name} has no label {label!r}")
            known = values.get(label)
            if known is None:
                continue  # not a bounded label (component, job, ...)
            if op in ("=", "!=") and value not in known:
                found.append(f"{where}: {name}{{{label}{op}{value!r}}} never exists")
            if op == "=~" and not any(re.fullmatch(value, v) for v in known):
                found.append(f"{where}: {name}{{{label}=~{value!r}}} matches nothing")
            if op == "=~" and _ALTERNATIVES.fullmatch(value):  # a|b|c: each one exists
                for alternative in sorted(set(value.split("|")) - known):
                    found.append(f"{where}: {name}{{{label}={alternative!r}}} never exists")
    return found


# -- promtool ----------------------------------------------------------------------------


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.tool("promtool")
def test_promtool_check_rules_accepts_the_rules() -> None:
    """The rule file parses and every expression is valid PromQL (promtool check rules)."""
    result = run_promtool("check", "rules", str(RULES.relative_to(REPO_ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.tool("promtool")
def test_promtool_rule_unit_tests_pass() -> None:
    """Each alert fires (and stays quiet) exactly as wampd-rules.test.yml expects."""
    result = run_promtool("test", "rules", str(RULES_TESTS.relative_to(REPO_ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.tool("promtool")
def test_promtool_check_config_accepts_the_example_config() -> None:
    """The example prometheus.yml is valid and finds its rule file (path relative to it)."""
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG.relative_to(REPO_ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_example_config_scrapes_wampd_on_its_default_address() -> None:
    """The example scrape job is the one the rules and the dashboard expect."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "wampd"
    assert job["scrape_interval"] == "15s"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9100"]


# -- the rules ---------------------------------------------------------------------------


def test_rules_use_only_series_wampd_exports() -> None:
    """Every wampd metric, label and label value in the rules exists (plus Prometheus' up)."""
    series = exported()
    found = [p for name, expr in rule_exprs().items() for p in problems_in(name, expr, series)]
    assert found == []
    for name, expr in rule_exprs().items():
        selected = set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{", expr))
        assert selected <= set(series) | {"up"}, (name, selected)


def test_recording_rules_are_named_after_wampd_series() -> None:
    """Recorded names follow level:metric:operations with a real wampd metric."""
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported()}
    records = [rule["record"] for rule in load_rules() if "record" in rule]
    assert records
    for record in records:
        match = _RECORD_NAME.match(record)
        assert match, f"{record}: not level:metric:operations"
        assert match.group(1) in families, record


def test_every_alert_has_for_severity_summary_and_description() -> None:
    """Each alert waits (for:), says how bad it is, and names the component it is about."""
    alerts = alert_rules()
    assert {a["alert"] for a in alerts} == {
        "WampdSessionDown",
        "WampdSessionFlapping",
        "WampdRetryingForLong",
        "WampdTargetDown",
        "WampdTargetAbsent",
        "WampdGaveUp",
        "WampdKeepaliveTimeouts",
        *BRIDGE_ALERTS,
        *OUTBOX_ALERTS,
    }
    for alert in alerts:
        name = alert["alert"]
        assert "for" in alert, name
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        if name in BRIDGE_ALERTS:
            # The bridge's series have no component: the alert names what it is about.
            for label in {"instance", BRIDGE_ALERTS[name]}:
                assert f"{{{{ $labels.{label} }}}}" in annotations["summary"], name
                assert f"{{{{ $labels.{label} }}}}" in annotations["description"], name
        elif name in OUTBOX_ALERTS:
            # Nor have the outbox's: one outbox per instance.
            for label in OUTBOX_ALERTS[name]:
                assert f"{{{{ $labels.{label} }}}}" in annotations["summary"], name
                assert f"{{{{ $labels.{label} }}}}" in annotations["description"], name
        elif name not in TARGET_ALERTS:
            assert "{{ $labels.component }}" in annotations["summary"], name
            assert "{{ $labels.component }}" in annotations["description"], name


def test_bridge_alerts_select_the_bridge_series_they_are_about() -> None:
    """Each bridge alert reads its own series and outcomes, keeps the label it names, and
    has the severity the README's table gives it (only failing requests are critical)."""
    rules = {a["alert"]: a for a in alert_rules()}
    severities = {name: rules[name]["labels"]["severity"] for name in BRIDGE_ALERTS}
    assert severities == {
        "WampdBridgeDeadLetters": "warning",
        "WampdBridgeEventsDropped": "warning",
        "WampdBridgeQueueBacklog": "warning",
        "WampdBridgeErrors": "critical",
        "WampdBridgeCallbackFailures": "warning",
    }
    expr = {name: " ".join(rules[name]["expr"].split()) for name in BRIDGE_ALERTS}
    assert (
        'wampd_bridge_deliveries_total{outcome="dead_lettered"}[10m]'
        in expr["WampdBridgeDeadLetters"]
    )
    assert 'outcome=~"dropped|abandoned"' in expr["WampdBridgeEventsDropped"]
    assert expr["WampdBridgeQueueBacklog"] == "wampd_bridge_queue_depth > 1000"
    assert rules["WampdBridgeQueueBacklog"]["for"] == "10m"
    # 5xx among the app's requests, neither the readiness probe nor the callees' errors
    errors = expr["WampdBridgeErrors"]
    assert 'code=~"5.."' in errors and 'code!="502"' in errors
    assert errors.count('route!="/v1/ready"') == 2
    assert errors.endswith("> 0.05") and rules["WampdBridgeErrors"]["for"] == "10m"
    failures = expr["WampdBridgeCallbackFailures"]
    assert 'outcome=~"timeout|unavailable|runtime_error"' in failures
    assert failures.endswith("> 0.1") and rules["WampdBridgeCallbackFailures"]["for"] == "10m"
    # by (...) keeps the label the annotations name
    assert "by (job, instance, procedure)" in failures
    assert "by (job, instance)" in errors
    readme = (PROMETHEUS_DIR / "README.md").read_text()
    for name, severity in severities.items():
        assert re.search(rf"^\| `{name}` \|.*\| {severity} \|$", readme, re.M), name


def test_outbox_alerts_select_the_outbox_series_they_are_about() -> None:
    """Each outbox alert reads its own series with the threshold and wait the README's
    table gives it, and the severity too (only refused intake is critical)."""
    rules = {a["alert"]: a for a in alert_rules()}
    severities = {name: rules[name]["labels"]["severity"] for name in OUTBOX_ALERTS}
    assert severities == {
        "WampdOutboxBacklogStale": "warning",
        "WampdOutboxUnavailable": "critical",
        "WampdOutboxDropping": "warning",
    }
    expr = {name: " ".join(rules[name]["expr"].split()) for name in OUTBOX_ALERTS}
    assert expr["WampdOutboxBacklogStale"] == "wampd_outbox_oldest_age_seconds > 300"
    assert rules["WampdOutboxBacklogStale"]["for"] == "5m"
    assert expr["WampdOutboxUnavailable"] == "wampd_outbox_available == 0"
    assert rules["WampdOutboxUnavailable"]["for"] == "1m"
    # every drop reason (no matcher), and the dead letters under a reason of their own
    dropping = expr["WampdOutboxDropping"]
    assert "increase(wampd_outbox_dropped_total[10m]) > 0 or " in dropping
    assert (
        'label_replace(increase(wampd_outbox_deadlettered_total[10m]) > 0, "reason", '
        '"dead_lettered", "", "")'
    ) in dropping
    assert rules["WampdOutboxDropping"]["for"] == "0m"
    readme = (PROMETHEUS_DIR / "README.md").read_text()
    for name, severity in severities.items():
        assert re.search(rf"^\| `{name}` \|.*\| {severity} \|$", readme, re.M), name


def test_session_down_spares_a_session_stopped_on_purpose() -> None:
    """WampdSessionDown excludes state="stopped" (the promtool tests prove it works)."""
    (rule,) = [a for a in alert_rules() if a["alert"] == "WampdSessionDown"]
    assert 'wampd_session_state{state="stopped"}' in rule["expr"]
    assert "unless" in rule["expr"]


def test_every_alert_has_a_firing_promtool_test() -> None:
    """wampd-rules.test.yml expects each alert to fire at least once, and tests every
    alert's quiet case too (an empty exp_alerts)."""
    tests = yaml.safe_load(RULES_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a["alert"] for a in alert_rules()}
    assert fired == names
    assert quiet == names
    recorded = {
        case["expr"].split()[0]
        for test in tests["tests"]
        for case in test.get("promql_expr_test", [])
    }
    assert recorded == {rule["record"] for rule in load_rules() if "record" in rule}


# -- the dashboard -----------------------------------------------------------------------


def test_dashboard_queries_use_only_series_wampd_exports() -> None:
    """Every panel and variable query selects real wampd series, labels and label values."""
    series = exported()
    exprs = dashboard_exprs() + list(variable_queries().items())
    assert len(exprs) >= 10
    found = [p for where, expr in exprs for p in problems_in(where, expr, series)]
    assert found == []
    used = {name for _, expr in exprs for name in _METRIC.findall(expr)}
    unused = (
        set(series)
        - used
        - {
            # _sum of the histograms: the panels show quantiles from _bucket, not means.
            "wampd_connect_duration_seconds_sum",
            "wampd_connect_duration_seconds_count",
            "wampd_outage_duration_seconds_sum",
            "wampd_outage_duration_seconds_count",
            "wampd_reactor_lag_seconds_sum",
            "wampd_reactor_lag_seconds_count",
            "wampd_bridge_request_duration_seconds_sum",
            "wampd_bridge_request_duration_seconds_count",
            "wampd_bridge_invocation_duration_seconds_sum",
            "wampd_bridge_invocation_duration_seconds_count",
            "wampd_outbox_commit_duration_seconds_sum",
            "wampd_outbox_commit_duration_seconds_count",
        }
    )
    assert unused == set(), "series no panel shows"


def test_dashboard_filters_by_component() -> None:
    """Each per-component query honours the component variable (build info has none)."""
    series = exported()
    for where, expr in dashboard_exprs():
        for name, matchers in _SELECTOR.findall(expr):
            if "component" in series[name]:
                assert 'component=~"$component"' in matchers, (where, name)
        for name in _METRIC.findall(expr):
            if "component" in series[name]:
                assert f"{name}{{" in expr, f"{where}: {name} without a component matcher"


def test_dashboard_has_its_variables_and_no_import_placeholders() -> None:
    """Provisioned or imported, the dashboard needs no ${DS_...} input: a datasource
    variable feeds every panel, query and query variable."""
    text = DASHBOARD.read_text()
    assert "${DS_" not in text
    assert "__inputs" not in text
    dashboard = load_dashboard()
    assert dashboard["uid"] == "wampd"
    assert dashboard["title"] == "wampd"
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    component = variables["component"]
    assert component["type"] == "query"
    assert component["query"].startswith("label_values(wampd_session_up")
    assert component["query"].endswith(", component)")
    assert component["multi"] is True
    assert component["includeAll"] is True
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_dashboard_has_the_panels_operators_look_for() -> None:
    """Session state, up, joins/leaves, attempts, backoff, durations, keepalive, reactor
    lag, build."""
    dashboard = load_dashboard()
    by_type: dict[str, list[str]] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            by_type.setdefault(panel["type"], []).append(target["expr"])
    everything = "\n".join(expr for exprs in by_type.values() for expr in exprs)
    assert any("wampd_session_state" in e for e in by_type["state-timeline"])
    assert any("wampd_build_info" in e for e in by_type["table"])
    for needle in (
        "wampd_session_up{",
        "rate(wampd_session_joins_total",
        "rate(wampd_session_leaves_total",
        "by (instance, component, reason)",
        "by (instance, component, outcome)",
        "wampd_retry_delay_seconds{",
        "wampd_consecutive_failures{",
        "histogram_quantile(0.99, sum by (instance, component, le) "
        "(rate(wampd_outage_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (instance, le) "
        "(rate(wampd_connect_duration_seconds_bucket",
        "wampd_keepalive_timeouts_total{",
        "histogram_quantile(0.99, sum by (instance, le) (rate(wampd_reactor_lag_seconds_bucket",
    ):
        assert needle in everything, needle


def row_panels(title: str, dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The panels of the row called ``title``: those after it, up to the next row."""
    dashboard = dashboard or load_dashboard()
    found: list[dict[str, Any]] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            if found is not None:
                break
            if panel["title"] == title:
                found = list(panel.get("panels", []))  # nested when collapsed
            continue
        if found is not None:
            found.append(panel)
    assert found is not None, f"no {title!r} row"
    return found


def bridge_panels(dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The panels of the "Sidecar bridge" row."""
    return row_panels(BRIDGE_ROW, dashboard)


def outbox_panels(dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The panels of the "Outbox" row."""
    return row_panels(OUTBOX_ROW, dashboard)


def test_dashboard_has_a_sidecar_bridge_row() -> None:
    """Requests by route and status class, request latency, webhook deliveries and queue
    depth, invocations and their duration: every bridge series, in the bridge's row only."""
    found = bridge_panels()
    by_title = {panel["title"]: panel for panel in found}
    assert list(by_title) == [
        "Bridge requests per second, by route and status class",
        "Bridge request latency (p50, p99 over 5m)",
        "Webhook deliveries per second, by outcome",
        "Webhook queue depth",
        "Invocations per second, by outcome",
        "Invocation duration (p99 over 5m)",
    ]

    def exprs(title: str) -> list[str]:
        return [target["expr"] for target in by_title[title]["targets"]]

    def unit(title: str) -> str:
        unit: str = by_title[title]["fieldConfig"]["defaults"]["unit"]
        return unit

    requests = exprs("Bridge requests per second, by route and status class")
    assert [re.findall(r'code=~"([^"]+)"', e) for e in requests] == [["2.."], ["4.."], ["5.."]]
    assert all(
        e.startswith("sum by (instance, route) (rate(wampd_bridge_requests_") for e in requests
    )
    assert unit("Bridge requests per second, by route and status class") == "reqps"
    assert exprs("Bridge request latency (p50, p99 over 5m)") == [
        f"histogram_quantile({q}, sum by (instance, route, le) "
        "(rate(wampd_bridge_request_duration_seconds_bucket"
        '{job=~"$job", instance=~"$instance"}[5m])))'
        for q in ("0.5", "0.99")
    ]
    assert unit("Bridge request latency (p50, p99 over 5m)") == "s"
    (deliveries,) = exprs("Webhook deliveries per second, by outcome")
    assert "sum by (instance, subscription, outcome) (rate(wampd_bridge_deliveries_total{" in (
        deliveries
    )
    assert unit("Webhook deliveries per second, by outcome") == "ops"
    (depth,) = exprs("Webhook queue depth")
    assert "sum by (instance, subscription) (wampd_bridge_queue_depth{" in depth
    assert unit("Webhook queue depth") == "short"
    (invocations,) = exprs("Invocations per second, by outcome")
    assert "sum by (instance, procedure, outcome) (rate(wampd_bridge_invocations_total{" in (
        invocations
    )
    assert unit("Invocations per second, by outcome") == "ops"
    assert exprs("Invocation duration (p99 over 5m)") == [
        "histogram_quantile(0.99, sum by (instance, procedure, le) "
        "(rate(wampd_bridge_invocation_duration_seconds_bucket"
        '{job=~"$job", instance=~"$instance"}[5m])))'
    ]
    assert unit("Invocation duration (p99 over 5m)") == "s"
    for panel in found:
        for target in panel["targets"]:
            assert 'job=~"$job", instance=~"$instance"' in target["expr"], panel["title"]
    # every bridge series (but the histograms' _sum and _count) is in the row, and only there
    bridge_series = {
        name
        for name in exported()
        if name.startswith("wampd_bridge_") and not name.endswith(("_sum", "_count"))
    }
    inside = {n for p in found for t in p["targets"] for n in _METRIC.findall(t["expr"])}
    assert inside == bridge_series
    outside = {
        n
        for p in panels(load_dashboard())
        if p not in found
        for t in p.get("targets", [])
        for n in _METRIC.findall(t["expr"])
    }
    assert not outside & bridge_series


def test_dashboard_has_an_outbox_row() -> None:
    """Backlog and oldest age (now and over time), store available, dead letters, intake vs
    publishes, drops / dead letters / rejections by reason, commit duration, bytes, store
    resets: every outbox series, in the outbox's row only."""
    found = outbox_panels()
    by_title = {panel["title"]: panel for panel in found}
    assert list(by_title) == [
        "Outbox backlog",
        "Oldest message waiting",
        "Outbox store available",
        "Outbox dead letters stored",
        "Outbox backlog (messages)",
        "Oldest stored message's age",
        "Outbox intake and publishes per second",
        "Outbox drops, dead letters and rejections per second, by reason",
        "Outbox commit duration (p99 over 5m)",
        "Outbox stored bytes",
        "Outbox store resets in the time range",
    ]
    selector = '{job=~"$job", instance=~"$instance"}'

    def exprs(title: str) -> list[str]:
        return [target["expr"] for target in by_title[title]["targets"]]

    def unit(title: str) -> str:
        unit: str = by_title[title]["fieldConfig"]["defaults"]["unit"]
        return unit

    def steps(title: str) -> list[Any]:
        found = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return [step["value"] for step in found]

    # the state right now: instant stats
    for title in ("Outbox backlog", "Oldest message waiting", "Outbox store available"):
        assert by_title[title]["type"] == "stat", title
        assert all(t["instant"] for t in by_title[title]["targets"]), title
    assert exprs("Outbox backlog") == [f"sum by (instance) (wampd_outbox_messages{selector})"]
    assert exprs("Oldest message waiting") == [
        f"max by (instance) (wampd_outbox_oldest_age_seconds{selector})"
    ]
    assert unit("Oldest message waiting") == "s"
    # orange where WampdOutboxBacklogStale starts counting, on the stat and the timeseries
    assert steps("Oldest message waiting") == [None, 300]
    assert steps("Oldest stored message's age") == [None, 300]
    assert exprs("Outbox store available") == [
        f"min by (instance) (wampd_outbox_available{selector})"
    ]
    (mapping,) = by_title["Outbox store available"]["fieldConfig"]["defaults"]["mappings"]
    assert {v: m["text"] for v, m in mapping["options"].items()} == {
        "0": "unavailable",
        "1": "available",
    }
    # over time
    assert exprs("Outbox backlog (messages)") == [
        f"sum by (instance) (wampd_outbox_messages{selector})"
    ]
    assert exprs("Oldest stored message's age") == [
        f"max by (instance) (wampd_outbox_oldest_age_seconds{selector})"
    ]
    assert exprs("Outbox intake and publishes per second") == [
        f"sum by (instance) (rate(wampd_outbox_{name}_total{selector}[$__rate_interval]))"
        for name in ("enqueued", "published")
    ]
    assert unit("Outbox intake and publishes per second") == "ops"
    assert exprs("Outbox drops, dead letters and rejections per second, by reason") == [
        f"sum by (instance, reason) (rate(wampd_outbox_dropped_total{selector}[$__rate_interval]))",
        f"sum by (instance) (rate(wampd_outbox_deadlettered_total{selector}[$__rate_interval]))",
        "sum by (instance, reason) (rate(wampd_outbox_rejected_total"
        f"{selector}[$__rate_interval]))",
    ]
    assert unit("Outbox drops, dead letters and rejections per second, by reason") == "ops"
    assert exprs("Outbox commit duration (p99 over 5m)") == [
        "histogram_quantile(0.99, sum by (instance, le) "
        f"(rate(wampd_outbox_commit_duration_seconds_bucket{selector}[5m])))"
    ]
    assert unit("Outbox commit duration (p99 over 5m)") == "s"
    assert unit("Outbox stored bytes") == "bytes"
    assert exprs("Outbox store resets in the time range") == [
        f"round(sum by (instance) (increase(wampd_outbox_store_resets_total{selector}[$__range])))"
    ]
    for panel in found:
        for target in panel["targets"]:
            assert 'job=~"$job", instance=~"$instance"' in target["expr"], panel["title"]
    # every outbox series (but the histogram's _sum and _count) is in the row, and only there
    outbox_series = {
        name
        for name in exported()
        if name.startswith("wampd_outbox_") and not name.endswith(("_sum", "_count"))
    }
    inside = {n for p in found for t in p["targets"] for n in _METRIC.findall(t["expr"])}
    assert inside == outbox_series
    outside = {
        n
        for p in panels(load_dashboard())
        if p not in found
        for t in p.get("targets", [])
        for n in _METRIC.findall(t["expr"])
    }
    assert not outside & outbox_series


def test_dashboard_panels_do_not_overlap() -> None:
    """Every panel fits the 24-column grid and no two share a cell (rows included)."""
    dashboard = load_dashboard()
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:  # the layout of a collapsed row's panels is its own
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, (panel["title"], taken[(x, y)])
                taken[(x, y)] = panel["title"]
    # and top to bottom in the order of the JSON, as Grafana lays them out
    ys = [panel["gridPos"]["y"] for panel in dashboard["panels"]]
    assert ys == sorted(ys)


def test_grafana_provisioning_files_point_at_the_dashboard() -> None:
    """The file provider and the data source example are well-formed provisioning YAML."""
    dashboards = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "wampd.yml").read_text())
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
    sources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http://")
