"""WAMP calls answered by the app: one HTTP callback per ``[[bridge.procedure]]``.

Each invocation is POSTed to the procedure's URL as JSON ``{"procedure", "args", "kwargs",
"details"}``, and the app's reply becomes the caller's answer:

=================================================  =======================================
the app's reply                                    the caller gets
=================================================  =======================================
2xx, ``{"args": [...], "kwargs": {...}}``          that RESULT
2xx, any other JSON value                          it, as the one positional result
2xx, empty body                                    a RESULT without arguments
non-2xx, ``{"error": uri, "args", "kwargs"}``      that error
any other non-2xx                                  ``wamp.error.runtime_error`` (its status)
no reply within ``timeout``                        ``wamp.error.timeout`` (request cancelled)
connection refused; ``max_inflight`` reached       ``wamp.error.unavailable``
=================================================  =======================================

When the caller cancels, autobahn cancels the invocation's Deferred, and with it the HTTP
request (its connection is closed). Every invocation ends as one :class:`Note`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, CallResult
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure

from ._typing import Clock
from .config import ProcedureConfig
from .outbound import Post, Reply
from .webhooks import payload_json

__all__ = ["RUNTIME_ERROR", "UNAVAILABLE", "Callback", "Note"]

#: The error of an invocation the app cannot take now.
UNAVAILABLE = "wamp.error.unavailable"
#: The error of an invocation the app answered with something that is not an answer.
RUNTIME_ERROR = "wamp.error.runtime_error"

_URI = re.compile(r"([^\s.#]+\.)*[^\s.#]+")


@dataclass(frozen=True)
class Note:
    """One invocation's end, for the logs and the metrics."""

    procedure: str
    #: ``ok``, ``error`` (the app's own), ``runtime_error``, ``timeout``, ``unavailable``
    #: or ``cancelled``.
    outcome: str
    seconds: float
    #: The WAMP error the caller got, if any, and why.
    error: str | None = None
    reason: str | None = None


class Callback:
    """Answers the invocations of one registration by POSTing them to the app."""

    def __init__(
        self,
        config: ProcedureConfig,
        post: Post,
        *,
        clock: Clock,
        note: Callable[[Note], None],
    ) -> None:
        self.config = config
        self._post, self._clock, self._note = post, clock, note
        #: Invocations being answered now.
        self.inflight = 0
        self._closed = False
        self._idle: list[Deferred[None]] = []

    def close(self) -> None:
        """Take no more invocations (they get ``wamp.error.unavailable``)."""
        self._closed = True

    def idle(self) -> Deferred[None]:
        """Fires once no invocation is in flight."""
        d: Deferred[None] = Deferred()
        if self.inflight:
            self._idle.append(d)
        else:
            d.callback(None)
        return d

    def __call__(self, *args: Any, details: CallDetails, **kwargs: Any) -> Deferred[Any]:
        """The registration's endpoint (autobahn passes ``details`` by ``details_arg``)."""
        started = self._clock.seconds()
        if self._closed or self.inflight >= self.config.max_inflight:
            why = (
                "the bridge is stopping"
                if self._closed
                else f"{self.config.max_inflight} invocations in flight already (max_inflight)"
            )
            self._end("unavailable", started, UNAVAILABLE, why)
            raise ApplicationError(UNAVAILABLE, why)
        procedure = details.procedure or self.config.uri
        body = payload_json(
            {
                "procedure": procedure,
                "args": list(args),
                "kwargs": kwargs,
                "details": {
                    "procedure": procedure,
                    "caller": details.caller,
                    "caller_authid": details.caller_authid,
                    "caller_authrole": details.caller_authrole,
                    "registration": getattr(details.registration, "id", None),
                },
            }
        )
        self.inflight += 1
        d = self._post(self.config.url, body, self.config.timeout)
        d.addCallbacks(
            lambda reply: self._answer(reply, started),
            lambda failure: self._failure(failure, started),
        )
        d.addBoth(self._finished)
        return d

    def _answer(self, reply: Reply, started: float) -> Any:
        if 200 <= reply.status < 300:
            try:
                result = _result(reply.body)
            except ValueError as exc:
                why = f"the app's reply is not JSON: {exc}"
                self._end("runtime_error", started, RUNTIME_ERROR, why)
                raise ApplicationError(RUNTIME_ERROR, why) from None
            self._end("ok", started)
            return result
        error = _error(reply)
        self._end(
            "error" if error.error != RUNTIME_ERROR else "runtime_error",
            started,
            error.error,
            f"HTTP {reply.status}",
        )
        raise error

    def _failure(self, failure: Failure, started: float) -> None:
        exc = failure.value
        if isinstance(exc, TimeoutError):
            why = f"no answer from the app within {self.config.timeout:g} s"
            self._end("timeout", started, ApplicationError.TIMEOUT, why)
            raise ApplicationError(ApplicationError.TIMEOUT, why)
        if isinstance(exc, CancelledError):  # the caller cancelled: autobahn answers it
            self._end("cancelled", started, ApplicationError.CANCELED, "cancelled by the caller")
            failure.raiseException()
        if isinstance(exc, ApplicationError):  # from _answer
            failure.raiseException()
        if isinstance(exc, ConnectError):
            why = f"cannot reach the app: {type(exc).__name__}"
            self._end("unavailable", started, UNAVAILABLE, why)
            raise ApplicationError(UNAVAILABLE, why)
        why = f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"
        self._end("runtime_error", started, RUNTIME_ERROR, why)
        raise ApplicationError(RUNTIME_ERROR, why)

    def _finished(self, result: Any) -> Any:
        self.inflight -= 1
        if not self.inflight:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
        return result

    def _end(self, outcome: str, started: float, error: str | None = None, why: str = "") -> None:
        seconds = self._clock.seconds() - started
        self._note(Note(self.config.uri, outcome, seconds, error, why or None))


def _result(body: bytes) -> Any:
    """The RESULT a 2xx reply's body stands for."""
    if not body.strip():
        return CallResult()  # a RESULT without arguments
    value = json.loads(body)
    if (
        isinstance(value, dict)
        and value
        and set(value) <= {"args", "kwargs"}
        and isinstance(value.get("args", []), list)
        and isinstance(value.get("kwargs", {}), dict)
    ):
        return CallResult(*value.get("args", []), **value.get("kwargs", {}))
    return value


def _error(reply: Reply) -> ApplicationError:
    """The WAMP error a non-2xx reply stands for."""
    try:
        value = json.loads(reply.body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        uri, args, kwargs = value["error"], value.get("args", []), value.get("kwargs", {})
        if _URI.fullmatch(uri) and isinstance(args, list) and isinstance(kwargs, dict):
            return ApplicationError(uri, *args, **kwargs)
    return ApplicationError(
        RUNTIME_ERROR, f"the app answered HTTP {reply.status}", status=reply.status
    )
