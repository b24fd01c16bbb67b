"""The sidecar bridge against the real Crossbar router: an app's HTTP requests become
publishes and calls, answered with honest statuses, through router restarts."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import free_port

from .wampd_proc import Launch

RECORDER = {"name": "recorder", "entry": "tests.integration.components:Recorder"}


def post(port: int, path: str, body: object, token: str | None = None) -> tuple[int, Any, Any]:
    """``(status, JSON body, headers)`` of one POST to the bridge on 127.0.0.1."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.headers
    finally:
        conn.close()


def ready(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/ready")
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (what an app in the pod does with a shared volume)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def test_an_app_publishes_and_calls_through_the_bridge(
    crossbar: CrossbarRouter, launch: Launch
) -> None:
    """Publish reaches a plain autobahn subscriber after the router's acknowledgement; a
    call returns the callee's result; errors and timeouts have their statuses."""
    port = free_port()
    daemon = launch(
        crossbar.url(),
        components=[{**RECORDER, "extra": {"slow": 3.0}}],
        bridge={"listen": f"127.0.0.1:{port}", "call_timeout": 1.0},
    )
    daemon.wait_for("session.joined", count=2)
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)

    status, body, _ = post(
        port,
        "/v1/publish",
        {"topic": "com.example.bridge.topic", "args": [1], "kwargs": {"k": "v"}},
    )
    assert status == 200 and isinstance(body["id"], int), body
    status, body, _ = post(port, "/v1/call", {"procedure": "com.example.bridge.seen"})
    assert (status, body) == (200, {"args": [[{"args": [1], "kwargs": {"k": "v"}}]], "kwargs": {}})

    assert post(port, "/v1/call", {"procedure": "com.example.bridge.add", "args": [2, 3]})[:2] == (
        200,
        {"args": [5], "kwargs": {}},
    )
    status, body, _ = post(port, "/v1/call", {"procedure": "com.example.bridge.nope"})
    assert status == 404 and body["error"] == "wamp.error.no_such_procedure"
    status, body, _ = post(port, "/v1/call", {"procedure": "com.example.bridge.fail"})
    assert (status, body) == (
        502,
        {"error": "com.example.error.minus_one", "args": ["minus one"], "kwargs": {"code": 7}},
    )
    status, body, _ = post(port, "/v1/call", {"procedure": "com.example.bridge.slow"})
    assert status == 504 and body["error"] == "wamp.error.timeout"
    status, body, _ = post(port, "/v1/publish", {"topic": "not a uri!"})
    assert status == 400 and body["error"] == "wamp.error.invalid_uri", body
    status, body, _ = post(port, "/v1/publish", {"args": []})
    assert status == 400 and "'topic'" in body["args"][0]


def test_the_bridge_comes_back_with_the_router(crossbar: CrossbarRouter, launch: Launch) -> None:
    """Router kill -9: /v1/ready and /v1/publish answer 503 with Retry-After while it is
    down; once it is back the bridge rejoins on its own and publishes go through again."""
    port = free_port()
    daemon = launch(crossbar.url(), components=[], bridge={"listen": f"127.0.0.1:{port}"})
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)
    crossbar.kill()
    poll(lambda: ready(port) == 503 or None, 15, describe=daemon.describe)
    status, body, headers = post(port, "/v1/publish", {"topic": "com.example.bridge.topic"})
    assert status == 503 and body["error"] == "wampd.error.not_joined"
    assert headers["Retry-After"] == "1"
    crossbar.restart()
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)
    assert post(port, "/v1/publish", {"topic": "com.example.bridge.topic"})[0] == 200
    assert daemon.events("session.joined", component="bridge")


def test_a_token_and_a_unix_socket(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """listen = "unix:PATH": the socket is made with mode 0660; with token_file set a
    request without the token is a 401 that does not show it."""
    sock_path = tmp_path / "bridge.sock"
    token = tmp_path / "token"
    token.write_text("t0ken-of-the-pod\n")
    token.chmod(0o600)
    daemon = launch(
        crossbar.url(),
        components=[],
        bridge={"listen": f"unix:{sock_path}", "token_file": str(token)},
    )

    def unix_post(headers: dict[str, str]) -> tuple[int, Any]:
        conn = _UnixHTTPConnection(str(sock_path))
        try:
            body = json.dumps({"topic": "com.example.bridge.topic"})
            conn.request("POST", "/v1/publish", body, headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    poll(lambda: sock_path.exists() or None, 30, describe=daemon.describe)
    assert oct(sock_path.stat().st_mode & 0o777) == oct(0o660)
    daemon.wait_for("session.joined", component="bridge")
    status, body = unix_post({})
    assert status == 401 and "t0ken" not in json.dumps(body)
    status, body = poll(
        lambda: (
            ((r := unix_post({"Authorization": "Bearer t0ken-of-the-pod"}))[0] == 200 and r) or None
        ),
        15,
    )
    assert isinstance(body["id"], int)
    assert "t0ken-of-the-pod" not in daemon.proc.stdout_path.read_text()
