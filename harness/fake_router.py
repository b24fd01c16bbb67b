"""A tiny WAMP router of our own, for tests that must see what a client *sends*.

Crossbar cannot tell a test whether a client sent GOODBYE, how often it said HELLO, or let
it drop a connection on cue; this router can. It speaks WAMP over WebSocket with the
``wamp.2.json``, ``wamp.2.msgpack`` and ``wamp.2.cbor`` subprotocols (the client's first
supported choice wins) and does just enough routing for a client to join and set up:

- HELLO -> WELCOME (session ids 1, 2, 3, ... across connections; details
  ``{"roles": {"broker": {}, "dealer": {}}}``), or ABORT(``--abort-reason``) if given;
- REGISTER -> REGISTERED, UNREGISTER -> UNREGISTERED, SUBSCRIBE -> SUBSCRIBED,
  UNSUBSCRIBE -> UNSUBSCRIBED, PUBLISH with ``acknowledge`` -> PUBLISHED (no EVENTs are
  delivered), CALL -> ERROR ``wamp.error.no_such_procedure``;
- GOODBYE from the client -> recorded, answered with GOODBYE ``wamp.close.goodbye_and_out``,
  then the WebSocket is closed.

Every event is one JSON line in the events file, flushed at once::

    {"event": "connect", "conn": 1, "time": 1700000000.1, "peer": "127.0.0.1:51234"}

Events: ``listening`` (conn 0), ``connect`` (TCP accepted), ``hello`` (realm, authid,
authmethods, roles, serializer), ``welcome`` (session), ``abort`` (reason; sent by us),
``register`` (procedure), ``unregister``, ``subscribe`` (topic), ``unsubscribe``,
``publish`` (topic, acknowledge), ``call`` (procedure), ``goodbye`` (reason, message; sent
by the client), ``client_abort`` (reason), ``message`` (anything else: type, msg),
``drop`` (we aborted the TCP connection), ``disconnect`` (was_clean, code, reason).

Run it::

    python -m harness.fake_router --port P --events FILE \\
        [--drop-after SECONDS] [--drop-count N] [--abort-reason URI] [--max-lifetime S]

``--drop-after S``: abort the TCP connection S seconds after sending WELCOME, for the first
``--drop-count N`` connections that get a WELCOME (default: all of them). Prints
``READY <port>`` on stdout once listening (``--port 0`` picks a free port). SIGTERM stops it.

`FakeRouter` wraps the script as a subprocess for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Self, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.wamp import serializer
from autobahn.websocket.types import ConnectionDeny

from harness.poll import poll
from harness.ports import HOST, free_port
from harness.procs import Proc, ProcessHost, harness_env, parse_json_lines, python_module

# WAMP message type codes.
HELLO, WELCOME, ABORT, GOODBYE, ERROR = 1, 2, 3, 6, 8
PUBLISH, PUBLISHED = 16, 17
SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED = 32, 33, 34, 35
CALL = 48
REGISTER, REGISTERED, UNREGISTER, UNREGISTERED = 64, 65, 66, 67

WELCOME_DETAILS: dict[str, Any] = {"roles": {"broker": {}, "dealer": {}}}


# --------------------------------------------------------------------------------------------
# The router (runs inside the subprocess)
# --------------------------------------------------------------------------------------------


class EventLog:
    """Appends one JSON object per line to a file and flushes it at once."""

    def __init__(self, path: Path) -> None:
        self._fh: IO[str] = path.open("a", encoding="utf-8")

    def write(self, event: str, conn: int, **fields: Any) -> None:
        """Record ``event`` for connection ``conn`` with extra ``fields``."""
        record = {"event": event, "conn": conn, "time": time.time(), **fields}
        self._fh.write(json.dumps(record, default=repr) + "\n")
        self._fh.flush()


class RouterOptions:
    """Behaviour switches shared by all connections of one router process."""

    def __init__(
        self,
        events: EventLog,
        *,
        drop_after: float | None = None,
        drop_count: int | None = None,
        abort_reason: str | None = None,
        misbehave: str | None = None,
    ) -> None:
        self.events = events
        self.drop_after = drop_after
        self.drop_count = drop_count
        self.abort_reason = abort_reason
        #: "garbage": answer HELLO with bytes that are no WAMP message;
        #: "bad-welcome": answer it with a WELCOME whose session id is not an integer.
        self.misbehave = misbehave
        self.connections = 0
        self.sessions = 0
        self.ids = 0
        self.dropped = 0

    def next_id(self) -> int:
        """A fresh id for registrations, subscriptions and publications."""
        self.ids += 1
        return self.ids

    def should_drop(self) -> bool:
        """True if the connection that just got a WELCOME is to be dropped later."""
        if self.drop_after is None:
            return False
        if self.drop_count is not None and self.dropped >= self.drop_count:
            return False
        self.dropped += 1
        return True


def _serializers() -> dict[str, Any]:
    found: dict[str, Any] = {"wamp.2.json": serializer.JsonObjectSerializer()}
    if hasattr(serializer, "MsgPackObjectSerializer"):
        found["wamp.2.msgpack"] = serializer.MsgPackObjectSerializer()
    if hasattr(serializer, "CBORObjectSerializer"):
        found["wamp.2.cbor"] = serializer.CBORObjectSerializer()
    return found


def build_factory(options: RouterOptions, reactor: Any) -> WebSocketServerFactory:
    """Return an autobahn ``WebSocketServerFactory`` for the fake router."""
    serializers = _serializers()
    events = options.events

    class FakeRouterProtocol(WebSocketServerProtocol):
        conn = 0
        serializer: Any = None
        session_id: int | None = None
        _drop_call: Any = None
        _disconnect_logged = False

        def connectionMade(self) -> None:
            options.connections += 1
            self.conn = options.connections
            peer: Any = cast(Any, self.transport).getPeer()
            events.write("connect", self.conn, peer=f"{peer.host}:{peer.port}")
            super().connectionMade()

        def onConnect(self, request: Any) -> str:
            events.write(
                "handshake",
                self.conn,
                path=request.path,
                protocols=list(request.protocols),
                headers=dict(request.headers),
            )
            for proto in request.protocols:
                if proto in serializers:
                    self.serializer = serializers[proto]
                    return str(proto)
            raise ConnectionDeny(
                ConnectionDeny.BAD_REQUEST,
                f"no supported WAMP subprotocol in {request.protocols!r}",
            )

        # -- sending --------------------------------------------------------------------

        def send(self, msg: list[Any]) -> None:
            payload = self.serializer.serialize(msg)
            self.sendMessage(payload, isBinary=self.serializer.BINARY)  # type: ignore[no-untyped-call]

        # -- receiving ------------------------------------------------------------------

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            try:
                msgs = self.serializer.unserialize(payload)
            except Exception as exc:
                events.write("message", self.conn, error=f"cannot unserialize: {exc!r}")
                return
            for msg in msgs:
                self.handle(msg)

        def handle(self, raw: Any) -> None:
            if not isinstance(raw, list | tuple) or not raw or not isinstance(raw[0], int):
                events.write("message", self.conn, type=None, msg=raw)
                return
            msg = list(raw)
            kind = msg[0]
            if kind == HELLO:
                self.on_hello(msg)
            elif kind == GOODBYE:
                self.on_goodbye(msg)
            elif kind == ABORT:
                events.write("client_abort", self.conn, reason=_at(msg, 2), details=_at(msg, 1))
            elif kind == REGISTER:
                events.write("register", self.conn, procedure=_at(msg, 3), options=_at(msg, 2))
                self.send([REGISTERED, msg[1], options.next_id()])
            elif kind == UNREGISTER:
                events.write("unregister", self.conn, registration=_at(msg, 2))
                self.send([UNREGISTERED, msg[1]])
            elif kind == SUBSCRIBE:
                events.write("subscribe", self.conn, topic=_at(msg, 3), options=_at(msg, 2))
                self.send([SUBSCRIBED, msg[1], options.next_id()])
            elif kind == UNSUBSCRIBE:
                events.write("unsubscribe", self.conn, subscription=_at(msg, 2))
                self.send([UNSUBSCRIBED, msg[1]])
            elif kind == PUBLISH:
                opts = _at(msg, 2) or {}
                ack = bool(opts.get("acknowledge")) if isinstance(opts, dict) else False
                events.write(
                    "publish",
                    self.conn,
                    topic=_at(msg, 3),
                    acknowledge=ack,
                    args=_at(msg, 4),
                    kwargs=_at(msg, 5),
                )
                if ack:
                    self.send([PUBLISHED, msg[1], options.next_id()])
            elif kind == CALL:
                events.write("call", self.conn, procedure=_at(msg, 3), args=_at(msg, 4))
                self.send([ERROR, CALL, msg[1], {}, "wamp.error.no_such_procedure"])
            else:
                events.write("message", self.conn, type=kind, msg=msg)

        def on_hello(self, msg: list[Any]) -> None:
            details = _at(msg, 2) or {}
            if not isinstance(details, dict):
                details = {}
            events.write(
                "hello",
                self.conn,
                realm=_at(msg, 1),
                authid=details.get("authid"),
                authmethods=details.get("authmethods"),
                roles=sorted((details.get("roles") or {}).keys()),
                serializer=self.serializer.NAME,
            )
            if options.misbehave == "garbage":
                events.write("misbehave", self.conn, mode="garbage")
                self.sendMessage(b"\x00\xffthis is not a WAMP message", isBinary=False)  # type: ignore[no-untyped-call]
                return
            if options.misbehave == "bad-welcome":
                events.write("misbehave", self.conn, mode="bad-welcome")
                self.send([WELCOME, "not-a-session-id", "not-a-dict"])
                return
            if options.abort_reason:
                events.write("abort", self.conn, reason=options.abort_reason)
                message = f"fake router aborts: {options.abort_reason}"
                self.send([ABORT, {"message": message}, options.abort_reason])
                self.sendClose(1000)
                return
            options.sessions += 1
            self.session_id = options.sessions
            self.send([WELCOME, self.session_id, WELCOME_DETAILS])
            events.write("welcome", self.conn, session=self.session_id)
            if options.should_drop():
                assert options.drop_after is not None
                self._drop_call = reactor.callLater(options.drop_after, self.drop)

        def on_goodbye(self, msg: list[Any]) -> None:
            details = _at(msg, 1) or {}
            message = details.get("message") if isinstance(details, dict) else None
            events.write(
                "goodbye", self.conn, reason=_at(msg, 2), message=message, session=self.session_id
            )
            self.send([GOODBYE, {}, "wamp.close.goodbye_and_out"])
            self.session_id = None
            self.sendClose(1000)

        def drop(self) -> None:
            self._drop_call = None
            events.write("drop", self.conn, session=self.session_id)
            cast(Any, self.transport).abortConnection()

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if self._drop_call is not None and self._drop_call.active():
                self._drop_call.cancel()
            self._drop_call = None
            if not self._disconnect_logged:
                self._disconnect_logged = True
                events.write("disconnect", self.conn, was_clean=wasClean, code=code, reason=reason)

    factory = WebSocketServerFactory(url=f"ws://{HOST}")
    factory.protocol = FakeRouterProtocol
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=10)
    return factory


def _at(msg: Any, index: int) -> Any:
    return msg[index] if len(msg) > index else None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m harness.fake_router")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--events", type=Path, required=True, help="JSON-lines events file")
    parser.add_argument("--drop-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--drop-count", type=int, default=None, metavar="N")
    parser.add_argument("--abort-reason", default=None, metavar="URI")
    parser.add_argument("--misbehave", choices=["garbage", "bad-welcome"], default=None)
    parser.add_argument(
        "--max-lifetime", type=float, default=600.0, help="exit after this many seconds"
    )
    args = parser.parse_args(argv)

    # Imported here, not at the top: importing it installs the global reactor, which the
    # test process importing FakeRouter must not do.
    from twisted.internet import reactor as twisted_reactor  # noqa: PLC0415

    reactor: Any = twisted_reactor

    events = EventLog(args.events)
    options = RouterOptions(
        events,
        drop_after=args.drop_after,
        drop_count=args.drop_count,
        abort_reason=args.abort_reason,
        misbehave=args.misbehave,
    )
    listening = reactor.listenTCP(args.port, build_factory(options, reactor), interface=HOST)
    port = listening.getHost().port
    events.write("listening", 0, port=port, pid=os.getpid())
    reactor.callLater(args.max_lifetime, reactor.stop)
    print(f"READY {port}", flush=True)
    reactor.run()
    return 0


# --------------------------------------------------------------------------------------------
# The wrapper used by tests
# --------------------------------------------------------------------------------------------


class FakeRouter(ProcessHost):
    """Runs ``python -m harness.fake_router`` as a subprocess on 127.0.0.1:``port``.

    Files in ``workdir``: ``fake-router-events.jsonl`` (events, appended across restarts)
    and ``fake-router.log`` (stdout/stderr).
    """

    _what = "fake router"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        drop_after: float | None = None,
        drop_count: int | None = None,
        abort_reason: str | None = None,
        misbehave: str | None = None,
        max_lifetime: float = 600.0,
    ) -> None:
        self.misbehave = misbehave
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port: int = port if port is not None else free_port()
        self.drop_after = drop_after
        self.drop_count = drop_count
        self.abort_reason = abort_reason
        self.max_lifetime = max_lifetime
        self.events_path = self.workdir / "fake-router-events.jsonl"
        self.log_path = self.workdir / "fake-router.log"
        super().__init__()

    def url(self, path: str = "ws") -> str:
        """``ws://127.0.0.1:<port>/<path>`` (the fake router ignores the path)."""
        return f"ws://{HOST}:{self.port}/{path.lstrip('/')}"

    def argv(self) -> list[str]:
        """The command line used by start()."""
        args = ["--port", str(self.port), "--events", str(self.events_path)]
        if self.drop_after is not None:
            args += ["--drop-after", str(self.drop_after)]
        if self.drop_count is not None:
            args += ["--drop-count", str(self.drop_count)]
        if self.abort_reason is not None:
            args += ["--abort-reason", self.abort_reason]
        if self.misbehave is not None:
            args += ["--misbehave", self.misbehave]
        args += ["--max-lifetime", str(self.max_lifetime)]
        return python_module("harness.fake_router", *args)

    def start(self, timeout: float = 15.0) -> Self:
        """Start the router and wait for its ``READY`` line; return self."""
        if self.running:
            raise RuntimeError(f"fake router on port {self.port} is already running")
        self._proc = Proc(
            self.argv(), stdout_path=self.log_path, env=harness_env(), name="fake_router"
        )
        self._proc.start()
        try:
            self._proc.wait_for_line(lambda line: line.startswith("READY "), timeout)
        except BaseException:
            self._proc.kill()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL. Idempotent."""
        if self._proc is not None:
            self._proc.stop(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the router (no close frames are sent). Idempotent."""
        if self._proc is not None:
            self._proc.kill()

    def restart(self, timeout: float = 15.0) -> Self:
        """Stop if running, then start again on the same port (events file is kept)."""
        self.stop()
        return self.start(timeout=timeout)

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """All recorded events so far (only those named ``event`` if given)."""
        try:
            text = self.events_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = parse_json_lines(text)
        if event is not None:
            found = [e for e in found if e.get("event") == event]
        return found

    def wait_for(
        self, event: str, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Poll until at least ``count`` events named ``event`` (whose fields equal the
        keyword arguments ``match``) were recorded; return them all.

        Raises PollTimeout with the events so far and the router's log tail.
        """

        def found() -> list[dict[str, Any]]:
            return [e for e in self.events(event) if all(e.get(k) == v for k, v in match.items())]

        def describe() -> str:
            summary = "\n".join(json.dumps(e) for e in self.events()[-30:])
            tail = self._proc.log_tail(30) if self._proc else ""
            return (
                f"fake router: wanted {count} {event!r} event(s) matching {match}, got "
                f"{len(found())}\n--- events ---\n{summary}\n--- log ---\n{tail}"
            )

        def enough() -> tuple[list[dict[str, Any]]] | None:
            matching = found()  # in a tuple: with count=0, an empty list is enough too
            return (matching,) if len(matching) >= count else None

        (matching,) = poll(enough, timeout, describe=describe)
        return matching

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of the router's stdout/stderr log."""
        return self._proc.log_tail(n) if self._proc else ""

    def __repr__(self) -> str:
        return f"<FakeRouter port={self.port} running={self.running}>"


if __name__ == "__main__":
    sys.exit(main())
