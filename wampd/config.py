"""Load wampd's TOML configuration into frozen, typed dataclasses.

:func:`load_config` reads a file (or the one named by ``WAMPD_CONFIG``) and hands the parsed
document to :func:`parse_config`, the pure part, which validates *everything* before giving
up: any bad document raises one :class:`~wampd.errors.ConfigError` whose ``problems`` hold
one line per problem, each starting with the dotted key it is about::

    reconnect.max_delay: must be a number >= 0, got "ten"
    reconnect.max_retry: unknown key (did you mean "max_retries"?)
    router.url[1]: scheme must be ws, wss, rs, rss or rs+unix, got "http"

Non-fatal findings (an inline secret, a world-readable secret file, TLS options that no URL
uses) end up in :attr:`Config.warnings` for the daemon to log at start.

Secrets are wrapped in :class:`Secret`, whose ``repr``/``str`` is ``***``; no problem or
warning ever quotes a secret, and :func:`document` (what ``wampd check-config`` prints)
masks them.  Note that :func:`dataclasses.asdict` does *not* mask them: use
:func:`document`.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import ipaddress
import json
import keyword
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import tomli_w

from wampd.errors import ConfigError

from .failover import MODES as FAILOVER_MODES
from .keys import BadKey, PrivateKey, load_private_key
from .spec import Setting, default_of, keys, schema, setting, settings
from .transports import target

__all__ = [
    "BRIDGE_COMPONENT",
    "DEFAULT_FATAL_ERRORS",
    "OUTBOX_COMPONENT",
    "AuthConfig",
    "BridgeConfig",
    "ComponentSpec",
    "Config",
    "HTTPConfig",
    "KeepaliveConfig",
    "LogConfig",
    "OutboxConfig",
    "ProcedureConfig",
    "ProxyConfig",
    "ReconnectConfig",
    "RouterConfig",
    "Secret",
    "ShutdownConfig",
    "SigningConfig",
    "SubscriptionConfig",
    "TLSConfig",
    "config_path",
    "document",
    "from_keywords",
    "json_schema",
    "load_config",
    "parse_config",
    "redacted",
    "to_toml",
]

#: The name of the bridge's supervised session (in events, logs and metric labels).
BRIDGE_COMPONENT: Final = "bridge"

#: The name of the outbox's supervised session.
OUTBOX_COMPONENT: Final = "outbox"

#: Router errors that end the daemon instead of being retried (see ``[reconnect]``).
DEFAULT_FATAL_ERRORS: Final[tuple[str, ...]] = (
    "wamp.error.not_authorized",
    "wamp.error.authentication_failed",
    "wamp.error.no_such_realm",
    "wamp.error.no_auth_method",
    "wamp.error.no_such_role",
)

_REDACTED: Final = "***"

_R = TypeVar("_R")


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


# --------------------------------------------------------------------------------------
# The configuration model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret string; ``repr()`` and ``str()`` show ``***`` so it cannot leak into logs.

    ``key`` and ``source`` say where it came from (``secret_file`` and the file's path,
    ``secret_env`` and the variable's name, or ``secret`` inline), so that
    :func:`document` can write the same key back without the secret itself.
    """

    value: str = field(repr=False)
    key: str = field(default="secret", compare=False)
    source: str | None = field(default=None, compare=False)

    def reveal(self) -> str:
        """Return the secret itself (only to hand it to the router)."""
        return self.value

    def __repr__(self) -> str:
        return _REDACTED

    def __str__(self) -> str:
        return _REDACTED


# Readers for the settings below (the table is the loader's :class:`_Table`, which says
# what is wrong with a value, naming its key), and their JSON Schemas.


def _number(default: float, doc: str, *, minimum: float = 0.0, exclusive: bool = False) -> Any:
    bound = "exclusiveMinimum" if exclusive else "minimum"
    return setting(
        default,
        doc=doc,
        schema={"type": "number", bound: minimum},
        read=lambda t, key, d: t.number(key, d, minimum=minimum, exclusive=exclusive),
    )


def _flag(default: bool, doc: str) -> Any:
    return setting(
        default, doc=doc, schema={"type": "boolean"}, read=lambda t, key, d: t.boolean(key, d)
    )


def _choice(default: str, doc: str, choices: Mapping[str, str]) -> Any:
    return setting(
        default,
        doc=doc,
        schema={"type": "string", "enum": list(choices)},
        read=lambda t, key, d: t.choice(key, d, choices) or d,
    )


def _word(doc: str) -> Any:
    """An optional string without whitespace (a realm, a role); None when absent."""
    return setting(None, doc=doc, schema=_WORD, read=lambda t, key, d: t.word(key))


def _required_word(doc: str, example: str) -> Any:
    """A string without whitespace that must be given (a host, a key, a URI)."""
    return setting(
        doc=doc,
        required=True,
        example=example,
        schema=_WORD,
        read=lambda t, key, d: t.word(key),
    )


def _tls_file(doc: str) -> Any:
    return setting(None, doc=doc, schema=_TEXT, read=lambda t, key, d: _read_tls_file(t, key))


_WORD: Final = {"type": "string", "pattern": "^\\S+$"}
#: A router URL's scheme (the loader checks the rest).
_URL_PATTERN: Final = "^([wW][sS][sS]?|[rR][sS][sS]?|[rR][sS]\\+[uU][nN][iI][xX])://"
_TEXT: Final = {"type": "string", "minLength": 1, "pattern": "\\S"}

_SERIALIZERS: Final = ("cbor", "msgpack", "json")
_AUTH_METHODS: Final = {m: m for m in ("anonymous", "ticket", "wampcra", "cryptosign")}
_CHANNEL_BINDINGS: Final = {b: b for b in ("none", "tls-unique")}
_JITTERS: Final = {j: j for j in ("phase", "full", "equal", "decorrelated", "none")}
_MATCHES: Final = {m: m for m in ("exact", "prefix", "wildcard")}
_WHEN_FULL: Final = {w: w for w in ("drop_newest", "drop_oldest")}
_INVOKES: Final = {i: i for i in ("single", "roundrobin", "random", "first", "last")}
_LOG_FORMATS: Final = {f: f for f in ("auto", "json", "console")}
_LOG_LEVELS: Final = {
    **{level: level for level in ("debug", "info", "warn", "error", "critical")},
    "warning": "warn",
}


@dataclass(frozen=True)
class TLSConfig:
    """TLS options for ``wss://`` URLs; file paths are absolute when loaded from a file."""

    ca_file: str | None = _tls_file(
        "wss:// and rss:// only: CA bundle (PEM) the router's certificate must chain to"
    )
    cert_file: str | None = _tls_file(
        "wss:// and rss:// only: client certificate (PEM) for mTLS, with key_file"
    )
    key_file: str | None = _tls_file(
        "wss:// and rss:// only: the client certificate's private key (PEM)"
    )
    verify: bool = setting(
        True,
        doc="wss:// and rss:// only: verify the router's certificate",
        schema={"type": "boolean"},
        read=lambda t, key, d: _read_verify(t, key),
    )


@dataclass(frozen=True)
class ProxyConfig:
    """An HTTP ``CONNECT`` proxy to reach the router through."""

    host: str = _required_word("the proxy's host", "proxy")
    port: int = setting(
        doc="the proxy's port",
        required=True,
        example=3128,
        schema={"type": "integer", "minimum": 1, "maximum": 65535},
        read=lambda t, key, d: t.integer(key, 0, minimum=1, maximum=65535),
    )


