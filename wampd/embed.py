"""What :class:`wampd.ApplicationRunner` and :class:`wampd.Service` share.

Both take autobahn's arguments, plus wampd's own as keywords (:class:`HostOptions`),
check them once (:class:`Arguments`) and turn them into the :class:`~wampd.tree.Plan` of
a one-component service tree -- the same tree the daemon runs. There is no second
reconnect implementation here: only argument handling.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypedDict

from autobahn.wamp.protocol import ApplicationSessionFactory
from autobahn.websocket.util import parse_url
from prometheus_client import CollectorRegistry

from . import tree
from .backoff import Backoff, Jitter
from .components import EntryError, as_session_factory
from .config import (
    DEFAULT_FATAL_ERRORS,
    KeepaliveConfig,
    ReconnectConfig,
    ShutdownConfig,
    _split_listen,
    from_keywords,
)
from .supervisor import RetryPolicy
from .transports import target
from .wamp import SessionFactory, WampSettings

__all__ = ["Arguments", "HostOptions", "HostSettings", "component_name", "retry_policy"]

#: Twisted's ``backoffPolicy`` defaults, which autobahn's ApplicationRunner documents.
AUTOBAHN_INITIAL_DELAY = 1.0
AUTOBAHN_MAX_DELAY = 60.0
AUTOBAHN_GROWTH = 1.5
#: Seconds of ``random.random()`` added to each delay: autobahn's default jitter.
AUTOBAHN_JITTER = 1.0


class HostOptions(TypedDict, total=False):
    """wampd's keyword-only additions to autobahn's arguments; see :class:`HostSettings`."""

    name: str
    jitter: Jitter | str
    fatal_errors: Iterable[str]
    stable_after: float
    ping_interval: float
    ping_timeout: float
    connect_timeout: float
    shutdown_timeout: float
    http_listen: str
    registry: CollectorRegistry
    rand: Callable[[], float]
    force_reregister: bool


@dataclass(frozen=True)
class HostSettings:
    """The validated :class:`HostOptions`, with wampd's defaults (the daemon's)."""

    #: The component's name in events, logs and metric labels (default: from ``make``).
    name: str | None = None
    #: wampd's jitter under the cap instead of autobahn's seconds added on top.
    jitter: Jitter | None = None
    #: Router ABORT reasons that end the session for good after one attempt.
    fatal_errors: frozenset[str] = frozenset(DEFAULT_FATAL_ERRORS)
    # The defaults are the daemon's, from its settings.
    #: Seconds a session must stay joined before its outage counts as over.
    stable_after: float = ReconnectConfig.stable_after
    #: WebSocket ping every this many seconds (0: off) ...
    ping_interval: float = KeepaliveConfig.ping_interval
    #: ... and drop the connection when no PONG came back within this many.
    ping_timeout: float = KeepaliveConfig.ping_timeout
    #: Seconds one attempt may take, from TCP connect to the session joining.
    connect_timeout: float = KeepaliveConfig.connect_timeout
    #: The most a stop takes: the GOODBYE exchange gets 80 % of it, the rest is for
    #: closing the connection (the daemon's ``[shutdown] timeout``, with the same meaning).
    shutdown_timeout: float = ShutdownConfig.timeout
    #: ``host:port`` for ``/metrics``, ``/healthz`` and ``/readyz`` (port 0: any free one).
    http_listen: str | None = None
    #: Where the metrics go (default: a registry of the runner's own).
    registry: CollectorRegistry | None = None
    #: Source of floats in [0, 1) for jitter (tests pass a constant).
    rand: Callable[[], float] = field(default=random.random, repr=False)
    #: Every register() asks ``force_reregister`` (``[[component]] force_reregister``).
    force_reregister: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HostSettings:
        """Validate ``options``: an unknown name is a ``TypeError``, a bad value a
        ``ValueError``; both name the keyword. The daemon's settings are checked by their
        declarations (:func:`~wampd.config.from_keywords`), in the loader's words."""
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"unexpected keyword argument {key!r}{hint}")
        values = dict(options)
        errors = values.get("fatal_errors")
        if isinstance(errors, Iterable) and not isinstance(errors, str | Mapping):
            values["fatal_errors"] = tuple(errors)  # a set, a list: as TOML's array
        reconnect = from_keywords(
            ReconnectConfig, values, _same("jitter", "fatal_errors", "stable_after")
        )
        keepalive = from_keywords(
            KeepaliveConfig, values, _same("ping_interval", "ping_timeout", "connect_timeout")
        )
        shutdown = from_keywords(ShutdownConfig, values, {"timeout": "shutdown_timeout"})
        if "http_listen" in values:
            listen_address(values["http_listen"])
        if "name" in values and not (isinstance(values["name"], str) and values["name"]):
            raise ValueError(f"name must be a non-empty string, got {values['name']!r}")
        if "rand" in values and not callable(values["rand"]):
            raise ValueError(f"rand must be a 0-argument callable, got {values['rand']!r}")
        if "force_reregister" in values and not isinstance(values["force_reregister"], bool):
            raise ValueError(
                f"force_reregister must be True or False, got {values['force_reregister']!r}"
            )
        values.update(
            jitter=None if values.get("jitter") is None else Jitter(reconnect.jitter),
            fatal_errors=frozenset(reconnect.fatal_errors),
            stable_after=reconnect.stable_after,
            ping_interval=keepalive.ping_interval,
            ping_timeout=keepalive.ping_timeout,
            connect_timeout=keepalive.connect_timeout,
            shutdown_timeout=shutdown.timeout,
        )
        return cls(**values)


