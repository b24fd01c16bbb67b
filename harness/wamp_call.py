"""A plain one-shot WAMP client (autobahn + Twisted, explicit reactor, no reconnects).

Run as a script, it joins a realm (anonymously, or with ticket auth), calls one procedure or
publishes one event with acknowledge, leaves with GOODBYE, and exits::

    python -m harness.wamp_call --url ws://127.0.0.1:PORT/ws --realm realm1 \\
        --procedure com.example.add --args '[1, 2]' [--kwargs '{}'] [--timeout 10]
    python -m harness.wamp_call --url ... --realm realm1 --publish com.example.topic \\
        --args '["hello"]'
    ... [--authid agent --ticket secret]

Success: exit 0, the result as one JSON line on stdout (a call's single result value; for
several results or keyword results ``{"args": [...], "kwargs": {...}}``; for a publish
``{"publication": ID}``).

Failure: exit 1, one JSON line ``{"error": URI, "message": TEXT}`` on stderr. URI is the
WAMP error for errors the router sent (``wamp.error.no_such_procedure``, an ABORT reason
like ``wamp.error.not_authorized``), or one of the harness's own:

- ``harness.timeout``: nothing conclusive within ``--timeout`` (default 10 s) - e.g. a hung
  router; the message says which phase (connect, websocket, join, call) was pending;
- ``harness.connect_failed``: the TCP connection failed (refused, ...);
- ``harness.connection_lost``: the connection closed before a result (a failed WebSocket
  upgrade such as HTTP 404, a router drop);
- ``harness.error``: anything else (the message has the exception).

The script never hangs: the overall timeout stops the reactor whatever state it is in.

For tests: :func:`call` runs the script and returns the CompletedProcess, :func:`call_error`
extracts ``(uri, message)`` from it, :func:`call_until_ok` retries until a call succeeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import CallResult, ComponentConfig, PublishOptions
from autobahn.websocket.util import parse_url
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint

from harness.poll import poll
from harness.procs import harness_env, python_module

TIMEOUT_ERROR = "harness.timeout"
CONNECT_FAILED = "harness.connect_failed"
CONNECTION_LOST = "harness.connection_lost"
OTHER_ERROR = "harness.error"

NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"


# --------------------------------------------------------------------------------------------
# The client (runs inside the subprocess)
# --------------------------------------------------------------------------------------------


class Job:
    """What to do, and what came of it."""

    def __init__(self, opts: argparse.Namespace, reactor: Any) -> None:
        self.opts = opts
        self.reactor = reactor
        self.phase = "connect"
        self.exit_code: int | None = None
        self.result: Any = None
        self.error: str | None = None
        self.message = ""
        self._stopping = False

    @property
    def done(self) -> bool:
        """True once an outcome (success or error) is recorded."""
        return self.exit_code is not None

    def succeed(self, result: Any) -> None:
        """Record the result (first outcome wins)."""
        if not self.done:
            self.exit_code, self.result = 0, result

    def fail(self, error: str, message: str, *, stop: bool = True) -> None:
        """Record an error (first outcome wins) and, unless ``stop=False``, stop."""
        if not self.done:
            self.exit_code, self.error, self.message = 1, error, message
        if stop:
            self.stop()

    def stop(self) -> None:
        """Stop the reactor (once)."""
        if not self._stopping:
            self._stopping = True
            if self.reactor.running:
                self.reactor.stop()


class OneShotSession(ApplicationSession):
    """Joins, performs the job's single call or publish, and leaves."""

    def __init__(self, config: ComponentConfig, job: Job) -> None:
        super().__init__(config)
        self.job = job

    def onConnect(self) -> None:
        self.job.phase = "join"
        opts = self.job.opts
        if opts.ticket is not None:
            self.join(self.config.realm, authmethods=["ticket"], authid=opts.authid)
        else:
            self.join(self.config.realm)

    def onChallenge(self, challenge: Any) -> str:
        if challenge.method == "ticket" and self.job.opts.ticket is not None:
            return str(self.job.opts.ticket)
        raise ApplicationError(
            "harness.unsupported_challenge", f"cannot answer a {challenge.method!r} challenge"
        )

    @inlineCallbacks
    def onJoin(self, details: Any) -> Any:
        job, opts = self.job, self.job.opts
        job.phase = "publish" if opts.publish else "call"
        try:
            if opts.publish:
                pub = yield self.publish(
                    opts.publish,
                    *opts.args,
                    options=PublishOptions(acknowledge=True),
                    **opts.kwargs,
                )
                job.succeed({"publication": pub.id})
            else:
                d = self.call(opts.procedure, *opts.args, **opts.kwargs)
                if opts.cancel_after is not None:  # the caller gives up: CANCEL
                    job.reactor.callLater(opts.cancel_after, d.cancel)
                res = yield d
                job.succeed(_jsonable(res))
        except ApplicationError as exc:
            job.fail(exc.error, " ".join(str(a) for a in exc.args), stop=False)
        except CancelledError:
            job.fail("wamp.error.canceled", "the call was cancelled", stop=False)
        except Exception as exc:
            job.fail(OTHER_ERROR, repr(exc), stop=False)
        job.phase = "leave"
        # Leave politely; don't let a router that never answers GOODBYE keep us here.
        job.reactor.callLater(2.0, job.stop)
        self.leave()

    def onLeave(self, details: Any) -> None:
        if not self.job.done:
            self.job.fail(
                str(details.reason), str(details.message or f"session closed in {self.job.phase}")
            )
        self.disconnect()

    def onDisconnect(self) -> None:
        if not self.job.done:
            self.job.fail(CONNECTION_LOST, f"transport closed during {self.job.phase}")
        self.job.stop()


