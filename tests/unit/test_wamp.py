"""The connector's pieces that need no router: endpoints, timers, settings into factories."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

import autobahn.websocket.protocol
import pytest
from autobahn.twisted.websocket import WampWebSocketClientProtocol
from autobahn.wamp import message
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

import wampd.wamp
from wampd.config import parse_config
from wampd.daemon import wamp_settings
from wampd.embed import HostSettings
from wampd.embed import wamp_settings as embed_settings
from wampd.wamp import PreciseTimer, WampConnector, WampSettings, tcp_endpoint


def test_ip_addresses_get_a_plain_tcp_endpoint_and_names_a_resolving_one() -> None:
    """127.0.0.1 and ::1 are not resolved (HostnameEndpoint would report a refused
    connection 0.3 s late); a host name is."""
    reactor = MemoryReactorClock()
    assert isinstance(tcp_endpoint(reactor, "127.0.0.1", 8080, 5), TCP4ClientEndpoint)
    assert isinstance(tcp_endpoint(reactor, "::1", 8080, 5), TCP6ClientEndpoint)
    assert isinstance(tcp_endpoint(reactor, "router.example", 8080, 5), HostnameEndpoint)


def test_a_refused_connect_to_an_ip_address_fails_at_once() -> None:
    """The endpoint's connect fails as soon as the connection fails, with no extra tick."""
    reactor = MemoryReactorClock()
    failures: list[Any] = []
    d = tcp_endpoint(reactor, "127.0.0.1", 8080, 5).connect(_Factory())
    d.addErrback(failures.append)
    host, port, factory, timeout, _ = reactor.tcpClients[0]
    assert (host, port, timeout) == ("127.0.0.1", 8080, 5)
    factory.clientConnectionFailed(reactor.connectors[0], _refused())
    assert len(failures) == 1


def test_precise_timer_fires_after_exactly_the_delay_and_cancels_safely() -> None:
    """A 0.5 s call fires at 0.5 s, not at the next whole second (txaio's batched timer
    truncated deadlines to whole seconds); cancelling after it ran is harmless, as
    autobahn does."""
    clock = Clock()
    clock.advance(100.7)
    fired: list[float] = []
    timer = PreciseTimer(clock)
    call = timer.call_later(0.5, lambda: fired.append(clock.seconds()))
    clock.advance(0.499)
    assert fired == []
    clock.advance(0.001)
    assert fired == [101.2]
    call.cancel()
    later = timer.call_later(1.0, lambda: fired.append(-1))
    later.cancel()
    later.cancel()
    clock.advance(2)
    assert fired == [101.2]


def test_autobahn_still_times_pings_with_the_factory_timer_wampd_replaces() -> None:
    """The factory's ``_batched_timer`` is what autobahn's ping and PONG timers use; if
    autobahn stopped using it, wampd's precise timer would silently not apply."""
    source = inspect.getsource(autobahn.websocket.protocol)
    assert source.count("self.factory._batched_timer.call_later(") >= 3
    connector = WampConnector(
        Clock(), lambda config: None, WampSettings(realm="realm1", ping_interval=0.5)
    )
    # A stand-in: building the factory only takes the attempt's make_session.
    attempt = cast(wampd.wamp._Attempt, _Attempt())
    factory = connector.factory(attempt, "ws://127.0.0.1:8080/ws", None)
    assert isinstance(factory._batched_timer, PreciseTimer)
    assert (factory.autoPingInterval, factory.autoPingTimeout) == (0.5, 5.0)


class _Attempt:
    def make_session(self) -> Any:
        return None


class _Factory:
    def buildProtocol(self, addr: Any) -> Any:
        return None


def _refused() -> Failure:
    return Failure(ConnectionRefusedError())