def _same(*names: str) -> dict[str, str]:
    """Keywords named as the settings they give."""
    return {name: name for name in names}


def _seconds(name: str, value: object) -> float:
    """A finite number ``>= 0`` (``retry_delay_jitter``, which the daemon has no setting for)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def listen_address(listen: object) -> tuple[str, int]:
    """``(host, port)`` from ``"host:port"``; port 0 asks for any free port."""
    if not isinstance(listen, str):
        raise ValueError(f"http_listen must be a string 'host:port', got {listen!r}")
    any_port = listen.endswith(":0")
    try:
        parsed = _split_listen(listen[:-1] + "1" if any_port else listen)
    except ValueError as e:
        raise ValueError(f"http_listen {listen!r}: {e}") from None
    if parsed is None:
        raise ValueError("http_listen must be 'host:port', got ''")
    host, port = parsed
    return host, 0 if any_port else port


def retry_policy(
    *,
    max_retries: int | None,
    initial_retry_delay: float | None,
    max_retry_delay: float | None,
    retry_delay_growth: float | None,
    retry_delay_jitter: float | Callable[[], float] | None,
    settings: HostSettings,
) -> tuple[RetryPolicy, Callable[[], float]]:
    """The supervisor's policy and random source from autobahn's retry arguments.

    Any subset may be given; the rest take the defaults autobahn documents (1 s, 60 s,
    growth 1.5, ``random.random`` seconds added). ``max_retries`` ``None`` or ``-1`` is
    no limit. ``retry_delay_jitter`` is seconds of noise: a number scales
    ``random.random()``, a 0-argument callable is called for each delay. Every delay
    stays under ``max_retry_delay``. ``jitter=`` (wampd's modes) replaces it. The delays
    grow from the first retry on, as autobahn's do (no ``steady_retries``).
    """
    if initial_retry_delay is None and isinstance(max_retry_delay, int | float):
        initial_retry_delay = min(AUTOBAHN_INITIAL_DELAY, max_retry_delay)
    retry = from_keywords(
        ReconnectConfig,
        {
            "max_retries": max_retries,
            "initial_retry_delay": initial_retry_delay,
            "max_retry_delay": max_retry_delay,
            "retry_delay_growth": retry_delay_growth,
        },
        {
            "max_retries": "max_retries",
            "initial_delay": "initial_retry_delay",
            "max_delay": "max_retry_delay",
            "growth": "retry_delay_growth",
        },
        initial_delay=AUTOBAHN_INITIAL_DELAY,
        max_delay=AUTOBAHN_MAX_DELAY,
        growth=AUTOBAHN_GROWTH,
    )
    initial, maximum, growth = retry.initial_delay, retry.max_delay, retry.growth
    rand = settings.rand
    if settings.jitter is not None:
        if retry_delay_jitter is not None:
            raise ValueError(
                "give either retry_delay_jitter (seconds added, autobahn's) or jitter "
                "(wampd's mode), not both"
            )
        backoff = Backoff(initial, maximum, growth, settings.jitter, steady_retries=0)
    elif callable(retry_delay_jitter):
        backoff = Backoff(initial, maximum, growth, Jitter.ADDED, 1.0, steady_retries=0)
        rand = retry_delay_jitter
    else:
        noise = AUTOBAHN_JITTER
        if retry_delay_jitter is not None:
            noise = _seconds("retry_delay_jitter", retry_delay_jitter)
        backoff = Backoff(initial, maximum, growth, Jitter.ADDED, noise, steady_retries=0)
    policy = RetryPolicy(
        backoff=backoff,
        max_retries=retry.max_retries,
        retry_on_start=True,
        stable_after=settings.stable_after,
        fatal_errors=settings.fatal_errors,
    )
    return policy, rand


def default_reactor() -> Any:
    """The global reactor, imported only when a caller did not pass one."""
    from twisted.internet import reactor  # noqa: PLC0415 -- importing it installs it

    return reactor


def component_name(make: object) -> str:
    """A name for ``make``'s sessions: its ``__name__``, an Application's prefix, or its type."""
    if isinstance(make, ApplicationSessionFactory):
        make = make.session
    name = getattr(make, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    prefix = getattr(make, "_prefix", None)
    if isinstance(prefix, str) and prefix:
        return prefix
    return type(make).__name__


def check_url(url: object, *, tls: bool) -> str:
    """``url`` if wampd can reach a router there; a ``ValueError`` saying why not."""
    if not isinstance(url, str):
        raise ValueError(f"url must be a ws://, wss://, rs:// or rss:// URL string, got {url!r}")
    if url.lower().startswith(("rs:", "rss:", "rs+unix:")):
        try:
            where = target(url)
        except ValueError as e:
            raise ValueError(f"url {url!r}: {e}") from None
        if tls and not where.secure:
            raise ValueError(
                f'ssl/context_factory given, but url {url!r} is not "rss:"; did you mean "rss:"?'
            )
        return url
    try:
        secure, *_ = parse_url(url)
    except Exception as e:
        raise ValueError(f"url {url!r} is not a ws:// or wss:// URL: {e}") from None
    if tls and not secure:
        raise ValueError(
            f'ssl/context_factory given, but url {url!r} is "ws:"; did you mean "wss:"?'
        )
    return url


@dataclass(frozen=True)
class Arguments:
    """autobahn's arguments and wampd's keywords, checked once, in the constructor."""

    url: str
    settings: HostSettings
    policy: RetryPolicy
    rand: Callable[[], float]
    wamp: WampSettings
    #: Keywords for :class:`~wampd.wamp.WampConnector` (serializers, tls).
    connector_options: Mapping[str, Any]

    @classmethod
    def make(
        cls,
        url: object,
        *,
        realm: str | None,
        tls: Any,
        options: Mapping[str, Any],
        serializers: Sequence[Any] | None = None,
        proxy: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        max_retries: int | None = None,
        initial_retry_delay: float | None = None,
        max_retry_delay: float | None = None,
        retry_delay_growth: float | None = None,
        retry_delay_jitter: float | Callable[[], float] | None = None,
    ) -> Arguments:
        """Check every argument; a bad one raises ``ValueError``/``TypeError`` naming it."""
        checked = check_url(url, tls=tls is not None)
        settings = HostSettings.from_options(options)
        policy, rand = retry_policy(
            max_retries=max_retries,
            initial_retry_delay=initial_retry_delay,
            max_retry_delay=max_retry_delay,
            retry_delay_growth=retry_delay_growth,
            retry_delay_jitter=retry_delay_jitter,
            settings=settings,
        )
        wamp, connector_options = wamp_settings(
            realm=realm, serializers=serializers, proxy=proxy, headers=headers, settings=settings
        )
        return cls(checked, settings, policy, rand, wamp, {**connector_options, "tls": tls})

    def plan(
        self,
        make: SessionFactory,
        *,
        extra: Mapping[str, Any] | None,
        once: bool = False,
        **connector_options: Any,
    ) -> tree.Plan:
        """The plan of a tree supervising ``make``'s sessions.

        :param once: one attempt, and losing the session ends the run (``run()`` without
            ``auto_reconnect``).
        :param connector_options: more keywords for the connector (endpoint,
            websocket_options, runner).
        """
        try:
            factory = as_session_factory(make)
        except EntryError as e:
            raise TypeError(
                "make must be a session class, an Application, an ApplicationSessionFactory "
                f"or a make(config) callable; {make!r} {e}"
            ) from None
        settings = self.settings
        component = tree.ComponentPlan(
            name=settings.name or component_name(make),
            make=factory,
            urls=(self.url,),
            wamp=self.wamp,
            policy=replace(self.policy, max_retries=0) if once else self.policy,
            extra=extra,
            connector_options={**self.connector_options, **connector_options},
        )
        return tree.Plan(
            components=(component,),
            shutdown_timeout=settings.shutdown_timeout,
            http=None if settings.http_listen is None else listen_address(settings.http_listen),
            metrics=settings.registry is not None,
            registry=settings.registry,
            rand=self.rand,
        )


def wamp_settings(
    *,
    realm: str | None,
    serializers: Sequence[Any] | None,
    proxy: Mapping[str, Any] | None,
    headers: Mapping[str, Any] | None,
    settings: HostSettings,
) -> tuple[WampSettings, dict[str, Any]]:
    """:class:`~wampd.wamp.WampSettings` from autobahn's arguments, plus the serializer
    instances for the connector (autobahn's ``serializers`` are objects, not names)."""
    if realm is not None and not isinstance(realm, str):
        raise ValueError(f"realm must be a string, got {realm!r}")
    proxy_address: tuple[str, int] | None = None
    if proxy is not None:
        if not (isinstance(proxy, Mapping) and {"host", "port"} <= set(proxy)):
            raise ValueError(f"proxy must be a dict with 'host' and 'port', got {proxy!r}")
        proxy_address = (str(proxy["host"]), int(proxy["port"]))
    if headers is not None and not isinstance(headers, Mapping):
        raise ValueError(f"headers must be a dict, got {headers!r}")
    connector: dict[str, Any] = {}
    names: tuple[str, ...] = ("cbor", "msgpack", "json")
    if serializers is not None:
        if isinstance(serializers, (str, bytes)) or not list(serializers):
            raise ValueError(f"serializers must be a non-empty list, got {serializers!r}")
        connector["serializers"] = list(serializers)
    wamp = WampSettings(
        realm=realm,
        serializers=names,
        headers={str(k): str(v) for k, v in (headers or {}).items()},
        proxy=proxy_address,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        connect_timeout=settings.connect_timeout,
        force_reregister=settings.force_reregister,
    )
    return wamp, connector
