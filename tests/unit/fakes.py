"""Fakes for deterministic supervisor tests: a connector whose attempts the test settles.

They are wampd's public test doubles (:mod:`wampd.testing`), under the names the unit tests
have always used; the unit tests import them from here.
"""

from __future__ import annotations

from typing import Unpack

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wampd.events import Event, EventFields, EventName, State
from wampd.testing import EventRecorder as Recorder
from wampd.testing import FakeAttempt, FakeConnector, FakeLink

__all__ = ["FakeAttempt", "FakeConnector", "FakeLink", "Recorder", "event", "outcome"]


def event(
    name: EventName,
    previous: State,
    state: State,
    *,
    component: str = "c",
    time: float = 0.0,
    failures: int = 0,
    **fields: Unpack[EventFields],
) -> Event:
    """An :class:`~wampd.events.Event` as a supervisor would emit it, for consumer tests."""
    return Event(
        name=name,
        component=component,
        previous=previous,
        state=state,
        time=time,
        failures=failures,
        **fields,
    )


def outcome(d: Deferred[None]) -> object:
    """The result of an already-fired Deferred (a Failure's exception), or "pending"."""
    results: list[object] = []
    d.addBoth(results.append)
    if not results:
        return "pending"
    result = results[0]
    return result.value if isinstance(result, Failure) else result
