"""Tests of wampd.config: TOML -> frozen dataclasses, with every problem reported at once."""

from __future__ import annotations

import copy
import dataclasses
import json
import textwrap
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wampd.config import (
    DEFAULT_FATAL_ERRORS,
    AuthConfig,
    BridgeConfig,
    ComponentSpec,
    Config,
    HTTPConfig,
    KeepaliveConfig,
    LogConfig,
    ProxyConfig,
    ReconnectConfig,
    RouterConfig,
    Secret,
    ShutdownConfig,
    TLSConfig,
    load_config,
    parse_config,
    redacted,
)
from wampd.errors import ConfigError

SECRET = "s3cr3t-Value-that-must-never-leak"
DELETE = object()

MINIMAL: dict[str, Any] = {
    "router": {"url": "ws://127.0.0.1:8080/ws", "realm": "realm1"},
    "component": [{"name": "backend", "entry": "myapp.backend:Backend"}],
}


def doc(**changes: Any) -> dict[str, Any]:
    """MINIMAL with ``changes`` applied; keys are dotted paths (``__`` for dots), DELETE removes."""
    data = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        set_path(data, dotted.split("__"), value)
    return data


def set_path(data: Any, path: list[str], value: Any) -> None:
    """Set (or with DELETE remove) ``path`` in nested dicts/lists, creating tables as needed."""
    node = data
    for part in path[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value


def problems(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """The problems parse_config reports for ``data`` (failing if it accepts it)."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ=environ or {})
    return list(info.value.problems)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write ``text`` (dedented) to ``path`` with permissions ``mode``; return the path."""
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[Path]:
    """A folder holding ca.pem, cert.pem and key.pem (contents do not matter here)."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        write(tmp_path / name, "-----BEGIN X-----\n")
    yield tmp_path


# ----------------------------------------------------------------------------------------
# Happy paths
# ----------------------------------------------------------------------------------------


FULL_TOML = """\
[router]
url = ["wss://edge-1.example.com:8443/ws", "wss://edge-2.example.com/ws"]
realm = "realm1"
serializers = ["msgpack", "json"]
headers = { "X-Edge-Id" = "a1" }
ca_file = "ca.pem"
cert_file = "cert.pem"
key_file = "key.pem"
verify = true
proxy = { host = "proxy.local", port = 3128 }

[router.auth]
method = "wampcra"
authid = "agent"
authrole = "backend"
secret_file = "secret.txt"

[reconnect]
initial_delay = 0.5
max_delay = 30
growth = 1.5
jitter = "decorrelated"
max_retries = 10
retry_on_start = false
stable_after = 2.5
fatal_errors = ["wamp.error.not_authorized"]

[keepalive]
ping_interval = 0
ping_timeout = 3
connect_timeout = 7.5

[http]
listen = "[::1]:9200"

[log]
format = "json"
level = "Warning"

[shutdown]
timeout = 12

[[component]]
name = "backend"
entry = "myapp.backend:Backend"
extra = { pool = 4, nested = { when = 1979-05-27T07:32:00Z } }

[[component]]
name = "other.one"
entry = "myapp.other:make.component"
realm = "realm2"
"""


def test_full_example_round_trips_every_field(tls_files: Path) -> None:
    """Every key of a complete file lands in the matching dataclass field."""
    write(tls_files / "secret.txt", f"  {SECRET}\n")
    path = write(tls_files / "wampd.toml", FULL_TOML)

    config = load_config(path, environ={})

    router = config.router
    assert router.urls == ("wss://edge-1.example.com:8443/ws", "wss://edge-2.example.com/ws")
    assert router.realm == "realm1"
    assert router.serializers == ("msgpack", "json")
    assert dict(router.headers) == {"X-Edge-Id": "a1"}
    assert router.tls == TLSConfig(
        ca_file=str(tls_files / "ca.pem"),
        cert_file=str(tls_files / "cert.pem"),
        key_file=str(tls_files / "key.pem"),
        verify=True,
    )
    assert router.proxy == ProxyConfig(host="proxy.local", port=3128)
    assert router.auth == AuthConfig(
        method="wampcra", authid="agent", authrole="backend", secret=Secret(SECRET)
    )
    assert router.auth.secret is not None and router.auth.secret.reveal() == SECRET
    assert config.reconnect == ReconnectConfig(
        initial_delay=0.5,
        max_delay=30.0,
        growth=1.5,
        jitter="decorrelated",
        max_retries=10,
        retry_on_start=False,
        stable_after=2.5,
        fatal_errors=("wamp.error.not_authorized",),
    )
    assert isinstance(config.reconnect.max_delay, float)
    assert config.keepalive == KeepaliveConfig(
        ping_interval=0.0, ping_timeout=3.0, connect_timeout=7.5
    )
    assert config.http == HTTPConfig(listen="[::1]:9200")
    assert (config.http.host, config.http.port) == ("::1", 9200)
    assert config.log == LogConfig(format="json", level="warn")
    assert config.shutdown == ShutdownConfig(timeout=12.0)
    first, second = config.components
    assert (first.name, first.entry, first.realm) == ("backend", "myapp.backend:Backend", None)
    assert first.extra["pool"] == 4
    assert first.extra["nested"]["when"].year == 1979
    assert second == ComponentSpec(
        name="other.one", entry="myapp.other:make.component", realm="realm2"
    )
    assert config.realm_for(first) == "realm1"
    assert config.realm_for(second) == "realm2"
    assert config.warnings == ()
    assert config.source == str(path)


def test_defaults_fill_absent_sections() -> None:
    """A file with only [router] and one [[component]] gets every documented default."""
    config = parse_config(MINIMAL, environ={})

    assert config == Config(
        router=RouterConfig(urls=("ws://127.0.0.1:8080/ws",), realm="realm1"),
        components=(ComponentSpec(name="backend", entry="myapp.backend:Backend"),),
    )
    assert config.router.serializers == ("cbor", "msgpack", "json")
    assert dict(config.router.headers) == {}
    assert config.router.tls == TLSConfig()
    assert config.router.proxy is None
    assert config.router.auth == AuthConfig(method="anonymous")
    assert config.reconnect == ReconnectConfig()
    assert config.reconnect.fatal_errors == DEFAULT_FATAL_ERRORS
    assert config.keepalive == KeepaliveConfig()
    assert config.http.listen == "127.0.0.1:9100"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9100)
    assert config.log == LogConfig(format="auto", level="info")
    assert config.shutdown.timeout == 5.0
    assert config.source is None


def test_a_max_delay_under_the_default_first_ceiling_lowers_it() -> None:
    """max_delay = 1 with no initial_delay: the first ceiling is 1 s, not an error about a
    default the file never set; an initial_delay that is set and too high still is."""
    config = parse_config(doc(reconnect__max_delay=1), environ={})
    assert (config.reconnect.initial_delay, config.reconnect.max_delay) == (1.0, 1.0)
    config = parse_config(doc(reconnect__max_delay=10), environ={})
    assert config.reconnect.initial_delay == ReconnectConfig().initial_delay == 3.0
    assert problems(doc(reconnect__max_delay=1, reconnect__initial_delay=3)) == [
        "reconnect.max_delay: must be >= reconnect.initial_delay (got 1 < 3)"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://a/ws", ("ws://a/ws",)),
        (["ws://a/ws"], ("ws://a/ws",)),
        (["wss://a:8443/ws", "ws://b:8080/ws?x=1"], ("wss://a:8443/ws", "ws://b:8080/ws?x=1")),
    ],
)
def test_url_accepts_a_string_or_a_list(url: Any, expected: tuple[str, ...]) -> None:
    """router.url may be one URL or a failover list, kept in order."""
    assert parse_config(doc(router__url=url), environ={}).router.urls == expected


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:80", "0.0.0.0", 80),
        ("localhost:9100", "localhost", 9100),
        ("[::]:65535", "::", 65535),
        ("", None, None),
    ],
)
def test_http_listen_is_parsed_into_host_and_port(
    listen: str, host: str | None, port: int | None
) -> None:
    """http.listen exposes host/port (IPv6 unbracketed); "" disables the endpoint."""
    http = parse_config(doc(http__listen=listen), environ={}).http
    assert (http.host, http.port) == (host, port)


@pytest.mark.parametrize(("given", "stored"), [("DEBUG", "debug"), ("warning", "warn")])
def test_log_level_is_case_insensitive_with_warning_alias(given: str, stored: str) -> None:
    """log.level is stored lower-case and canonical ("warning" -> "warn")."""
    assert parse_config(doc(log__level=given), environ={}).log.level == stored


def test_router_realm_may_be_left_out_when_every_component_has_one() -> None:
    """Components' own realms replace router.realm only when all of them have one."""
    data = doc(router__realm=DELETE, component__0__realm="r1")
    data["component"].append({"name": "b", "entry": "m:B", "realm": "r2"})
    config = parse_config(data, environ={})
    assert [config.realm_for(c) for c in config.components] == ["r1", "r2"]

    data["component"].append({"name": "c", "entry": "m:C"})
    assert problems(data) == ["router.realm: missing (required)"]


def test_config_is_immutable_and_detached_from_the_input() -> None:
    """The Config is frozen and later changes to the input dict do not reach it."""
    data = doc(router__headers={"X-A": "1"}, component__0__extra={"list": [1]})
    config = parse_config(data, environ={})
    data["component"][0]["extra"]["list"].append(2)
    data["router"]["headers"]["X-A"] = "2"

    assert config.components[0].extra["list"] == [1]
    assert config.router.headers["X-A"] == "1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.router = config.router  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.router.headers["X-B"] = "x"  # type: ignore[index]


# ----------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------

LISTEN_HELP = 'expected "host:port", "[ipv6]:port" or "" (disabled)'
ENTRY_HELP = 'must be "package.module:attribute" (attribute may be dotted)'

PROBLEM_CASES: list[tuple[dict[str, Any], str]] = [
    # types
    ({"reconnect__max_delay": "ten"}, 'reconnect.max_delay: must be a number >= 0, got "ten"'),
    (
        {"reconnect__initial_delay": True},
        "reconnect.initial_delay: must be a number >= 0, got true",
    ),
    (
        {"reconnect__stable_after": float("nan")},
        "reconnect.stable_after: must be a number >= 0, got nan",
    ),
    ({"reconnect__max_delay": float("inf")}, "reconnect.max_delay: must be a number >= 0, got inf"),
    (
        {"reconnect__retry_on_start": "yes"},
        'reconnect.retry_on_start: must be true or false, got "yes"',
    ),
    ({"reconnect__max_retries": 1.5}, "reconnect.max_retries: must be an integer >= -1, got 1.5"),
    ({"reconnect": 3}, "reconnect: must be a table, got 3"),
    ({"log__format": "xml"}, 'log.format: must be one of "auto", "json", "console", got "xml"'),
    (
        {"log__level": "verbose"},
        'log.level: must be one of "debug", "info", "warn", "error", "critical", got "verbose"',
    ),
    (
        {"reconnect__jitter": "ful"},
        'reconnect.jitter: must be one of "phase", "full", "equal", "decorrelated", "none", '
        'got "ful"',
    ),
    # ranges
    ({"reconnect__initial_delay": -1}, "reconnect.initial_delay: must be a number >= 0, got -1"),
    ({"reconnect__growth": 0.5}, "reconnect.growth: must be a number >= 1, got 0.5"),
    ({"reconnect__max_retries": -2}, "reconnect.max_retries: must be an integer >= -1, got -2"),
    (
        {"reconnect__initial_delay": 10, "reconnect__max_delay": 5},
        "reconnect.max_delay: must be >= reconnect.initial_delay (got 5 < 10)",
    ),
    ({"keepalive__connect_timeout": 0}, "keepalive.connect_timeout: must be a number > 0, got 0"),
    (
        {"keepalive__ping_timeout": 0},
        "keepalive.ping_timeout: must be > 0 when keepalive.ping_interval > 0, got 0",
    ),
    ({"shutdown__timeout": 0.0}, "shutdown.timeout: must be a number > 0, got 0.0"),
    (
        {"router__proxy": {"host": "p", "port": 0}},
        "router.proxy.port: must be an integer from 1 to 65535, got 0",
    ),
    ({"router__proxy": {"port": 3128}}, "router.proxy.host: missing (required)"),
    # URLs
    (
        {"router__url": ["ws://a/", "http://b/"]},
        'router.url[1]: scheme must be ws, wss, rs, rss or rs+unix, got "http"',
    ),
    ({"router__url": "ws:///ws"}, 'router.url: missing host in "ws:///ws"'),
    (
        {"router__url": "ws://a:0/"},
        'router.url: port must be from 1 to 65535, got 0 in "ws://a:0/"',
    ),
    ({"router__url": "ws://a:99999/"}, "router.url: not a valid URL (Port out of range 0-65535)"),
    ({"router__url": "ws://a/#frag"}, 'router.url: must not have a #fragment in "ws://a/#frag"'),
    (
        {"router__url": "ws://a b/"},
        'router.url: must be a URL without whitespace or control characters, got "ws://a b/"',
    ),
    (
        {"router__url": "ws://user:pw@a b/"},
        'router.url: must be a URL without whitespace or control characters, got "ws://***@a b/"',
    ),
    (
        {"router__url": "ws://user:pw@a/"},
        "router.url: must not contain credentials (user:password@); use [router.auth] or headers",
    ),
    (
        {"router__url": []},
        "router.url: must be a ws://, wss://, rs://, rss:// or rs+unix:// URL or a non-empty "
        "array of them, got an empty array",
    ),
    (
        {"router__url": 5},
        "router.url: must be a ws://, wss://, rs://, rss:// or rs+unix:// URL or a non-empty "
        "array of them, got 5",
    ),
    ({"router__url": DELETE}, "router.url: missing (required)"),
    # realm
    ({"router__realm": DELETE}, "router.realm: missing (required)"),
    ({"router__realm": ""}, 'router.realm: must be a non-empty string without whitespace, got ""'),
    ({"router": DELETE}, "router: missing (required)"),
    # serializers and headers
    (
        {"router__serializers": []},
        "router.serializers: must be a non-empty array of cbor, msgpack, json, got an empty array",
    ),
    (
        {"router__serializers": ["json", "json"]},
        'router.serializers[1]: duplicate serializer "json"',
    ),
    (
        {"router__serializers": ["xml"]},
        'router.serializers[0]: must be one of "cbor", "msgpack", "json", got "xml"',
    ),
    ({"router__headers": {"X-A": 1}}, "router.headers.X-A: must be a string, got an integer"),
    (
        {"router__headers": {"Bad Name": "v"}},
        'router.headers."Bad Name": not a valid HTTP header name',
    ),
    (
        {"router__headers": {"X-A": "a\r\nX-B: b"}},
        "router.headers.X-A: must not contain line breaks or NUL characters",
    ),
    # fatal_errors
    (
        {"reconnect__fatal_errors": "wamp.error.x"},
        'reconnect.fatal_errors: must be an array of WAMP error URIs, got "wamp.error.x"',
    ),
    (
        {"reconnect__fatal_errors": ["ok.uri", "bad uri"]},
        'reconnect.fatal_errors[1]: must be a non-empty URI without whitespace, got "bad uri"',
    ),
    (
        {"reconnect__fatal_errors": [""]},
        'reconnect.fatal_errors[0]: must be a non-empty URI without whitespace, got ""',
    ),
    # http
    (
        {"http__listen": "9100"},
        f'http.listen: missing host; {LISTEN_HELP}, got "9100"',
    ),
    (
        {"http__listen": "::1:9100"},
        f'http.listen: bad host (put IPv6 addresses in brackets); {LISTEN_HELP}, got "::1:9100"',
    ),
    (
        {"http__listen": "h:0"},
        f'http.listen: port must be from 1 to 65535; {LISTEN_HELP}, got "h:0"',
    ),
    ({"http__listen": 9100}, 'http.listen: must be "host:port", "[ipv6]:port" or "", got 9100'),
    # components
    (
        {"component": DELETE},
        "component: at least one [[component]] is required, unless [bridge] listens",
    ),
    (
        {"component": []},
        "component: at least one [[component]] is required, unless [bridge] listens",
    ),
    (
        {"component": {"name": "a", "entry": "m:A"}},
        "component: must be an array of tables ([[component]]), got a table",
    ),
    ({"component__0": "x"}, 'component[0]: must be a table, got "x"'),
    (
        {"component__0__name": "a b"},
        'component[0].name: must be a non-empty string of [A-Za-z0-9_.-], got "a b"',
    ),
    ({"component__0__name": DELETE}, "component[0].name: missing (required)"),
    (
        {"component__0__entry": "myapp.backend"},
        f'component[0].entry: {ENTRY_HELP}, got "myapp.backend"',
    ),
    (
        {"component__0__entry": "my app:X"},
        f'component[0].entry: {ENTRY_HELP}, got "my app:X"',
    ),
    (
        {"component__0__entry": "class.x:Y"},
        f'component[0].entry: {ENTRY_HELP}, got "class.x:Y"',
    ),
    ({"component__0__extra": [1]}, "component[0].extra: must be a table, got an array"),
    (
        {"component__0__realm": " "},
        'component[0].realm: must be a non-empty string without whitespace, got " "',
    ),
    # unknown keys
    ({"reconnect__max_retry": 3}, 'reconnect.max_retry: unknown key (did you mean "max_retries"?)'),
    ({"reconect": {}}, 'reconect: unknown section (did you mean "reconnect"?)'),
    ({"components": [{"name": "x"}]}, 'components: unknown section (did you mean "component"?)'),
    ({"router__urls": ["ws://a/"]}, 'router.urls: unknown key (did you mean "url"?)'),
    ({"router__auth__authids": "x"}, 'router.auth.authids: unknown key (did you mean "authid"?)'),
    (
        {"router__proxy": {"host": "p", "port": 1, "prot": 2}},
        'router.proxy.prot: unknown key (did you mean "port"?)',
    ),
    ({"component__0__extras": {}}, 'component[0].extras: unknown key (did you mean "extra"?)'),
    ({"keepalive__zzz": 1}, "keepalive.zzz: unknown key"),
    ({"log__a.b": 1}, 'log."a.b": unknown key'),
]


@pytest.mark.parametrize(
    ("changes", "expected"), PROBLEM_CASES, ids=[p[1].split(":")[0] for p in PROBLEM_CASES]
)
def test_each_kind_of_problem_is_one_line_naming_its_key(
    changes: dict[str, Any], expected: str
) -> None:
    """Each invalid value is reported as exactly the documented one-line problem."""
    assert problems(doc(**changes)) == [expected]


def test_duplicate_component_names_are_reported() -> None:
    """Component names must be unique (they are metric label values)."""
    data = doc()
    data["component"].append({"name": "backend", "entry": "m:B"})
    assert problems(data) == ['component[1].name: duplicate name "backend" (also component[0])']


def test_all_problems_are_reported_together() -> None:
    """One ConfigError lists every problem in the document, not just the first."""
    data = doc(
        router__url="http://x/",
        router__realm=DELETE,
        reconnect__max_delay="ten",
        reconnect__max_retry=1,
        keepalive__connect_timeout=-1,
        component=[{"name": "", "entry": "nope"}],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ={})
    assert info.value.problems == (
        'router.url: scheme must be ws, wss, rs, rss or rs+unix, got "http"',
        "router.realm: missing (required)",
        'reconnect.max_retry: unknown key (did you mean "max_retries"?)',
        'reconnect.max_delay: must be a number >= 0, got "ten"',
        "keepalive.connect_timeout: must be a number > 0, got -1",
        'component[0].name: must be a non-empty string of [A-Za-z0-9_.-], got ""',
        f'component[0].entry: {ENTRY_HELP}, got "nope"',
    )
    assert str(info.value) == "\n".join(info.value.problems)


def test_problem_lines_start_with_a_dotted_key() -> None:
    """Every problem line begins with "key: " so tooling and humans can find the key."""
    data = doc(router__url=["ws://a/", 3], reconnect__growth=-1, http__listen="x")
    for line in problems(data):
        key, sep, text = line.partition(": ")
        assert sep and text and " " not in key.replace('"', "").strip(), line


# ----------------------------------------------------------------------------------------
# Authentication and secrets
# ----------------------------------------------------------------------------------------


def test_secret_from_file_is_stripped_and_resolved_against_base_dir(tmp_path: Path) -> None:
    """secret_file is read relative to the config's folder, whitespace stripped, no warning."""
    write(tmp_path / "ticket", f"{SECRET}\n")
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret_file": "ticket"})
    config = parse_config(data, environ={}, base_dir=tmp_path)

    assert config.router.auth.secret == Secret(SECRET)
    assert config.warnings == ()


def test_secret_file_readable_by_others_gives_a_warning(tmp_path: Path) -> None:
    """A secret file readable by others is accepted with a chmod warning."""
    path = write(tmp_path / "ticket", SECRET, mode=0o644)
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret_file": str(path)})
    config = parse_config(data, environ={})

    assert config.router.auth.secret == Secret(SECRET)
    assert config.warnings == (
        f'router.auth.secret_file: "{path}" is accessible by others (mode 0644); '
        "restrict it with chmod 600 (or 640 for a group that needs it)",
    )


def test_group_readable_secret_file_is_fine(tmp_path: Path) -> None:
    """Group access alone (a Kubernetes Secret with fsGroup, mode 0440) is not warned about."""
    path = write(tmp_path / "ticket", SECRET, mode=0o440)
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret_file": str(path)})
    assert parse_config(data, environ={}).warnings == ()


def test_secret_from_env() -> None:
    """secret_env reads the named variable from the given environ."""
    data = doc(router__auth={"method": "wampcra", "authid": "a", "secret_env": "WAMP_SECRET"})
    config = parse_config(data, environ={"WAMP_SECRET": SECRET})
    assert config.router.auth.secret == Secret(SECRET)
    assert config.warnings == ()


def test_inline_secret_is_allowed_with_a_warning() -> None:
    """An inline secret works but warns that secret_file/secret_env are better."""
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret": SECRET})
    config = parse_config(data, environ={})
    assert config.router.auth.secret == Secret(SECRET)
    assert config.warnings == (
        "router.auth.secret: inline secret in the config file; prefer secret_file or secret_env",
    )


AUTH_PROBLEMS: list[tuple[Any, str]] = [
    (
        {"method": "ticket", "secret": "x"},
        'router.auth.authid: missing (required for method "ticket")',
    ),
    (
        {"method": "ticket", "authid": "a"},
        'router.auth: method "ticket" needs one of secret_file, secret_env or secret',
    ),
    (
        {"method": "wampcra", "authid": "a", "secret": "x", "secret_env": "X"},
        "router.auth: give only one of secret_file, secret_env, secret (got secret_env, secret)",
    ),
    (
        {"secret": "x"},
        'router.auth.secret: not allowed with method "anonymous" (set router.auth.method)',
    ),
    (
        {"method": "kerberos"},
        'router.auth.method: must be one of "anonymous", "ticket", "wampcra", "cryptosign", '
        'got "kerberos"',
    ),
    ({"method": "ticket", "authid": "a", "secret": ""}, "router.auth.secret: must not be empty"),
    (
        {"method": "ticket", "authid": "a", "secret": 12345678},
        "router.auth.secret: must be a string, got an integer",
    ),
    (
        {"method": "ticket", "authid": "a", "secret_env": "MISSING"},
        "router.auth.secret_env: environment variable MISSING is not set",
    ),
    (
        {"method": "ticket", "authid": "a", "secret_env": "EMPTY"},
        "router.auth.secret_env: environment variable EMPTY is empty",
    ),
    (
        {"method": "ticket", "authid": "a", "secret_env": "not a name"},
        "router.auth.secret_env: must be the name of an environment variable "
        "([A-Za-z_][A-Za-z0-9_]*)",
    ),
    (
        {"method": "ticket", "authid": "a", "secret_file": "/nonexistent/wampd-secret"},
        'router.auth.secret_file: cannot read "/nonexistent/wampd-secret": '
        "No such file or directory",
    ),
    (
        {"method": "ticket", "authid": "a", "secret_file": "/"},
        'router.auth.secret_file: "/" is not a regular file',
    ),
    ("not a table", 'router.auth: must be a table, got "not a table"'),
]


@pytest.mark.parametrize(
    ("auth", "expected"), AUTH_PROBLEMS, ids=[p[1].split(": ", 1)[1][:40] for p in AUTH_PROBLEMS]
)
def test_auth_problems(auth: Any, expected: str) -> None:
    """Each [router.auth] mistake is reported as one line naming the key."""
    assert problems(doc(router__auth=auth), environ={"EMPTY": ""}) == [expected]


def test_empty_secret_file_is_a_problem(tmp_path: Path) -> None:
    """A secret file holding only whitespace is rejected, naming the path."""
    path = write(tmp_path / "ticket", " \n")
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret_file": str(path)})
    assert problems(data) == [f'router.auth.secret_file: "{path}" is empty']


@pytest.mark.parametrize(
    "auth",
    [
        {"method": "ticket", "authid": "a", "secret_env": SECRET},
        {"method": "ticket", "secret_env": "S", "secret": SECRET},
        {"secret": SECRET},
        {"method": "ticket", "authid": "a", "secret": [SECRET]},
        {"method": "ticket", "authid": "a", "secret": SECRET, "secrett": SECRET},
        {"method": "nope", "authid": "a", "secret": SECRET},
    ],
)
def test_secrets_never_appear_in_problems(auth: dict[str, Any]) -> None:
    """However a secret is misplaced, no problem line quotes it."""
    data = doc(router__auth=auth, router__headers={"Authorization": 7, "X": SECRET + "\n"})
    for line in problems(data, environ={"S": SECRET}):
        assert SECRET not in line


def test_secret_file_content_never_appears_in_problems(tmp_path: Path) -> None:
    """A secret file that is not UTF-8 is reported without its bytes."""
    path = tmp_path / "ticket"
    path.write_bytes(SECRET.encode() + b"\xff")
    data = doc(router__auth={"method": "ticket", "authid": "a", "secret_file": str(path)})
    (line,) = problems(data)
    assert line == f'router.auth.secret_file: "{path}" is not UTF-8 text'


def test_secret_hides_itself() -> None:
    """Secret's repr, str and f-string show *** and only reveal() gives the value."""
    secret = Secret(SECRET)
    assert repr(secret) == str(secret) == f"{secret}" == "***"
    assert SECRET not in repr(AuthConfig(method="ticket", authid="a", secret=secret))
    assert secret.reveal() == SECRET


# ----------------------------------------------------------------------------------------
# cryptosign
# ----------------------------------------------------------------------------------------

SEED = bytes(range(32))


def key_file(folder: Path, mode: int = 0o600, name: str = "wampd.key") -> Path:
    path = folder / name
    path.write_text(SEED.hex() + "\n")
    path.chmod(mode)
    return path


def test_cryptosign_reads_its_key_relative_to_the_config(tmp_path: Path) -> None:
    key_file(tmp_path)
    auth = {
        "method": "cryptosign",
        "authrole": "agent",
        "key_file": "wampd.key",
        "authextra": {"device": "edge-7", "rack": 3, "beta": True},
    }
    config = parse_config(doc(router__auth=auth), environ={}, base_dir=tmp_path)
    got = config.router.auth
    assert got.key is not None and got.key.seed == SEED and got.key.form == "hex"
    assert got.key.path == str(tmp_path / "wampd.key")
    assert got.authid is None  # optional: the router may know the key
    assert dict(got.authextra) == {"device": "edge-7", "rack": 3, "beta": True}
    assert got.channel_binding == "none"
    # The effective configuration names the file, never the key.
    shown = json.dumps(redacted(config))
    assert SEED.hex() not in shown and str(tmp_path / "wampd.key") in shown
    assert SEED.hex() not in repr(config)


CRYPTOSIGN_PROBLEMS: list[tuple[dict[str, Any], str]] = [
    ({"method": "cryptosign"}, 'router.auth.key_file: missing (required for method "cryptosign")'),
    (
        {"method": "cryptosign", "key_file": "wampd.key", "secret": "x"},
        'router.auth.secret: not used with method "cryptosign": it signs with key_file',
    ),
    (
        {"method": "ticket", "authid": "a", "secret": "x", "key_file": "wampd.key"},
        'router.auth.key_file: only for method "cryptosign" (method is "ticket")',
    ),
    (
        {"authextra": {"a": "b"}},
        'router.auth.authextra: only for method "cryptosign" (method is "anonymous")',
    ),
    (
        {"method": "cryptosign", "key_file": "wampd.key", "channel_binding": "tls-unique"},
        "router.auth.channel_binding: tls-unique needs a wss:// router.url",
    ),
    (
        {"method": "cryptosign", "key_file": "wampd.key", "channel_binding": "tls-exporter"},
        'router.auth.channel_binding: must be one of "none", "tls-unique", got "tls-exporter"',
    ),
    (
        {"method": "cryptosign", "key_file": "wampd.key", "authextra": {"pubkey": "ab"}},
        "router.auth.authextra.pubkey: wampd sets pubkey from key_file",
    ),
    (
        {"method": "cryptosign", "key_file": "wampd.key", "authextra": {"x": [1]}},
        "router.auth.authextra.x: must be a string, a number or a boolean, got an array",
    ),
]


@pytest.mark.parametrize(
    ("auth", "expected"),
    CRYPTOSIGN_PROBLEMS,
    ids=[p[1].split(": ", 1)[1][:40] for p in CRYPTOSIGN_PROBLEMS],
)
def test_cryptosign_problems(tmp_path: Path, auth: dict[str, Any], expected: str) -> None:
    key_file(tmp_path)
    assert problems_with_base(doc(router__auth=auth), tmp_path) == [expected]


def test_a_cryptosign_key_open_to_others_is_a_problem_naming_file_and_mode(
    tmp_path: Path,
) -> None:
    path = key_file(tmp_path, 0o644)
    auth = {"method": "cryptosign", "key_file": str(path)}
    (line,) = problems_with_base(doc(router__auth=auth), tmp_path)
    assert line.startswith(f"router.auth.key_file: the key file {path} is open to its group")
    assert "mode 0644" in line and SEED.hex() not in line


def test_tls_unique_over_wss_is_accepted(tmp_path: Path) -> None:
    key_file(tmp_path)
    auth = {"method": "cryptosign", "key_file": "wampd.key", "channel_binding": "tls-unique"}
    config = parse_config(
        doc(router__url="wss://router.example/ws", router__auth=auth), environ={}, base_dir=tmp_path
    )
    assert config.router.auth.channel_binding == "tls-unique"


# ----------------------------------------------------------------------------------------
# TLS
# ----------------------------------------------------------------------------------------


def test_tls_options_with_only_ws_urls_are_ignored_with_warnings(tls_files: Path) -> None:
    """TLS keys do nothing for ws:// URLs, so they are dropped with a warning each."""
    data = doc(router__ca_file=str(tls_files / "ca.pem"), router__verify=False)
    config = parse_config(data, environ={})
    assert config.router.tls == TLSConfig()
    assert config.warnings == (
        "router.ca_file: ignored: no router.url uses wss:// or rss://",
        "router.verify: ignored: no router.url uses wss:// or rss://",
    )


def test_verify_false_warns() -> None:
    """Turning off certificate verification is allowed but warned about."""
    config = parse_config(doc(router__url="wss://a/", router__verify=False), environ={})
    assert config.router.tls.verify is False
    assert config.warnings == (
        "router.verify: false: the router's TLS certificate is not verified",
    )


def test_tls_files_must_exist_and_go_together(tls_files: Path) -> None:
    """Missing TLS files are problems, and cert_file needs key_file."""
    data = doc(
        router__url="wss://a/",
        router__ca_file="missing.pem",
        router__cert_file="cert.pem",
    )
    assert problems_with_base(data, tls_files) == [
        f'router.ca_file: cannot read "{tls_files / "missing.pem"}": No such file or directory',
        "router.key_file: missing (required together with router.cert_file)",
    ]


def problems_with_base(data: Mapping[str, Any], base_dir: Path) -> list[str]:
    """Like problems(), resolving relative file paths against ``base_dir``."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ={}, base_dir=base_dir)
    return list(info.value.problems)


# ----------------------------------------------------------------------------------------
# redacted()
# ----------------------------------------------------------------------------------------


def test_redacted_masks_secrets_and_is_json(tmp_path: Path) -> None:
    """redacted() is JSON-serialisable, fills defaults and never contains a secret."""
    data = doc(
        router__auth={"method": "ticket", "authid": "agent", "secret": SECRET},
        router__headers={"Authorization": f"Bearer {SECRET}", "X-Edge-Id": "a1"},
        component__0__extra={"api_token": SECRET, "when": tomllib.loads("t = 2024-01-02")["t"]},
    )
    config = parse_config(data, environ={}, source="wampd.toml")
    out = redacted(config)
    text = json.dumps(out)

    assert SECRET not in text
    assert out["router"]["auth"] == {
        "method": "ticket",
        "authid": "agent",
        "secret": "***",
        "channel_binding": "none",
    }
    assert out["router"]["headers"] == {"Authorization": "***", "X-Edge-Id": "a1"}
    assert out["component"][0]["extra"] == {"api_token": "***", "when": "2024-01-02"}
    assert out["reconnect"]["fatal_errors"] == list(DEFAULT_FATAL_ERRORS)
    assert out["http"] == {"listen": "127.0.0.1:9100"}
    # The input's shape: no keys a config file could not have.
    assert set(out) == {
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


# ----------------------------------------------------------------------------------------
# load_config()
# ----------------------------------------------------------------------------------------

MINIMAL_TOML = """\
[router]
url = "ws://127.0.0.1:8080/ws"
realm = "realm1"

[[component]]
name = "backend"
entry = "myapp.backend:Backend"
"""


def test_load_config_uses_wampd_config_from_environ(tmp_path: Path) -> None:
    """Without a path, load_config reads the file named by the passed WAMPD_CONFIG."""
    path = write(tmp_path / "wampd.toml", MINIMAL_TOML)
    config = load_config(environ={"WAMPD_CONFIG": str(path)})
    assert config.router.realm == "realm1"
    assert config.source == str(path)


@pytest.mark.parametrize("environ", [{}, {"WAMPD_CONFIG": ""}])
def test_load_config_without_any_file(environ: dict[str, str]) -> None:
    """No path and no WAMPD_CONFIG is a ConfigError telling how to give one."""
    with pytest.raises(ConfigError) as info:
        load_config(environ=environ)
    assert info.value.problems == (
        "config: no configuration file given (use --config or WAMPD_CONFIG)",
    )


def test_load_config_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the path and the OS error."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems == (f'config: cannot read "{path}": No such file or directory',)


def test_load_config_toml_syntax_error(tmp_path: Path) -> None:
    """A TOML syntax error is a ConfigError carrying tomllib's line/column message."""
    path = write(tmp_path / "wampd.toml", "[router]\nurl = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    (line,) = info.value.problems
    assert line.startswith(f'config: "{path}" is not valid TOML: ')
    assert "line 2" in line


def test_load_config_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "wampd.toml"
    path.write_bytes(b'[router]\nrealm = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems == (f'config: "{path}" is not valid UTF-8 (bad byte at offset 18)',)


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------

KNOWN_PATHS: list[Sequence[str | int]] = [
    [],
    ["router"],
    ["router", "url"],
    ["router", "url", 0],
    ["router", "realm"],
    ["router", "serializers"],
    ["router", "headers"],
    ["router", "headers", "X-A"],
    ["router", "ca_file"],
    ["router", "cert_file"],
    ["router", "key_file"],
    ["router", "verify"],
    ["router", "proxy"],
    ["router", "proxy", "host"],
    ["router", "proxy", "port"],
    ["router", "auth"],
    ["router", "auth", "method"],
    ["router", "auth", "authid"],
    ["router", "auth", "authrole"],
    ["router", "auth", "secret_file"],
    ["router", "auth", "secret_env"],
    ["router", "auth", "secret"],
    *[["reconnect", k] for k in ReconnectConfig.__dataclass_fields__],
    ["reconnect"],
    *[["keepalive", k] for k in KeepaliveConfig.__dataclass_fields__],
    ["keepalive"],
    ["http"],
    ["http", "listen"],
    ["log"],
    ["log", "format"],
    ["log", "level"],
    ["shutdown"],
    ["shutdown", "timeout"],
    ["component"],
    ["component", 0],
    ["component", 0, "name"],
    ["component", 0, "entry"],
    ["component", 0, "extra"],
    ["component", 0, "realm"],
    ["unknown"],
]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "ws://a/", "wss://h:1/", "ticket", "/", ".", "a:b", "[::1]:1"])
    | st.datetimes()
    | st.dates()
    | st.times()
)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
BASE = doc(
    router__url=["ws://a/"],
    router__auth={"method": "ticket", "authid": "a", "secret_env": "S"},
    reconnect__max_retries=3,
)


def place(data: dict[str, Any], path: Sequence[str | int], value: Any) -> Any:
    """``data`` with ``value`` at ``path`` (the whole document when path is empty).

    Containers on the way that are not tables/arrays are replaced by tables; in an array,
    the first element is used.
    """
    if not path:
        return value
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list) and not node:
            node.append({})
        key: Any = 0 if isinstance(node, list) else part
        child = node[key] if isinstance(node, list) else node.get(key)
        if not isinstance(child, dict | list):
            child = node[key] = {}
        node = child
    if isinstance(node, list):
        node[:1] = [value]
    else:
        node[path[-1]] = value
    return data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KNOWN_PATHS), JSON_LIKE), max_size=3))
