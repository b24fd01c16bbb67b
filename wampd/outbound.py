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

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
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
    if value.isdigit():
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
    if failure.check(CancelledError):
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
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > self._max_reply:
                raise ReplyTooLarge(response.code, self._max_reply)
            chunks.append(data)

        def reply(_: object) -> Reply:
            headers = response.headers
            ctype = (headers.getRawHeaders("content-type") or [""])[-1]
            asked = (headers.getRawHeaders("retry-after") or [None])[-1]
            return Reply(
                response.code,
                b"".join(chunks),
                retry_after(asked, self._reactor.seconds()),
                ctype.split(";", 1)[0].strip().lower(),
            )

        d: Deferred[Any] = treq.collect(response, collect)
        return d.addCallback(reply)

    def close(self) -> Deferred[None]:
        """Close the pooled connections (on shutdown)."""
        closing: Deferred[None] = self._pool.closeCachedConnections()
        return closing
