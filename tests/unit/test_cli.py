"""The wampd command line, run in-process (the reactor is never started here)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from wampd import __version__
from wampd.cli import run_cli

GOOD = """
[router]
url = "ws://127.0.0.1:8080/ws"
realm = "realm1"

[router.auth]
method = "ticket"
authid = "agent"
secret_env = "WAMPD_TEST_TICKET"

[[component]]
name = "plain"
entry = "tests.unit.sample_entries:Plain"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "wampd.toml"
    path.write_text(text)
    return str(path)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and exits 0."""
    with pytest.raises(SystemExit) as info:
        run_cli(["--version"], {})
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"wampd {__version__}"


def test_check_config_prints_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config prints the effective config as JSON, defaults filled in, secrets as ***."""
    path = write(tmp_path, GOOD)
    status = run_cli(["check-config", "--config", path], {"WAMPD_TEST_TICKET": "t0pSecret"})
    out = capsys.readouterr().out
    assert status == 0
    data = json.loads(out)
    assert data["router"]["auth"]["secret"] == "***"
    assert data["reconnect"]["max_retries"] == -1
    assert "t0pSecret" not in out


def test_config_from_environment_variable(tmp_path: Path) -> None:
    """WAMPD_CONFIG names the file when --config is not given."""
    path = write(tmp_path, GOOD)
    env = {"WAMPD_CONFIG": path, "WAMPD_TEST_TICKET": "x"}
    assert run_cli(["check-config"], env) == 0


def test_bad_config_exits_2_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every problem is one stderr line naming its key; exit status 2."""
    path = write(
        tmp_path,
        """
[router]
url = "http://127.0.0.1/ws"
[reconnect]
max_retry = 3
initial_delay = "soon"
[[component]]
name = "x"
entry = "no_such_module_anywhere:X"
""",
    )
    status = run_cli(["run", "--config", path], {})
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    problems = err.strip().splitlines()
    keys = [line.removeprefix("wampd: config error: ").split(":")[0] for line in problems]
    assert {"router.url", "router.realm", "reconnect.max_retry", "reconnect.initial_delay"} <= set(
        keys
    )
    assert 'did you mean "max_retries"' in err


def test_entry_that_cannot_be_imported_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry that does not import is a configuration error naming its key."""
    path = write(tmp_path, GOOD.replace("sample_entries:Plain", "sample_entries:Nope"))
    assert run_cli(["check-config", "--config", path], {"WAMPD_TEST_TICKET": "x"}) == 2
    assert "component[0].entry" in capsys.readouterr().err


def test_toml_syntax_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TOML syntax error is reported with its position, exit status 2."""
    path = write(tmp_path, "[router\nurl = 1")
    assert run_cli(["check-config", "--config", path], {}) == 2
    assert "line" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, or an unknown one, is a usage error with status 2."""
    assert run_cli([], {}) == 2
    with pytest.raises(SystemExit) as info:
        run_cli(["frobnicate"], {})
    assert info.value.code == 2


def test_no_config_given_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --config or WAMPD_CONFIG, wampd says how to give one."""
    assert run_cli(["run"], {}) == 2
    assert "WAMPD_CONFIG" in capsys.readouterr().err


def test_probe_url_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """wampd probe without a URL takes WAMPD_PROBE_URL (an image sets it with ENV)."""
    assert run_cli(["probe"], {"WAMPD_PROBE_URL": "gopher://127.0.0.1:1/"}) == 2
    assert "gopher://127.0.0.1:1/" in capsys.readouterr().err


def test_probe_of_a_closed_port_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: exit 1 and one line saying why."""
    with socket.socket() as s:  # a port that is surely closed: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/healthz"
        assert run_cli(["probe", url, "--timeout", "2"], {}) == 1
    assert url in capsys.readouterr().err
