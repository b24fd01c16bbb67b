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
"errors": E}``. For ``{"op": "window", "topic": T, "events": N, "inflight": K}`` (the outbox
figure's baseline, :mod:`bench.outbox`) it publishes the same N events with
``acknowledge=True`` each, keeping K unacknowledged at any time (each acknowledgement
sends the next: wampd's outbox sender works the same way), and answers ``{"op":
"window", ...}`` the same way.

``CountingSubscriber`` is the outbox figure's subscriber (``python -m bench.outbox
subscriber``): for ``{"op": "count", "topic": T, "events": N, "stall": S}`` it subscribes
to T (once), forgets what T got so far and answers ``{"op": "armed", "topic": T}``; then it
counts T's events -- all of them, and the distinct numbers ``args[0]`` -- with the times of
the first and the last (``time.monotonic()``), and answers ``{"op": "counted", "topic": T,
"count", "distinct", "first", "last", "cpu"}`` once N distinct numbers arrived or none did
for S seconds (``cpu``: its CPU time from the first event to the last over that time).
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
from twisted.python.failure import Failure


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
        _stop_reactor()

    def _command(self, cmd: dict[str, Any]) -> None:
        """Run ``cmd`` once the commands before it are done; ``quit`` leaves."""
        if cmd.get("op") == "quit":
            self.leave()
            return
        self._queue.addCallback(lambda _: self._run(cmd))

    @inlineCallbacks
    def _run(self, cmd: dict[str, Any]) -> Any:
        """Run one command; answer its result (or its failure)."""
        op = str(cmd.get("op"))
        try:
            result = yield (self._window(cmd) if op == "window" else self._burst(cmd))
        except Exception as exc:
            self._say({"op": op, "failed": f"{type(exc).__name__}: {exc}"})
        else:
            self._say({"op": "window" if op == "window" else "burst", **result})

    def _window(self, cmd: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Publish ``events`` events to ``topic``, each acknowledged, ``inflight`` of them
        unacknowledged at most; fires once every one was acknowledged (or failed)."""
        from .client import PAYLOAD  # noqa: PLC0415 -- see onJoin

        topic, events = str(cmd["topic"]), int(cmd["events"])
        inflight = max(1, int(cmd.get("inflight", 100)))
        ack = PublishOptions(acknowledge=True)
        done: Deferred[dict[str, Any]] = Deferred()
        state = {"sent": 0, "settled": 0, "errors": 0}
        start = time.monotonic()

        def settled(_: object, failed: bool) -> None:
            state["settled"] += 1
            state["errors"] += failed
            if state["sent"] < events:
                send()
            elif state["settled"] == events:
                seconds = time.monotonic() - start
                done.callback({"events": events, "seconds": seconds, "errors": state["errors"]})

        def send() -> None:
            i = state["sent"]
            state["sent"] += 1
            d: Deferred[Any] = self.publish(topic, i, PAYLOAD, options=ack)
            d.addCallbacks(settled, settled, callbackArgs=(False,), errbackArgs=(True,))

        for _ in range(min(inflight, events)):
            send()
        if events <= 0:
            done.callback({"events": 0, "seconds": 0.0, "errors": 0})
        return done

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


class _Count:
    """What one topic got since it was armed, and when the subscriber answers for it."""

    def __init__(self, events: int, stall: float) -> None:
        self.events = events
        self.stall = stall
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.seqs: set[int] = set()
        self.armed = time.monotonic()
        self.answered = False


class CountingSubscriber(ApplicationSession):
    """Counts the events of the topics it is told to (see the module docstring)."""

    def onJoin(self, details: Any) -> None:
        """Say ``ready``; follow the commands file (``config.extra["commands"]``); look
        at the counts every 10 ms."""
        from .client import COMMAND_POLL, Commands  # noqa: PLC0415 -- see WebhookPublisher

        self._counts: dict[str, _Count] = {}
        self._subscribed: set[str] = set()
        commands = Commands(str(self.config.extra["commands"]), self._command)
        self._poller = LoopingCall(commands.poll)
        self._poller.start(COMMAND_POLL)
        self._checker = LoopingCall(self._check)
        self._checker.start(COMMAND_POLL)
        WebhookPublisher._say({"op": "ready"})

    def onDisconnect(self) -> None:
        """Losing the session ends the subscriber (its counts would be wrong)."""
        _stop_reactor()

    def _command(self, cmd: dict[str, Any]) -> None:
        """``count`` (arm a topic) or ``quit``."""
        if cmd.get("op") == "quit":
            self.leave()
            return
        topic = str(cmd["topic"])
        fresh = _Count(int(cmd["events"]), float(cmd.get("stall", 10.0)))

        def armed(_: object) -> None:
            self._counts[topic] = fresh
            fresh.armed = time.monotonic()
            WebhookPublisher._say({"op": "armed", "topic": topic})

        def failed(failure: Failure) -> None:
            WebhookPublisher._say({"op": "count", "failed": str(failure.value)})

        if topic in self._subscribed:
            armed(None)
            return
        self._subscribed.add(topic)
        d: Deferred[Any] = self.subscribe(lambda *a, **k: self._event(topic, a), topic)
        d.addCallbacks(armed, failed)

    def _event(self, topic: str, args: tuple[Any, ...]) -> None:
        """Count one event of ``topic``."""
        tally = self._counts.get(topic)
        if tally is None:
            return
        now = time.monotonic()
        if tally.count == 0:
            tally.first, tally.cpu_first = now, time.process_time()
        tally.count += 1
        tally.last = now
        if args and isinstance(args[0], int):
            tally.seqs.add(args[0])
        if len(tally.seqs) >= tally.events:
            tally.cpu_last = time.process_time()
            self._answer(topic, tally)

    def _check(self) -> None:
        """Answer for every topic whose events stopped coming for its ``stall`` seconds."""
        now = time.monotonic()
        for topic, tally in list(self._counts.items()):
            if not tally.answered and now - (tally.last or tally.armed) > tally.stall:
                tally.cpu_last = time.process_time()
                self._answer(topic, tally)

    @staticmethod
    def _answer(topic: str, tally: _Count) -> None:
        """Say what ``topic`` got (once)."""
        if tally.answered:
            return
        tally.answered = True
        seconds = tally.last - tally.first
        WebhookPublisher._say(
            {
                "op": "counted",
                "topic": topic,
                "count": tally.count,
                "distinct": len(tally.seqs),
                "first": tally.first,
                "last": tally.last,
                "cpu": (tally.cpu_last - tally.cpu_first) / seconds if seconds > 0 else None,
            }
        )


def _stop_reactor() -> None:
    """Stop ApplicationRunner's reactor (a component that does not reconnect is done)."""
    from twisted.internet import reactor as _reactor  # noqa: PLC0415 -- ApplicationRunner's

    reactor: Any = _reactor
    if reactor.running:
        reactor.stop()
