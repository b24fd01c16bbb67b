"""The wampd command line, run in-process (the reactor is never started here)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from wampd import __version__
from wampd.cli import run_cli
from wampd.config import Secret, load_config

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
    """check-config prints the effective config as TOML in the input's shape, defaults
    filled in; a secret from the environment keeps its secret_env key, never its value."""
    path = write(tmp_path, GOOD)
    status = run_cli(["check-config", "--config", path], {"WAMPD_TEST_TICKET": "t0pSecret"})
    out = capsys.readouterr().out
    assert status == 0
    data = tomllib.loads(out)
    assert set(data) == {
        "router",
        "reconnect",
        "keepalive",
        "http",
        "log",
        "shutdown",
        "bridge",
        "outbox",
        "component",
    }
    assert data["router"]["url"] == "ws://127.0.0.1:8080/ws"
    assert data["router"]["auth"] == {
        "method": "ticket",
        "authid": "agent",
        "secret_env": "WAMPD_TEST_TICKET",
        "channel_binding": "none",
    }
    assert data["reconnect"]["max_retries"] == -1
    assert data["component"] == [
        {"name": "plain", "entry": "tests.unit.sample_entries:Plain", "force_reregister": False}
    ]
    assert "[[component]]" in out
    assert "t0pSecret" not in out


def test_check_config_json_is_the_same_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format json prints the same document as the TOML, as JSON."""
    path = write(tmp_path, GOOD)
    env = {"WAMPD_TEST_TICKET": "t0pSecret"}
    assert run_cli(["check-config", "--config", path], env) == 0
    as_toml = tomllib.loads(capsys.readouterr().out)
    assert run_cli(["check-config", "--config", path, "--format", "json"], env) == 0
    assert json.loads(capsys.readouterr().out) == as_toml


def test_check_config_output_saved_as_a_file_loads_to_the_same_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What check-config prints, saved as a file, is a config that loads to the same
    effective configuration: failover URLs, TLS and proxy keys, headers, a secret file
    (by its absolute path), per-component realms and extras with dates and nested arrays
    of tables; and printing that file again gives the same text."""
    (tmp_path / "ca.pem").write_text("not read as a certificate here\n")
    ticket = tmp_path / "ticket"
    ticket.write_text("t0pSecret\n")
    ticket.chmod(0o600)
    source = write(
        tmp_path,
        """
[router]
url = ["wss://127.0.0.1:8443/ws", "ws://127.0.0.1:8080/ws"]
serializers = ["json"]
headers = { "X-Edge-Id" = "a1" }
ca_file = "ca.pem"
proxy = { host = "proxy.local", port = 3128 }
[router.auth]
method = "wampcra"
authid = "agent"
authrole = "edge"
secret_file = "ticket"
[reconnect]
jitter = "full"
max_retries = 4
fatal_errors = []
[keepalive]
ping_interval = 0
[log]
level = "warning"
[[component]]
name = "a"
entry = "tests.unit.sample_entries:Plain"
realm = "r1"
[component.extra]
when = 2024-01-02T03:04:05Z
day = 2024-01-02
nested = { items = [{ x = 1 }, { y = "é\\u007f😀" }] }
[[component]]
name = "b"
entry = "tests.unit.sample_entries:Plain"
realm = "r2"
""",
    )
    assert run_cli(["check-config", "--config", source], {}) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "saved" / "wampd.toml"
    saved.parent.mkdir()
    saved.write_text(printed)

    original, again = load_config(source, environ={}), load_config(saved, environ={})
    assert again.router.tls.ca_file == str(tmp_path / "ca.pem")
    assert again.router.auth.secret == Secret("t0pSecret")
    assert again.components[0].extra["when"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert replace(again, source=None, warnings=()) == replace(original, source=None, warnings=())
    assert run_cli(["check-config", "--config", str(saved)], {}) == 0
    reprinted = capsys.readouterr().out
    assert reprinted.split("\n", 1)[1] == printed.split("\n", 1)[1]  # but the file's name


def test_config_from_environment_variable(tmp_path: Path) -> None:
    """WAMPD_CONFIG names the file when --config is not given."""
    path = write(tmp_path, GOOD)
    env = {"WAMPD_CONFIG": path, "WAMPD_TEST_TICKET": "x"}
    assert run_cli(["check-config"], env) == 0


def test_bad_config_exits_2_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every problem is one stderr line naming its key, all in one report -- entries that
    cannot be imported among them; exit status 2."""
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
[[component]]
name = "y"
entry = "tests.unit.sample_entries:Nope"
[[component]]
name = "z"
entry = "tests.unit.sample_entries:Plain"
""",
    )
    status = run_cli(["run", "--config", path], {})
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    problems = err.strip().splitlines()
    keys = [line.removeprefix("wampd: config error: ").split(":")[0] for line in problems]
    assert keys == [
        "router.url",
        "router.realm",
        "reconnect.max_retry",
        "reconnect.initial_delay",
        "component[0].entry",
        "component[1].entry",
    ]
    assert 'did you mean "max_retries"' in err
    assert 'cannot import "no_such_module_anywhere"' in problems[4]
    assert "(component 'x')" in problems[4]
    assert 'has no attribute "Nope"' in problems[5]


def test_entry_that_cannot_be_imported_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry that does not import is a configuration error naming its key."""
    path = write(tmp_path, GOOD.replace("sample_entries:Plain", "sample_entries:Nope"))
    assert run_cli(["check-config", "--config", path], {"WAMPD_TEST_TICKET": "x"}) == 2
    assert "component[0].entry" in capsys.readouterr().err


def test_entry_that_cannot_make_a_session_exits_2_before_any_attempt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A make() whose signature takes no config would fail every attempt with a TypeError:
    check-config and run both find it at load time, naming the key and the signature."""
    path = write(tmp_path, GOOD.replace("sample_entries:Plain", "sample_entries:no_config"))
    for command in ("check-config", "run"):
        assert run_cli([command, "--config", path], {"WAMPD_TEST_TICKET": "x"}) == 2
        err = capsys.readouterr().err
        assert "component[0].entry" in err
        assert "cannot be called with a session's config" in err
        assert "its signature is ()" in err


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