@dataclass(frozen=True)
class AuthConfig:
    """How sessions authenticate: ``anonymous``, ``ticket``, ``wampcra`` or ``cryptosign``."""

    method: str = _choice("anonymous", "anonymous | ticket | wampcra | cryptosign", _AUTH_METHODS)
    authid: str | None = setting(
        None,
        doc="the authid (required for ticket and wampcra, optional for cryptosign)",
        example="agent",
        schema=_TEXT,
        read=lambda t, key, d: t.string(key),
    )
    authrole: str | None = _word("the authrole to ask for")
    #: Read with the method, by :func:`_check_auth`.
    secret: Secret | None = setting(
        None,
        doc="the ticket or WAMP-CRA secret",
        read=lambda t, key, d: None,
        aliases={
            "secret_file": ("a file holding the ticket or secret (preferred)", _TEXT),
            "secret_env": (
                "an environment variable holding it",
                {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            ),
            "secret": ("the secret itself (warned about: prefer the other two)", _TEXT),
        },
    )
    #: Read with the method, by :func:`_check_auth`.
    key: PrivateKey | None = setting(
        None,
        key="key_file",
        doc="cryptosign: the private key file (mode 0600 or 0400; see Authentication)",
        example="/run/secrets/wampd/wampd.key",
        schema=_TEXT,
        read=lambda t, key, d: None,
    )
    authextra: Mapping[str, Any] = setting(
        doc='cryptosign: more authextra, e.g. { device = "edge-7" } (pubkey is added)',
        default_factory=_empty_mapping,
        schema={
            "type": "object",
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
        },
        read=lambda t, key, d: _read_authextra(t, key, d),  # noqa: PLW0108 (defined below)
    )
    channel_binding: str = setting(
        "none",
        doc="cryptosign: none | tls-unique (wss:// over TLS 1.2 only)",
        schema={"type": "string", "enum": list(_CHANNEL_BINDINGS)},
        read=lambda t, key, d: t.choice(key, d, _CHANNEL_BINDINGS) or d,
    )


@dataclass(frozen=True)
class RouterConfig:
    """Where the router is (``urls`` are tried in order, round-robin) and how to join it.

    ``realm`` is ``""`` when it was left out because every component names its own realm;
    use :meth:`Config.realm_for`.
    """

    urls: tuple[str, ...] = setting(
        key="url",
        doc="the router's URL (ws://, wss://, rs://, rss://, rs+unix:///path), or a list of "
        "them (see failover)",
        required=True,
        example="ws://127.0.0.1:8080/ws",
        schema={
            "oneOf": [
                {"type": "string", "pattern": _URL_PATTERN},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": _URL_PATTERN},
                },
            ]
        },
        read=lambda t, key, d: _read_urls(t, key),
    )
    realm: str = setting(
        "",
        doc="the realm to join; may be left out if every component sets its own",
        example="realm1",
        schema=_WORD,
        read=lambda t, key, d: _read_realm(t, key),
    )
    serializers: tuple[str, ...] = setting(
        _SERIALIZERS,
        doc="offered in this order",
        schema={
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(_SERIALIZERS)},
        },
        read=lambda t, key, d: _read_serializers(t, key, d),  # noqa: PLW0108 (defined below)
    )
    headers: Mapping[str, str] = setting(
        doc='extra WebSocket headers, e.g. { X-Edge-Id = "a1" }',
        default_factory=_empty_mapping,
        schema={"type": "object", "additionalProperties": {"type": "string"}},
        read=lambda t, key, d: _read_headers(t, key, d),  # noqa: PLW0108 (defined below)
    )
    failover: str = _choice(
        "ordered",
        "with several URLs: ordered | round_robin | shuffle (see How it behaves)",
        {m: m for m in FAILOVER_MODES},
    )
    prefer_first: bool = setting(
        False,
        doc="ordered, shuffle: every outage starts again from the first URL",
        schema={"type": "boolean"},
        read=lambda t, key, d: t.boolean(key, d),
    )
    compression: bool = setting(
        False,
        doc="offer permessage-deflate (used if the router accepts it)",
        schema={"type": "boolean"},
        read=lambda t, key, d: t.boolean(key, d),
    )
    tls: TLSConfig = setting(
        TLSConfig(), doc="TLS for wss:// and rss:// URLs", flatten=True, record=TLSConfig
    )
    proxy: ProxyConfig | None = setting(
        None, doc="an HTTP CONNECT proxy to reach the router through (optional)", record=ProxyConfig
    )
    auth: AuthConfig = setting(
        AuthConfig(), doc="authentication; absent: anonymous", record=AuthConfig
    )


@dataclass(frozen=True)
class ReconnectConfig:
    """Backoff between attempts and when to give up."""

    initial_delay: float = _number(
        3.0, "seconds: the ceiling of the first retries of an outage (see steady_retries)"
    )
    max_delay: float = _number(60.0, "no delay is longer")
    growth: float = _number(
        2.5, "factor from one delay to the next (decorrelated jitter does not use it)", minimum=1.0
    )
    steady_retries: int = setting(
        3,
        doc="retries after the first that still wait initial_delay before the delays grow",
        schema={"type": "integer", "minimum": 0},
        read=lambda t, key, d: t.integer(key, d, minimum=0),
    )
    jitter: str = _choice("phase", "phase | full | equal | decorrelated | none", _JITTERS)
    #: Retries per outage; None for no limit (``-1`` in TOML).
    max_retries: int | None = setting(
        None,
        doc="retries per outage; -1 unlimited, 0 none",
        toml_default=-1,
        schema={"type": "integer", "minimum": -1},
        read=lambda t, key, d: _no_limit(t.integer(key, -1, minimum=-1)),
    )
    retry_on_start: bool = _flag(True, "a router down at start is an outage like any other")
    stable_after: float = _number(5.0, "seconds joined before an outage counts as over")
    probe_interval: float = _number(
        0.5, "while a router its components share is down: at most one attempt this often"
    )
    admission_rate: float = _number(
        80.0,
        "attempts a second once a router its components share is back, after the burst",
        exclusive=True,
    )
    admission_burst: int = setting(
        5,
        doc="attempts let through at once when a shared router is back",
        schema={"type": "integer", "minimum": 1},
        read=lambda t, key, d: t.integer(key, d, minimum=1),
    )
    fatal_errors: tuple[str, ...] = setting(
        DEFAULT_FATAL_ERRORS,
        doc="router errors that end the daemon (exit 78) instead of being retried",
        schema={"type": "array", "items": {"type": "string", "pattern": "^\\S+$"}},
        read=lambda t, key, d: _read_fatal_errors(t, key, d),  # noqa: PLW0108 (defined below)
    )


@dataclass(frozen=True)
class KeepaliveConfig:
    """WebSocket pings (``ping_interval`` 0 disables them) and the opening handshake timeout."""

    ping_interval: float = _number(5.0, "seconds between WebSocket pings; 0 disables them")
    ping_timeout: float = _number(5.0, "seconds to wait for the PONG")
    connect_timeout: float = _number(
        10.0, "seconds for TCP connect + WebSocket handshake + WAMP join", exclusive=True
    )


@dataclass(frozen=True)
class HTTPConfig:
    """The health/metrics endpoint: ``"host:port"``, ``"[ipv6]:port"``, or ``""`` (disabled)."""

    listen: str = setting(
        "127.0.0.1:9100",
        doc='metrics and health endpoints: "host:port", "[ipv6]:port"; "" disables',
        schema={"type": "string"},
        read=lambda t, key, d: _read_listen(t, key, d),  # noqa: PLW0108 (defined below)
    )

    @property
    def host(self) -> str | None:
        """The interface to listen on (IPv6 without brackets), or ``None`` when disabled."""
        parsed = _split_listen(self.listen)
        return None if parsed is None else parsed[0]

    @property
    def port(self) -> int | None:
        """The TCP port to listen on, or ``None`` when disabled."""
        parsed = _split_listen(self.listen)
        return None if parsed is None else parsed[1]


@dataclass(frozen=True)
class SigningConfig:
    """Crossbar-style signed requests to ``/publish`` and ``/call``: the query string's
    ``key``, ``timestamp``, ``seq``, ``nonce`` and ``signature`` (HMAC-SHA256)."""

    key: str = _required_word("the key the app signs with (the query string's key=)", "app")
    secret_file: str = setting(
        doc="a file holding the signing secret; re-read when the file changes",
        required=True,
        example="/run/secrets/bridge-signing",
        schema=_TEXT,
        read=lambda t, key, d: _read_token_file(t, key),
    )
    max_skew: float = _number(
        300.0,
        "seconds a signed request's timestamp may be off from now, either way",
        exclusive=True,
    )


