"""The real connector: one attempt to join a WAMP session over WebSocket or RawSocket.

Each attempt builds autobahn's ``WampWebSocketClientFactory`` (with its auto-ping and
handshake options) -- or, for ``rs://``, ``rss://`` and ``rs+unix://`` URLs, its
``WampRawSocketClientFactory``, with wampd's heartbeat standing in for the pings RawSocket
lacks -- around a *fresh* session made by the component's factory, connects it through a
Twisted endpoint (TCP, TLS, a Unix socket, or an HTTP CONNECT proxy), and fires the
attempt's Deferred when the session's ``join`` event comes. The session is instrumented
on the instance, never by patching autobahn:

- ``join`` is given the configured authentication (ticket, WAMP-CRA, cryptosign) unless the
  component passes its own ``authmethods``, and ``onChallenge`` answers for it;
- ``onJoin`` errors are reported as ``component.error`` (with the traceback) and the
  session leaves, so the supervisor retries with backoff instead of keeping a session
  that lost its registrations;
- a ``leave()`` by the component itself is remembered, so the supervisor can tell a
  component that is done from an outage.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from autobahn.twisted.rawsocket import WampRawSocketClientFactory, WampRawSocketClientProtocol
from autobahn.twisted.wamp import Application
from autobahn.twisted.websocket import WampWebSocketClientFactory, WampWebSocketClientProtocol
from autobahn.wamp import message
from autobahn.wamp.auth import create_authenticator
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import CloseDetails, ComponentConfig
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.util import parse_url
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._typing import DelayedCall
from .events import names
from .keys import Cryptosign
from .link import AttemptError, Link, Loss, Reporter
from .outcome import Facts, outcome
from .transports import Target, target

__all__ = [
    "PreciseTimer",
    "SessionFactory",
    "TLSSettings",
    "WampConnector",
    "WampSettings",
    "fresh_sessions",
    "tcp_endpoint",
]

#: Anything that makes a session from a ComponentConfig: an ApplicationSession or
#: Session subclass, an ``autobahn.twisted.wamp.Application``, or a ``make`` function.
SessionFactory = Callable[[ComponentConfig], Any]

#: What RawSocket's heartbeat calls: a procedure no router has (any answer will do).
HEARTBEAT_PROCEDURE = "wampd.heartbeat"

#: The close reason wampd sends when a component's join handler raised.
COMPONENT_ERROR_REASON = "wampd.close.component_error"

_SERIALIZERS: Mapping[str, Callable[[], Any]] = {
    "cbor": CBORSerializer,
    "msgpack": MsgPackSerializer,
    "json": JsonSerializer,
}


@dataclass(frozen=True)
class TLSSettings:
    """Certificates for ``wss://``, read once when the connector is made."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class WampSettings:
    """Everything about how to reach the router, shared by all of a connector's attempts."""

    #: ``None`` lets the component's ``onConnect`` decide (autobahn's runner allows it).
    realm: str | None
    serializers: Sequence[str] = ("cbor", "msgpack", "json")
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: TLSSettings = field(default_factory=TLSSettings)
    #: ``(host, port)`` of an HTTP CONNECT proxy.
    proxy: tuple[str, int] | None = None
    auth_method: str = "anonymous"
    authid: str | None = None
    authrole: str | None = None
    #: The ticket or WAMP-CRA secret, or the cryptosign seed (hex); never logged.
    secret: str | None = field(default=None, repr=False)
    #: cryptosign: more authextra (the public key is added), and the channel binding
    #: (``"tls-unique"``) or None.
    authextra: Mapping[str, Any] = field(default_factory=dict)
    channel_binding: str | None = None
    #: Offer permessage-deflate (the router may decline: then frames go uncompressed).
    compression: bool = False
    #: Every REGISTER asks for ``force_reregister``: a rejoin takes its procedures back
    #: from a session of its own the router has not noticed is gone.
    force_reregister: bool = False
    ping_interval: float = 5.0
    ping_timeout: float = 5.0
    connect_timeout: float = 10.0
    close_timeout: float = 1.0


