"""Checks of deploy/kubernetes/bridge: the app next to wampd's sidecar bridge, in one pod.

As tests/unit/test_kubernetes_manifests.py does for the plain sidecar (whose constants and
helpers are reused): every resource in strict mode against the Kubernetes API schemas, the
ConfigMap's ``wampd.toml`` through :func:`wampd.config.parse_config`, and every value two
places must agree on -- here above all the ones between the two containers: the socket on
their shared volume, its group, the token file, the app's port, the grace period. No
cluster is needed.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs, no py.typed
import pytest
import yaml
from kubernetes_validate.utils import major_minor  # type: ignore[import-untyped]  # as above

from tests.unit.test_kubernetes_manifests import (
    CONFIG_PATH,
    K8S_DIR,
    KUSTOMIZATION,
    METRICS_PORT_NAME,
    MIN_GRACE_SLACK,
    SIDECAR,
    VERSIONS,
    WAMPD_IMAGE,
    port_number,
)
from wampd.config import Config, parse_config

BRIDGE_DIR = K8S_DIR / "bridge"

APP = "app"
APP_IMAGE = "ghcr.io/example/orders-app:1.0"
TICKET_SECRET = "orders-wampd-ticket"
TOKEN_SECRET = "orders-bridge-token"
SOCKET_VOLUME = "bridge-socket"
#: The group both containers share: wampd's socket (mode 0660) and the Secrets (0440).
SHARED_GROUP = 10001
#: What the grace period leaves the app for its own shutdown, before wampd's begins
#: (wampd-bridge.yaml: 15 s for the app + shutdown.timeout + slack).
APP_SHUTDOWN = 15


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


@functools.cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every YAML document in deploy/kubernetes/bridge/*.yaml, with its file name."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(BRIDGE_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
                found.append((path.name, doc))
    return tuple(found)


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    """The only document of ``kind`` (named ``name``, if given), as a deep copy."""
    matches = [
        doc
        for _, doc in documents()
        if doc.get("kind") == kind and name in (None, doc.get("metadata", {}).get("name"))
    ]
    assert len(matches) == 1, f"expected exactly one {kind} {name or ''}, found {len(matches)}"
    return copy.deepcopy(matches[0])


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    """The init container or container called ``name``."""
    found = [c for c in all_containers() if c["name"] == name]
    assert len(found) == 1, f"expected one container named {name!r}, found {len(found)}"
    return found[0]


def all_containers() -> Iterator[dict[str, Any]]:
    spec = pod_spec()
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env(of: Mapping[str, Any]) -> dict[str, str]:
    """A container's plain ``env`` values by name."""
    values = {e["name"]: e["value"] for e in of.get("env", []) if "value" in e}
    assert all(isinstance(v, str) for v in values.values()), "env values must be strings"
    return values


def toml_data() -> dict[str, Any]:
    return tomllib.loads(one("ConfigMap")["data"]["wampd.toml"])


def wampd_config(tmp_path: Path) -> Config:
    """The ConfigMap's wampd.toml through wampd's loader, with the secrets from ``tmp_path``.

    The loader reads ``secret_file`` and ``token_file``, which must exist: each Secret's
    example value is written to a mode-0600 file there and the path rewritten, once the
    original path is checked to be where wampd-bridge.yaml mounts that Secret.
    """
    data = toml_data()
    wampd = container(SIDECAR)
    for table, key, secret, item in (
        (data["router"]["auth"], "secret_file", TICKET_SECRET, "ticket"),
        (data["bridge"], "token_file", TOKEN_SECRET, "token"),
    ):
        assert table[key] == mounted_file(wampd, "secret", secret, item)
        file = tmp_path / item
        file.write_text(one("Secret", secret)["stringData"][item], encoding="utf-8")
        file.chmod(0o600)
        table[key] = str(file)
    return parse_config(data, environ={}, source=CONFIG_PATH)


def volume(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in pod_spec()["volumes"] if v["name"] == name]
    assert len(found) == 1, f"expected one volume named {name!r}"
    return found[0]


def secret_volume(secret: str) -> dict[str, Any]:
    """The only volume of the Secret ``secret``."""
    volumes: list[dict[str, Any]] = pod_spec()["volumes"]
    found = [v for v in volumes if v.get("secret", {}).get("secretName") == secret]
    assert len(found) == 1, f"expected one volume of the Secret {secret!r}"
    return found[0]


def mount(of: Mapping[str, Any], volume_name: str) -> dict[str, Any]:
    """``of``'s only mount of the volume ``volume_name``, which must be a whole-volume one."""
    mounts: list[dict[str, Any]] = [
        m for m in of.get("volumeMounts", []) if m["name"] == volume_name
    ]
    assert len(mounts) == 1, f"{of['name']!r} does not mount {volume_name!r} (once)"
    # A subPath mount would neither see a Secret's updates nor a socket created later.
    assert "subPath" not in mounts[0] and "subPathExpr" not in mounts[0]
    return mounts[0]


