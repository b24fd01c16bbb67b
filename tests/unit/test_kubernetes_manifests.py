"""Checks of deploy/kubernetes: API schemas, wampd's own config loader, and cross-references.

Every built-in resource is validated in strict mode against the Kubernetes API schemas
shipped with ``kubernetes-validate``; the ConfigMap's ``wampd.toml`` is parsed by
:func:`wampd.config.parse_config`; and every value two manifests (or a manifest and the
TOML) must agree on is compared: ports, paths, names, the shutdown timeout against the
grace period. No cluster is needed.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs, no py.typed
import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]  # as above
    SchemaNotFoundError,
    all_versions,
    major_minor,
)

from wampd.config import Config, parse_config
from wampd.keys import BadKey, generate, load_private_key, write_key_pair

K8S_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"

#: The first release with native sidecars (``restartPolicy: Always`` init containers) on by
#: default; the manifests are also validated against the newest release the validator has.
MIN_VERSION = "1.29.0"
VERSIONS = sorted({MIN_VERSION, kubernetes_validate.latest_version()})

#: Resources whose schema is a CRD's, not Kubernetes's: checked by hand below.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
#: Files that are not API resources at all.
KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")

SIDECAR = "wampd"
WAMPD_IMAGE = "ghcr.io/example/wampd:0.1.0"
CONFIG_PATH = "/etc/wampd/wampd.toml"
#: Where the key Secret is mounted (in the init container wampd-key only), and where that
#: copies it for wampd: a file of its own, mode 0400.
SECRET_PATH = "/run/secrets/wampd/wampd.key"
KEY_PATH = "/run/wampd/key/wampd.key"
KEY_COPIER = "wampd-key"
METRICS_PORT_NAME = "metrics"
#: Seconds the grace period must leave beyond ``[shutdown] timeout`` (the app's own
#: shutdown comes first with native sidecars, then SIGKILL needs some slack).
MIN_GRACE_SLACK = 5


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


@functools.cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every YAML document in deploy/kubernetes/*.yaml, with its file name."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
                found.append((path.name, doc))
    return tuple(found)


def one(kind: str) -> dict[str, Any]:
    """The only document of ``kind`` (a deep copy, so tests may change it)."""
    matches = [doc for _, doc in documents() if doc.get("kind") == kind]
    assert len(matches) == 1, f"expected exactly one {kind}, found {len(matches)}"
    return copy.deepcopy(matches[0])


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar() -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in pod_spec().get("initContainers", []) if c["name"] == SIDECAR
    ]
    assert len(found) == 1, f"no init container named {SIDECAR!r}"
    return found[0]


def all_containers() -> Iterator[dict[str, Any]]:
    spec = pod_spec()
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def toml_text() -> str:
    text: str = one("ConfigMap")["data"]["wampd.toml"]
    return text


def wampd_config(tmp_path: Path) -> Config:
    """The ConfigMap's wampd.toml through wampd's loader, with a real key in ``tmp_path``.

    ``key_file`` must exist for the loader, and the Secret's example is a placeholder (on
    purpose: not a key): a key ``wampd keygen`` makes is put where the path pointed, mode
    0400 as the init container copies it (after checking the path is the copied one).
    """
    data = tomllib.loads(toml_text())
    auth = data["router"]["auth"]
    assert auth["key_file"] == KEY_PATH
    key = tmp_path / "wampd.key"
    write_key_pair(str(key), generate())
    key.chmod(0o400)
    auth["key_file"] = str(key)
    return parse_config(data, environ={}, source=CONFIG_PATH)


def key_copier() -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in pod_spec().get("initContainers", []) if c["name"] == KEY_COPIER
    ]
    assert len(found) == 1, f"no init container named {KEY_COPIER!r}"
    return found[0]


def port_number(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's ``port`` (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"container {container['name']!r} has no port named {port!r}"
    return int(named[0])


def mounted_file(container: Mapping[str, Any], source: str, name: str, key: str) -> str:
    """Where ``key`` of the ConfigMap/Secret ``name`` appears inside ``container``."""
    field = "name" if source == "configMap" else "secretName"
    volumes = [v for v in pod_spec()["volumes"] if v.get(source, {}).get(field) == name]
    assert len(volumes) == 1, f"expected one volume of {source} {name!r}"
    volume = volumes[0]
    items = volume[source].get("items")
    if items is None:
        relative = key
    else:
        paths = [item["path"] for item in items if item["key"] == key]
        assert paths, f"volume {volume['name']!r} does not project key {key!r}"
        relative = paths[0]
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] == volume["name"]]
    assert len(mounts) == 1, f"{container['name']!r} does not mount {volume['name']!r}"
    assert "subPath" not in mounts[0], "subPath mounts never see ConfigMap/Secret updates"
    return str(PurePosixPath(mounts[0]["mountPath"]) / relative)


# --------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------


def test_the_expected_resources_are_there() -> None:
    """The directory holds the Deployment, ConfigMap, Secret, PodMonitor and Kustomization.

    Protects the other tests from passing vacuously on a renamed or emptied file.
    """
    kinds = sorted(doc.get("kind", "?") for _, doc in documents())
    assert kinds == ["ConfigMap", "Deployment", "Kustomization", "PodMonitor", "Secret"]
    for name, doc in documents():
        if (doc.get("apiVersion"), doc.get("kind")) != KUSTOMIZATION:
            assert doc.get("metadata", {}).get("name"), f"{name}: {doc['kind']} has no name"
            assert "namespace" not in doc["metadata"], f"{name}: leave the namespace to -n"


@pytest.mark.tool("kubernetes-validate")
def test_validator_knows_the_versions() -> None:
    """kubernetes-validate ships schemas for the oldest release with native sidecars.

    Otherwise it would silently validate against an older schema (it falls back to the
    newest version not above the one asked for).
    """
    known = {major_minor(v) for v in all_versions()}
    for version in VERSIONS:
        assert major_minor(version) in known


@pytest.mark.tool("kubernetes-validate")
@pytest.mark.parametrize("version", VERSIONS)
def test_builtin_resources_pass_the_strict_api_schema(version: str) -> None:
    """Every built-in resource is valid for Kubernetes ``version``, no unknown field allowed.

    Catches typos (``restartPolicy`` misplaced, ``readinesProbe``), wrong types (an
    unquoted ``"true"`` annotation) and fields too new for the oldest supported release.
    Only CRD kinds, which have no built-in schema, are skipped -- and they really must
    have none, so a misspelt apiVersion of a built-in kind cannot slip through as "CRD".
    """
    checked = 0
    problems: list[str] = []
    for name, doc in documents():
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key == KUSTOMIZATION:
            continue
        if key in CRD_KINDS:
            with pytest.raises(SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        try:
            used = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            # Only the gist: str(exc) quotes the whole schema.
            where = "/".join(str(p) for p in exc.path) or "<root>"
            problems.append(f"{name}: {doc['kind']} at {where}: {exc.message}")
            continue
        assert used == major_minor(version)
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked == 3


def test_kustomization_lists_the_resources() -> None:
    """``kubectl apply -k`` applies every manifest but the PodMonitor, and no missing file.

    The PodMonitor stays out on purpose: without the Prometheus Operator's CRDs the whole
    apply would fail.
    """
    kustomization = one("Kustomization")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), f"kustomization.yaml lists missing {resource}"
    expected = {
        name for name, doc in documents() if doc.get("kind") not in ("Kustomization", "PodMonitor")
    }
    assert set(resources) == expected


# --------------------------------------------------------------------------------------
# The sidecar
# --------------------------------------------------------------------------------------


def test_wampd_is_a_native_sidecar() -> None:
    """wampd runs in initContainers with restartPolicy Always, before the app, as ``run``.

    Native sidecar = started before the app and stopped after it; as a plain container it
    would get SIGTERM together with the app, and in initContainers without
    ``restartPolicy: Always`` it would block the pod forever (wampd never exits on its own).
    """
    spec = pod_spec()
    assert SIDECAR not in [c["name"] for c in spec["containers"]]
    container = sidecar()
    assert container["restartPolicy"] == "Always"
    assert container["image"] == WAMPD_IMAGE
    assert container["args"] == ["run", "--config", CONFIG_PATH]
    assert "command" not in container, "the image's entrypoint is wampd"
    # Only the key's copy runs before it (and exits); every later init container would
    # wait for the sidecar.
    assert [c["name"] for c in spec["initContainers"]][:2] == [KEY_COPIER, SIDECAR]
    assert "restartPolicy" not in key_copier()
    assert spec.get("restartPolicy", "Always") == "Always"


def test_deployment_selects_its_own_pods() -> None:
    """The Deployment's selector matches its pod template's labels (the API rejects it else)."""
    deployment = one("Deployment")
    selector = deployment["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"].items() <= labels.items()


def test_config_and_key_are_mounted_where_wampd_reads_them() -> None:
    """The ConfigMap lands at ``--config``'s path; the key Secret in the init container,
    which copies it, mode 0400, to ``key_file``'s path on a volume wampd mounts.

    Names, keys and paths are spread over three files; a rename in one of them would only
    show in the cluster, as an exit status 2.
    """
    configmap, secret = one("ConfigMap"), one("Secret")
    container = sidecar()
    config_file = mounted_file(container, "configMap", configmap["metadata"]["name"], "wampd.toml")
    assert config_file == CONFIG_PATH
    copier = key_copier()
    secret_file = mounted_file(copier, "secret", secret["metadata"]["name"], "wampd.key")
    assert secret_file == SECRET_PATH
    key_file = tomllib.loads(toml_text())["router"]["auth"]["key_file"]
    assert copier["command"] == ["install", "-m", "0400", SECRET_PATH, key_file]
    assert copier["image"] == container["image"]  # coreutils' install is in wampd's image
    # The copy's folder is one emptyDir, in memory, that both mount (wampd read-only).
    folder = str(PurePosixPath(key_file).parent)
    (volume,) = [
        v
        for v in pod_spec()["volumes"]
        if any(m["name"] == v["name"] and m["mountPath"] == folder for m in copier["volumeMounts"])
    ]
    assert volume["emptyDir"]["medium"] == "Memory"
    mounts = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert [(m["mountPath"], m.get("readOnly")) for m in mounts] == [(folder, True)]
    assert all(m.get("readOnly") for m in container["volumeMounts"])
    # Only the copier sees the Secret itself.
    secret_volume = next(v for v in pod_spec()["volumes"] if "secret" in v)
    for other in all_containers():
        if other["name"] != KEY_COPIER:
            assert secret_volume["name"] not in [m["name"] for m in other.get("volumeMounts", [])]


def test_the_key_secret_is_a_file_and_its_example_no_key() -> None:
    """The key Secret is an Opaque file, group-readable by the pod's fsGroup (the copier's
    group), never an env var; the example's value is a placeholder wampd refuses.

    Mode 0440 with ``fsGroup`` is the tightest that UID 10001 can read; wampd itself reads
    only the copy, which ``install -m 0400`` makes its own.
    """
    secret = one("Secret")
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"wampd.key"}
    name = secret["metadata"]["name"]
    volume = next(v for v in pod_spec()["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == name
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod_spec()["securityContext"]["fsGroup"] == key_copier()["securityContext"]["runAsGroup"]
    for container in all_containers():
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), container["name"]


def test_the_example_key_is_refused(tmp_path: Path) -> None:
    """Deployed unchanged, the placeholder makes wampd exit 2 naming the file, rather than
    join with a key that is in a public repository."""
    placeholder = tmp_path / "wampd.key"
    placeholder.write_text(one("Secret")["stringData"]["wampd.key"])
    placeholder.chmod(0o400)
    with pytest.raises(BadKey, match="is not a key wampd reads"):
        load_private_key(str(placeholder))


# --------------------------------------------------------------------------------------
# The configuration inside the ConfigMap
# --------------------------------------------------------------------------------------


def test_configmap_holds_a_valid_wampd_config(tmp_path: Path) -> None:
    """The ConfigMap's wampd.toml passes wampd's own loader, without a single warning.

    Catches an unknown key, a wrong type or a bad URL before a pod exits with status 2,
    and pins what a pod needs: cryptosign with a key file, JSON logs, one component.
    """
    config = wampd_config(tmp_path)
    assert config.warnings == ()
    assert config.router.urls and all(u.startswith("wss://") for u in config.router.urls)
    assert config.router.realm
    assert config.router.auth.method == "cryptosign"
    assert config.router.auth.key is not None
    assert config.router.auth.authid
    assert config.log.format == "json"
    assert config.reconnect.retry_on_start
    assert config.keepalive.ping_interval > 0
    assert [c.name for c in config.components] == ["backend"]


def test_http_listener_is_reachable_by_probes_and_prometheus(tmp_path: Path) -> None:
    """``[http] listen`` is on all interfaces, on the sidecar's port named ``metrics``.

    wampd's default listens on 127.0.0.1, which the kubelet (connecting to the pod IP)
    can never reach: every probe would fail and the pod would never start.
    """
    config = wampd_config(tmp_path)
    assert config.http.host is not None and config.http.port is not None
    assert ipaddress.ip_address(config.http.host).is_unspecified, config.http.listen
    container = sidecar()
    assert port_number(container, METRICS_PORT_NAME) == config.http.port
    assert [p.get("protocol", "TCP") for p in container["ports"]] == ["TCP"]


def test_probes_use_wampd_endpoints_on_its_port(tmp_path: Path) -> None:
    """startup + liveness on /healthz, readiness on /readyz, all on the listen port.

    /healthz stays 200 through router outages (no restart loop while the router is down);
    /readyz is 200 only while joined. Swapping them would restart pods during every outage.
    """
    config = wampd_config(tmp_path)
    container = sidecar()
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe_name, path in expected.items():
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert probe.get("scheme", "HTTP") == "HTTP", probe_name
        assert port_number(container, probe["port"]) == config.http.port, probe_name
    liveness = container["livenessProbe"]
    assert liveness.get("timeoutSeconds", 1) < liveness.get("periodSeconds", 10)


def test_grace_period_covers_wampd_shutdown(tmp_path: Path) -> None:
    """terminationGracePeriodSeconds exceeds ``[shutdown] timeout`` with room to spare.

    The sidecar gets SIGTERM only after the app has exited, from the same grace period;
    if it runs out first, sessions are killed instead of leaving with GOODBYE.
    """
    config = wampd_config(tmp_path)
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > config.shutdown.timeout
    assert grace >= config.shutdown.timeout + MIN_GRACE_SLACK


def test_app_talks_to_the_same_router(tmp_path: Path) -> None:
    """The app container's router URL and realm are those of wampd's config."""
    config = wampd_config(tmp_path)
    app = next(c for c in pod_spec()["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["WAMP_ROUTER_URL"] in config.router.urls
    assert env["WAMP_REALM"] == config.realm_for(config.components[0])


# --------------------------------------------------------------------------------------
# Security and resources
# --------------------------------------------------------------------------------------


def test_security_context_is_restricted() -> None:
    """Pod and every container meet the ``restricted`` Pod Security Standard, as UID 10001.

    A namespace enforcing ``restricted`` rejects the pod if any of these is missing, and
    wampd needs none of the privileges they take away.
    """
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in all_containers():
        context = container["securityContext"]
        name = container["name"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == 10001, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not context.get("privileged", False), name
    assert pod_spec()["automountServiceAccountToken"] is False


def test_sidecar_resources() -> None:
    """The sidecar requests what wampd idles at and caps memory; no tight CPU limit.

    Without a memory limit a leak takes the node's memory; a small CPU limit would
    throttle the reactor into missed keepalives and probe timeouts.
    """
    resources = sidecar()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert requests == {"cpu": "10m", "memory": "64Mi"}
    assert limits["memory"] == "128Mi"
    assert "cpu" not in limits


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def test_scrape_annotations_point_at_the_metrics_endpoint(tmp_path: Path) -> None:
    """The pod's prometheus.io annotations name wampd's listen port and /metrics."""
    config = wampd_config(tmp_path)
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.http.port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_podmonitor_selects_the_pods_and_the_metrics_port() -> None:
    """The PodMonitor (a CRD, no built-in schema) is checked by hand.

    Its selector must match the pod template's labels and its port must be a port name
    of the wampd sidecar: otherwise Prometheus finds no target and says nothing. Its job
    must be "wampd", or the target alerts of deploy/prometheus never fire.
    """
    monitor = one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "podMetricsEndpoints"}
    selector = monitor["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"] and selector["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == METRICS_PORT_NAME
    assert endpoint["port"] in [p["name"] for p in sidecar()["ports"]]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    # deploy/prometheus/wampd-rules.yml's target alerts select job="wampd".
    assert {"action": "replace", "targetLabel": "job", "replacement": "wampd"} in endpoint.get(
        "relabelings", []
    )
    timeout = endpoint.get("scrapeTimeout", "10s")
    assert int(timeout.removesuffix("s")) < int(endpoint["interval"].removesuffix("s"))
