"""The bench's own WAMP clients, run as subprocesses: a load client and a prober.

::

    python -m bench.client load  --url URL --realm R
    python -m bench.client probe --url URL --realm R

Both follow ``--commands FILE`` (one JSON command per line, appended by the bench) and
answer JSON lines on stdout; ``{"op": "quit"}`` ends them.

``load`` joins once (``{"op": "ready"}``), then runs one workload per command and answers
``{"op": <op>, "ops": N, "seconds": S, "errors": E}``:

- ``{"op": "rpc", "procedure": P, "inflight": K, "seconds": S}``: calls ``P`` (an echo)
  for S seconds, K calls outstanding at any time (K = 1: sequential);
- ``{"op": "await", "procedures": [...], "seconds": S}``: calls each procedure until it
  answers (its host has registered it), for at most S seconds;
- ``{"op": "pubsub", "topic": T, "count": C, "seconds": S, "batch": B}``: publishes B
  events to ``T`` (no acknowledgement), then calls ``C``, the subscriber's event counter;
  the router delivers in order, so the answer covers every event of the batch. Repeats
  for S seconds; ``ops`` is the number of events the subscriber confirmed, ``errors`` the
  events it missed.

``probe`` stays connected through router restarts (a new attempt every 20 ms while the
router is away) and, for ``{"op": "arm", "label": L, "procedures": [...]}``, calls each
procedure every 20 ms until it answers, then prints ``{"op": "answered", "label": L,
"procedure": P, "t": <unix time>}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.util import parse_url
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

PAYLOAD = "bench-payload-16"
PROBE_INTERVAL = 0.02
COMMAND_POLL = 0.01


def say(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class ClientSession(ApplicationSession):
    """A plain session that tells its owner when it joined and when it is gone."""

    owner: Any = None

    def onJoin(self, details: Any) -> None:
        """Hand the session to the owner."""
        self.owner.joined(self)

    def onDisconnect(self) -> None:
        """Tell the owner the session is gone."""
        self.owner.gone(self)


class Commands:
    """Follows the commands file: each new complete line is one JSON command."""

    def __init__(self, path: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Follow ``path``, handing each command to ``handler``."""
        self._fh = open(path)  # noqa: SIM115 -- followed for the life of the process
        self._partial = ""
        self._handler = handler

    def poll(self) -> None:
        """Hand every new complete line to the handler."""
        self._partial += self._fh.read()
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self._handler(json.loads(line))


class Client:
    """Connects (and, for the prober, reconnects) one session to the router."""

    def __init__(self, reactor: Any, url: str, realm: str) -> None:
        """A client of ``realm`` at ``url`` on ``reactor`` (not connected yet)."""
        self.reactor = reactor
        self.url = url
        self.realm = realm
        self.session: Any = None
        self.connecting = False
        _secure, self.host, self.port, *_ = parse_url(url)

    def connect(self) -> None:
        """Start one connection attempt."""
        self.connecting = True

        def make(config: ComponentConfig) -> ClientSession:
            """A fresh session that reports to this client."""
            session = ClientSession(config)
            session.owner = self
            return session

        factory: Any = WampWebSocketClientFactory(
            lambda: make(ComponentConfig(realm=self.realm)), url=self.url
        )
        factory.setProtocolOptions(openHandshakeTimeout=2.0, closeHandshakeTimeout=1.0)
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=2)
        d = endpoint.connect(factory)
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol: Any) -> None:
        """TCP is up: watch for the connection closing."""
        protocol.is_closed.addCallback(self._closed)

    def _failed(self, _failure: Any) -> None:
        """The TCP connection failed: the next tick may try again."""
        self.connecting = False

    def _closed(self, _result: Any) -> None:
        # Also covers a connection that closed before a session existed (a failed or
        # timed-out WebSocket handshake), which onDisconnect never reports.
        """The connection closed (with or without a session on it)."""
        self.connecting = False
        self.session = None

    def joined(self, session: Any) -> None:
        """The session joined."""
        self.connecting = False
        self.session = session

    def gone(self, session: Any) -> None:
        """The session (or the attempt) ended."""
        self.connecting = False
        if self.session is session or self.session is None:
            self.session = None


