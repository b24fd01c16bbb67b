"""A TCP fault proxy for the fault-injection tests, switchable at runtime.

It sits between wampd and the router (both on 127.0.0.1) and does, per mode:

``pass``            forward both directions.
``blackhole``       accept, and swallow everything both ways; TCP stays open (a dead link).
``reset``           reset (RST) every connection, open ones and new ones.
``delay MS``        forward, each chunk MS milliseconds late, both ways.
``refuse``          close the listener (connection refused); open connections stay.
``reset_after S``   forward, but reset each connection S seconds after it was accepted.

Run as ``python -m harness.fault_proxy --listen P --target T --control C``; it
prints ``READY <listen> <control>``. The control port takes one command per line
(``mode blackhole``, ``mode delay 500``, ``stats``: the mode, connections, and the bytes
forwarded each way) and answers one line (``ok ...`` or ``error ...``).
:class:`FaultProxy` wraps the process for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from harness.ports import free_port, wait_for_port
from harness.procs import Proc, python_module

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IConnector
    from twisted.python.failure import Failure

HOST = "127.0.0.1"


class _TCPTransport(Protocol):
    """What the proxy uses of a Twisted TCP transport (Twisted types transports with zope
    interfaces, which mypy cannot check without a plugin)."""

    connected: int

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getHandle(self) -> socket.socket: ...


def _serve(listen: int, target: int, control: int) -> None:  # pragma: no cover - subprocess
    # Imported here: importing the reactor installs it, which the test process must not do.
    from twisted.internet import protocol, reactor  # noqa: PLC0415
    from twisted.protocols.basic import LineReceiver  # noqa: PLC0415

    r: Any = reactor

    class State:
        mode = "pass"
        delay = 0.0
        reset_after = 0.0
        pairs: ClassVar[list[Any]] = []
        accepted = 0
        listener: Any = None
        #: Bytes forwarded, client to target ("up") and back ("down").
        up = 0
        down = 0

    def tcp(proto: protocol.Protocol) -> _TCPTransport:
        return cast(_TCPTransport, proto.transport)

    def rst(transport: _TCPTransport) -> None:
        # SO_LINGER 0: closing sends RST, not FIN.
        with contextlib.suppress(Exception):
            transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        transport.abortConnection()

    class Upstream(protocol.Protocol):
        def __init__(self, client: Client) -> None:
            self.client = client

        def connectionMade(self) -> None:
            self.client.upstream_ready(self)

        def dataReceived(self, data: bytes) -> None:
            if State.mode != "blackhole":
                State.down += len(data)
            self.client.forward(tcp(self.client), data)

        def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
            if self.client.transport is not None and State.mode != "blackhole":
                tcp(self.client).loseConnection()

    class UpstreamFactory(protocol.ClientFactory):
        def __init__(self, client: Client) -> None:
            self.client = client

        def buildProtocol(self, addr: IAddress | None) -> Upstream:
            return Upstream(self.client)

        def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
            tcp(self.client).loseConnection()

    class Client(protocol.Protocol):
        upstream: Upstream | None = None
        pending: list[bytes]
        timer: Any = None

        def connectionMade(self) -> None:
            State.accepted += 1
            self.pending = []
            State.pairs.append(self)
            if State.mode == "reset":
                rst(tcp(self))
                return
            if State.mode == "reset_after":
                self.timer = r.callLater(State.reset_after, self.reset)
            r.connectTCP(HOST, target, UpstreamFactory(self))

        def upstream_ready(self, upstream: Upstream) -> None:
            self.upstream = upstream
            for data in self.pending:
                self.forward(tcp(upstream), data)
            self.pending = []

        def dataReceived(self, data: bytes) -> None:
            if State.mode != "blackhole":
                State.up += len(data)
            if self.upstream is None:
                self.pending.append(data)
            else:
                self.forward(tcp(self.upstream), data)

        def forward(self, to: _TCPTransport, data: bytes) -> None:
            if State.mode == "blackhole":
                return
            if State.mode == "delay" and State.delay > 0:
                r.callLater(State.delay, lambda: to.write(data) if to.connected else None)
            else:
                to.write(data)

        def reset(self) -> None:
            if self.upstream is not None:
                rst(tcp(self.upstream))
            rst(tcp(self))

        def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
            if self in State.pairs:
                State.pairs.remove(self)
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            if self.upstream is not None and State.mode != "blackhole":
                tcp(self.upstream).loseConnection()

    client_factory = protocol.Factory.forProtocol(Client)

    def listen_again() -> None:
        if State.listener is None:
            State.listener = r.listenTCP(listen, client_factory, interface=HOST)

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            try:
                answer = "ok " + command(words)
            except Exception as e:
                answer = f"error {e}"
            self.sendLine(answer.encode())  # type: ignore[no-untyped-call]

    def command(words: list[str]) -> str:
        if words[:1] == ["stats"]:
            return json.dumps(
                {
                    "mode": State.mode,
                    "accepted": State.accepted,
                    "open": len(State.pairs),
                    "up": State.up,
                    "down": State.down,
                }
            )
        if words[:1] != ["mode"] or len(words) < 2:
            raise ValueError(f"unknown command {words!r}")
        mode = words[1]
        if mode not in ("pass", "blackhole", "reset", "delay", "refuse", "reset_after"):
            raise ValueError(f"unknown mode {mode!r}")
        State.mode = mode
        if mode == "delay":
            State.delay = float(words[2]) / 1000
        if mode == "reset_after":
            State.reset_after = float(words[2])
        if mode == "refuse":
            if State.listener is not None:
                State.listener.stopListening()
                State.listener = None
        else:
            listen_again()
        if mode == "reset":
            for pair in list(State.pairs):
                pair.reset()
        if mode == "reset_after":
            now_pairs = list(State.pairs)
            for pair in now_pairs:
                if pair.timer is None:
                    pair.timer = r.callLater(State.reset_after, pair.reset)
        return mode

    listen_again()
    r.listenTCP(control, protocol.Factory.forProtocol(Control), interface=HOST)
    print(f"READY {listen} {control}", flush=True)
    r.run()


class FaultProxy:
    """The proxy as a subprocess: ``start()``, ``mode("blackhole")``, ``stop()``."""

    def __init__(self, workdir: Path, target: int, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.port = port if port is not None else free_port()
        self.control = free_port()
        self.proc = Proc(
            python_module(
                "harness.fault_proxy",
                "--listen",
                str(self.port),
                "--target",
                str(target),
                "--control",
                str(self.control),
            ),
            stdout_path=self.workdir / "fault-proxy.log",
            name="fault-proxy",
        )

    def start(self, timeout: float = 15) -> FaultProxy:
        self.proc.start()
        self.proc.wait_for_line(lambda line: line.startswith("READY"), timeout)
        wait_for_port(self.control, timeout)
        return self

    def url(self, path: str = "ws") -> str:
        return f"ws://{HOST}:{self.port}/{path}"

    def command(self, line: str) -> str:
        with socket.create_connection((HOST, self.control), timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        text = answer.decode().strip()
        if not text.startswith("ok"):
            raise RuntimeError(f"fault proxy: {line!r} -> {text!r}")
        return text[3:]

    def mode(self, mode: str, arg: float | None = None) -> None:
        self.command(f"mode {mode}" + ("" if arg is None else f" {arg}"))

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.command("stats"))
        return result

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - subprocess
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args(argv)
    _serve(args.listen, args.target, args.control)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