def mounted_file(of: Mapping[str, Any], source: str, name: str, key: str) -> str:
    """Where ``key`` of the ConfigMap/Secret ``name`` appears inside the container ``of``."""
    field = "name" if source == "configMap" else "secretName"
    volumes = [v for v in pod_spec()["volumes"] if v.get(source, {}).get(field) == name]
    assert len(volumes) == 1, f"expected one volume of {source} {name!r}"
    items = volumes[0][source].get("items")
    if items is None:
        relative = key
    else:
        paths = [item["path"] for item in items if item["key"] == key]
        assert paths, f"volume {volumes[0]['name']!r} does not project key {key!r}"
        relative = paths[0]
    return str(PurePosixPath(mount(of, volumes[0]["name"])["mountPath"]) / relative)


def socket_path(config: Config) -> str:
    """The bridge's unix socket, from ``[bridge] listen``."""
    address = config.bridge.address
    assert isinstance(address, str), f"the bridge does not listen on a unix socket: {address}"
    return address


# --------------------------------------------------------------------------------------
# Schemas and the kustomization
# --------------------------------------------------------------------------------------


def test_the_expected_resources_are_there() -> None:
    """The folder holds the Deployment, the ConfigMap, two Secrets and the Kustomization.

    Protects the other tests from passing vacuously on a renamed or emptied file.
    """
    kinds = sorted(doc.get("kind", "?") for _, doc in documents())
    assert kinds == ["ConfigMap", "Deployment", "Kustomization", "Secret", "Secret"]
    for name, doc in documents():
        if (doc.get("apiVersion"), doc.get("kind")) != KUSTOMIZATION:
            assert doc.get("metadata", {}).get("name"), f"{name}: {doc['kind']} has no name"
            assert "namespace" not in doc["metadata"], f"{name}: leave the namespace to -n"
    secrets = {doc["metadata"]["name"] for _, doc in documents() if doc["kind"] == "Secret"}
    assert secrets == {TICKET_SECRET, TOKEN_SECRET}


@pytest.mark.tool("kubernetes-validate")
@pytest.mark.parametrize("version", VERSIONS)
def test_resources_pass_the_strict_api_schema(version: str) -> None:
    """Every resource is valid for Kubernetes ``version``, no unknown field allowed.

    The oldest version is the first with native sidecars on by default (1.29), the other
    the newest the validator knows (tests/unit/test_kubernetes_manifests.py checks that it
    has both).
    """
    checked = 0
    problems: list[str] = []
    for name, doc in documents():
        if (doc.get("apiVersion"), doc.get("kind")) == KUSTOMIZATION:
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
    assert checked == 4