def _jsonable(res: Any) -> Any:
    if isinstance(res, CallResult):
        return {"args": list(res.results), "kwargs": dict(res.kwresults)}
    return res


def run(opts: argparse.Namespace) -> Job:
    """Connect, do the job, return it with its outcome (runs the reactor)."""
    # Imported here, not at the top: importing it installs the global reactor, which the
    # test process importing call()/call_until_ok() must not do.
    from twisted.internet import reactor as twisted_reactor  # noqa: PLC0415

    reactor: Any = twisted_reactor

    job = Job(opts, reactor)
    is_secure, host, port, _resource, _path, _params = parse_url(opts.url)
    if is_secure:
        job.fail(OTHER_ERROR, "wss:// is not supported by this test client")
        return job

    def make_session() -> OneShotSession:
        return OneShotSession(ComponentConfig(realm=opts.realm), job)

    factory: Any = WampWebSocketClientFactory(
        make_session, url=opts.url, serializers=[JsonSerializer()]
    )
    # No handshake timeout of its own: the overall timeout reports a hung router as
    # harness.timeout (pending: websocket) instead of a lost connection.
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=1)

    def on_timeout() -> None:
        job.fail(TIMEOUT_ERROR, f"no answer within {opts.timeout}s (pending: {job.phase})")

    def on_connected(proto: Any) -> None:
        job.phase = "websocket"

        def on_closed(_: Any) -> None:
            if not job.done:
                reason = getattr(proto, "wasNotCleanReason", None) or "closed"
                job.fail(CONNECTION_LOST, f"connection closed during {job.phase}: {reason}")
            job.stop()

        proto.is_closed.addCallback(on_closed)

    def on_connect_failed(failure: Any) -> None:
        job.fail(CONNECT_FAILED, f"{opts.url}: {failure.getErrorMessage()}")

    def go() -> None:
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=max(1, int(opts.timeout)))
        d = endpoint.connect(factory)
        d.addCallbacks(on_connected, on_connect_failed)

    reactor.callLater(opts.timeout, on_timeout)
    reactor.callWhenRunning(go)
    reactor.run()
    return job


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m harness.wamp_call")
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/PATH")
    parser.add_argument("--realm", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--procedure", help="call this procedure once")
    what.add_argument("--publish", metavar="TOPIC", help="publish once (acknowledged)")
    parser.add_argument("--args", default="[]", help="JSON list of positional arguments")
    parser.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    parser.add_argument("--timeout", type=float, default=10.0, help="overall timeout (s)")
    parser.add_argument("--authid", default=None, help="authid for ticket auth")
    parser.add_argument("--ticket", default=None, help="ticket (enables ticket auth)")
    parser.add_argument(
        "--cancel-after", type=float, default=None, help="cancel the call after this many s"
    )
    opts = parser.parse_args(argv)
    try:
        opts.args = json.loads(opts.args)
        opts.kwargs = json.loads(opts.kwargs)
    except ValueError as exc:
        parser.error(f"--args/--kwargs must be JSON: {exc}")
    if not isinstance(opts.args, list):
        parser.error("--args must be a JSON list")
    if not isinstance(opts.kwargs, dict):
        parser.error("--kwargs must be a JSON object")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: returns the exit status."""
    opts = parse_args(argv)
    job = run(opts)
    if job.exit_code == 0:
        print(json.dumps(job.result, default=repr), flush=True)
        return 0
    error = job.error or OTHER_ERROR
    message = job.message if job.done else "reactor stopped without an outcome"
    print(json.dumps({"error": error, "message": message}), file=sys.stderr, flush=True)
    return 1


# --------------------------------------------------------------------------------------------
# Helpers for tests (run the script as a subprocess)
# --------------------------------------------------------------------------------------------


def call(
    url: str,
    realm: str,
    procedure: str,
    args: Sequence[Any] = (),
    timeout: float = 10,
    *,
    kwargs: dict[str, Any] | None = None,
    publish: bool = False,
    authid: str | None = None,
    ticket: str | None = None,
    cancel_after: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the script once (``publish=True``: publish to ``procedure`` as a topic).

    Returns the CompletedProcess (text mode): ``returncode`` 0 and the JSON result on
    stdout, or 1 and the error JSON on stderr (see :func:`call_error`).
    """
    argv = ["--url", url, "--realm", realm]
    argv += ["--publish" if publish else "--procedure", procedure]
    argv += ["--args", json.dumps(list(args)), "--timeout", str(timeout)]
    if kwargs:
        argv += ["--kwargs", json.dumps(kwargs)]
    if authid is not None:
        argv += ["--authid", authid]
    if ticket is not None:
        argv += ["--ticket", ticket]
    if cancel_after is not None:
        argv += ["--cancel-after", str(cancel_after)]
    return subprocess.run(
        python_module("harness.wamp_call", *argv),
        env=harness_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        # The script enforces `timeout` itself; this only guards against interpreter trouble.
        timeout=timeout + 30,
        start_new_session=True,
        check=False,
    )


def call_error(completed: subprocess.CompletedProcess[str]) -> tuple[str, str] | None:
    """``(error_uri, message)`` of a failed :func:`call`, None if it succeeded.

    A failure without the error line (a crash) gives ``("harness.error", <stderr tail>)``.
    """
    if completed.returncode == 0:
        return None
    for line in reversed(completed.stderr.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "error" in obj:
            return str(obj["error"]), str(obj.get("message", ""))
    return OTHER_ERROR, f"exit {completed.returncode}: {completed.stderr[-2000:]}"


def error_uri(completed: subprocess.CompletedProcess[str]) -> str | None:
    """The error URI of a failed :func:`call` (see :func:`call_error`), None on success."""
    error = call_error(completed)
    return error[0] if error is not None else None


def call_result(completed: subprocess.CompletedProcess[str]) -> Any:
    """The decoded JSON result of a successful :func:`call` (ValueError otherwise)."""
    if completed.returncode != 0:
        raise ValueError(f"call failed: {call_error(completed)}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def call_until_ok(
    url: str,
    realm: str,
    procedure: str,
    deadline_seconds: float,
    *,
    args: Sequence[Any] = (),
    per_call_timeout: float = 5.0,
    interval: float = 0.2,
) -> tuple[Any, int]:
    """Call repeatedly until one call succeeds; return ``(result, attempts)``.

    Raises PollTimeout with the last error once ``deadline_seconds`` have passed.
    """
    started = time.monotonic()
    attempts = 0
    last: tuple[str, str] | None = None

    def attempt() -> subprocess.CompletedProcess[str] | None:
        nonlocal attempts, last
        # Each call gets at most the time that is left, so the whole stays within bounds.
        remaining = deadline_seconds - (time.monotonic() - started)
        if remaining <= 0:
            return None
        attempts += 1
        completed = call(url, realm, procedure, args, timeout=min(per_call_timeout, remaining))
        if completed.returncode == 0:
            return completed
        last = call_error(completed)
        return None

    completed = poll(
        attempt,
        deadline_seconds,
        describe=lambda: (
            f"{procedure} on {url} did not succeed ({attempts} attempts; last error: {last})"
        ),
        interval=interval,
    )
    return call_result(completed), attempts


if __name__ == "__main__":
    sys.exit(main())