class WampConnector:
    """Makes attempts for one component; see :mod:`wampd.link` for the contract."""

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        make_session: SessionFactory,
        settings: WampSettings,
        extra: Mapping[str, Any] | None = None,
        *,
        endpoint: Any = None,
        tls: Any = None,
        serializers: Sequence[Any] | None = None,
        websocket_options: Mapping[str, Any] | None = None,
        runner: Any = None,
        shared: Any = None,
    ) -> None:
        """
        :param extra: the components' ``config.extra``; a ``dict`` is passed on as it is
            (shared by every session, as autobahn's runner does), anything else is copied.
        :param endpoint: an ``IStreamClientEndpoint`` to use for every attempt instead of
            one made from the URL (``ApplicationRunner.run(endpoint=...)``).
        :param tls: a TLS connection creator (or context factory) for ``wss://`` instead of
            one made from ``settings.tls`` (``ApplicationRunner(ssl=...)``).
        :param serializers: autobahn serializer instances, instead of ``settings``' names.
        :param websocket_options: extra ``setProtocolOptions`` for the WebSocket factory,
            applied after wampd's own.
        :param runner: the ``runner`` of every session's ``ComponentConfig``.
        :param shared: the ``shared`` of every session's ``ComponentConfig`` (what the
            daemon hands its components: the outbox).
        """
        self.reactor = reactor
        self._make_session = fresh_sessions(make_session)
        self.settings = settings
        self._extra = extra if isinstance(extra, dict) else dict(extra or {})
        self._endpoint = endpoint
        self._tls_creator = tls
        if serializers is None:
            serializers = [_SERIALIZERS[name]() for name in settings.serializers]
        self._serializers = list(serializers)
        self._websocket_options = dict(websocket_options or {})
        self._runner = runner
        self._shared = shared
        # The trust root and client certificate, from PEM files read once, at start.
        files = settings.tls
        self._trust = (
            Certificate.loadPEM(Path(files.ca_file).read_bytes()) if files.ca_file else None
        )
        self._client: Any = None
        if files.cert_file:
            pem = Path(files.cert_file).read_bytes()
            if files.key_file:
                pem += b"\n" + Path(files.key_file).read_bytes()
            self._client = PrivateCertificate.loadPEM(pem)

    def __call__(self, url: str, report: Reporter) -> Deferred[Link]:
        return _Attempt(self, url, report).start()

    # -- pieces an attempt asks for --

    def endpoint(self, url: str) -> tuple[Any, dict[str, Any] | None]:
        """The endpoint to connect to, and autobahn's ``proxy`` option if there is one."""
        where = target(url)
        if self._endpoint is not None:
            return self._endpoint, None
        timeout = self.settings.connect_timeout
        if where.rawsocket:
            return self._rawsocket_endpoint(where, timeout), None
        secure, host, port, *_ = parse_url(url)
        if self.settings.proxy is not None:
            # autobahn speaks CONNECT to the proxy, then starts TLS itself if wss.
            host, port = self.settings.proxy
            return tcp_endpoint(self.reactor, host, port, timeout), {"host": host, "port": port}
        endpoint = tcp_endpoint(self.reactor, host, port, timeout)
        return (wrapClientTLS(self.tls_options(host), endpoint) if secure else endpoint), None

    def _rawsocket_endpoint(self, where: Target, timeout: float) -> Any:
        if self.settings.proxy is not None:
            raise ValueError("an HTTP CONNECT proxy is for ws:// and wss:// URLs only")
        if where.unix is not None:
            if not os.path.exists(where.unix):
                raise ValueError(
                    f"no Unix socket at {where.unix} (is the router running, and listening "
                    "there? the attempt is retried)"
                )
            return UNIXClientEndpoint(self.reactor, where.unix, timeout=timeout)
        endpoint = tcp_endpoint(self.reactor, where.host, where.port, timeout)
        return wrapClientTLS(self.tls_options(where.host), endpoint) if where.secure else endpoint

    def tls_options(self, host: str) -> Any:
        if self._tls_creator is not None:
            return self._tls_creator
        if self.settings.tls.verify:
            trust = self._trust if self._trust is not None else platformTrust()
            return optionsForClientTLS(host, trustRoot=trust, clientCertificate=self._client)
        self._log.warn(
            "TLS certificate verification is OFF for {host} (router.verify = false)", host=host
        )
        if self._client is None:
            return CertificateOptions(verify=False)
        return self._client.options()  # its certificate and key, and no trust root: no checks

    def factory(self, attempt: _Attempt, url: str, proxy: dict[str, Any] | None) -> Any:
        settings = self.settings
        if target(url).rawsocket:
            # One serializer: RawSocket's handshake names exactly one.
            raw: Any = WampRawSocketClientFactory(
                attempt.make_session, serializer=self._serializers[0]
            )
            raw.protocol = _RawProtocol
            raw.wampd_attempt = attempt
            return raw
        factory: Any = WampWebSocketClientFactory(
            attempt.make_session,
            url=url,
            serializers=self._serializers,
            proxy=proxy,
            headers=dict(settings.headers) or None,
            reactor=self.reactor,
        )
        if proxy is not None and factory.isSecure:
            factory.contextFactory = self.tls_options(factory.host)
        factory.protocol = _Protocol
        factory.setProtocolOptions(
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_timeout if settings.ping_interval else 0,
            # connect_timeout (enforced by the supervisor) covers the whole attempt.
            openHandshakeTimeout=0,
            closeHandshakeTimeout=settings.close_timeout,
        )
        if settings.compression:
            factory.setProtocolOptions(
                perMessageCompressionOffers=[PerMessageDeflateOffer(accept_max_window_bits=True)],
                perMessageCompressionAccept=_accept_deflate,
            )
        factory.setProtocolOptions(**self._websocket_options)
        # autobahn's ping, PONG and close-handshake timers, to the reactor's precision.
        factory._batched_timer = PreciseTimer(self.reactor)
        factory.wampd_attempt = attempt
        return factory

    def new_session(self) -> Any:
        return self._make_session(
            ComponentConfig(
                realm=self.settings.realm,
                extra=self._extra,
                runner=self._runner,
                shared=self._shared,
            )
        )


