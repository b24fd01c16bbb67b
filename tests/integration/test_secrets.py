"""The ticket never appears anywhere wampd writes or serves, whichever way it is given."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.crossbar import AGENT_AUTHID, AGENT_TICKET, CrossbarRouter
from harness.ports import free_port
from harness.procs import REPO_ROOT, harness_env

from .wampd_proc import Launch


def fetch(port: int, path: str) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:
        return bytes(e.read())


@pytest.mark.parametrize("source", ["inline", "file", "env"])
@pytest.mark.parametrize("ticket", ["right", "wrong"])
def test_the_ticket_is_in_no_log_metric_response_or_check_config_output(
    module_crossbar: CrossbarRouter, launch: Launch, tmp_path: Path, source: str, ticket: str
) -> None:
    """Debug logs, /metrics, /healthz, /readyz, / and check-config never show the secret."""
    secret = AGENT_TICKET if ticket == "right" else "wrong-tkt-Kp9vQ3"
    auth = {"method": "ticket", "authid": AGENT_AUTHID}
    env = {}
    if source == "inline":
        auth["secret"] = secret
    elif source == "file":
        path = tmp_path / "ticket"
        path.write_text(secret + "\n")
        path.chmod(0o600)
        auth["secret_file"] = str(path)
    else:
        auth["secret_env"] = "WAMPD_TICKET"
        env["WAMPD_TICKET"] = secret
    port = free_port()
    daemon = launch(
        module_crossbar.url("auth"),
        router={"auth": auth},
        env=env,
        http=f"127.0.0.1:{port}",
        log_level="debug",
    )
    daemon.wait_for("http.listening")
    served = b""
    if ticket == "right":
        daemon.wait_for("session.joined")
        served = b"".join(fetch(port, p) for p in ("/metrics", "/healthz", "/readyz", "/"))
        assert daemon.terminate() == 0
    else:
        assert daemon.wait(30) == 78
    config = next(iter(sorted(tmp_path.glob("wampd-*.toml"))))
    check = subprocess.run(
        [sys.executable, "-m", "wampd", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=harness_env(env),
        check=False,
    )
    assert check.returncode == 0, check.stderr
    # check-config names where the secret comes from, never the secret itself.
    shown = {
        "inline": 'secret = "***"',
        "file": f'secret_file = "{tmp_path / "ticket"}"',
        "env": 'secret_env = "WAMPD_TICKET"',
    }
    assert shown[source] in check.stdout, check.stdout
    written = daemon.proc.output() + daemon.stderr() + check.stdout + check.stderr
    assert secret not in written
    assert secret.encode() not in served
    if source == "inline":
        assert "inline secret" in check.stderr  # warned about