def test_parse_config_never_raises_anything_but_config_error(
    changes: list[tuple[Sequence[str | int], Any]],
) -> None:
    """Any JSON-like value at any known key gives a Config or a ConfigError, nothing else."""
    data: Any = copy.deepcopy(BASE)
    for path, value in changes:
        data = place(data, path, value) if isinstance(data, dict) else data
    try:
        config = parse_config(data, environ={"S": SECRET})
    except ConfigError as exc:
        assert exc.problems
        assert all(": " in line and SECRET not in line for line in exc.problems)
    else:
        assert isinstance(config, Config)
        assert SECRET not in json.dumps(redacted(config))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file path reused by every example (hypothesis forbids function-scoped tmp_path)."""
    return tmp_path_factory.mktemp("config-fuzz") / "wampd.toml"


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text().map(str.encode),
        st.text().map(lambda s: (MINIMAL_TOML + s).encode()),
        st.binary(max_size=64),
    )
)
def test_load_config_on_arbitrary_text_raises_only_config_error(
    scratch: Path, content: bytes
) -> None:
    """Arbitrary file content gives a Config or a ConfigError, never another exception."""
    scratch.write_bytes(content)
    try:
        config = load_config(scratch, environ={})
    except ConfigError as exc:
        assert exc.problems
    else:
        assert isinstance(config, Config)


def finite(low: float, high: float) -> st.SearchStrategy[float]:
    """Finite floats in ``[low, high]``."""
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(
    initial=finite(0, 1e9),
    extra=finite(0, 1e9),
    growth=finite(1, 1e6),
    stable=finite(0, 1e12) | st.integers(0, 10**9),
    retries=st.integers(-1, 2**63),
    interval=finite(0, 1e6),
    timeout=finite(1e-300, 1e6),
    port=st.integers(1, 65535),
)
def test_valid_numbers_round_trip_exactly_through_toml(
    *,
    initial: float,
    extra: float,
    growth: float,
    stable: float | int,
    retries: int,
    interval: float,
    timeout: float,
    port: int,
) -> None:
    """Valid numbers written to TOML come back exactly (ints as equal floats)."""
    maximum = initial + extra
    text = MINIMAL_TOML.replace("[router]", f'[router]\nproxy = {{ host = "p", port = {port} }}')
    text += textwrap.dedent(
        f"""
        [reconnect]
        initial_delay = {initial!r}
        max_delay = {maximum!r}
        growth = {growth!r}
        stable_after = {stable!r}
        max_retries = {retries}

        [keepalive]
        ping_interval = {interval!r}
        ping_timeout = {timeout!r}
        connect_timeout = {timeout!r}

        [shutdown]
        timeout = {timeout!r}
        """
    )
    config = parse_config(tomllib.loads(text), environ={})

    assert config.reconnect.initial_delay == initial
    assert config.reconnect.max_delay == maximum
    assert config.reconnect.growth == growth
    assert config.reconnect.stable_after == float(stable)
    assert type(config.reconnect.stable_after) is float
    assert config.reconnect.max_retries == (None if retries == -1 else retries)
    assert config.keepalive == KeepaliveConfig(interval, timeout, timeout)
    assert config.shutdown.timeout == timeout
    assert config.router.proxy == ProxyConfig("p", port)


def test_os_environ_is_the_default_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """load_config falls back to os.environ for WAMPD_CONFIG and secret_env."""
    auth = '[router.auth]\nmethod = "ticket"\nauthid = "a"\nsecret_env = "WAMPD_TEST_SECRET"\n'
    path = write(
        tmp_path / "wampd.toml", MINIMAL_TOML.replace("[[component]]", auth + "[[component]]")
    )
    monkeypatch.setenv("WAMPD_CONFIG", str(path))
    monkeypatch.setenv("WAMPD_TEST_SECRET", SECRET)
    config = load_config()
    assert config.source == str(path)
    assert config.router.auth.secret == Secret(SECRET)


def test_the_bridge_is_off_by_default_and_may_replace_the_components(tmp_path: Path) -> None:
    """No [bridge]: off. With a listen address the daemon may have no [[component]]; a
    non-loopback address needs a token file, a unix socket an absolute path, and no
    component may take the bridge's name."""
    assert parse_config(MINIMAL, environ={}).bridge == BridgeConfig()
    assert BridgeConfig().address is None
    assert BridgeConfig(listen="[::1]:8091").address == ("::1", 8091)
    assert BridgeConfig(listen="unix:/run/wampd/b.sock").address == "/run/wampd/b.sock"
    config = parse_config(doc(component=DELETE, bridge__listen="127.0.0.1:8091"), environ={})
    assert config.components == () and config.bridge.listen == "127.0.0.1:8091"
    assert parse_config(doc(bridge__listen="unix:/run/wampd/bridge.sock"), environ={})
    assert problems(doc(bridge__listen="0.0.0.0:8091")) == [
        "bridge.token_file: required when listen is not a loopback address or a unix socket "
        '(listen = "0.0.0.0:8091")'
    ]
    token = write(tmp_path / "token", "s3cret\n")
    config = parse_config(
        doc(bridge__listen="0.0.0.0:8091", bridge__token_file=str(token)), environ={}
    )
    assert config.bridge.token_file == str(token)
    assert problems(doc(bridge__listen="unix:run/bridge.sock")) == [
        'bridge.listen: a unix socket needs an absolute path ("unix:/run/x.sock"), '
        'got "unix:run/bridge.sock"'
    ]
    assert problems(doc(bridge__listen="127.0.0.1:8091", component__0__name="bridge")) == [
        'component[0].name: "bridge" is the bridge\'s own session while [bridge] listens'
    ]
    assert problems(doc(bridge__max_body=0)) == ["bridge.max_body: must be an integer >= 1, got 0"]


def test_rawsocket_urls_parse_and_websocket_only_keys_say_so() -> None:
    urls = ["rs://127.0.0.1:8081", "rss://router.example:443", "rs+unix:///run/crossbar.sock"]
    config = parse_config(
        doc(router__url=urls, router__compression=True, router__headers={"X-A": "b"}),
        environ={},
    )
    assert config.router.urls == tuple(urls)
    assert config.warnings == (
        "router.headers: ignored: no router.url uses ws:// or wss:// (RawSocket)",
        "router.compression: ignored: no router.url uses ws:// or wss:// (RawSocket)",
    )
    assert problems(doc(router__url="rs://127.0.0.1")) == [
        "router.url: a RawSocket URL needs a port from 1 to 65535: 'rs://127.0.0.1'"
    ]
    assert problems(doc(router__url="rs://h:1", router__proxy={"host": "p", "port": 3128})) == [
        "router.proxy: an HTTP CONNECT proxy is for ws:// and wss:// URLs only"
    ]
