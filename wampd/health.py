"""Liveness and readiness: a consumer of the supervisor event stream.

*Alive* means the daemon is doing its job, whatever the router does: a router outage must
not get a pod restarted. It stops being alive only once a supervisor has given up
(retries exhausted, or a fatal rejection). *Ready* means every component is joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .events import Event, State, names

__all__ = ["ComponentHealth", "Health"]


@dataclass
class ComponentHealth:
    """What the probes report about one component."""

    state: State = State.IDLE
    #: Event time (``reactor.seconds()``) of the last state change; None before the first.
    since: float | None = None
    failures: int = 0
    #: Delay of the retry now scheduled, if one is.
    next_retry_delay: float | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "since": self.since,
            "consecutive_failures": self.failures,
            "next_retry_delay": self.next_retry_delay,
            "last_error": self.last_error,
        }


class Health:
    """Tracks each component's state from events; answers the liveness/readiness questions."""

    def __init__(self, components: Iterable[str]) -> None:
        self.components = {name: ComponentHealth() for name in components}
        #: More of the report, by key: each called at every probe (the outbox's backlog).
        self.extras: dict[str, Callable[[], dict[str, Any]]] = {}

    def __call__(self, event: Event) -> None:
        health = self.components.setdefault(event.component, ComponentHealth())
        health.failures = event.failures
        if event.changed:
            health.state = event.state
            health.since = event.time
            if event.state is not State.BACKOFF:
                health.next_retry_delay = None
        if event.name == names.RETRY_SCHEDULED:
            health.next_retry_delay = event.delay
        if event.error and event.name in (
            names.CONNECT_FAILED,
            names.SESSION_LEFT,
            names.RETRIES_EXHAUSTED,
            names.FATAL_ERROR,
            names.COMPONENT_ERROR,
        ):
            health.last_error = event.error
        elif event.name == names.SESSION_JOINED:
            health.last_error = None

    def states(self) -> dict[str, State]:
        """Each component's state now: the one place that knows it."""
        return {name: h.state for name, h in self.components.items()}

    @property
    def alive(self) -> bool:
        return all(h.state is not State.FAILED for h in self.components.values())

    @property
    def ready(self) -> bool:
        return all(h.state is State.JOINED for h in self.components.values())

    def report(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "ready": self.ready,
            "components": {name: h.as_dict() for name, h in self.components.items()},
            **{key: report() for key, report in self.extras.items()},
        }
