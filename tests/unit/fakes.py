"""Fakes for deterministic supervisor tests: a connector whose attempts the test settles.

They are wampd's public test doubles (:mod:`wampd.testing`), under the names the unit tests
have always used; the unit tests import them from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Unpack

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wampd.events import Event, EventFields, EventName, State
from wampd.outbound import Reply
from wampd.testing import EventRecorder as Recorder
from wampd.testing import FakeAttempt, FakeConnector, FakeLink

__all__ = [
    "App",
    "FakeAttempt",
    "FakeConnector",
    "FakeLink",
    "Posted",
    "Recorder",
    "event",
    "outcome",
]


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


@dataclass
class Posted:
    """One POST the bridge made to the app (:data:`wampd.outbound.Post`), for the test to
    answer."""

    url: str
    body: bytes
    timeout: float
    deferred: Deferred[Reply] = field(init=False)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.deferred = Deferred(self._cancel)

    def _cancel(self, _: Deferred[Reply]) -> None:
        self.cancelled = True

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def publication(self) -> int:
        value: int = self.json["publication"]
        return value

    def reply(self, status: int, body: bytes = b"", *, retry_after: float | None = None) -> None:
        self.deferred.callback(Reply(status, body, retry_after, "application/json"))

    def fail(self, exc: BaseException) -> None:
        self.deferred.errback(Failure(exc))


class App:
    """The app's side of :data:`wampd.outbound.Post`: records every POST, answers none by
    itself."""

    def __init__(self) -> None:
        self.posts: list[Posted] = []

    def __call__(self, url: str, body: bytes, timeout: float) -> Deferred[Reply]:
        posted = Posted(url, body, timeout)
        self.posts.append(posted)
        return posted.deferred

    @property
    def pending(self) -> list[Posted]:
        return [p for p in self.posts if not p.deferred.called]

    @property
    def last(self) -> Posted:
        return self.posts[-1]