def test_kustomization_lists_the_resources() -> None:
    """``kubectl apply -k deploy/kubernetes/bridge`` applies every manifest of the folder."""
    resources = one("Kustomization")["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (BRIDGE_DIR / resource).is_file(), f"kustomization.yaml lists missing {resource}"
    expected = {name for name, doc in documents() if doc.get("kind") != "Kustomization"}
    assert expected == {"configmap.yaml", "secret.example.yaml", "wampd-bridge.yaml"}
    assert set(resources) == expected


def test_parent_readme_points_at_this_folder() -> None:
    """deploy/kubernetes/README.md links to the bridge example, and the folder has a README."""
    assert "(bridge/" in (K8S_DIR / "README.md").read_text(encoding="utf-8")
    assert (BRIDGE_DIR / "README.md").is_file()


# --------------------------------------------------------------------------------------
# The pod
# --------------------------------------------------------------------------------------


def test_wampd_is_a_native_sidecar() -> None:
    """wampd runs first in initContainers, with restartPolicy Always; the app in containers.

    Native sidecar = started before the app (the app's first /v1/ready finds wampd's
    process up) and stopped after it (the app can still publish and call while it drains).
    """
    spec = pod_spec()
    assert [c["name"] for c in spec["containers"]] == [APP]
    assert spec["initContainers"][0]["name"] == SIDECAR
    wampd = container(SIDECAR)
    assert wampd["restartPolicy"] == "Always"
    assert wampd["image"] == WAMPD_IMAGE
    assert wampd["args"] == ["run", "--config", CONFIG_PATH]
    assert "command" not in wampd, "the image's entrypoint is wampd"
    assert container(APP)["image"] == APP_IMAGE
    assert spec.get("restartPolicy", "Always") == "Always"


def test_deployment_selects_its_own_pods() -> None:
    """The Deployment's selector matches its pod template's labels."""
    deployment = one("Deployment")
    selector = deployment["spec"]["selector"]
    assert set(selector) == {"matchLabels"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"] and selector["matchLabels"].items() <= labels.items()


def test_configmap_holds_a_valid_bridge_config(tmp_path: Path) -> None:
    """The ConfigMap's wampd.toml passes wampd's own loader, without a single warning.

    No ``[[component]]``: the bridge is the only session. It listens on a unix socket with
    a token, and serves one subscription and one procedure.
    """
    config = wampd_config(tmp_path)
    assert config.warnings == ()
    assert config.components == ()
    assert config.router.urls and all(u.startswith("wss://") for u in config.router.urls)
    assert config.router.auth.method == "ticket"
    assert config.log.format == "json"
    assert config.reconnect.retry_on_start
    assert config.bridge.listen.startswith("unix:/")
    assert config.bridge.token_file is not None
    assert [s.topic for s in config.bridge.subscriptions] == ["com.example.orders"]
    assert [p.uri for p in config.bridge.procedures] == ["com.example.add"]


def test_config_and_secrets_are_mounted_where_wampd_reads_them() -> None:
    """The ConfigMap lands at ``--config``'s path, each Secret at its ``*_file`` path.

    wampd's WAMP ticket is mounted in wampd only: the app holds the bridge token, nothing
    that could join the router by itself.
    """
    wampd, app = container(SIDECAR), container(APP)
    assert mounted_file(wampd, "configMap", one("ConfigMap")["metadata"]["name"], "wampd.toml") == (
        CONFIG_PATH
    )
    data = toml_data()
    ticket = mounted_file(wampd, "secret", TICKET_SECRET, "ticket")
    assert ticket == data["router"]["auth"]["secret_file"]
    ticket_volume = secret_volume(TICKET_SECRET)["name"]
    assert ticket_volume not in [m["name"] for m in app.get("volumeMounts", [])]
    for of in all_containers():
        for variable in of.get("env", []):
            assert "secretKeyRef" not in variable.get("valueFrom", {}), of["name"]
        assert "envFrom" not in of, of["name"]


def test_socket_is_on_a_volume_both_containers_share(tmp_path: Path) -> None:
    """``[bridge] listen``'s socket lies inside the emptyDir that both containers mount.

    wampd (which creates it) mounts the volume writable; the app read-only, which is
    enough to connect. Outside the shared volume, the app would find no socket at all.
    """
    path = PurePosixPath(socket_path(wampd_config(tmp_path)))
    assert volume(SOCKET_VOLUME).keys() == {"name", "emptyDir"}
    wampd_mount = mount(container(SIDECAR), SOCKET_VOLUME)
    assert path.is_relative_to(wampd_mount["mountPath"]), (path, wampd_mount)
    assert path != PurePosixPath(wampd_mount["mountPath"])
    assert not wampd_mount.get("readOnly", False), "wampd creates the socket there"
    app_mount = mount(container(APP), SOCKET_VOLUME)
    assert app_mount["mountPath"] == wampd_mount["mountPath"], "one path for both"
    assert app_mount.get("readOnly") is True


def test_app_reaches_the_bridge_on_its_socket(tmp_path: Path) -> None:
    """The app's ``WAMPD_BRIDGE`` is ``"unix:"`` + the socket's path, as the app sees it."""
    config = wampd_config(tmp_path)
    path = PurePosixPath(socket_path(config))
    relative = path.relative_to(mount(container(SIDECAR), SOCKET_VOLUME)["mountPath"])
    seen_by_app = PurePosixPath(mount(container(APP), SOCKET_VOLUME)["mountPath"]) / relative
    assert env(container(APP))["WAMPD_BRIDGE"] == f"unix:{seen_by_app}" == config.bridge.listen


def test_containers_share_the_socket_group() -> None:
    """Both containers run in group 10001, the pod's fsGroup: the socket's mode 0660 lets
    them both in, and nobody else.

    wampd creates the socket with mode 0660 on a volume the kubelet gives to fsGroup;
    connecting needs write permission on it, so the app must be its owner or in its
    group. The Secrets' mode 0440 relies on the same group.
    """
    pod = pod_spec()["securityContext"]
    assert pod["fsGroup"] == SHARED_GROUP
    assert pod["runAsGroup"] == SHARED_GROUP
    for of in all_containers():
        group = of["securityContext"].get("runAsGroup", pod["runAsGroup"])
        assert group == SHARED_GROUP, of["name"]
    for secret in (TICKET_SECRET, TOKEN_SECRET):
        assert secret_volume(secret)["secret"]["defaultMode"] == 0o440, secret


def test_bridge_token_is_one_file_for_both_containers(tmp_path: Path) -> None:
    """The token Secret is mounted at ``token_file`` in wampd and at the app's
    ``WAMPD_BRIDGE_TOKEN_FILE``: the same volume, the same path, never an env var.

    One volume means one file: a rotated Secret changes for both containers at once.
    """
    token_file = toml_data()["bridge"]["token_file"]
    for of in (container(SIDECAR), container(APP)):
        assert mounted_file(of, "secret", TOKEN_SECRET, "token") == token_file, of["name"]
        assert mount(of, "bridge-token").get("readOnly") is True
    assert env(container(APP))["WAMPD_BRIDGE_TOKEN_FILE"] == token_file
    secret = one("Secret", TOKEN_SECRET)
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"token"} and secret["stringData"]["token"].strip()
    assert wampd_config(tmp_path).bridge.token_file is not None


def test_webhooks_and_callbacks_point_at_the_app_container(tmp_path: Path) -> None:
    """Every subscription's and procedure's URL is http://127.0.0.1:<the app's port>/...

    The pod's loopback reaches the app container (one network namespace); the port must
    be the app's containerPort and the one it listens on (APP_PORT, on APP_HOST's
    loopback), not one of wampd's.
    """
    config = wampd_config(tmp_path)
    app = container(APP)
    app_ports = {p["containerPort"] for p in app["ports"]}
    wampd_ports = {p["containerPort"] for p in container(SIDECAR)["ports"]}
    variables = env(app)
    assert ipaddress.ip_address(variables["APP_HOST"]).is_loopback
    urls = [s.url for s in config.bridge.subscriptions] + [p.url for p in config.bridge.procedures]
    assert urls
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme == "http", url
        assert parts.hostname == "127.0.0.1", url
        assert parts.port in app_ports, url
        assert parts.port == int(variables["APP_PORT"]), url
        assert parts.port not in wampd_ports, url


def test_replicas_share_the_registration(tmp_path: Path) -> None:
    """With more than one replica (and a surge during updates) every procedure is shared.

    With ``invoke = "single"`` the second pod's registration would fail with
    ``wamp.error.procedure_already_exists`` and its bridge would never get ready.
    """
    deployment = one("Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    procedures = wampd_config(tmp_path).bridge.procedures
    assert procedures
    assert all(p.invoke == "roundrobin" for p in procedures)


def test_probes_start_the_app_after_wampd(tmp_path: Path) -> None:
    """wampd's startupProbe (/healthz) gates the app's start; readiness is /readyz, which
    includes the bridge session; all on ``[http] listen``'s port, on all interfaces.

    The app has no probe on the bridge: a kubelet probe connects to the pod IP and cannot
    reach a unix socket. It waits for GET /v1/ready itself.
    """
    config = wampd_config(tmp_path)
    assert config.http.host is not None
    assert ipaddress.ip_address(config.http.host).is_unspecified, config.http.listen
    wampd = container(SIDECAR)
    assert port_number(wampd, METRICS_PORT_NAME) == config.http.port
    for probe_name, path in {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }.items():
        probe = wampd[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert probe.get("scheme", "HTTP") == "HTTP", probe_name
        assert port_number(wampd, probe["port"]) == config.http.port, probe_name
    # Probes of the app's own, if any, on its own ports (a kubelet cannot reach the bridge).
    app = container(APP)
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        check = app.get(probe_name, {}).get("httpGet") or app.get(probe_name, {}).get("tcpSocket")
        if check is not None:
            assert port_number(app, check["port"]) in {p["containerPort"] for p in app["ports"]}


def test_grace_period_covers_the_app_then_wampd(tmp_path: Path) -> None:
    """terminationGracePeriodSeconds >= the app's shutdown + ``[shutdown] timeout`` + slack.

    The app gets SIGTERM first; wampd only once the app has exited, from the same grace
    period, and then drains (60 % of the timeout) and sends GOODBYE. If it runs out,
    wampd is killed: in-flight deliveries are lost and the router sees a lost transport.
    """
    config = wampd_config(tmp_path)
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= APP_SHUTDOWN + config.shutdown.timeout + MIN_GRACE_SLACK
    assert config.bridge.call_timeout <= APP_SHUTDOWN, "a call in flight at SIGTERM may finish"


def test_security_context_is_restricted() -> None:
    """Pod and both containers meet the ``restricted`` Pod Security Standard, as UID 10001."""
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for of in all_containers():
        context, name = of["securityContext"], of["name"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == 10001, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not context.get("privileged", False), name
    assert pod_spec()["automountServiceAccountToken"] is False
    assert pod_spec()["enableServiceLinks"] is False


def test_scrape_annotations_point_at_the_metrics_endpoint(tmp_path: Path) -> None:
    """The pod's prometheus.io annotations name wampd's listen port and /metrics."""
    config = wampd_config(tmp_path)
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(config.http.port),
        "prometheus.io/path": "/metrics",
    }