def _accept_deflate(response: Any) -> Any:
    """permessage-deflate as the router answered the offer; None (no compression) for
    anything else."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def _authenticator(settings: WampSettings) -> Any:
    """autobahn's authenticator for the configured method (ticket, wampcra, cryptosign)."""
    given = {"authid": settings.authid, "authrole": settings.authrole}
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if settings.auth_method == "cryptosign":
        assert settings.secret is not None
        return Cryptosign(
            bytes.fromhex(settings.secret),
            authextra=settings.authextra,
            channel_binding=settings.channel_binding,
        )
    options["ticket" if settings.auth_method == "ticket" else "secret"] = settings.secret
    return create_authenticator(settings.auth_method, **options)


def tcp_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP client endpoint for ``host``.

    An IP address gets a plain TCP endpoint: ``HostnameEndpoint`` reports a refused
    connection only at its next 0.3 s "happy eyeballs" step, even when there is only one
    address to try, which would add 0.3 s to every retry while a router is down. A name
    gets ``HostnameEndpoint``, which resolves it and races its addresses.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    plain = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
    return plain(reactor, host, port, timeout=timeout)


class PreciseTimer:
    """Stands in for the timer of autobahn's WebSocket factory (``_batched_timer``).

    txaio's batched timer truncates each deadline to a whole second of wall-clock time
    (``int(now + delay)``), so a ``ping_timeout`` of T waited anywhere from T - 1 to T
    seconds: 1 s could be a few milliseconds, and anything under 1 s fired at once,
    dropping healthy links. These calls fire after exactly ``delay`` seconds.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return _Call(self._reactor.callLater(delay, func, *args, **kw))


class _Call:
    """A delayed call whose ``cancel()`` may come after it ran, as autobahn's do."""

    def __init__(self, call: DelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


def fresh_sessions(make: SessionFactory) -> SessionFactory:
    """``make``, able to make a session for every attempt.

    An ``autobahn.twisted.wamp.Application`` makes one session in its life: its
    ``__call__`` asserts that ``app.session`` is still ``None``. Before each new session
    the one before is gone, so ``app.session`` is cleared first; the application's
    decorators then register and subscribe again on the new session.
    """
    if not isinstance(make, Application):
        return make

    def make_application_session(config: ComponentConfig) -> Any:
        make.session = None
        return make(config)

    return make_application_session


class _Protocol(WampWebSocketClientProtocol):
    """autobahn's client protocol, telling its attempt about keepalive timeouts and the end
    (and, with ``force_reregister``, marking every REGISTER so)."""

    def send(self, msg: Any) -> None:
        # Here, not in session.register: a component's decorated methods may carry
        # RegisterOptions of their own, which register() would prefer to any given to it.
        if isinstance(msg, message.Register) and self.factory.wampd_attempt.force_reregister:
            msg.force_reregister = True
        super().send(msg)  # type: ignore[no-untyped-call]

    def onAutoPingTimeout(self) -> None:
        self.factory.wampd_attempt.keepalive_timed_out()
        super().onAutoPingTimeout()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.wampd_attempt.connection_lost(self, reason)


#: RawSocket frame types (the low 3 bits of a frame header's first octet).
_RAW_MESSAGE, _RAW_PING, _RAW_PONG = 0, 1, 2


class _RawProtocol(WampRawSocketClientProtocol):
    """autobahn's RawSocket client protocol, which reads every frame header as a 32-bit
    length: a PING frame from the router (type 1 in the header's first octet) would read
    as a message of 16 MiB or more and kill the link. Here frames are read by their type:
    messages go to autobahn, a PING is answered with a PONG of the same payload, a PONG
    is dropped. The attempt hears of the end, and REGISTERs are marked for
    ``force_reregister`` as on WebSocket."""

    _frames = b""

    def dataReceived(self, data: bytes) -> None:
        if not self._handshake_complete:
            super().dataReceived(data)  # type: ignore[no-untyped-call]  # the handshake
            return
        self._frames += data
        while len(self._frames) >= 4:
            kind, size = self._frames[0] & 0x07, int.from_bytes(self._frames[1:4], "big")
            if size > self.MAX_LENGTH:  # more than the handshake agreed on
                self.log.warn(
                    "RawSocket frame of {size} bytes, more than the {limit} agreed: aborting",
                    size=size,
                    limit=self.MAX_LENGTH,
                )
                self.abort()  # type: ignore[no-untyped-call]
                return
            if len(self._frames) < 4 + size:
                return
            payload, self._frames = self._frames[4 : 4 + size], self._frames[4 + size :]
            if kind == _RAW_MESSAGE:
                self.stringReceived(payload)  # type: ignore[no-untyped-call]
            elif kind == _RAW_PING:
                pong = bytes([_RAW_PONG]) + size.to_bytes(3, "big") + payload
                cast(Any, self.transport).write(pong)
            elif kind != _RAW_PONG:
                # A frame type RawSocket does not define: not a WAMP router.
                self.abort()  # type: ignore[no-untyped-call]
                return

    def send(self, msg: Any) -> None:
        if isinstance(msg, message.Register) and self.factory.wampd_attempt.force_reregister:
            msg.force_reregister = True
        super().send(msg)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        finally:
            self.factory.wampd_attempt.connection_lost(self, reason)


class _Attempt:
    """One attempt, and -- once joined -- the :class:`~wampd.link.Link` of its session."""

    def __init__(self, connector: WampConnector, url: str, report: Reporter) -> None:
        self._connector = connector
        self.url = url
        self._report = report
        self._joined: Deferred[Link] = Deferred(self._cancel)
        self.lost: Deferred[Loss] = Deferred()
        self._connecting: Deferred[Any] | None = None
        self._protocol: Any = None
        self._session: Any = None
        self.session_id = 0
        self.realm = connector.settings.realm or ""
        self.force_reregister = connector.settings.force_reregister
        #: RawSocket has no pings of its own: a WAMP call stands in (:meth:`_beat`).
        self._heartbeat = target(url).rawsocket and connector.settings.ping_interval > 0
        self._beat_timer: DelayedCall | None = None
        self._beat_deadline: DelayedCall | None = None
        #: What happened to this attempt; :func:`~wampd.outcome.outcome` decides the end.
        self.facts = Facts()
        self._guard: DelayedCall | None = None
        #: The session's own ``leave``, set (with the session) by :meth:`_instrument`.
        self._original_leave: Callable[..., Any]

    # -- Link --

    def leave(self, timeout: float) -> None:
        if self._session is not None and self._session.is_attached() and self._protocol is not None:
            self._guard = self._connector.reactor.callLater(timeout, self.abort)
            self._send_goodbye("wamp.close.normal")
        else:
            self.abort()

    def abort(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abortConnection()

    # -- the attempt --

    def start(self) -> Deferred[Link]:
        try:
            endpoint, proxy = self._connector.endpoint(self.url)
            factory = self._connector.factory(self, self.url, proxy)
        except Exception as e:
            self._joined.errback(AttemptError(f"cannot connect to {self.url}: {e}"))
        else:
            self._connecting = endpoint.connect(factory)
            self._connecting.addCallbacks(self._connected, self._connect_failed)
        return self._joined

    def _connected(self, protocol: Any) -> None:
        self._protocol = protocol

    def _connect_failed(self, failure: Failure) -> None:
        if not self._joined.called:
            self._joined.errback(AttemptError(_describe(failure)))

    def _cancel(self, d: Deferred[Link]) -> None:
        # Once the connection is made (or failed), cancelling its Deferred does nothing.
        if self._connecting is not None:
            self._connecting.cancel()
        self.abort()

    def make_session(self) -> Any:
        """Called by autobahn when the WebSocket opens: a fresh, instrumented session."""
        try:
            session = self._connector.new_session()
            self._instrument(session)
        except Exception as e:
            self._report_component_error(Failure(), "the component's session factory failed")
            raise RuntimeError(f"session factory failed: {e}") from e
        self._session = session
        return session

    def _instrument(self, session: Any) -> None:
        session.on("join", self._on_join)
        session.on("leave", self._on_leave)
        self._original_leave = session.leave
        original_join, original_challenge = session.join, session.onChallenge
        original_on_join = session.onJoin

        def leave(reason: str | None = None, message: str | None = None) -> Any:
            self.facts.left_by_component = True
            return self._send_goodbye(reason or "wamp.close.normal", message)

        def on_join(details: Any) -> Any:
            return maybeDeferred(original_on_join, details).addErrback(self._join_handler_failed)

        session.leave = leave
        session.onJoin = on_join

        settings = self._connector.settings
        if settings.auth_method == "anonymous":
            return
        authenticator = _authenticator(settings)
        # cryptosign's authextra carries the public key (and the channel binding).
        authextra = getattr(authenticator, "authextra", None) or None

        def join(realm: str, authmethods: list[str] | None = None, *args: Any, **kw: Any) -> Any:
            if authmethods is None and not args:
                kw.setdefault("authid", settings.authid)
                kw.setdefault("authrole", settings.authrole)
                if authextra is not None:
                    kw.setdefault("authextra", authextra)
                authmethods = [authenticator.name]
            return original_join(realm, authmethods, *args, **kw)

        def on_challenge(challenge: Any) -> Any:
            if challenge.method == authenticator.name:
                return authenticator.on_challenge(session, challenge)
            return original_challenge(challenge)

        session.join = join
        session.onChallenge = on_challenge

    def _on_join(self, session: Any, details: Any) -> None:
        self.session_id = details.session
        self.realm = details.realm or self.realm
        if self._heartbeat:
            self._next_beat()
        if not self._joined.called:
            self._joined.callback(self)

    # -- RawSocket's heartbeat -----------------------------------------------------------

    def _next_beat(self) -> None:
        interval = self._connector.settings.ping_interval
        self._beat_timer = self._connector.reactor.callLater(interval, self._beat)

    def _beat(self) -> None:
        """Call a procedure no router has: any answer -- an ERROR, no_such_procedure or
        not_authorized alike -- proves the router alive, and needs no permission."""
        self._beat_timer = None
        session = self._session
        if session is None or not session.is_attached():
            return
        timeout = self._connector.settings.ping_timeout
        self._beat_deadline = self._connector.reactor.callLater(timeout, self._beat_missed)
        d: Deferred[Any] = maybeDeferred(session.call, HEARTBEAT_PROCEDURE)
        d.addBoth(self._beat_answered)

    def _beat_answered(self, _: object) -> None:
        deadline, self._beat_deadline = self._beat_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
            self._next_beat()

    def _beat_missed(self) -> None:
        self._beat_deadline = None
        timeout = self._connector.settings.ping_timeout
        self.keepalive_timed_out(
            f"no answer to the RawSocket heartbeat (a WAMP call) within {timeout:g} s; "
            "dropping the connection"
        )
        self.abort()

    def _stop_beats(self) -> None:
        for timer in (self._beat_timer, self._beat_deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self._beat_timer = self._beat_deadline = None

    def _on_leave(self, session: Any, details: CloseDetails) -> None:
        self.facts.router_reason = details.reason
        self.facts.router_message = details.message
        # A component whose onLeave does not disconnect would leave the connection
        # open with no session on it; close it so the supervisor sees the end.
        if self._protocol is not None and self._protocol.transport is not None:
            session.disconnect()

    def _join_handler_failed(self, failure: Failure) -> None:
        self._report_component_error(failure, "the component's join handler raised")
        if self._session is not None and self._session.is_attached():
            self._send_goodbye(COMPONENT_ERROR_REASON, self.facts.component_error)

    def _send_goodbye(self, reason: str, message: str | None = None) -> Any:
        if self.facts.sent_reason is None:
            self.facts.sent_reason = reason
        return self._original_leave(reason, message)

    def _report_component_error(self, failure: Failure, what: str) -> None:
        error = self.facts.component_error = f"{what}: {_describe(failure)}"
        self._report(names.COMPONENT_ERROR, error=error, traceback=failure.getTraceback())

    def keepalive_timed_out(
        self, error: str = "no PONG from the router in time; dropping the connection"
    ) -> None:
        self.facts.keepalive = True
        self._report(names.KEEPALIVE_TIMEOUT, error=error)

    def connection_lost(self, protocol: Any, reason: Failure) -> None:
        if self._guard is not None and self._guard.active():
            self._guard.cancel()
        self._stop_beats()
        self._session = None
        why = getattr(protocol, "wasNotCleanReason", None)  # WebSocket's; RawSocket has none
        self.facts.not_clean = str(why) if why else None
        self.facts.transport = _describe(reason)
        ending = outcome(self.facts, joined=self._joined.called)
        if isinstance(ending, AttemptError):
            self._joined.errback(ending)
        elif not self.lost.called:
            self.lost.callback(ending)


def _describe(failure: Failure) -> str:
    name = type(failure.value).__name__
    return f"{name}: {str(failure.value).strip() or name}"
