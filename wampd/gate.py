"""What the sessions of one process know about their router, shared.

Sessions of one daemon to the same router (the same URL list and realm) share its fate.
While it is down, N supervisors each guessing when it is back would make N attempts per
round; a :class:`Gate` lets one attempt at a time find out (the *probe*): a supervisor whose
retry is due while the router is down waits behind the probe instead of connecting. When
the probe fails, every supervisor waiting behind it takes that failure as its own -- it is
counted, it spends retry budget and it schedules the supervisor's next retry as its own
failure would -- and the next one due becomes the probe. When a session joins (or the router
answers at all, even with an ABORT), the router is up again: the waiting supervisors are
let through at ``rate`` attempts a second after a first ``burst``, in random order, so a
router that just restarted is not met by all of them in the same instant.

Start-up is not gated (the first attempt of each supervisor goes at once), and neither is
a retry while the router is believed up but for the admission rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._typing import Clock, DelayedCall

__all__ = ["Gate", "Ticket"]


@dataclass(eq=False)
class Ticket:
    """One supervisor's due retry, waiting at the gate."""

    #: Make the attempt now (with this ticket, to report its outcome by).
    go: Callable[[Ticket], None] = field(repr=False)
    #: The probe failed with this error: count it as this supervisor's own failure.
    refused: Callable[[str], None] = field(repr=False)
    cancelled: bool = False
    #: ``go`` was called: the ticket is spent.
    went: bool = False

    def cancel(self) -> None:
        """The supervisor stops: forget the ticket."""
        self.cancelled = True


@dataclass(eq=False)
class Gate:
    """Shared knowledge of one router and the admission of retries to it; see the module
    docstring. ``rate`` is attempts a second once the router is back, after ``burst``; while
    it is down, at most one probe starts every ``probe_interval`` seconds, so the attempts a
    process makes against a refusing router are bounded by ``1 / probe_interval`` a second,
    however many components it has."""

    clock: Clock
    rand: Callable[[], float]
    rate: float = 80.0
    burst: int = 5
    #: While the router is down, a probe starts at most this often (a refused connect
    #: ends in a millisecond; without this, every due retry would be a probe of its own).
    probe_interval: float = 0.5
    #: A session was lost or an attempt failed before the router answered: it is down.
    down: bool = False
    #: The ticket whose attempt is finding out whether the router is back.
    probe: Ticket | None = None
    #: Waiting for the probe's outcome.
    behind_probe: list[Ticket] = field(default_factory=list)
    #: Waiting for a token (the router is up).
    admitting: list[Ticket] = field(default_factory=list)
    #: In backoff because the router was down, their delays not over yet: when the router
    #: answers, they need not sleep on.
    parked: list[Ticket] = field(default_factory=list)
    tokens: float = 0.0
    _refilled: float | None = None
    _release: DelayedCall | None = None
    #: No probe starts before this time (``probe_interval`` after the last one failed).
    _probe_free_at: float = 0.0
    _next_probe: DelayedCall | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.probe_interval < 0:
            raise ValueError(
                f"a gate needs rate > 0, burst >= 1 and probe_interval >= 0, got {self}"
            )
        self.tokens = float(self.burst)

    def request(self, go: Callable[[Ticket], None], refused: Callable[[str], None]) -> Ticket:
        """A supervisor's retry is due: ``go`` is called when it may attempt (now, behind
        the probe, or when admitted), ``refused`` when the probe it waited for failed."""
        ticket = Ticket(go, refused)
        self.due(ticket)
        return ticket

    def park(self, go: Callable[[Ticket], None], refused: Callable[[str], None]) -> Ticket:
        """A supervisor backs off because the router was down: its ticket waits for
        :meth:`due` (its delay is over) or for the router to answer, whichever is first."""
        ticket = Ticket(go, refused)
        self.parked.append(ticket)
        return ticket

    def due(self, ticket: Ticket) -> None:
        """``ticket``'s retry delay is over: probe, wait behind the probe, or be admitted."""
        if ticket.went or ticket.cancelled or ticket in self.admitting + self.behind_probe:
            return  # spent, or let out early (the router answered) and waiting for a token
        if ticket in self.parked:
            self.parked.remove(ticket)
        if self.down:
            self.behind_probe.append(ticket)
            self._probe()
        else:
            self.admitting.append(ticket)
            self._admit()

    def answered(self) -> None:
        """The router answered an attempt (a join, or an ABORT): it is up; let everyone
        waiting behind the probe through, at the admission rate."""
        self.down = False
        self.probe = None
        if self._next_probe is not None and self._next_probe.active():
            self._next_probe.cancel()
        self._next_probe = None
        waiting, self.behind_probe, self.parked = self.behind_probe + self.parked, [], []
        self.admitting += waiting
        self._admit()

    def unreachable(self, error: str, ticket: Ticket | None) -> None:
        """An attempt failed before the router answered, or a session's link died: the
        router is down. If the attempt was the probe, the ones behind it fail with it."""
        self.down = True
        if ticket is not None and ticket is self.probe:
            self.probe = None
            self._probe_free_at = self.clock.seconds() + self.probe_interval
            waiting, self.behind_probe = self.behind_probe, []
            for other in waiting:
                if not other.cancelled:
                    other.refused(error)

    def abandoned(self, ticket: Ticket) -> None:
        """The probe's supervisor stopped before the attempt ended: the next one probes."""
        if ticket is self.probe:
            self.probe = None
            self._probe()

    # -- probing: one attempt at a time, at most one every probe_interval --

    def _probe(self) -> None:
        self.behind_probe = [t for t in self.behind_probe if not t.cancelled]
        if self.probe is not None or not self.behind_probe:
            return
        wait = self._probe_free_at - self.clock.seconds()
        if wait > 0:
            if self._next_probe is None or not self._next_probe.active():
                self._next_probe = self.clock.callLater(wait, self._probe)
            return
        self.probe = self.behind_probe.pop(0)
        _go(self.probe)

    # -- admission: a token bucket, released in random order --

    def _admit(self) -> None:
        self._refill()
        self.admitting = [t for t in self.admitting if not t.cancelled]
        while self.admitting and self.tokens >= 1:
            self.tokens -= 1
            _go(self.admitting.pop(int(self.rand() * len(self.admitting))))
        if self.admitting and (self._release is None or not self._release.active()):
            wait = (1 - self.tokens) / self.rate
            self._release = self.clock.callLater(wait, self._admit)

    def _refill(self) -> None:
        now = self.clock.seconds()
        if self._refilled is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self._refilled) * self.rate)
        self._refilled = now


def _go(ticket: Ticket) -> None:
    ticket.went = True
    ticket.go(ticket)
