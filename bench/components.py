"""The component every host runs, written the way autobahn's documentation shows it.

``BenchComponent`` registers ``<prefix>.echo`` (returns its argument) and ``<prefix>.count``
(how many events it has received so far), and subscribes to ``<prefix>.topic``, counting
every event. ``prefix`` comes from ``config.extra``, so several hosts and several sessions
can share one router without clashing.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks


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
