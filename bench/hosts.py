"""The host programs the bench compares, each run as a subprocess.

::

    python -m bench.hosts wampd     --events FILE -- run --config wampd.toml
    python -m bench.hosts runner    --events FILE --url URL --realm R --prefix P [--sessions N]
    python -m bench.hosts component --events FILE --url URL --realm R --prefix P [--sessions N]

Every host appends JSON lines ``{"event": ..., "t": <unix time>, ...}`` to ``--events``:

- ``attempt``: a TCP connection attempt begins. All three hosts count attempts the same
  way: :func:`count_connects` wraps the reactor's ``connectTCP``, through which every
  Twisted client endpoint connects (wampd's ``HostnameEndpoint`` and autobahn's
  ``TCP4ClientEndpoint`` alike).
- ``joined`` / ``left`` / ``disconnected`` (baseline hosts only; wampd logs its own
  ``session.joined`` and ``session.left`` on stdout): a session joined, left, or its
  transport closed, with the session's name ``s0``, ``s1``, ...

``wampd`` is wampd's own command line (``wampd.cli``) behind the connection counter, nothing
else changed. ``runner`` is autobahn's ``ApplicationRunner`` and ``component`` autobahn's
``Component``, both with their defaults unless ``--ping`` or ``--retry`` is given (the smoke
run shortens them); session ``i`` runs :class:`bench.components.BenchComponent` with the
prefix ``<prefix>.s<i>``. Several runners share one process and reactor
(``run(make, start_reactor=False, auto_reconnect=True)`` each); for one session that is
what ``run(make, auto_reconnect=True)`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

SessionFactory = Callable[[Any], Any]


class Sink:
    """Appends one JSON line per event to a file, flushed at once."""

    def __init__(self, path: str) -> None:
        """Open ``path`` for appending, line-buffered (it lives as long as the process)."""
        self._fh: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115

    def emit(self, event: str, **fields: Any) -> None:
        """Write ``{"event": event, "t": now, **fields}``."""
        self._fh.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")


def count_connects(reactor: Any, sink: Sink) -> None:
    """Report every ``reactor.connectTCP`` call as an ``attempt`` event."""
    original = reactor.connectTCP

    def connect_tcp(host: str, port: int, factory: Any, *args: Any, **kwargs: Any) -> Any:
        """Report the attempt, then connect as the reactor would."""
        sink.emit("attempt", host=host, port=port)
        return original(host, port, factory, *args, **kwargs)

    reactor.connectTCP = connect_tcp


def instrumented(sink: Sink, name: str) -> SessionFactory:
    """A session factory making :class:`BenchComponent` sessions that report their
    ``joined``, ``left`` and ``disconnected`` events as ``name``."""
    from bench.components import BenchComponent  # noqa: PLC0415 -- imports autobahn

    def make(config: Any) -> Any:
        """A fresh, instrumented session for ``config``."""
        session: Any = BenchComponent(config)
        session.on(
            "join", lambda _s, details: sink.emit("joined", session=name, id=details.session)
        )
        session.on(
            "leave", lambda _s, details: sink.emit("left", session=name, reason=details.reason)
        )
        session.on("disconnect", lambda _s, *_a, **_k: sink.emit("disconnected", session=name))
        return session

    return make


def run_wampd(opts: argparse.Namespace, sink: Sink) -> int:
    """wampd's own command line, with the connection counter installed."""
    from twisted.internet import reactor  # noqa: PLC0415 -- installs the reactor

    from wampd.cli import run_cli  # noqa: PLC0415

    count_connects(reactor, sink)
    args = list(opts.rest)
    if args[:1] == ["--"]:
        args = args[1:]
    return run_cli(args, os.environ)


def run_runner(opts: argparse.Namespace, sink: Sink) -> int:
    """``ApplicationRunner(...).run(make, start_reactor=False, auto_reconnect=True)`` per
    session on one reactor, logging started as ``run()`` starts it."""
    import txaio as _txaio  # noqa: PLC0415
    from autobahn.twisted.wamp import ApplicationRunner  # noqa: PLC0415
    from twisted.internet import reactor as _reactor  # noqa: PLC0415 -- installs the reactor

    reactor: Any = _reactor
    count_connects(reactor, sink)
    txaio: Any = _txaio
    txaio.use_twisted()
    txaio.config.loop = reactor
    txaio.start_logging(level="info")
    kwargs: dict[str, Any] = {}
    if opts.ping:
        kwargs["websocket_options"] = {
            "autoPingInterval": opts.ping,
            "autoPingTimeout": opts.ping,
        }
    if opts.retry:
        initial, maximum = opts.retry
        kwargs.update(
            max_retries=-1,
            initial_retry_delay=initial,
            max_retry_delay=maximum,
            retry_delay_growth=1.5,
            retry_delay_jitter=0.1,
        )
    for i in range(opts.sessions):
        runner = ApplicationRunner(
            opts.url, opts.realm, extra={"prefix": f"{opts.prefix}.s{i}"}, **kwargs
        )
        runner.run(instrumented(sink, f"s{i}"), start_reactor=False, auto_reconnect=True)
    reactor.run()
    return 0


def run_component(opts: argparse.Namespace, sink: Sink) -> int:
    """One ``Component(transports=url, realm=..., session_factory=...)`` per session,
    all run by ``autobahn.twisted.component.run``."""
    from autobahn.twisted.component import Component, run  # noqa: PLC0415
    from twisted.internet import reactor  # noqa: PLC0415 -- installs the reactor

    count_connects(reactor, sink)
    transport: Any = opts.url
    if opts.ping or opts.retry:
        transport = {"type": "websocket", "url": opts.url}
        if opts.ping:
            transport["options"] = {
                "auto_ping_interval": opts.ping,
                "auto_ping_timeout": opts.ping,
            }
        if opts.retry:
            initial, maximum = opts.retry
            transport.update(
                max_retries=-1,
                initial_retry_delay=initial,
                max_retry_delay=maximum,
                retry_delay_growth=1.5,
                retry_delay_jitter=0.1,
            )
    components = [
        Component(
            transports=[transport] if isinstance(transport, dict) else transport,
            realm=opts.realm,
            extra={"prefix": f"{opts.prefix}.s{i}"},
            session_factory=instrumented(sink, f"s{i}"),
        )
        for i in range(opts.sessions)
    ]
    run(components, log_level="info")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.hosts")
    kinds = parser.add_subparsers(dest="kind", required=True)
    wampd = kinds.add_parser("wampd", help="wampd's command line behind the connection counter")
    wampd.add_argument("--events", required=True)
    wampd.add_argument("rest", nargs=argparse.REMAINDER, help="-- then wampd's arguments")
    for kind in ("runner", "component"):
        sub = kinds.add_parser(kind, help=f"autobahn's {kind} hosting BenchComponent")
        sub.add_argument("--events", required=True)
        sub.add_argument("--url", required=True)
        sub.add_argument("--realm", required=True)
        sub.add_argument("--prefix", required=True)
        sub.add_argument("--sessions", type=int, default=1)
        sub.add_argument("--ping", type=float, default=None, help="ping interval = timeout (s)")
        sub.add_argument("--retry", type=float, nargs=2, default=None, metavar=("INITIAL", "MAX"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the host named on the command line; return its exit status."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    sink = Sink(opts.events)
    hosts = {"wampd": run_wampd, "runner": run_runner, "component": run_component}
    return hosts[opts.kind](opts, sink)


if __name__ == "__main__":
    sys.exit(main())