def _inflight(default: int, doc: str) -> Any:
    return setting(
        default,
        doc=doc,
        schema={"type": "integer", "minimum": 1},
        read=lambda t, key, d: t.integer(key, d, minimum=1),
    )


def _http_url(doc: str, example: str) -> Any:
    return setting(
        doc=doc,
        required=True,
        example=example,
        schema={"type": "string", "pattern": "^[hH][tT][tT][pP][sS]?://"},
        read=lambda t, key, d: _read_http_url(t, key),
    )


@dataclass(frozen=True, kw_only=True)
class SubscriptionConfig:
    """One ``[[bridge.subscription]]``: WAMP events on ``topic``, POSTed to ``url``."""

    topic: str = _required_word(
        "the topic (or pattern, with match) to subscribe to", "com.example.orders"
    )
    match: str = _choice("exact", "exact | prefix | wildcard", _MATCHES)
    url: str = _http_url("each event is POSTed here as JSON", "http://127.0.0.1:8000/hooks/orders")
    name: str | None = setting(
        None,
        doc="its name in logs and metrics (default: the topic); unique",
        schema={"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        read=lambda t, key, d: _read_optional_name(t, key),
    )
    max_inflight: int = _inflight(1, "deliveries at once; 1 delivers in publication order")
    timeout: float = _number(
        10.0, "seconds an attempt may take; then it is retried", exclusive=True
    )
    max_queued: int = _inflight(10000, "events waiting to be delivered; then when_full")
    when_full: str = _choice(
        "drop_newest", "drop_newest | drop_oldest: which event goes (logged, counted)", _WHEN_FULL
    )
    #: Retries of one event before it is dead-lettered; None for no limit (``-1`` in TOML).
    max_retries: int | None = setting(
        None,
        doc="retries of one event (408, 429, 5xx, timeout, refused); -1 unlimited",
        toml_default=-1,
        schema={"type": "integer", "minimum": -1},
        read=lambda t, key, d: _no_limit(t.integer(key, -1, minimum=-1)),
    )

    @property
    def label(self) -> str:
        """Its name in logs and metrics."""
        return self.name or self.topic


@dataclass(frozen=True, kw_only=True)
class ProcedureConfig:
    """One ``[[bridge.procedure]]``: WAMP calls to ``uri``, POSTed to ``url``."""

    uri: str = _required_word(
        "the procedure (or pattern, with match) to register", "com.example.add"
    )
    match: str = _choice("exact", "exact | prefix | wildcard", _MATCHES)
    url: str = _http_url("each invocation is POSTed here as JSON", "http://127.0.0.1:8000/rpc/add")
    timeout: float = _number(
        10.0, "seconds for the app's answer; then wamp.error.timeout", exclusive=True
    )
    max_inflight: int = _inflight(16, "invocations at once; more get wamp.error.unavailable")
    invoke: str = _choice(
        "single", "single | roundrobin | random | first | last (shared registration)", _INVOKES
    )


@dataclass(frozen=True)
class BridgeConfig:
    """The sidecar bridge: an app next to wampd publishes and calls over local HTTP."""

    listen: str = setting(
        "",
        doc='"host:port", "[ipv6]:port" or "unix:/path/to.sock" (mode 0660); "" disables',
        schema={"type": "string"},
        read=lambda t, key, d: _read_bridge_listen(t, key, d),  # noqa: PLW0108 (defined below)
    )
    token_file: str | None = setting(
        None,
        doc="every request then needs Authorization: Bearer <the file's text>; re-read "
        "when the file changes",
        schema=_TEXT,
        read=lambda t, key, d: _read_token_file(t, key),
    )
    max_body: int = setting(
        1048576,
        doc="bytes; a larger request body is refused with 413",
        schema={"type": "integer", "minimum": 1},
        read=lambda t, key, d: t.integer(key, d, minimum=1),
    )
    call_timeout: float = _number(
        10.0, "seconds a /v1/call may take before it is cancelled (504)", exclusive=True
    )
    signing: SigningConfig | None = setting(
        None, doc="Crossbar-style signed requests to /publish and /call", record=SigningConfig
    )
    subscriptions: tuple[SubscriptionConfig, ...] = setting(
        (),
        key="subscription",
        doc="WAMP events delivered to the app (webhooks)",
        record=SubscriptionConfig,
        many=True,
    )
    procedures: tuple[ProcedureConfig, ...] = setting(
        (),
        key="procedure",
        doc="WAMP procedures the app serves (HTTP callbacks)",
        record=ProcedureConfig,
        many=True,
        unique="uri",
    )

    @property
    def address(self) -> str | tuple[str, int] | None:
        """The unix socket's path, or ``(host, port)`` (IPv6 without brackets); None when
        the bridge is off."""
        if self.listen.startswith("unix:"):
            return self.listen[len("unix:") :]
        return _split_listen(self.listen)


_OUTBOX_WHEN_FULL: Final = {"reject": "reject", "drop_oldest": "drop_oldest"}
_SYNC: Final = {"normal": "normal", "full": "full"}


@dataclass(frozen=True)
class OutboxConfig:
    """The durable outbox: publishes stored on disk, and sent once the router takes them."""

    path: str = setting(
        "",
        doc='the SQLite file (relative: to this file\'s folder); "" disables the outbox',
        schema={"type": "string"},
        read=lambda t, key, d: _read_store_path(t, key, d),  # noqa: PLW0108 (defined below)
    )
    max_messages: int = setting(
        1000000,
        doc="messages queued at most; then when_full",
        schema={"type": "integer", "minimum": 1},
        read=lambda t, key, d: t.integer(key, d, minimum=1),
    )
    max_bytes: int = setting(
        1073741824,
        doc="bytes of payload (JSON args, kwargs and options, and topic) queued at most",
        schema={"type": "integer", "minimum": 1},
        read=lambda t, key, d: t.integer(key, d, minimum=1),
    )
    ttl: float = _number(0.0, "seconds a message may wait before it is dropped; 0 = forever")
    when_full: str = _choice(
        "reject", "reject (503 outbox_full) | drop_oldest (evict, counted)", _OUTBOX_WHEN_FULL
    )
    sync: str = _choice(
        "normal", "normal: survives a crash of wampd | full: also a power loss", _SYNC
    )
    max_inflight: int = _inflight(
        100, "publications sent and not yet removed: the most a crash of wampd repeats"
    )
    idempotency_window: float = _number(
        86400.0, "seconds an Idempotency-Key (or a given msg_id) is remembered"
    )

    @property
    def enabled(self) -> bool:
        return self.path != ""


@dataclass(frozen=True)
class LogConfig:
    """Log output: ``format`` auto/json/console, ``level`` debug/info/warn/error/critical."""

    format: str = _choice(
        "auto", "auto (console on a TTY, else json) | json | console", _LOG_FORMATS
    )
    level: str = _choice("info", "debug | info | warn | error | critical", _LOG_LEVELS)


@dataclass(frozen=True)
class ShutdownConfig:
    """How long components get to leave cleanly on SIGTERM."""

    timeout: float = _number(5.0, "seconds for every session to leave on SIGTERM", exclusive=True)


@dataclass(frozen=True)
class ComponentSpec:
    """One ``[[component]]``: its unique name, ``module:attribute`` entry point and extras."""

    name: str = setting(
        doc="[A-Za-z0-9_.-]+, unique",
        required=True,
        example="backend",
        schema={"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        read=lambda t, key, d: _read_name(t, key),
    )
    entry: str = setting(
        doc="package.module:attribute",
        required=True,
        example="myapp.backend:Backend",
        schema={"type": "string", "pattern": "^[A-Za-z_][\\w.]*:[A-Za-z_][\\w.]*$"},
        read=lambda t, key, d: _read_entry(t, key),
    )
    extra: Mapping[str, Any] = setting(
        doc="reaches the component as config.extra",
        default_factory=_empty_mapping,
        example={"any": "table"},
        schema={"type": "object"},
        read=lambda t, key, d: _read_extra(t, key, d),  # noqa: PLW0108 (defined below)
    )
    realm: str | None = _word("this component's own realm")
    force_reregister: bool = setting(
        False,
        doc="every register() asks force_reregister (see Components)",
        schema={"type": "boolean"},
        read=lambda t, key, d: t.boolean(key, d),
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole validated configuration."""

    router: RouterConfig = setting(
        doc="where the router is and how to join it", required=True, record=RouterConfig
    )
    reconnect: ReconnectConfig = setting(
        ReconnectConfig(), doc="backoff between attempts", record=ReconnectConfig
    )
    keepalive: KeepaliveConfig = setting(
        KeepaliveConfig(), doc="noticing a dead link", record=KeepaliveConfig
    )
    http: HTTPConfig = setting(HTTPConfig(), doc="metrics and probes", record=HTTPConfig)
    log: LogConfig = setting(LogConfig(), doc="the log on stdout", record=LogConfig)
    shutdown: ShutdownConfig = setting(
        ShutdownConfig(), doc="leaving on SIGTERM", record=ShutdownConfig
    )
    bridge: BridgeConfig = setting(
        BridgeConfig(), doc="the sidecar bridge for apps in other languages", record=BridgeConfig
    )
    outbox: OutboxConfig = setting(
        OutboxConfig(), doc="the durable outbox (off by default)", record=OutboxConfig
    )
    # At least one unless [bridge] is on: a cross-check (_check_config), not required=.
    components: tuple[ComponentSpec, ...] = setting(
        key="component",
        doc="one or more, unless [bridge] is on",
        record=ComponentSpec,
        many=True,
        unique="name",
    )
    warnings: tuple[str, ...] = ()
    source: str | None = None

    def realm_for(self, component: ComponentSpec) -> str:
        """The realm ``component`` joins: its own, else the router's."""
        return component.realm or self.router.realm


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


#: Checks one component's entry, given its name and entry; returns a problem, or None.
EntryCheck = Callable[[str, str], "str | None"]


def config_path(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> str | os.PathLike[str] | None:
    """The file to load: ``path``, else ``environ["WAMPD_CONFIG"]``, else None."""
    return path if path is not None else (environ.get("WAMPD_CONFIG") or None)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_entry: EntryCheck | None = None,
) -> Config:
    """Read and validate the TOML file at ``path`` (default: ``environ["WAMPD_CONFIG"]``).

    Relative file paths inside it are resolved against the file's folder.

    :param check_entry: called for each component whose entry is well formed; a problem it
        returns is reported with the others (the CLI imports the entry here).

    :raises ConfigError: no file given, the file cannot be read or parsed, or it is invalid.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    path = config_path(path, env)
    if path is None:
        raise ConfigError(["config: no configuration file given (use --config or WAMPD_CONFIG)"])
    file = Path(path)
    data = _read_toml(file)
    return parse_config(
        data,
        environ=env,
        base_dir=file.absolute().parent,
        source=str(file),
        check_entry=check_entry,
    )


def parse_config(
    data: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
    source: str | None = None,
    check_entry: EntryCheck | None = None,
) -> Config:
    """Validate a parsed TOML document (as :mod:`tomllib` returns it) into a :class:`Config`.

    :param environ: where ``secret_env`` variables are looked up.
    :param base_dir: folder that relative ``*_file`` paths are resolved against
        (default: left relative, i.e. to the working directory).
    :param source: recorded as :attr:`Config.source`.
    :param check_entry: see :func:`load_config`.
    :raises ConfigError: listing every problem found.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([f"config: must be a table, got {_show(data)}"])
    ctx = _Context(environ, base_dir, check_entry, _all_have_realm(data.get("component")))
    values = _values(_Table(ctx, "", data, keys(Config)), Config)
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return Config(**values, warnings=tuple(ctx.warnings), source=source)


def from_keywords(
    record: type[_R], given: Mapping[str, Any], names: Mapping[str, str], **defaults: Any
) -> _R:
    """``record`` from keyword arguments (the drop-in API's), checked by the same
    declarations as the loader's tables and in the same words: ``names`` maps a field's
    TOML key to the keyword that gives it; a keyword absent or None takes ``defaults``'
    value, else the setting's default.

    :raises ValueError: naming each bad keyword, e.g. ``ping_timeout: must be > 0 when
        ping_interval > 0, got 0``.
    """
    data = dict(defaults)
    data.update({key: given[kw] for key, kw in names.items() if given.get(kw) is not None})
    ctx = _Context({}, None)
    value = _record(_Keywords(ctx, data, names), record)
    if ctx.problems:
        raise ValueError("; ".join(ctx.problems))
    return value


def document(config: Any) -> dict[str, Any]:
    """The effective configuration as a TOML document of the input's shape: every default
    filled in, secrets as ``***``. Saved as a file, it loads to the same configuration
    (except inline secrets and masked values, which stay ``***``).

    Besides :class:`Secret` values, the values of headers and ``extra`` keys whose names
    look sensitive (``Authorization``, ``password``, ``token``, ...) are masked. Secrets
    from a file or an environment variable keep their ``secret_file`` / ``secret_env`` key,
    file paths are absolute, and keys that are absent and have no default are left out.
    """
    out: dict[str, Any] = {}
    for f, declared in settings(type(config)):
        value, key = getattr(config, f.name), declared.key or f.name
        if declared.flatten:
            if value != default_of(f):  # TLS keys are set only where a wss:// URL uses them
                out.update(document(value))
        elif isinstance(value, Secret):
            out[value.key] = value.source if value.source is not None else _REDACTED
        elif isinstance(value, PrivateKey):
            out[key] = value.path
        elif value is None and declared.toml_default is not None:
            out[key] = declared.toml_default  # TOML has no null: max_retries = -1
        elif value is None or (value in ("", {}, ()) and value == default_of(f)):
            continue  # absent, and no default
        elif declared.many:
            out[key] = [document(item) for item in value]
        elif declared.record is not None:
            out[key] = document(value)
        elif isinstance(value, Mapping):
            out[key] = _masked(value)
        elif isinstance(value, tuple):
            one = "oneOf" in declared.schema and len(value) == 1  # url: one, or an array
            out[key] = value[0] if one else list(value)
        else:
            out[key] = value
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``wampd.toml`` (what ``wampd config-schema`` prints), from the
    spec. Editors that read JSON Schema (taplo / Even Better TOML, ...) complete and check
    a config with it; it is stricter than the loader only where JSON Schema cannot say
    what wampd accepts (choices are matched case-insensitively by wampd)."""
    return schema(Config, title="wampd.toml: the configuration of wampd")


def to_toml(config: Config) -> str:
    """:func:`document` as TOML text, each component as a ``[[component]]`` table."""
    doc = document(config)
    components = doc.pop("component")
    text = tomli_w.dumps(doc)
    for component in components:
        # A component's own sub-tables (extra's) become [component.extra]: headers are the
        # only lines tomli_w starts with "[" (multi-line arrays are indented).
        body = "\n".join(
            "[[component." + line[2:]
            if line.startswith("[[")
            else "[component." + line[1:]
            if line.startswith("[")
            else line
            for line in tomli_w.dumps(component).splitlines()
        )
        text += f"\n[[component]]\n{body}\n"
    return text


def redacted(config: Config) -> dict[str, Any]:
    """:func:`document`, JSON-serialisable (dates and times as ISO 8601 strings)."""
    result: dict[str, Any] = _to_json(document(config))
    return result


def _masked(table: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of ``table``, the values of sensitive-looking keys as ``***``, deeply."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if _SENSITIVE.search(str(key)):
            out[str(key)] = _REDACTED
        elif isinstance(value, Mapping):
            out[str(key)] = _masked(value)
        elif isinstance(value, list | tuple):
            out[str(key)] = [_masked(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[str(key)] = value
    return out


# --------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------


def _read_toml(file: Path) -> dict[str, Any]:
    """The parsed document in ``file``, or a ConfigError naming the file and the reason."""
    where = _quote(str(file))
    try:
        raw = file.read_bytes()
    except (OSError, ValueError) as exc:
        raise ConfigError([f"config: cannot read {where}: {_reason(exc)}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"config: {where} is not valid UTF-8 (bad byte at offset {exc.start})"]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {where} is not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"config: {where} is not valid TOML: nested too deeply"]) from None


# --------------------------------------------------------------------------------------
# Validation machinery
# --------------------------------------------------------------------------------------


class _Missing:
    """Marks a key that is absent (``None`` could be a value)."""


_MISSING: Final = _Missing()

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_COMPONENT_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USERINFO: Final = re.compile(r"//[^/?#]*@")
_HTTP_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SENSITIVE: Final = re.compile(
    r"pass(word|wd)?|secret|token|auth|api[-_]?key|private[-_]?key|cookie|credential",
    re.IGNORECASE,
)
_MAX_SECRET_BYTES: Final = 64 * 1024
_SHOW_MAX: Final = 60

_KINDS: Final[tuple[tuple[type | tuple[type, ...], str], ...]] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (Mapping, "a table"),
    ((list, tuple), "an array"),
    (_dt.datetime, "a date-time"),
    (_dt.date, "a date"),
    (_dt.time, "a time"),
)


@dataclass
class _Context:
    """Collects the problems and warnings of one parse, and knows where files are."""

    environ: Mapping[str, str]
    base_dir: Path | None
    check_entry: EntryCheck | None = None
    #: Whether every component names its own realm (``router.realm`` may be left out).
    realm_optional: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{key}: {text}")

    def warn(self, key: str, text: str) -> None:
        self.warnings.append(f"{key}: {text}")

    def resolve(self, path: str) -> Path:
        """``path`` made relative to the configuration file's folder, if it is relative."""
        result = Path(path)
        if self.base_dir is None or result.is_absolute():
            return result
        return self.base_dir / result


class _Table:
    """Typed, validating access to one table of the document; reports unknown keys."""

    def __init__(
        self, ctx: _Context, key: str, data: Mapping[str, Any], known: Sequence[str]
    ) -> None:
        self.ctx = ctx
        self.key = key
        self.data = data
        _check_unknown(ctx, key, data, known, top=not key)

    def sub(self, name: str) -> str:
        """The dotted key of ``name`` in this table."""
        return _join(self.key, name)

    def raw(self, name: str) -> Any:
        return self.data.get(name, _MISSING)

    def problem(self, name: str, text: str) -> None:
        self.ctx.problem(self.sub(name), text)

    def require(self, name: str, why: str = "required") -> bool:
        """Whether ``name`` is present; reports it missing otherwise."""
        if name in self.data:
            return True
        self.problem(name, f"missing ({why})")
        return False

    def table(self, name: str, known: Sequence[str]) -> _Table | None:
        """The sub-table ``name``, or None when absent or not a table (reported)."""
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, Mapping):
            self.problem(name, f"must be a table, got {_show(value)}")
            return None
        return _Table(self.ctx, self.sub(name), value, known)

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, exclusive: bool = False
    ) -> float:
        """A finite int or float ``>= minimum`` (``> minimum`` if exclusive), as a float."""
        value = self.raw(name)
        if value is _MISSING:
            return default
        result = _as_float(value)
        if result is None or result < minimum or (exclusive and result == minimum):
            op = ">" if exclusive else ">="
            self.problem(name, f"must be a number {op} {_num(minimum)}, got {_show(value)}")
            return default
        return result

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """An integer in ``minimum..maximum``."""
        value = self.raw(name)
        if value is _MISSING:
            return default
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and minimum <= value and (maximum is None or value <= maximum):
            return int(value)
        want = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        self.problem(name, f"must be an integer {want}, got {_show(value)}")
        return default

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, bool):
            return value
        self.problem(name, f"must be true or false, got {_show(value)}")
        return default

    def string(self, name: str, *, sensitive: bool = False) -> str | None:
        """A non-empty string, or None when absent or invalid (reported)."""
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            got = _kind(value) if sensitive else _show(value)
            self.problem(name, f"must be a string, got {got}")
            return None
        if not value.strip():
            self.problem(name, "must not be empty")
            return None
        return value

    def word(self, name: str) -> str | None:
        """A non-empty string without whitespace (a realm, a host, a role)."""
        value = self.raw(name)
        if value is _MISSING:
            return None
        if _is_word(value):
            return str(value)
        self.problem(name, f"must be a non-empty string without whitespace, got {_show(value)}")
        return None

    def choice(self, name: str, default: str, choices: Mapping[str, str]) -> str | None:
        """One of ``choices`` (case-insensitive; maps aliases), or None if invalid (reported)."""
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, str) and value.lower() in choices:
            return choices[value.lower()]
        allowed = ", ".join(f'"{c}"' for c in dict.fromkeys(choices.values()))
        self.problem(name, f"must be one of {allowed}, got {_show(value)}")
        return None


