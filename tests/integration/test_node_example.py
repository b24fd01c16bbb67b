"""examples/node-bridge/app.mjs, the Node.js app of the sidecar bridge, run for real: a real
Crossbar router, ``wampd run`` with the example's bridge section (on ports and paths of the
test's own), and ``node app.mjs`` printing its steps as JSON lines.

Node.js 20 is required: without ``node`` on PATH these tests FAIL (not skip), as CI has it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import CrossbarRouter
from harness.ports import free_port
from harness.procs import REPO_ROOT, Proc

from .test_bridge import _UnixHTTPConnection
from .wampd_proc import Launch, WampdProcess

APP = REPO_ROOT / "examples" / "node-bridge" / "app.mjs"
NODE_MAJOR = 20
TIMEOUT = 60.0  # seconds for the whole run of the app
GREETINGS = "com.example.greetings"
ADD = "com.example.add"

RunApp = Callable[..., Proc]


def node_bin() -> str:
    """The ``node`` on PATH, at least Node.js 20; FAIL (not skip) otherwise."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"node is not on PATH: {APP.relative_to(REPO_ROOT)} needs Node.js {NODE_MAJOR} or "
            "later (install it, e.g. from https://nodejs.org or the distribution's nodejs)",
            pytrace=False,
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    found = re.match(r"v(\d+)\.", version)
    if found is None or int(found.group(1)) < NODE_MAJOR:
        pytest.fail(
            f"{node} is Node.js {version or '(unknown version)'}; "
            f"the example needs Node.js {NODE_MAJOR} or later",
            pytrace=False,
        )
    return node


@pytest.fixture
def run_app(tmp_path: Path) -> Iterator[RunApp]:
    """``run_app(env)``: start ``node app.mjs`` with ``env`` added to a clean environment
    (no WAMPD_*, APP_* or NODE_* from outside); every app started is killed at teardown. node is
    looked up then, in the test itself, so a missing node is a FAILED test."""
    started: list[Proc] = []

    def start(env: dict[str, str]) -> Proc:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("WAMPD_", "APP_", "NODE_"))
        }
        n = len(started) + 1
        proc = Proc(
            [node_bin(), str(APP)],
            stdout_path=tmp_path / f"node-{n}.out",
            stderr_path=tmp_path / f"node-{n}.err",
            env={**base, "READY_TIMEOUT": "45", **env},
            cwd=REPO_ROOT,
            name="node app.mjs",
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


def bridge_section(app_port: int, **bridge: Any) -> dict[str, Any]:
    """The example's wampd.toml bridge: the subscription and the procedure, on the app's
    port."""
    return {
        **bridge,
        "subscription": [
            {"topic": GREETINGS, "url": f"http://127.0.0.1:{app_port}/hooks/greetings"}
        ],
        "procedure": [{"uri": ADD, "url": f"http://127.0.0.1:{app_port}/rpc/add"}],
    }


def finish(app: Proc, daemon: WampdProcess) -> dict[str, dict[str, Any]]:
    """Wait for the app to exit 0; check its steps in order; return them by name."""

    def evidence() -> str:
        stderr = app.stderr_path.read_text() if app.stderr_path else ""
        return (
            f"{app.describe(60)}\n--- app stderr ---\n{stderr[-4000:]}\n"
            f"===== wampd =====\n{daemon.describe()}"
        )

    try:
        status = app.wait(TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n===== wampd =====\n{daemon.describe()}") from None
    assert status == 0, f"app.mjs exited with status {status}\n{evidence()}"

    lines = [line for line in app.json_lines() if "step" in line]
    wanted = ["ready", "call", "call_error", "publish", "webhook", "done"]
    seen = [line["step"] for line in lines if line["step"] in wanted]
    assert seen == wanted, f"steps {seen}, expected {wanted}\n{evidence()}"
    steps = {line["step"]: line for line in lines}

    call = steps["call"]
    assert call["procedure"] == ADD and call["args"] == [2, 3] and call["result"] == 5, call
    error = steps["call_error"]
    assert error["status"] == 502 and error["error"] == "com.example.invalid_argument", error
    publication = steps["publish"]["id"]
    assert isinstance(publication, int), steps["publish"]
    webhook = steps["webhook"]
    assert webhook["topic"] == GREETINGS and webhook["args"] == ["hello from node"], webhook
    assert webhook["publication"] == publication, (webhook, publication)
    return steps


def test_the_node_example_over_tcp(
    crossbar: CrossbarRouter, launch: Launch, run_app: RunApp
) -> None:
    """Bridge and app on loopback TCP ports; the app started together with wampd, so it
    waits for /v1/ready itself."""
    bridge_port, app_port = free_port(), free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        bridge=bridge_section(app_port, listen=f"127.0.0.1:{bridge_port}"),
    )
    app = run_app({"WAMPD_BRIDGE": f"http://127.0.0.1:{bridge_port}", "APP_PORT": str(app_port)})
    steps = finish(app, daemon)
    assert steps["ready"]["bridge"] == f"http://127.0.0.1:{bridge_port}"
    assert daemon.events("bridge.ready"), daemon.describe()


def test_the_node_example_over_a_unix_socket_with_a_token(
    crossbar: CrossbarRouter, launch: Launch, run_app: RunApp, tmp_path: Path
) -> None:
    """listen = "unix:PATH" and token_file: the app sends the token it reads from the same
    file (mode 0600) and never prints it; without the token the bridge says 401."""
    sock_path = tmp_path / "bridge.sock"
    token = tmp_path / "bridge-token"
    token.write_text("n0de-t0ken-of-the-pod\n")
    token.chmod(0o600)
    app_port = free_port()
    daemon = launch(
        crossbar.url(),
        components=[],
        bridge=bridge_section(app_port, listen=f"unix:{sock_path}", token_file=str(token)),
    )
    app = run_app(
        {
            "WAMPD_BRIDGE": f"unix:{sock_path}",
            "WAMPD_BRIDGE_TOKEN_FILE": str(token),
            "APP_PORT": str(app_port),
        }
    )
    steps = finish(app, daemon)
    assert steps["ready"]["bridge"] == f"unix:{sock_path}"
    assert "n0de-t0ken" not in app.output()
    conn = _UnixHTTPConnection(str(sock_path))  # the same request, without the token
    try:
        conn.request("POST", "/v1/publish", json.dumps({"topic": GREETINGS}))
        assert conn.getresponse().status == 401, daemon.describe()
    finally:
        conn.close()
    assert "n0de-t0ken" not in daemon.proc.stdout_path.read_text()