class Load(Client):
    """The load client: one session, one workload per command."""

    def __init__(self, reactor: Any, url: str, realm: str) -> None:
        """A load client; it connects when the reactor runs."""
        super().__init__(reactor, url, realm)
        self.queue: list[dict[str, Any]] = []
        self.busy = False

    def joined(self, session: Any) -> None:
        """Report readiness once."""
        super().joined(session)
        say({"op": "ready"})

    def gone(self, session: Any) -> None:
        """The load client does not reconnect: losing the session ends it."""
        super().gone(session)
        if self.reactor.running:
            self.reactor.stop()

    def command(self, cmd: dict[str, Any]) -> None:
        """Queue a command; run it when the previous one is done."""
        if cmd.get("op") == "quit":
            if self.reactor.running:
                self.reactor.stop()
            return
        self.queue.append(cmd)
        self._next()

    def _next(self) -> None:
        """Start the next queued command unless one is running."""
        if self.busy or not self.queue:
            return
        self.busy = True
        cmd = self.queue.pop(0)
        runner = {"rpc": self.rpc, "pubsub": self.pubsub, "await": self.wait_answering}[cmd["op"]]
        d: Deferred[dict[str, Any]] = runner(cmd)

        def done(result: dict[str, Any]) -> None:
            """Answer the command's result and go on with the queue."""
            say({"op": cmd["op"], **result})
            self.busy = False
            self._next()

        def failed(failure: Any) -> None:
            """Answer the command's failure and go on with the queue."""
            say({"op": cmd["op"], "failed": failure.getErrorMessage()})
            self.busy = False
            self._next()

        d.addCallbacks(done, failed)

    @inlineCallbacks
    def rpc(self, cmd: dict[str, Any]) -> Any:
        """Call ``procedure`` for ``seconds``, ``inflight`` calls outstanding."""
        session = self.session
        procedure = str(cmd["procedure"])
        deadline = time.monotonic() + float(cmd["seconds"])
        counts = {"ops": 0, "errors": 0}

        @inlineCallbacks
        def worker() -> Any:
            """One caller: call, wait for the result, repeat until the deadline."""
            while time.monotonic() < deadline:
                try:
                    result = yield session.call(procedure, PAYLOAD)
                except Exception:
                    counts["errors"] += 1
                else:
                    counts["ops" if result == PAYLOAD else "errors"] += 1

        start = time.monotonic()
        yield DeferredList([worker() for _ in range(int(cmd["inflight"]))])
        return {**counts, "seconds": time.monotonic() - start}

    @inlineCallbacks
    def wait_answering(self, cmd: dict[str, Any]) -> Any:
        """Call each of ``procedures`` every 20 ms until it answers (its host registered it)."""
        session = self.session
        deadline = time.monotonic() + float(cmd["seconds"])
        start = time.monotonic()
        errors = 0
        for procedure in cmd["procedures"]:
            while True:
                try:
                    yield session.call(str(procedure), PAYLOAD)
                    break
                except Exception:
                    errors += 1
                    if time.monotonic() > deadline:
                        raise
                    yield deferLater(self.reactor, PROBE_INTERVAL, lambda: None)
        return {
            "ops": len(cmd["procedures"]),
            "errors": 0,
            "tries": errors,
            "seconds": time.monotonic() - start,
        }

    @inlineCallbacks
    def pubsub(self, cmd: dict[str, Any]) -> Any:
        """Publish batches to ``topic``, each closed by a call to the counter ``count``."""
        session = self.session
        topic, count = str(cmd["topic"]), str(cmd["count"])
        batch = int(cmd.get("batch", 100))
        deadline = time.monotonic() + float(cmd["seconds"])
        start = time.monotonic()
        first = yield session.call(count)
        sent = 0
        received = first
        while time.monotonic() < deadline:
            for _ in range(batch):
                session.publish(topic, sent)
                sent += 1
            received = yield session.call(count)
        seconds = time.monotonic() - start
        confirmed = received - first
        return {"ops": confirmed, "errors": sent - confirmed, "seconds": seconds}


class Probe(Client):
    """The prober: reconnects at once, calls armed procedures until each answers."""

    def __init__(self, reactor: Any, url: str, realm: str) -> None:
        """A prober with nothing armed yet."""
        super().__init__(reactor, url, realm)
        self.pending: dict[str, str] = {}
        self.in_flight: set[str] = set()

    def gone(self, session: Any) -> None:
        """The session ended: calls on it are void; the next tick reconnects."""
        super().gone(session)
        self.in_flight.clear()

    def command(self, cmd: dict[str, Any]) -> None:
        """``arm`` a set of procedures (replacing the previous set), or ``quit``."""
        if cmd.get("op") == "quit":
            if self.reactor.running:
                self.reactor.stop()
            return
        self.pending = {str(p): str(cmd["label"]) for p in cmd["procedures"]}

    def tick(self) -> None:
        """Reconnect if needed; call each pending procedure not already being called."""
        if self.session is None:
            if not self.connecting:
                self.connect()
            return
        for procedure in list(self.pending):
            if procedure not in self.in_flight:
                self._call(procedure)

    def _call(self, procedure: str) -> None:
        """Call ``procedure`` once; report it if it answers for the armed label."""
        self.in_flight.add(procedure)
        label = self.pending[procedure]
        d = self.session.call(procedure, PAYLOAD)

        def answered(_result: Any) -> None:
            """The procedure answered: report it once per label."""
            self.in_flight.discard(procedure)
            if self.pending.get(procedure) == label:
                del self.pending[procedure]
                say({"op": "answered", "label": label, "procedure": procedure, "t": time.time()})

        def failed(_failure: Any) -> None:
            """The call failed (not registered yet, router away): the next tick retries."""
            self.in_flight.discard(procedure)

        d.addCallbacks(answered, failed)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("mode", choices=["load", "probe"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--commands", required=True, help="the file of commands to follow")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load client or the prober until ``quit`` (or until killed)."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    from twisted.internet import reactor as _reactor  # noqa: PLC0415 -- installs the reactor
    from twisted.internet.task import LoopingCall  # noqa: PLC0415

    reactor: Any = _reactor
    client: Load | Probe
    if opts.mode == "load":
        client = Load(reactor, opts.url, opts.realm)
        reactor.callWhenRunning(client.connect)
    else:
        client = Probe(reactor, opts.url, opts.realm)
        LoopingCall(client.tick).start(PROBE_INTERVAL)
    commands = Commands(opts.commands, client.command)
    LoopingCall(commands.poll).start(COMMAND_POLL)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