def test_force_reregister_marks_every_register_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the protocol, so registrations whose decorators carry RegisterOptions of their
    own (which autobahn's register() prefers to the ones it is given) are marked too."""
    sent: list[Any] = []
    monkeypatch.setattr(WampWebSocketClientProtocol, "send", lambda self, msg: sent.append(msg))
    for force in (True, False):
        protocol = wampd.wamp._Protocol()
        protocol.factory = SimpleNamespace(wampd_attempt=SimpleNamespace(force_reregister=force))
        own = message.Register(2, "com.example.b", invoke="roundrobin")
        protocol.send(message.Register(1, "com.example.a"))
        protocol.send(own)
        protocol.send(message.Publish(3, "com.example.t"))
        registers = [m for m in sent if isinstance(m, message.Register)]
        assert [m.force_reregister for m in registers] == [True, True] if force else [None, None]
        assert own.invoke == "roundrobin"  # the component's own options stay
        assert not hasattr(sent[2], "force_reregister") or sent[2].force_reregister is None
        sent.clear()


def test_force_reregister_reaches_the_connector_from_config_and_keywords(tmp_path: Any) -> None:
    data = {
        "router": {"url": "ws://127.0.0.1:9/ws", "realm": "r"},
        "component": [
            {"name": "a", "entry": "m:A", "force_reregister": True},
            {"name": "b", "entry": "m:B"},
        ],
    }
    config = parse_config(data, environ={})
    a, b = config.components
    assert wamp_settings(config, a).force_reregister is True
    assert wamp_settings(config, b).force_reregister is False
    settings = HostSettings.from_options({"force_reregister": True})
    wamp, _ = embed_settings(
        realm="r", serializers=None, proxy=None, headers=None, settings=settings
    )
    assert wamp.force_reregister is True
    with pytest.raises(ValueError, match="force_reregister must be True or False"):
        HostSettings.from_options({"force_reregister": "yes"})


def test_compression_offers_permessage_deflate_and_accepts_only_it() -> None:
    attempt = cast(wampd.wamp._Attempt, _Attempt())
    for compression in (True, False):
        connector = WampConnector(
            Clock(), lambda config: None, WampSettings(realm="r", compression=compression)
        )
        factory = connector.factory(attempt, "ws://127.0.0.1:8080/ws", None)
        offers = factory.perMessageCompressionOffers
        if not compression:
            assert offers == []
            continue
        assert [type(o) for o in offers] == [PerMessageDeflateOffer]
        accept = factory.perMessageCompressionAccept
        answer = PerMessageDeflateResponse(False, False, 0, 0)
        assert isinstance(accept(answer), PerMessageDeflateResponseAccept)
        assert accept(object()) is None


def _raw_protocol() -> tuple[Any, list[bytes], StringTransport]:
    protocol: Any = wampd.wamp._RawProtocol()  # type: ignore[no-untyped-call]
    protocol._handshake_complete = True
    protocol.MAX_LENGTH = 1 << 16
    transport = StringTransport()
    protocol.transport = transport
    received: list[bytes] = []
    protocol.stringReceived = received.append
    return protocol, received, transport


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(3, "big") + payload


def test_rawsocket_frames_are_read_by_type_and_a_ping_is_answered() -> None:
    """autobahn reads a RawSocket header as a 32-bit length, so a router's PING (type 1)
    would be a 16 MiB message and the end of the link; wampd answers it."""
    protocol, received, transport = _raw_protocol()
    data = _frame(0, b"first") + _frame(1, b"are you there") + _frame(2, b"pong") + _frame(0, b"")
    for i in range(0, len(data), 3):  # in pieces, as TCP may deliver them
        protocol.dataReceived(data[i : i + 3])
    assert received == [b"first", b""]
    assert transport.value() == _frame(2, b"are you there")
    assert not transport.disconnecting


def test_rawsocket_frames_of_no_known_type_or_too_long_end_the_link() -> None:
    protocol, received, transport = _raw_protocol()
    protocol.dataReceived(_frame(5, b"x") + _frame(0, b"after"))
    assert received == [] and transport.disconnecting  # aborted, nothing read after it
    protocol, received, transport = _raw_protocol()
    too_long = bytes([0]) + (1 << 20).to_bytes(3, "big")
    protocol.dataReceived(too_long)
    assert received == [] and transport.disconnecting
