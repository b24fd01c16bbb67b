"""The bridge's outgoing HTTP: JSON POSTed to the app (webhooks, procedure callbacks).

One :class:`Poster` per bridge: treq over a persistent connection pool on the daemon's
reactor, every request bounded by a timeout that cancels it (the connection is closed, so
the app sees the request go away), every reply body bounded in size. What comes back is a
:class:`Reply`; what could not be had at all (refused, reset, timed out) is a failure, for
:mod:`wampd.webhooks` and :mod:`wampd.callbacks` to tell apart.

Anything that has the shape of :data:`Post` can stand in for it: the unit tests use a
function that answers from a script, on a :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from ._version import __version__

__all__ = ["Post", "Poster", "Reply", "ReplyTooLarge", "retry_after"]

#: ``post(url, body, timeout)``: the app's :class:`Reply`, or a failure when there is none.
Post = Callable[[str, bytes, float], "Deferred[Reply]"]

_HEADERS = {
    b"content-type": [b"application/json"],
    b"accept": [b"application/json"],
    b"user-agent": [f"wampd/{__version__}".encode()],
}


@dataclass(frozen=True)
class Reply:
    """The app's answer."""

    status: int
    body: bytes = b""
    #: Seconds the app asked to wait before the next attempt (``Retry-After``), if any.
    retry_after: float | None = None
    #: The reply's media type, lower case, without parameters ("" when not given).
    content_type: str = ""


class ReplyTooLarge(Exception):
    """The app's reply body was larger than the bridge takes; ``status`` is the reply's."""

    def __init__(self, status: int | None, limit: int) -> None:
        super().__init__(f"the reply body is over {limit} bytes")
        self.status = status


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After``'s seconds (delay-seconds or an HTTP date, from ``now``, a Unix
    time); None when absent or not understood."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - datetime.fromtimestamp(now, UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _cancelled(failure: Failure) -> bool:
    """Whether ``failure`` is a cancelled request (as such, or wrapped by twisted.web)."""
    if failure.check(CancelledError, ConnectingCancelledError):
        return True
    reasons = getattr(failure.value, "reasons", None) or []
    return any(isinstance(r, Failure) and r.check(CancelledError) for r in reasons)


class Poster:
    """POSTs to the app over persistent connections (:data:`Post`).

    :param max_reply: bytes of a reply body read at most; a longer one fails with
        :class:`ReplyTooLarge`.
    :param per_host: persistent connections kept per host (the most that concurrent
        deliveries and invocations to one app reuse).
    """

    def __init__(self, reactor: Any, *, max_reply: int = 1048576, per_host: int = 32) -> None:
        self._reactor = reactor
        self._max_reply = max_reply
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = per_host
        self._pool.retryAutomatically = False  # a POST is not replayed behind our back
        self._client = HTTPClient(cast(IAgent, Agent(reactor, pool=self._pool)))

    def __call__(self, url: str, body: bytes, timeout: float) -> Deferred[Reply]:
        d: Deferred[Any] = self._client.post(url, data=body, headers=Headers(_HEADERS))
        d.addCallback(self._read)
        # Cancelling the request (the timeout, or the caller's cancel) closes its
        # connection; twisted.web reports that wrapped (ResponseNeverReceived): unwrap it.
        timer = self._reactor.callLater(timeout, d.cancel)

        def ended(result: Any) -> Any:
            timed_out = not timer.active()
            if not timed_out:
                timer.cancel()
            if isinstance(result, Failure) and _cancelled(result):
                if timed_out:
                    raise TimeoutError(f"no reply within {timeout:g} s")
                raise CancelledError()
            return result

        return d.addBoth(ended)

    def _read(self, response: IResponse) -> Deferred[Reply]:
        def reply(body: bytes) -> Reply:
            headers = response.headers
            ctype = (headers.getRawHeaders(b"content-type") or [b""])[-1].decode("latin-1")
            asked = (headers.getRawHeaders(b"retry-after") or [None])[-1]
            return Reply(
                response.code,
                body,
                retry_after(None if asked is None else asked.decode("latin-1"), self._now()),
                ctype.split(";", 1)[0].strip().lower(),
            )

        body = _Body(response.code, self._max_reply)
        cast(Any, response).deliverBody(body)  # IResponse is a zope Interface
        return body.done.addCallback(reply)

    def _now(self) -> float:
        return float(self._reactor.seconds())

    def close(self) -> Deferred[None]:
        """Close the pooled connections (on shutdown)."""
        closing: Deferred[None] = self._pool.closeCachedConnections()
        return closing


class _Body(Protocol):
    """Collects a reply's body, at most ``limit`` bytes; cancelling :attr:`done` (the
    timeout, the caller's cancel) closes the connection, whatever the body's state."""

    def __init__(self, status: int, limit: int) -> None:
        self._status, self._limit = status, limit
        self._chunks: list[bytes] = []
        self._size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self._close())

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._close()
            self.done.errback(ReplyTooLarge(self._status, self._limit))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)

    def _close(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()