class _Keywords(_Table):
    """Keyword arguments as a table: problems name the keyword, not the TOML key."""

    def __init__(self, ctx: _Context, data: Mapping[str, Any], names: Mapping[str, str]) -> None:
        super().__init__(ctx, "", data, list(data))
        self.names = names

    def sub(self, name: str) -> str:
        return self.names.get(name, name)


def _check_unknown(
    ctx: _Context, prefix: str, data: Mapping[str, Any], known: Sequence[str], *, top: bool
) -> None:
    """Report every key of ``data`` that is not ``known``, with a did-you-mean hint."""
    for name in data:
        if name in known:
            continue
        text = name if isinstance(name, str) else str(name)
        hints = difflib.get_close_matches(text, known, n=1)
        what = "unknown section" if top and _is_table_like(data[name]) else "unknown key"
        hint = f' (did you mean "{hints[0]}"?)' if hints else ""
        ctx.problem(_join(prefix, text), what + hint)


# --------------------------------------------------------------------------------------
# Reading a table by its record's declarations
# --------------------------------------------------------------------------------------


def _values(t: _Table, record: type) -> dict[str, Any]:
    """Each field of ``record`` read from ``t`` by its own declaration (a sub-table, an
    array of them, or a key and its reader), then the record's cross-checks for the keys
    that were themselves fine."""
    values: dict[str, Any] = {}
    fine: set[str] = set()
    for f, declared in settings(record):
        key, before = declared.key or f.name, len(t.ctx.problems)
        default = default_of(f)
        if declared.required and not declared.many and not t.require(key):
            values[f.name] = None
        elif declared.read is not None:
            values[f.name] = declared.read(t, key, default)
        elif declared.flatten:
            assert declared.record is not None
            values[f.name] = _record(t, declared.record)
        elif declared.many:
            values[f.name] = _many(t, key, declared)
        else:
            assert declared.record is not None, f"{record.__name__}.{f.name} has no reader"
            known = keys(declared.record)
            sub = t.table(key, known)
            if sub is None and default is not None:  # absent: the record's defaults
                sub = _Table(t.ctx, t.sub(key), {}, known)
            values[f.name] = None if sub is None else _record(sub, declared.record)
        if len(t.ctx.problems) == before:
            fine.add(f.name)
    check = _CHECKS.get(record)
    if check is not None:
        check(t, values, fine)
    return values


