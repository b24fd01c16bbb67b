"""The one stream of supervisor events that logs, metrics and health checks consume.

Every state change of a supervised session, and every notable thing that happens inside
a state (an attempt failing, a keepalive timeout, a component raising), is an
:class:`Event`. The supervisor emits them through an :class:`EventHub`; consumers
subscribe to the hub and never reach into the supervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypedDict

from twisted.logger import Logger

__all__ = ["Event", "EventFields", "EventHub", "EventName", "Observer", "State", "names"]


class State(StrEnum):
    """The states of one supervised session."""

    #: Created, not started yet.
    IDLE = "idle"
    #: An attempt is under way: TCP connect, WebSocket handshake, WAMP HELLO .. WELCOME.
    CONNECTING = "connecting"
    #: The WAMP session is joined to its realm.
    JOINED = "joined"
    #: Waiting for the next retry after a failed attempt or a lost session.
    BACKOFF = "backoff"
    #: Leaving (GOODBYE) or cancelling an attempt because the supervisor is being stopped.
    STOPPING = "stopping"
    #: Stopped on request, or the component left its session on its own.
    STOPPED = "stopped"
    #: Gave up: the retry budget ran out, or the router rejected the session for good.
    FAILED = "failed"


class EventName(StrEnum):
    """The dotted event names wampd emits; each knows the level it is logged at."""

    CONNECT_ATTEMPT = "connect.attempt"
    CONNECT_FAILED = "connect.failed"
    SESSION_JOINED = "session.joined"
    SESSION_STABLE = "session.stable"
    SESSION_LEFT = "session.left"
    RETRY_SCHEDULED = "retry.scheduled"
    RETRIES_EXHAUSTED = "retries.exhausted"
    FATAL_ERROR = "fatal.error"
    COMPONENT_ERROR = "component.error"
    KEEPALIVE_TIMEOUT = "keepalive.timeout"
    SUPERVISOR_STOPPING = "supervisor.stopping"
    SUPERVISOR_STOPPED = "supervisor.stopped"

    @property
    def level(self) -> str:
        """The log level: ``info``, ``warn`` or ``error``."""
        return _LEVELS.get(self, "info")


_LEVELS: dict[EventName, str] = {
    EventName.CONNECT_FAILED: "warn",
    EventName.SESSION_LEFT: "warn",
    EventName.KEEPALIVE_TIMEOUT: "warn",
    EventName.RETRIES_EXHAUSTED: "error",
    EventName.FATAL_ERROR: "error",
    EventName.COMPONENT_ERROR: "error",
}

#: ``names.CONNECT_ATTEMPT`` reads well at a call site.
names = EventName


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened to one supervised session.

    ``previous`` and ``state`` are equal for events that happen inside a state; a
    consumer that only cares about state changes tests ``event.changed``.
    """

    name: EventName
    component: str
    previous: State
    state: State
    #: ``IReactorTime.seconds()`` when it happened.
    time: float
    #: Consecutive failures in the current outage (0 when there is none).
    failures: int = 0
    url: str | None = None
    #: Which attempt of the current outage this is (1 for the first), on ``connect.attempt``.
    attempt: int | None = None
    #: The retry being scheduled (1-based), on ``retry.scheduled``.
    retry: int | None = None
    #: Seconds until the retry, on ``retry.scheduled``.
    delay: float | None = None
    #: A WAMP URI: the router's ABORT or GOODBYE reason, or wampd's own close reason.
    reason: str | None = None
    #: A human-readable description of what went wrong.
    error: str | None = None
    traceback: str | None = None
    session_id: int | None = None
    realm: str | None = None
    #: Seconds from the start of the attempt to the join, on ``session.joined``.
    connect_duration: float | None = None
    #: Seconds from the start of the outage to the join, on ``session.joined`` after one.
    outage_duration: float | None = None
    #: The connection was dropped because a keepalive PONG did not come back in time.
    keepalive: bool = False

    @property
    def changed(self) -> bool:
        return self.previous is not self.state

    def fields(self) -> dict[str, Any]:
        """The event as a flat dict without empty fields, for logs and JSON."""
        return {
            key: value.value if isinstance(value, StrEnum) else value
            for key, value in asdict(self).items()
            if value is not None and (key != "keepalive" or value)
        }


class EventFields(TypedDict, total=False):
    """The optional fields of :class:`Event`, for emitters that pass them through as
    keywords (a test keeps the two equal)."""

    url: str | None
    attempt: int | None
    retry: int | None
    delay: float | None
    reason: str | None
    error: str | None
    traceback: str | None
    session_id: int | None
    realm: str | None
    connect_duration: float | None
    outage_duration: float | None
    keepalive: bool


Observer = Callable[[Event], None]


class EventHub:
    """Delivers each event to every subscribed observer, in subscription order.

    An observer that raises is logged and does not stop delivery to the others, and
    never reaches the supervisor that emitted the event.
    """

    _log = Logger()

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Add ``observer``; returns a function that removes it again."""
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self._log.failure(
                    "event observer {observer!r} failed on {name}",
                    observer=observer,
                    name=event.name,
                )
