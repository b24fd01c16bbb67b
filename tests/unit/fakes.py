"""Fakes for deterministic supervisor tests: a connector whose attempts the test settles."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from wampd.events import Event, EventHub
from wampd.link import AttemptError, Link, Loss, Reporter


@dataclass
class FakeLink:
    """A joined session; the test ends it with :meth:`lose`."""

    url: str
    session_id: int
    realm: str = "realm1"
    lost: Deferred[Loss] = field(default_factory=Deferred)
    left_with_timeout: float | None = None
    aborted: bool = False

    def leave(self, timeout: float) -> None:
        self.left_with_timeout = timeout

    def abort(self) -> None:
        self.aborted = True

    def lose(self, reason: str = "wamp.close.transport_lost", **kw: object) -> None:
        self.lost.callback(Loss(reason=reason, **kw))  # type: ignore[arg-type]


@dataclass
class FakeAttempt:
    url: str
    report: Reporter
    deferred: Deferred[Link]
    cancelled: bool = False


class FakeConnector:
    """Records every attempt; the test succeeds or fails each by hand."""

    def __init__(self) -> None:
        self.attempts: list[FakeAttempt] = []
        self._session_ids = 0

    def __call__(self, url: str, report: Reporter) -> Deferred[Link]:
        def cancel(d: Deferred[Link]) -> None:
            attempt.cancelled = True

        attempt = FakeAttempt(url, report, Deferred(cancel))
        self.attempts.append(attempt)
        return attempt.deferred

    @property
    def last(self) -> FakeAttempt:
        return self.attempts[-1]

    def join(self) -> FakeLink:
        """Let the latest attempt's session join."""
        self._session_ids += 1
        link = FakeLink(self.last.url, self._session_ids)
        self.last.deferred.callback(link)
        return link

    def refuse(self, error: str = "connection refused", reason: str | None = None) -> None:
        """Fail the latest attempt."""
        self.last.deferred.errback(AttemptError(error, reason))


class Recorder:
    """Subscribes to a hub and keeps every event."""

    def __init__(self, hub: EventHub) -> None:
        self.events: list[Event] = []
        hub.subscribe(self.events.append)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.events]
