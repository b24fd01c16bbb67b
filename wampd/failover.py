"""Which of a component's router URLs the next attempt goes to (``[router] failover``).

Pure and small: a :class:`Failover` is told what became of each attempt and answers the
next URL. The backoff between attempts is the supervisor's, one jittered delay per
attempt -- never one per sweep of the list, so a fleet does not hit each router of the
list in lockstep.

``ordered``      a priority list: an outage's attempts go down the list from the router
                 that worked last (the first URL to begin with), wrapping around. After a
                 failover the component stays on the router it failed over to: a lost
                 session is tried there again first, not on the first URL.
``shuffle``      ``ordered`` over a random order of the URLs, drawn once per process
                 (every component of a daemon the same): a fleet's first choices spread
                 over the routers.
``round_robin``  every attempt after a failure or a loss goes to the next URL: sessions
                 move around the list.

``prefer_first`` (``ordered`` and ``shuffle``): every outage starts again from the first
URL of the order instead of the router that worked last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["MODES", "Failover", "shuffled"]

MODES: Final = ("ordered", "round_robin", "shuffle")


def shuffled(urls: Sequence[str], rand: Callable[[], float]) -> tuple[str, ...]:
    """``urls`` in a random order (Fisher-Yates, from ``rand``'s floats in [0, 1)): what
    ``shuffle`` gives every supervisor of one process, drawn once (:mod:`wampd.tree`)."""
    order = list(urls)
    for i in range(len(order) - 1, 0, -1):
        j = min(int(rand() * (i + 1)), i)
        order[i], order[j] = order[j], order[i]
    return tuple(order)


class Failover:
    """The URL of each attempt, over ``urls`` in the order given (``shuffle`` is
    ``ordered`` over :func:`shuffled` URLs); see the module docstring."""

    def __init__(
        self, urls: Sequence[str], mode: str = "ordered", *, prefer_first: bool = False
    ) -> None:
        if not urls:
            raise ValueError("failover needs at least one router URL")
        if mode not in ("ordered", "round_robin"):
            raise ValueError(f"a supervisor's failover is ordered or round_robin, got {mode!r}")
        self.order: tuple[str, ...] = tuple(urls)
        self.mode = mode
        self.prefer_first = prefer_first
        #: Where in :attr:`order` the next attempt goes, and where the last join was.
        self._next = 0
        self._home = 0

    @property
    def url(self) -> str:
        """The next attempt's URL."""
        return self.order[self._next]

    def failed(self) -> None:
        """The attempt failed before its session joined: on to the next URL."""
        self._next = (self._next + 1) % len(self.order)

    def joined(self) -> None:
        """The attempt's session joined: this router works."""
        self._home = self._next

    def lost(self) -> None:
        """The joined session was lost: the start of an outage."""
        if self.mode == "round_robin":
            self._next = (self._next + 1) % len(self.order)
        else:
            self._next = 0 if self.prefer_first else self._home