def _record(t: _Table, record: type[_R]) -> _R:
    return record(**_values(t, record))


def _many(t: _Table, key: str, declared: Setting) -> tuple[Any, ...]:
    """An array of tables (``[[component]]``), at least one if ``declared.required``;
    ``declared.unique`` names the field no two may share."""
    raw = t.raw(key)
    if raw is _MISSING or (isinstance(raw, list | tuple) and not raw):
        if declared.required:
            t.problem(key, f"at least one [[{key}]] is required")
        return ()
    if not isinstance(raw, list | tuple):
        t.problem(key, f"must be an array of tables ([[{key}]]), got {_show(raw)}")
        return ()
    assert declared.record is not None
    items: list[Any] = []
    seen: dict[Any, int] = {}
    for i, item in enumerate(raw):
        where = f"{t.sub(key)}[{i}]"
        if not isinstance(item, Mapping):
            t.ctx.problem(where, f"must be a table, got {_show(item)}")
            continue
        before = len(t.ctx.problems)
        value: Any = _record(_Table(t.ctx, where, item, keys(declared.record)), declared.record)
        if len(t.ctx.problems) != before:
            continue
        if declared.unique is not None:
            unique = getattr(value, declared.unique)
            if unique in seen:
                t.ctx.problem(
                    f"{where}.{declared.unique}",
                    f"duplicate {declared.unique} {_show(unique)} (also {key}[{seen[unique]}])",
                )
            else:
                seen[unique] = i
        items.append(value)
    return tuple(items)


