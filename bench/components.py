"""The component every host runs, written the way autobahn's documentation shows it.

``BenchComponent`` registers ``<prefix>.echo`` (returns its argument) and ``<prefix>.count``
(how many events it has received so far), and subscribes to ``<prefix>.topic``, counting
every event. ``prefix`` comes from ``config.extra``, so several hosts and several sessions
can share one router without clashing.

``WebhookPublisher`` is the bridge figure's publisher (``python -m bench.bridge publish``,
see :mod:`bench.bridge`): it follows a commands file, and for each ``{"op": "burst",
"topic": T, "events": N, "batch": B}`` publishes N events ``[i, PAYLOAD]`` (i = 0 ... N-1)
to T as fast as it can, acknowledging the last event of every batch of B (the router
handles a session's publications in order, so that acknowledgement covers the batch)
before the next batch goes out; it answers ``{"op": "burst", "events": N, "seconds": S,
"errors": E}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import PublishOptions
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall


class BenchComponent(ApplicationSession):
    """Echo procedure, event counter, and a procedure that reads the counter."""

    received = 0

    @inlineCallbacks
    def onJoin(self, details: Any) -> Any:
        """Register the procedures and subscribe (on every fresh session)."""
        prefix = str(self.config.extra.get("prefix", "bench"))
        self.received = 0
        # echo last: once it answers, the rest is in place.
        yield self.subscribe(self._on_event, f"{prefix}.topic")
        yield self.register(self._count, f"{prefix}.count")
        yield self.register(self._echo, f"{prefix}.echo")

    def _echo(self, value: Any = None) -> Any:
        """Return the argument unchanged."""
        return value

    def _count(self) -> int:
        """How many events this session has received."""
        return self.received

    def _on_event(self, *args: Any, **kwargs: Any) -> None:
        """Count one event."""
        self.received += 1


class WebhookPublisher(ApplicationSession):
    """Publishes bursts of events on command (see the module docstring)."""

    def onJoin(self, details: Any) -> None:
        """Say ``ready``; follow the commands file (``config.extra["commands"]``)."""
        # Imported here: the hosts import this module, and need none of it.
        from .client import COMMAND_POLL, Commands  # noqa: PLC0415

        self._queue: Deferred[None] = succeed(None)
        commands = Commands(str(self.config.extra["commands"]), self._command)
        self._poller = LoopingCall(commands.poll)
        self._poller.start(COMMAND_POLL)
        self._say({"op": "ready"})

    @staticmethod
    def _say(obj: dict[str, Any]) -> None:
        """One JSON line on the real stdout (ApplicationRunner's logging took over
        ``sys.stdout``), flushed."""
        out = sys.__stdout__
        assert out is not None
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def onDisconnect(self) -> None:
        """The publisher does not reconnect: losing the session ends it."""
        from twisted.internet import reactor as _reactor  # noqa: PLC0415 -- ApplicationRunner's

        reactor: Any = _reactor
        if reactor.running:
            reactor.stop()

    def _command(self, cmd: dict[str, Any]) -> None:
        """Run ``cmd`` once the commands before it are done; ``quit`` leaves."""
        if cmd.get("op") == "quit":
            self.leave()
            return
        self._queue.addCallback(lambda _: self._run(cmd))

    @inlineCallbacks
    def _run(self, cmd: dict[str, Any]) -> Any:
        """Run one command; answer its result (or its failure)."""
        try:
            result = yield self._burst(cmd)
        except Exception as exc:
            self._say({"op": str(cmd.get("op")), "failed": f"{type(exc).__name__}: {exc}"})
        else:
            self._say({"op": "burst", **result})

    @inlineCallbacks
    def _burst(self, cmd: dict[str, Any]) -> Any:
        """Publish ``events`` events to ``topic``, acknowledging each batch's last one."""
        topic, events = str(cmd["topic"]), int(cmd["events"])
        batch = max(1, int(cmd.get("batch", 100)))
        ack = PublishOptions(acknowledge=True)
        from .client import PAYLOAD  # noqa: PLC0415 -- see onJoin

        errors = 0
        start = time.monotonic()
        for first in range(0, events, batch):
            last = min(events, first + batch) - 1
            for i in range(first, last):
                self.publish(topic, i, PAYLOAD)
            try:
                yield self.publish(topic, last, PAYLOAD, options=ack)
            except Exception:
                errors += 1
        return {"events": events, "seconds": time.monotonic() - start, "errors": errors}