# -- cross-checks: what one key cannot say alone ------------------------------------------


def _check_reconnect(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    initial, maximum = values["initial_delay"], values["max_delay"]
    if "initial_delay" not in t.data and "max_delay" in fine and maximum < initial:
        values["initial_delay"] = maximum  # a cap below the default first ceiling lowers it
        return
    if {"initial_delay", "max_delay"} <= fine and maximum < initial:
        t.problem(
            "max_delay",
            f"must be >= {t.sub('initial_delay')} (got {_num(maximum)} < {_num(initial)})",
        )


def _check_keepalive(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    interval, timeout = values["ping_interval"], values["ping_timeout"]
    if {"ping_interval", "ping_timeout"} <= fine and interval > 0 and timeout <= 0:
        t.problem(
            "ping_timeout",
            f"must be > 0 when {t.sub('ping_interval')} > 0, got {_num(timeout)}",
        )


def _check_tls(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    """A client certificate comes with its key, and the other way round."""
    for have, lacking in (("cert_file", "key_file"), ("key_file", "cert_file")):
        given = have in t.data and isinstance(t.raw(have), str) and t.raw(have).strip()
        if given and lacking not in t.data and _any_secure(t.raw("url")):
            t.problem(lacking, f"missing (required together with {t.sub(have)})")
            return


def _check_router(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    """cryptosign's channel binding needs TLS; prefer_first needs an order to prefer in; a
    proxy, WebSocket URLs."""
    if values.get("prefer_first") and values.get("failover") == "round_robin":
        t.problem("prefer_first", 'only with failover = "ordered" or "shuffle"')
    auth = values.get("auth")
    urls = values.get("urls") or ()
    if values.get("proxy") is not None and any(not u.startswith(("ws", "WS")) for u in urls):
        t.problem("proxy", "an HTTP CONNECT proxy is for ws:// and wss:// URLs only")
    if urls and not any(u.lower().startswith("ws") for u in urls):
        for key in ("headers", "compression"):
            if key in t.data and values.get(key):
                t.ctx.warn(t.sub(key), "ignored: no router.url uses ws:// or wss:// (RawSocket)")
    binding = auth.channel_binding if isinstance(auth, AuthConfig) else "none"
    if binding != "none" and not _any_secure(t.raw("url")):
        t.ctx.problem(f"{t.sub('auth')}.channel_binding", f"{binding} needs a wss:// router.url")


def _check_auth(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    """The secret the method needs: exactly one of its keys, none for anonymous; the key
    file for cryptosign, and its keys only with it."""
    method, given = values["method"], [k for k in _SECRET_KEYS if k in t.data]
    if "method" not in fine:
        return
    if method != "cryptosign":
        # (The effective configuration shows the defaults: authextra {}, channel_binding
        # "none"; they load again.)
        for name, unset in (("key_file", None), ("authextra", {}), ("channel_binding", "none")):
            if name in t.data and t.raw(name) != unset:
                t.problem(name, f'only for method "cryptosign" (method is "{method}")')
    if method == "anonymous":
        for name in given:
            t.problem(name, 'not allowed with method "anonymous" (set router.auth.method)')
        return
    if method == "cryptosign":
        for name in given:
            t.problem(name, 'not used with method "cryptosign": it signs with key_file')
        values["key"] = _read_key_file(t)
        return
    t.require("authid", f'required for method "{method}"')
    if len(given) == 1:
        values["secret"] = _SECRET_READERS[given[0]](t.ctx, t)
    elif not given:
        t.ctx.problem(t.key, f'method "{method}" needs one of secret_file, secret_env or secret')
    else:
        t.ctx.problem(
            t.key, f"give only one of secret_file, secret_env, secret (got {', '.join(given)})"
        )


def _check_bridge(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    """A bridge reachable from outside the pod or host needs a token; subscriptions and
    procedures need the bridge on, and names of their own."""
    if {"listen", "token_file"} <= fine and values["token_file"] is None:
        address = BridgeConfig(listen=values["listen"]).address
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            t.problem(
                "token_file",
                f"required when listen is not a loopback address or a unix socket "
                f"(listen = {_show(values['listen'])})",
            )
    if "listen" in fine and values["listen"] == "":
        for key in ("subscription", "procedure", "signing"):
            if t.raw(key) not in (_MISSING, [], ()):
                t.problem(key, 'needs the bridge on: set bridge.listen ("127.0.0.1:8091")')
    seen: dict[str, int] = {}
    # Only when every subscription was fine: then the tuple's indices are the array's.
    for i, sub in enumerate(values["subscriptions"] if "subscriptions" in fine else ()):
        if sub.label in seen:
            also = f"bridge.subscription[{seen[sub.label]}]"
            what = "name" if sub.name is not None else "topic"
            t.ctx.problem(
                f"{t.sub('subscription')}[{i}].{what}",
                f"duplicate {_show(sub.label)} (also {also}); give one of them a name",
            )
        seen.setdefault(sub.label, i)


def _check_config(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
    """Components, or the bridge; the bridge's name is its own."""
    bridge = values.get("bridge")
    bridged = isinstance(bridge, BridgeConfig) and bridge.listen != ""
    components = values.get("components") or ()
    if "components" in fine and not components and not bridged:
        t.problem("component", "at least one [[component]] is required, unless [bridge] listens")
    outbox = values.get("outbox")
    stored = isinstance(outbox, OutboxConfig) and outbox.enabled
    for i, component in enumerate(components):
        if bridged and component.name == BRIDGE_COMPONENT:
            t.ctx.problem(
                f"component[{i}].name",
                f'"{BRIDGE_COMPONENT}" is the bridge\'s own session while [bridge] listens',
            )
        if stored and component.name == OUTBOX_COMPONENT:
            t.ctx.problem(
                f"component[{i}].name",
                f'"{OUTBOX_COMPONENT}" is the outbox\'s own session while [outbox] has a path',
            )


#: WAMP's loose URI rules by match policy (a pattern may have empty components).
_URI_RULES: Final = {
    "exact": re.compile(r"([^\s.#]+\.)*[^\s.#]+"),
    "prefix": re.compile(r"([^\s.#]+\.)*[^\s.#]*"),
    "wildcard": re.compile(r"(([^\s.#]+\.)|\.)*[^\s.#]*"),
}


def _check_uri(field_name: str) -> Callable[[_Table, dict[str, Any], set[str]], None]:
    def check(t: _Table, values: dict[str, Any], fine: set[str]) -> None:
        uri, match = values[field_name], values["match"]
        if {field_name, "match"} <= fine and not _URI_RULES[match].fullmatch(uri):
            t.problem(
                field_name,
                f"not a valid WAMP URI for match {_show(match)} (dot-separated, no "
                f"whitespace or '#'), got {_show(uri)}",
            )

    return check


_CHECKS: Final[dict[type, Callable[[_Table, dict[str, Any], set[str]], None]]] = {
    SubscriptionConfig: _check_uri("topic"),
    ProcedureConfig: _check_uri("uri"),
    ReconnectConfig: _check_reconnect,
    BridgeConfig: _check_bridge,
    Config: _check_config,
    KeepaliveConfig: _check_keepalive,
    TLSConfig: _check_tls,
    AuthConfig: _check_auth,
    RouterConfig: _check_router,
}

_SECRET_KEYS: Final = tuple(
    next(declared for f, declared in settings(AuthConfig) if f.name == "secret").aliases
)


# --------------------------------------------------------------------------------------
# [router]
# --------------------------------------------------------------------------------------


def _read_urls(t: _Table, key: str) -> tuple[str, ...]:
    raw = t.raw(key)
    if isinstance(raw, str):
        items = [(t.sub(key), raw)]
    elif isinstance(raw, list | tuple) and raw:
        items = [(f"{t.sub(key)}[{i}]", value) for i, value in enumerate(raw)]
    else:
        t.problem(
            key,
            "must be a ws://, wss://, rs://, rss:// or rs+unix:// URL or a non-empty array of "
            f"them, got {_show(raw)}",
        )
        return ()
    urls: list[str] = []
    for where, value in items:
        why = (
            _url_problem(value)
            if isinstance(value, str)
            else f"must be a string, got {_show(value)}"
        )
        if why is None:
            urls.append(value)
        else:
            t.ctx.problem(where, why)
    return tuple(urls)


def _url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable router URL (WebSocket or RawSocket), or None if it is."""
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        return f"must be a URL without whitespace or control characters, got {_show_url(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme in ("rs", "rss", "rs+unix"):
        return _rawsocket_problem(url)
    if parts.scheme not in ("ws", "wss"):
        return f"scheme must be ws, wss, rs, rss or rs+unix, got {_show(parts.scheme)}"
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@); use [router.auth] or headers"
    problems = [
        "missing host" if not parts.hostname else "",
        f"port must be from 1 to 65535, got {port}" if port == 0 else "",
        "must not have a #fragment" if parts.fragment else "",
    ]
    found = [p for p in problems if p]
    return f"{'; '.join(found)} in {_show_url(url)}" if found else None


def _rawsocket_problem(url: str) -> str | None:
    try:
        target(url)
    except ValueError as exc:
        return str(exc)
    return None


def _show_url(url: str) -> str:
    """``url`` for a problem line, any ``user:password@`` masked."""
    return _show(_USERINFO.sub("//***@", url))


def _any_secure(raw: Any) -> bool:
    """Whether any of the (possibly invalid) URLs in ``raw`` is a ``wss://`` or ``rss://``
    one."""
    values = raw if isinstance(raw, list | tuple) else [raw]
    return any(
        isinstance(v, str) and v.strip().lower().startswith(("wss:", "rss:")) for v in values
    )


def _read_realm(t: _Table, key: str) -> str:
    if key not in t.data:
        if not t.ctx.realm_optional:
            t.problem(key, "missing (required)")
        return ""
    return t.word(key) or ""


def _read_serializers(t: _Table, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = t.raw(key)
    if raw is _MISSING:
        return default
    if not isinstance(raw, list | tuple) or not raw:
        allowed = ", ".join(_SERIALIZERS)
        t.problem(key, f"must be a non-empty array of {allowed}, got {_show(raw)}")
        return default
    result: list[str] = []
    for i, value in enumerate(raw):
        where = f"{t.sub(key)}[{i}]"
        if value not in _SERIALIZERS:
            allowed = ", ".join(f'"{s}"' for s in _SERIALIZERS)
            t.ctx.problem(where, f"must be one of {allowed}, got {_show(value)}")
        elif value in result:
            t.ctx.problem(where, f"duplicate serializer {_show(value)}")
        else:
            result.append(value)
    return tuple(result)


def _read_headers(t: _Table, key: str, default: Mapping[str, str]) -> Mapping[str, str]:
    raw = t.raw(key)
    if raw is _MISSING:
        return default
    if not isinstance(raw, Mapping):
        t.problem(key, f"must be a table of header names to strings, got {_show(raw)}")
        return default
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in raw.items():
        where = _join(t.sub(key), str(name))
        if not isinstance(name, str) or not _HTTP_TOKEN.fullmatch(name):
            t.ctx.problem(where, "not a valid HTTP header name")
        elif name.lower() in seen:
            t.ctx.problem(where, "duplicate header (names are case-insensitive)")
        elif not isinstance(value, str):
            t.ctx.problem(where, f"must be a string, got {_kind(value)}")
        elif any(c in value for c in "\r\n\0"):
            t.ctx.problem(where, "must not contain line breaks or NUL characters")
        else:
            headers[name] = value
        if isinstance(name, str):
            seen.add(name.lower())
    return MappingProxyType(headers)


def _read_tls_file(t: _Table, key: str) -> str | None:
    """A readable file, made absolute; ignored (warned) when no URL is a ``wss://`` one."""
    raw = t.string(key)
    if not _any_secure(t.raw("url")):
        if key in t.data:
            t.ctx.warn(t.sub(key), "ignored: no router.url uses wss:// or rss://")
        return None
    return None if raw is None else _readable_file(t.ctx, t.sub(key), raw)


def _read_verify(t: _Table, key: str) -> bool:
    verify = t.boolean(key, True)
    if not _any_secure(t.raw("url")):
        if key in t.data:
            t.ctx.warn(t.sub(key), "ignored: no router.url uses wss:// or rss://")
        return True
    if not verify:
        t.ctx.warn(t.sub(key), "false: the router's TLS certificate is not verified")
    return verify


# -- secrets ---------------------------------------------------------------------------------


def _secret_from_file(ctx: _Context, t: _Table) -> Secret | None:
    key = t.sub("secret_file")
    raw = t.string("secret_file")
    if raw is None:
        return None
    read = _read_regular_file(ctx, key, raw, limit=_MAX_SECRET_BYTES)
    if read is None:
        return None
    path, content, mode = read
    where = _quote(str(path))
    if len(content) > _MAX_SECRET_BYTES:
        ctx.problem(key, f"{where} is larger than {_MAX_SECRET_BYTES} bytes")
        return None
    try:
        text = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        ctx.problem(key, f"{where} is not UTF-8 text")
        return None
    if not text:
        ctx.problem(key, f"{where} is empty")
        return None
    # Others, not group: a Kubernetes Secret reaches a non-root container only through
    # its group (defaultMode 0440 with fsGroup), and that is no leak.
    if mode & 0o007:
        ctx.warn(
            key,
            f"{where} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            "restrict it with chmod 600 (or 640 for a group that needs it)",
        )
    return Secret(text, key="secret_file", source=str(path))


def _read_key_file(t: _Table) -> PrivateKey | None:
    """cryptosign's private key, read and checked now: a bad one is a config error."""
    if not t.require("key_file", 'required for method "cryptosign"'):
        return None
    raw = t.string("key_file")
    if raw is None:
        return None
    try:
        return load_private_key(str(t.ctx.resolve(raw)))
    except BadKey as exc:
        t.problem("key_file", str(exc))
        return None


def _read_authextra(t: _Table, key: str, default: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = t.raw(key)
    if raw is _MISSING:
        return default
    if not isinstance(raw, Mapping):
        t.problem(
            key, f"must be a table of names to strings, numbers or booleans, got {_show(raw)}"
        )
        return default
    extra: dict[str, Any] = {}
    for name, value in raw.items():
        where = _join(t.sub(key), str(name))
        if name == "pubkey":
            t.ctx.problem(where, "wampd sets pubkey from key_file")
        elif not isinstance(value, str | int | float | bool):
            t.ctx.problem(where, f"must be a string, a number or a boolean, got {_kind(value)}")
        else:
            extra[name] = value
    return MappingProxyType(extra)


def _secret_from_env(ctx: _Context, t: _Table) -> Secret | None:
    name = t.raw("secret_env")
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        # Not quoted: people do paste the secret itself here.
        t.problem(
            "secret_env", "must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*)"
        )
        return None
    value = ctx.environ.get(name)
    if value is None:
        t.problem("secret_env", f"environment variable {name} is not set")
        return None
    if not value.strip():
        t.problem("secret_env", f"environment variable {name} is empty")
        return None
    return Secret(value, key="secret_env", source=name)


def _secret_inline(ctx: _Context, t: _Table) -> Secret | None:
    value = t.string("secret", sensitive=True)
    if value is None:
        return None
    ctx.warn(t.sub("secret"), "inline secret in the config file; prefer secret_file or secret_env")
    return Secret(value)


_SECRET_READERS: Final = {
    "secret_file": _secret_from_file,
    "secret_env": _secret_from_env,
    "secret": _secret_inline,
}


def _read_regular_file(
    ctx: _Context, key: str, raw: str, *, limit: int
) -> tuple[Path, bytes, int] | None:
    """Open the regular file ``raw`` and read up to ``limit + 1`` bytes; None if it can't."""
    path = ctx.resolve(raw)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            ctx.problem(key, f"{_quote(str(path))} is not a regular file")
            return None
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            content = fh.read(limit + 1) if limit else b""
    except (OSError, ValueError) as exc:
        ctx.problem(key, f"cannot read {_quote(str(path))}: {_reason(exc)}")
        return None
    return path, content, mode


def _readable_file(ctx: _Context, key: str, raw: str) -> str | None:
    read = _read_regular_file(ctx, key, raw, limit=0)
    return None if read is None else str(read[0])


# --------------------------------------------------------------------------------------
# The other sections
# --------------------------------------------------------------------------------------


def _no_limit(retries: int) -> int | None:
    """``-1``, TOML's "no limit", as None."""
    return None if retries == -1 else retries


def _read_fatal_errors(t: _Table, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = t.raw(key)
    if raw is _MISSING:
        return default
    if not isinstance(raw, list | tuple):
        t.problem(key, f"must be an array of WAMP error URIs, got {_show(raw)}")
        return default
    for i, value in enumerate(raw):
        if not _is_word(value):
            t.ctx.problem(
                f"{t.sub(key)}[{i}]",
                f"must be a non-empty URI without whitespace, got {_show(value)}",
            )
    return tuple(str(v) for v in raw)


def _read_listen(t: _Table, key: str, default: str) -> str:
    value = t.raw(key)
    if value is _MISSING:
        return default
    if not isinstance(value, str):
        t.problem(key, f'must be "host:port", "[ipv6]:port" or "", got {_show(value)}')
        return default
    try:
        _split_listen(value)
    except ValueError as exc:
        t.problem(
            key,
            f'{exc}; expected "host:port", "[ipv6]:port" or "" (disabled), got {_show(value)}',
        )
        return default
    return value


def _read_bridge_listen(t: _Table, key: str, default: str) -> str:
    value = t.raw(key)
    if value is _MISSING:
        return default
    if isinstance(value, str) and value.startswith("unix:"):
        if not value[len("unix:") :].startswith("/"):
            t.problem(
                key,
                f'a unix socket needs an absolute path ("unix:/run/x.sock"), got {_show(value)}',
            )
            return default
        return value
    return _read_listen(t, key, default)


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_store_path(t: _Table, key: str, default: str) -> str:
    """The outbox's file, resolved against the configuration's folder; not a folder."""
    if t.raw(key) == "":
        return default
    raw = t.string(key)
    if raw is None:
        return default
    if "\x00" in raw:
        t.problem(key, "must be a file path, got a string with a NUL byte")
        return default
    path = t.ctx.resolve(raw)
    if path.is_dir():
        t.problem(key, f"{_quote(str(path))} is a folder; give the SQLite file's path in it")
        return default
    return str(path)


def _read_token_file(t: _Table, key: str) -> str | None:
    raw = t.string(key)
    return None if raw is None else _readable_file(t.ctx, t.sub(key), raw)


def _read_http_url(t: _Table, key: str) -> str | None:
    """An ``http://`` or ``https://`` URL with a host: where the bridge POSTs to."""
    raw = t.raw(key)
    if not isinstance(raw, str):
        t.problem(key, f"must be an http:// or https:// URL, got {_show(raw)}")
        return None
    if not raw or any(c.isspace() or not c.isprintable() for c in raw):
        t.problem(key, f"must be a URL without whitespace or control characters, got {_show(raw)}")
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        t.problem(key, f"not a valid URL ({exc}), got {_show(raw)}")
        return None
    if parts.scheme.lower() not in ("http", "https"):
        t.problem(key, f"scheme must be http or https, got {_show(parts.scheme)}")
    elif not parts.hostname:
        t.problem(key, f"missing host, got {_show(raw)}")
    elif port == 0:
        t.problem(key, "port must be from 1 to 65535, got 0")
    else:
        return raw
    return None


def _split_listen(listen: str) -> tuple[str, int] | None:
    """``(host, port)`` of a listen address, None for ``""``; ValueError says what is wrong."""
    if listen == "":
        return None
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ValueError("missing host")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("not an IPv6 address in brackets") from None
    elif any(c in host for c in ":[]") or not _is_word(host):
        raise ValueError("bad host (put IPv6 addresses in brackets)")
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not (digits and 1 <= int(port_text) <= 65535):
        raise ValueError("port must be from 1 to 65535")
    return host, int(port_text)


# --------------------------------------------------------------------------------------
# [[component]]
# --------------------------------------------------------------------------------------


def _all_have_realm(raw: Any) -> bool:
    """Whether there are components and every one names its own realm."""
    return (
        isinstance(raw, list | tuple)
        and bool(raw)
        and all(isinstance(c, Mapping) and "realm" in c for c in raw)
    )


def _read_name(t: _Table, key: str) -> str | None:
    name = t.raw(key)
    if isinstance(name, str) and _COMPONENT_NAME.fullmatch(name):
        return name
    t.problem(key, f"must be a non-empty string of [A-Za-z0-9_.-], got {_show(name)}")
    return None


def _read_optional_name(t: _Table, key: str) -> str | None:
    return None if t.raw(key) is _MISSING else _read_name(t, key)


def _read_entry(t: _Table, key: str) -> str | None:
    """``module:attribute``, and (the CLI's check) importable as a component."""
    entry, name = t.raw(key), t.raw("name")
    if not (isinstance(entry, str) and _is_entry(entry)):
        t.problem(
            key, f'must be "package.module:attribute" (attribute may be dotted), got {_show(entry)}'
        )
        return None
    why = None if t.ctx.check_entry is None else t.ctx.check_entry(str(name), entry)
    if why is not None:
        t.problem(key, why)
    return entry


def _read_extra(t: _Table, key: str, default: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = t.raw(key)
    if raw is _MISSING:
        return default
    if not isinstance(raw, Mapping):
        t.problem(key, f"must be a table, got {_show(raw)}")
        return default
    try:
        return MappingProxyType(_plain_copy(raw))
    except RecursionError:
        t.problem(key, "nested too deeply")
        return default


def _is_entry(entry: str) -> bool:
    """Whether ``entry`` reads ``dotted.module:dotted.attribute``."""
    module, sep, attribute = entry.partition(":")
    return bool(sep) and all(
        part.isidentifier() and not keyword.iskeyword(part)
        for part in (*module.split("."), *attribute.split("."))
    )


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _join(prefix: str, name: str) -> str:
    """``prefix.name``, quoting ``name`` the TOML way unless it is a bare key."""
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def _is_word(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not any(c.isspace() for c in value)


def _is_table_like(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return bool(value) and all(isinstance(v, Mapping) for v in value)
    return isinstance(value, Mapping)


def _as_float(value: Any) -> float | None:
    """``value`` as a finite float if it is an int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _num(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _kind(value: Any) -> str:
    """What sort of value ``value`` is, without showing it (for secrets and headers)."""
    if value is None:
        return "null"
    if isinstance(value, Mapping | list | tuple) and not value:
        return "an empty table" if isinstance(value, Mapping) else "an empty array"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A short, quoted rendering of a (non-secret) value for a problem line."""
    if isinstance(value, str):
        text = value if len(value) <= _SHOW_MAX else value[: _SHOW_MAX - 3] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    return _kind(value)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _plain_copy(value: Any) -> Any:
    """A deep copy of tables and arrays (so the caller's document can't change the config)."""
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(v) for v in value]
    return value


def _to_json(value: Any) -> Any:
    """A TOML value made JSON-serialisable: dates and times as ISO 8601, inf and nan as text."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return _scalar_to_json(value)


def _scalar_to_json(value: Any) -> Any:
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)
