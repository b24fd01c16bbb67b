"""Figure 8: the sidecar bridge -- wampd's ``/v1/publish`` and ``/v1/call`` against
Crossbar's own HTTP bridge (``/publish``, ``/call``) on the same router, and wampd's
webhook delivery (``[[bridge.subscription]]``) against Crossbar's ``MessageForwarder``.

::

    python -m bench.bridge load --commands FILE   # the HTTP load generator (asyncio)
    python -m bench.bridge trivial --port PORT    # a trivial HTTP server, to calibrate it
    python -m bench.bridge receiver --port PORT   # the webhook receiver (asyncio)
    python -m bench.bridge publish --url URL --realm R --commands FILE   # the publisher

The bench starts, next to the lab's router: wampd with ``[bridge] listen`` and no
components (:meth:`Rig.start`), one plain autobahn callee (an ``ApplicationRunner``
hosting :class:`bench.components.BenchComponent`: its ``echo`` returns its argument, it
counts the events of its ``topic``), and the load generator. The two sides get the same
request -- ``{"topic" | "procedure", "args": [PAYLOAD], "kwargs": {}}`` -- publishing to
the callee's topic (one subscriber) or calling its echo; wampd's publications are
acknowledged by the router before wampd answers, and so are Crossbar's (its publisher
resource publishes with ``acknowledge=True``). Crossbar's bridge runs inside the router
worker; wampd's is one more process and one more WebSocket hop away from it.

**The load generator** (``load``) is a separate process: ``clients`` keep-alive HTTP/1.1
connections (asyncio protocols, raw bytes, ``Content-Length`` or chunked answers), each
sending its next request as soon as the last one is answered, for ``seconds``, each answer
checked for its status (``status``, 200 unless the command says otherwise) and for the
``expect`` text in its body; it answers
``{"op": "load", "ops": N, "seconds": S, "errors": E, "p50_ms", "p99_ms", "cpu": C}``,
``cpu`` being its own CPU time over the wall time (1.0: one core saturated). It is not the
limit, checked two ways in every run: before measuring, it runs ``clients = 32`` against
``trivial`` (an asyncio server answering a canned chunked 200, in a process of its own)
and the progress line compares that rate with the bridges' (on this 2-core machine, shared,
it sustained 16,000-27,000 requests/s, 9-13 times the faster bridge's rate); and each
round's progress line shows its highest CPU share while measuring (14-16 % of a core at
32 clients: it mostly waits for the servers).

Where wampd loses, and why (measured with ``/proc`` CPU times and cProfile at 32 clients):
wampd's own process is the limit -- about 80 % of a core at ~1,100 requests/s, some
750 us of CPU a request, while the router then needs only ~30 % -- whereas Crossbar does
HTTP and routing in one process in ~500 us a request. On top of the same twisted.web
parsing both pay, wampd is a WAMP client as well (serialising, masking, framing, and
decoding the acknowledgement or result), and at 1 client the extra process and WebSocket
round trip add about 0.8 ms.

Each round runs every route at every client count on both sides, the sides alternating
(wampd first in even rounds, Crossbar first in odd ones); the rows are medians across the
rounds of each sample's rate, p50 and p99.

**Webhook delivery** (the ``bridge_webhook_eps_inflight_*`` rows, after the request
rows, on the same :class:`Rig`): events/s from a WAMP topic to an HTTP endpoint. wampd has
two ``[[bridge.subscription]]`` tables (``max_inflight`` 1 and 16, ``max_queued`` 100,000
so nothing is dropped); every lab's router runs Crossbar's
``crossbar.bridge.rest.MessageForwarder`` as a router component (:func:`bench.procs.forwarder`,
no ``expectedcode``). Each of the three subscribes to a topic of its own and POSTs to a path
of its own on one **receiver** (``receiver``: raw asyncio HTTP/1.1, keep-alive, answers
every POST ``200`` with ``Content-Length: 0``, counts the POSTs and the distinct event
numbers per path with the times of the first and the last; ``GET /_stats`` and ``POST
/_reset`` read and reset that). It listens on a port the lab holds reserved from the start
(:func:`bench.procs.reserve_port`), since the forwarder's URL is in the router's
configuration, and it is up before any event is published: the forwarder stops for good at
its first refused connection. The **publisher** (``publish``: a plain autobahn
``ApplicationRunner`` running :class:`bench.components.WebhookPublisher`) publishes
``webhook_events`` events ``[i, PAYLOAD]`` to one side's topic as fast as it can,
acknowledging every 100th. A sample is that burst, timed at the receiver from the first
event's arrival to the last one's; it waits until every event number arrived, and an
event missing for ``webhook_stall`` seconds is lost (the progress line and the row say so;
POSTs of an event delivered twice are shown too). Each round sends one burst per side, in
alternating order (wampd x1, wampd x16, Crossbar; then the reverse); the rows are medians,
the two of them compared with the same Crossbar samples.

The receiver is not the limit: each round's progress line shows its highest CPU share
(7-10 % of a core in every run so far), and after the rounds the load generator drives it
at 1 and 16 keep-alive connections: 3,900-18,700 and 8,400-28,000 requests/s on this shared
2-core machine (the load generator's own limit as much as the receiver's), 6-20 times the
fastest delivery of the same run.

What the rounds showed (1,500- and 2,000-event bursts, the machine shared with other work,
so noisy): wampd 490-1,200 events/s at ``max_inflight = 1`` and 540-1,450 at 16, Crossbar
250-570. Crossbar's forwarder starts every event's POST at once (autobahn does not wait for
the handler) through treq's pool, which keeps only two idle connections per host: 98 % of
the events open a TCP connection of their own (the progress line shows how many), and the
router worker -- routing the publisher's events too -- runs at 60-90 % of a core, some
2 ms of CPU an event, publishing no faster than it forwards. Its rate also falls with the
burst size (~1,000 events/s for 200-event bursts, as in the smoke run, where it can beat
wampd). wampd delivers over a handful of kept-alive
connections at ~0.6-0.8 ms of CPU an event, at 40-75 % of a core while the rest of the
machine is busy (the router, the publisher, other work): on a busy machine CPU, not the
round trip, is its limit and 16 deliveries in flight gain little over 1 (on a quieter one
16 doubled it: 1,680 against 880). cProfile of wampd over bursts at both settings: treq's
``request`` is ~40 % of its time (its per-request URL handling -- hyperlink and idna,
for the same URL every time -- alone ~10 %), autobahn's WebSocket and WAMP decoding ~12 %.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.poll import poll
from harness.ports import HOST, free_port
from harness.procs import REPO_ROOT, Proc, descendants, harness_env

from .procs import (
    CROSSBAR_HOOK_PATH,
    CROSSBAR_HOOK_TOPIC,
    REALM,
    BenchError,
    ClientProc,
    Host,
    Lab,
    cpu_seconds,
)
from .report import Better, Row

if TYPE_CHECKING:
    from .figures import Settings

PAYLOAD = "bench-payload-16"
BASELINE = "crossbar-bridge"
SIDES = ("wampd", "crossbar")
ROUTES = ("publish", "call")
COMMAND_POLL = 0.01
#: wampd's webhook subscriptions measured: their ``max_inflight``.
INFLIGHTS = (1, 16)
#: Seconds between two looks at the receiver's counts while a burst is delivered.
HOOK_POLL = 0.02
#: Seconds between priming the subscriptions and the first burst.
PRIME_SETTLE = 0.5
#: Seconds a sample may overrun before its stuck requests count as errors.
GRACE = 10.0


# -- the load generator (a subprocess) -------------------------------------------------------


def say(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_response(buf: bytes) -> tuple[int, bytes, int] | None:
    """The status, the body and the bytes used by the first complete HTTP/1.1 response in
    ``buf`` (``Content-Length`` or chunked, no trailers); None if it is not complete yet.
    Raises ValueError for a response the load generator cannot frame."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    status = int(head[9:12])
    start = end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(head[at + 17 :].split(b"\r\n", 1)[0])
        if len(buf) < start + length:
            return None
        return status, buf[start : start + length], start + length
    if b"\r\ntransfer-encoding: chunked" not in head:
        raise ValueError(f"unframed response: {head[:200]!r}")
    chunked = _dechunk(buf, start)
    return None if chunked is None else (status, *chunked)


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """The body of the chunked response body at ``buf[pos:]``, and where it ends; None if
    it is not complete yet."""
    body = b""
    while (line_end := buf.find(b"\r\n", pos)) >= 0:
        size = int(buf[pos:line_end].split(b";")[0], 16)
        pos = line_end + 2
        if len(buf) < pos + size + 2:
            return None
        if size == 0:
            return body, pos + 2
        body += buf[pos : pos + size]
        pos += size + 2
    return None


class _Sample:
    """One measurement: its request, its deadline, what came back."""

    def __init__(self, request: bytes, expect: bytes, end: float, status: int = 200) -> None:
        self.request = request
        self.expect = expect
        self.status = status
        self.end = end
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.last = 0.0

    def error(self, text: str) -> None:
        """Count one failed request (keep the first one's description)."""
        self.errors += 1
        self.first_error = self.first_error or text


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the sample's request again as soon as the last
    one is answered, until the sample's deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.sample: _Sample | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self._buf = b""
        self._sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; requests start with :meth:`begin`."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def begin(self, sample: _Sample) -> None:
        """Start sending ``sample``'s request."""
        self.sample = sample
        self._send()

    def _send(self) -> None:
        assert self.sample is not None and self.transport is not None
        now = time.perf_counter()
        if now >= self.sample.end:
            self._finish()
            return
        self._sent = now
        self.transport.write(self.sample.request)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Complete the outstanding request once its whole response is in."""
        sample = self.sample
        assert sample is not None
        self._buf += data
        try:
            parsed = parse_response(self._buf)
        except ValueError as exc:
            sample.error(str(exc))
            self.close()
            return
        if parsed is None:
            return
        now = time.perf_counter()
        status, body, used = parsed
        if used != len(self._buf):
            sample.error(f"{len(self._buf) - used} bytes after the response")
            self.close()
            return
        self._buf = b""
        sample.last = now
        if status == sample.status and sample.expect in body:
            sample.latencies.append(now - self._sent)
        else:
            sample.error(f"HTTP {status}: {body[:300]!r}")
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        """A connection closed before the sample ended is one failed request."""
        if not self.done.done() and self.sample is not None:
            self.sample.error(f"connection lost: {exc!r}")
        self._finish()

    def close(self) -> None:
        """Close the connection (ends its part of the sample)."""
        if self.transport is not None:
            self.transport.close()
        self._finish()


def request_bytes(port: int, path: str, body: Any) -> bytes:
    """A keep-alive ``POST path`` with a JSON body (an object or an array), as raw bytes."""
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def run_load(cmd: dict[str, Any]) -> dict[str, Any]:
    """One sample: ``clients`` connections POSTing ``body`` to ``path`` for ``seconds``,
    each answer expected to have the status ``status`` (default 200)."""
    loop = asyncio.get_running_loop()
    port, clients, seconds = int(cmd["port"]), int(cmd["clients"]), float(cmd["seconds"])
    request = request_bytes(port, str(cmd["path"]), cmd["body"])
    conns: list[_Client] = []
    for _ in range(clients):
        _transport, conn = await loop.create_connection(lambda: _Client(loop), HOST, port)
        conns.append(conn)
    cpu0, start = time.process_time(), time.perf_counter()
    status = int(cmd.get("status", 200))
    sample = _Sample(request, str(cmd["expect"]).encode(), start + seconds, status)
    for conn in conns:
        conn.begin(sample)
    pending = [conn.done for conn in conns]
    _done, stuck = await asyncio.wait(pending, timeout=seconds + GRACE)
    cpu = time.process_time() - cpu0
    for _ in stuck:
        sample.error(f"no answer within {seconds + GRACE:g} s")
    for conn in conns:
        conn.close()
    elapsed = max(sample.last, start + 1e-9) - start
    answer: dict[str, Any] = {
        "op": "load",
        "ops": len(sample.latencies),
        "seconds": elapsed,
        "errors": sample.errors,
        "first_error": sample.first_error,
        "cpu": cpu / elapsed,
    }
    if len(sample.latencies) >= 2:
        cuts = statistics.quantiles(sample.latencies, n=100, method="inclusive")
        answer.update(p50_ms=cuts[49] * 1000, p99_ms=cuts[98] * 1000)
    return answer


async def follow(path: str) -> None:
    """Run each command appended to ``path``; answer each on stdout; ``quit`` ends it."""
    say({"op": "ready"})
    partial = ""
    with open(path) as fh:
        while True:
            chunk = fh.read()
            if not chunk:
                await asyncio.sleep(COMMAND_POLL)
                continue
            *lines, partial = (partial + chunk).split("\n")
            for line in lines:
                if not line.strip():
                    continue
                cmd = json.loads(line)
                if cmd.get("op") == "quit":
                    return
                try:
                    say(await run_load(cmd))
                except Exception as exc:
                    say({"op": str(cmd.get("op")), "failed": f"{type(exc).__name__}: {exc}"})


class _Trivial(asyncio.Protocol):
    """Answers every request with the same chunked 200, as cheaply as it can."""

    BODY = b'{"id": 1, "args": ["' + PAYLOAD.encode() + b'"]}'
    ANSWER = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
        + b"\r\n\r\n"
        + f"{len(BODY):x}".encode()
        + b"\r\n"
        + BODY
        + b"\r\n0\r\n\r\n"
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Answer each complete request (head and ``Content-Length`` body)."""
        assert self.transport is not None
        self._buf += data
        while (end := self._buf.find(b"\r\n\r\n")) >= 0:
            head = self._buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
            if len(self._buf) < end + 4 + length:
                return
            self._buf = self._buf[end + 4 + length :]
            self.transport.write(self.ANSWER)


async def serve_trivial(port: int) -> None:
    """Serve :class:`_Trivial` on 127.0.0.1:``port`` until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Trivial, HOST, port)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# -- the webhook receiver (a subprocess) -------------------------------------------------------

#: What the receiver answers every webhook POST.
HOOK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class _PathTally:
    """What one path of the receiver got since the last reset."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0
    seqs: set[int] = field(default_factory=set)


class _Tally:
    """The receiver's counters, shared by its connections."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.paths: dict[str, _PathTally] = {}
        self.open = 0
        self.reset()

    def reset(self) -> None:
        """Forget every count (not the connections still open)."""
        self.paths.clear()
        self.accepted = 0
        self.open_max = self.open

    def hook(self, path: str, body: bytes) -> None:
        """Count one POST to ``path``; keep the event's number (``args[0]``) if it has one."""
        now = time.monotonic()
        tally = self.paths.get(path)
        if tally is None:
            tally = self.paths[path] = _PathTally(first=now)
        tally.count += 1
        tally.last = now
        try:
            seq = json.loads(body)["args"][0]
        except (ValueError, LookupError, TypeError):
            return
        if isinstance(seq, int):
            tally.seqs.add(seq)

    def stats(self) -> dict[str, Any]:
        """The counters, the receiver's clock and its CPU time, as JSON."""
        paths = {
            path: {"count": t.count, "distinct": len(t.seqs), "first": t.first, "last": t.last}
            for path, t in self.paths.items()
        }
        return {
            "paths": paths,
            "accepted": self.accepted,
            "open_max": self.open_max,
            "now": time.monotonic(),
            "cpu": time.process_time(),
        }


class _Hooks(asyncio.Protocol):
    """One connection to the receiver: keep-alive HTTP/1.1 requests with ``Content-Length``
    or chunked bodies (or none), pipelined or not; each webhook POST is counted and answered
    :data:`HOOK_ANSWER`. ``GET /_stats`` answers :meth:`_Tally.stats`, ``POST /_reset``
    resets it first."""

    def __init__(self, tally: _Tally) -> None:
        """A connection counting into ``tally``."""
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; count the connection."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.tally.accepted += 1
        self.tally.open += 1
        self.tally.open_max = max(self.tally.open_max, self.tally.open)

    def connection_lost(self, exc: Exception | None) -> None:
        """Count the connection out."""
        self.tally.open -= 1

    def data_received(self, data: bytes) -> None:
        """Answer each complete request in the buffer."""
        assert self.transport is not None
        self._buf += data
        while (end := self._buf.find(b"\r\n\r\n")) >= 0:
            head = self._buf[:end]
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if b"\r\ntransfer-encoding: chunked" in lower:
                chunked = _dechunk(self._buf, end + 4)
                if chunked is None:
                    return
                body, used = chunked
            else:
                length = int(head[at + 17 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self._buf) < end + 4 + length:
                    return
                body, used = self._buf[end + 4 : end + 4 + length], end + 4 + length
            self._buf = self._buf[used:]
            method, path = head.split(b" ", 2)[:2]
            if path.startswith(b"/_"):
                self._control(method, path)
                continue
            self.tally.hook(path.decode("latin-1"), body)
            self.transport.write(HOOK_ANSWER)

    def _control(self, method: bytes, path: bytes) -> None:
        """Answer ``/_stats`` or ``/_reset`` (404 for anything else)."""
        assert self.transport is not None
        if path == b"/_reset" and method == b"POST":
            self.tally.reset()
        elif path != b"/_stats":
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        body = json.dumps(self.tally.stats()).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        self.transport.write(head.encode() + b"\r\n\r\n" + body)


async def serve_hooks(port: int) -> None:
    """Serve :class:`_Hooks` on 127.0.0.1:``port`` until killed (``SO_REUSEPORT``: the
    bench holds that port reserved, see :func:`bench.procs.reserve_port`)."""
    loop = asyncio.get_running_loop()
    tally = _Tally()
    server = await loop.create_server(
        lambda: _Hooks(tally), HOST, port, reuse_port=True, backlog=4096
    )
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


def publish(url: str, realm: str, commands: str) -> None:
    """Run :class:`bench.components.WebhookPublisher` in an ``ApplicationRunner`` until
    its session ends."""
    from autobahn.twisted.wamp import ApplicationRunner  # noqa: PLC0415 -- Twisted, here only

    from .components import WebhookPublisher  # noqa: PLC0415

    runner = ApplicationRunner(url, realm, extra={"commands": commands})
    runner.run(WebhookPublisher, log_level="warn")


def main(argv: Sequence[str] | None = None) -> int:
    """``load``, ``trivial``, ``receiver`` or ``publish`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bridge")
    modes = parser.add_subparsers(dest="mode", required=True)
    load = modes.add_parser("load", help="the HTTP load generator, following --commands")
    load.add_argument("--commands", required=True)
    trivial = modes.add_parser("trivial", help="a trivial HTTP server (calibration)")
    trivial.add_argument("--port", type=int, required=True)
    receiver = modes.add_parser("receiver", help="the webhook receiver")
    receiver.add_argument("--port", type=int, required=True)
    publisher = modes.add_parser("publish", help="the webhook publisher, following --commands")
    publisher.add_argument("--url", required=True)
    publisher.add_argument("--realm", required=True)
    publisher.add_argument("--commands", required=True)
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if opts.mode == "load":
        asyncio.run(follow(opts.commands))
    elif opts.mode == "trivial":
        asyncio.run(serve_trivial(opts.port))
    elif opts.mode == "receiver":
        asyncio.run(serve_hooks(opts.port))
    else:
        publish(opts.url, opts.realm, opts.commands)
    return 0


# -- the bench's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One side's route: where to POST what, and what a good answer contains (and its
    status)."""

    side: str
    route: str
    port: int
    path: str
    body: Any
    expect: str
    status: int = 200

    def answers(self) -> bool:
        """True if one request on a fresh connection is answered well."""
        try:
            status, body = post(self.port, self.path, self.body)
        except OSError:
            return False
        return status == self.status and self.expect.encode() in body

    def describe(self) -> str:
        """What one request on a fresh connection gets, for error messages."""
        try:
            answer: object = post(self.port, self.path, self.body)
        except OSError as exc:
            answer = exc
        return f"{self.side} {self.path} answers {answer!r}"

    def command(self, clients: int, seconds: float) -> dict[str, Any]:
        """The load generator's command for one sample."""
        return {
            "op": "load",
            "port": self.port,
            "path": self.path,
            "body": self.body,
            "expect": self.expect,
            "status": self.status,
            "clients": clients,
            "seconds": seconds,
        }


@dataclass(frozen=True)
class Hook:
    """One side's webhook subscription: the events of ``topic`` are POSTed to ``path`` of
    the receiver (wampd: with ``inflight`` deliveries at once; Crossbar: 0, all of them)."""

    side: str
    inflight: int
    topic: str
    path: str

    @property
    def label(self) -> str:
        """Its name in progress lines."""
        return f"wampd x{self.inflight}" if self.side == "wampd" else "Crossbar"


HOOKS = (
    *(Hook("wampd", k, f"bench.webhook.wampd{k}", f"/wampd-{k}") for k in INFLIGHTS),
    Hook("crossbar", 0, CROSSBAR_HOOK_TOPIC, CROSSBAR_HOOK_PATH),
)


def post(port: int, path: str, body: Any) -> tuple[int, bytes]:
    """POST a JSON body (an object or an array) on a fresh connection; the status and the
    body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ready(port: int) -> bool:
    """True once wampd's bridge answers ``GET /v1/ready`` with 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/v1/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Rig:
    """The figure's processes: wampd's bridge (with its webhook subscriptions), the callee,
    the load generator, the trivial server, the webhook receiver and the publisher --
    started together, killed together."""

    def __init__(self, lab: Lab, settings: Settings) -> None:
        """Prepare the processes (the lab's router must run)."""
        self.lab = lab
        subscriptions = [
            {
                "topic": hook.topic,
                "url": f"http://{HOST}:{lab.webhook_port}{hook.path}",
                "max_inflight": hook.inflight,
                "timeout": 30.0,
                # Never full: every event of a burst waits its turn.
                "max_queued": 100_000,
            }
            for hook in HOOKS
            if hook.side == "wampd"
        ]
        self.wampd = Host(
            lab,
            "wampd",
            sessions=0,
            options=settings.options,
            bridge=True,
            subscriptions=subscriptions,
        )
        self.callee = Host(lab, "runner", options=settings.options)
        module = [sys.executable, "-m", "bench.bridge"]
        self.load = ClientProc(lab, "http-load", argv=[*module, "load"])
        self.publisher = ClientProc(
            lab, "publisher", argv=[*module, "publish", "--url", lab.router.url(), "--realm", REALM]
        )
        self.receiver = Proc(
            [*module, "receiver", "--port", str(lab.webhook_port)],
            stdout_path=lab.workdir / f"receiver-{lab.next_serial()}" / "stdout.log",
            env=harness_env(),
            cwd=REPO_ROOT,
            name="receiver",
        )
        #: One keep-alive connection to the receiver, for its counts.
        self._stats = http.client.HTTPConnection(HOST, lab.webhook_port, timeout=10)
        self.trivial_port = free_port()
        self.trivial = Proc(
            [sys.executable, "-m", "bench.bridge", "trivial", "--port", str(self.trivial_port)],
            stdout_path=lab.workdir / f"trivial-{lab.next_serial()}" / "stdout.log",
            env=harness_env(),
            cwd=REPO_ROOT,
            name="trivial",
        )

    def start(self) -> Rig:
        """Start everything; wait until wampd's bridge is joined and the callee's echo
        answers through both bridges. The webhook receiver goes first: Crossbar's forwarder
        gives up for good on a refused connection."""
        self.lab.track(self.receiver)
        self.receiver.start()
        self.receiver.wait_for_line(lambda line: line.strip() == "READY", timeout=60)
        self.publisher.start()
        self.lab.track(self.trivial)
        self.trivial.start()
        self.load.start()
        self.callee.start()
        self.wampd.start()
        port = self.wampd.bridge_port
        assert port is not None
        self.load.wait("ready", 1, 60)
        self.publisher.wait("ready", 1, 60)
        self.trivial.wait_for_line(lambda line: line.strip() == "READY", timeout=60)
        self.callee.wait_joined(timeout=60)
        poll(
            lambda: _ready(port),
            60,
            describe=lambda: f"wampd's bridge never ready\n{self.wampd.describe()}",
            stop=lambda: not self.wampd.proc.running,
        )
        # The callee joined before its registrations were done; the echo answering through
        # both bridges means everything is in place.
        for endpoint in self.endpoints("call"):
            poll(endpoint.answers, 30, describe=endpoint.describe)
        return self

    def endpoints(self, route: str) -> list[Endpoint]:
        """wampd's and Crossbar's ``route`` (``publish`` or ``call``), in :data:`SIDES` order."""
        assert self.wampd.bridge_port is not None
        if route == "publish":
            body: dict[str, Any] = {"topic": self.callee.procedure(0, "topic")}
            expect = '"id"'
        else:
            body = {"procedure": self.callee.procedure()}
            expect = PAYLOAD
        body.update(args=[PAYLOAD], kwargs={})
        return [
            Endpoint("wampd", route, self.wampd.bridge_port, f"/v1/{route}", body, expect),
            Endpoint("crossbar", route, self.lab.router.port, f"/{route}", body, expect),
        ]

    def measure(self, endpoint: Endpoint, clients: int, seconds: float) -> dict[str, Any]:
        """One sample; a sample with failed requests or none answered fails the figure."""
        answer = self.load.run(endpoint.command(clients, seconds), timeout=seconds + 2 * GRACE)
        if answer["errors"] or answer["ops"] < 2:
            raise BenchError(f"{endpoint.side} {endpoint.path} x{clients}: {answer}")
        return answer

    def calibrate(self, clients: int, seconds: float) -> dict[str, Any]:
        """The load generator against the trivial server."""
        trivial = Endpoint("trivial", "publish", self.trivial_port, "/", {"args": []}, '"id"')
        return self.measure(trivial, clients, seconds)

    def hook_stats(self, *, reset: bool = False) -> dict[str, Any]:
        """The receiver's counts (:meth:`_Tally.stats`), reset afterwards with ``reset``."""
        conn = self._stats
        try:
            conn.request("POST" if reset else "GET", "/_reset" if reset else "/_stats")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        if response.status != 200:
            raise BenchError(f"the webhook receiver answers {response.status}: {body[:300]!r}")
        stats: dict[str, Any] = json.loads(body)
        return stats

    def burst(self, hook: Hook, events: int, batch: int) -> dict[str, Any]:
        """Have the publisher publish ``events`` events to ``hook``'s topic."""
        cmd = {"op": "burst", "topic": hook.topic, "events": events, "batch": batch}
        answer = self.publisher.run(cmd, timeout=60 + events / 100)
        if answer["errors"]:
            raise BenchError(f"publishing to {hook.topic}: {answer}")
        return answer

    def prime(self, hook: Hook, timeout: float = 30.0) -> None:
        """Publish one event to ``hook``'s topic every 0.2 s until one arrives (the
        subscription is in place)."""

        def arrived() -> bool:
            if hook.path in self.hook_stats()["paths"]:
                return True
            self.burst(hook, 1, 1)
            return False

        poll(
            arrived,
            timeout,
            interval=0.2,
            describe=lambda: (
                f"no event to {hook.path} arrived at the webhook receiver\n"
                f"{self.wampd.describe()}\n{self.lab.router.log_tail(20)}"
            ),
        )

    def deliver(self, hook: Hook, events: int, batch: int, stall: float) -> dict[str, Any]:
        """Reset the receiver, publish ``events`` events to ``hook``'s topic, and wait until
        they all arrived, or none did for ``stall`` seconds. The answer: ``received``
        (distinct events), ``count`` (POSTs), ``seconds`` (first POST to last), ``rate``
        (events/s over them), ``publish_rate``, ``connections`` (the receiver accepted,
        besides the bench's own), and the CPU time of the receiver, wampd and the router
        (controller and worker) over the wall time, from the reset to the last look
        (``cpu``: 1.0 is one core)."""
        pids = {
            "receiver": [self.receiver.pid],
            "wampd": [self.wampd.pid],
            "router": [self.lab.router.pid, *descendants(self.lab.router.pid)],
        }
        cpu0 = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
        before = self.hook_stats(reset=True)
        sent = self.burst(hook, events, batch)
        seen, changed = -1, time.monotonic()
        while True:
            stats = self.hook_stats()
            tally = stats["paths"].get(hook.path, {"count": 0, "distinct": 0})
            if tally["distinct"] >= events:
                break
            if tally["count"] != seen:
                seen, changed = tally["count"], time.monotonic()
            elif time.monotonic() - changed > stall:
                break
            time.sleep(HOOK_POLL)
        wall = stats["now"] - before["now"]
        cpu = {
            name: (sum(map(cpu_seconds, group)) - cpu0[name]) / wall for name, group in pids.items()
        }
        seconds = tally.get("last", 0.0) - tally.get("first", 0.0)
        received = int(tally["distinct"])
        return {
            "received": received,
            "count": int(tally["count"]),
            "seconds": seconds,
            "rate": (received - 1) / seconds if received >= 2 and seconds > 0 else None,
            "publish_rate": events / max(float(sent["seconds"]), 1e-9),
            "cpu": cpu,
            "connections": int(stats["accepted"]),
        }

    def kill(self) -> None:
        """Kill every process of the rig."""
        self._stats.close()
        self.publisher.kill()
        self.receiver.kill()
        self.load.kill()
        self.trivial.kill()
        self.wampd.kill()
        self.callee.kill()


def bridge(lab: Lab, settings: Settings) -> list[Row]:
    """Requests/s and p50/p99 latency of publish and call through wampd's sidecar bridge
    and through Crossbar's HTTP bridge, at each of ``bridge_clients`` concurrent
    keep-alive clients (see the module docstring)."""
    lab.ensure_router()
    rig = Rig(lab, settings)
    try:
        rig.start()
        return [*_request_rows(rig, settings), *_webhook_rows(rig, settings)]
    finally:
        rig.kill()


def _request_rows(rig: Rig, settings: Settings) -> list[Row]:
    """The publish and call rows of :func:`bridge`."""
    from .figures import alternate, median, progress  # noqa: PLC0415 -- figures imports us

    clients = settings.bridge_clients
    seconds = settings.bridge_seconds
    top = max(clients)
    routes = {route: rig.endpoints(route) for route in ROUTES}
    if settings.bridge_warmup:
        for endpoints in routes.values():
            for endpoint in endpoints:
                rig.measure(endpoint, top, settings.bridge_warmup)
    found: dict[tuple[str, int, str, str], list[float | None]] = {}
    for n in range(settings.bridge_rounds):
        cpu = 0.0
        shown = []
        for route, endpoints in routes.items():
            for c in clients:
                for endpoint in alternate(endpoints, n):
                    answer = rig.measure(endpoint, c, seconds)
                    cpu = max(cpu, float(answer["cpu"]))
                    values = {
                        "rps": answer["ops"] / answer["seconds"],
                        "p50": float(answer["p50_ms"]),
                        "p99": float(answer["p99_ms"]),
                    }
                    for key, value in values.items():
                        found.setdefault((route, c, key, endpoint.side), []).append(value)
                last = {side: found[route, c, "rps", side][-1] or 0.0 for side in SIDES}
                shown.append(f"{route} x{c} {last['wampd']:,.0f} / {last['crossbar']:,.0f}")
        progress(
            f"bridge: round {n + 1}/{settings.bridge_rounds}: {', '.join(shown)} "
            f"(wampd / Crossbar, requests/s); load generator at most {cpu:.0%} of a core"
        )
    calibration = rig.calibrate(top, seconds)
    fastest = max(median(found[r, top, "rps", s]) or 0.0 for r in ROUTES for s in SIDES)
    rate = calibration["ops"] / calibration["seconds"]
    progress(
        f"bridge: the load generator alone, {top} clients against a trivial server: "
        f"{rate:,.0f} requests/s ({rate / max(fastest, 1e-9):.1f}x the fastest bridge, "
        f"{calibration['cpu']:.0%} of a core)"
    )
    rows = []
    labels: dict[str, tuple[str, Better, tuple[str, float] | None]] = {
        "rps": ("requests/s", "higher", (">=", 1.0)),
        "p50": ("ms", "lower", None),
        "p99": ("ms", "lower", ("<=", 1.0)),
    }
    for route in ROUTES:
        for key, (unit, better, target) in labels.items():
            for c in clients:
                rows.append(
                    Row(
                        f"bridge_{route}_{key}{'' if key == 'rps' else '_ms'}_{c}",
                        unit,
                        median(found[route, c, key, "wampd"]),
                        median(found[route, c, key, "crossbar"]),
                        BASELINE,
                        better,
                        target=target,
                    )
                )
    return rows


def _webhook_rows(rig: Rig, settings: Settings) -> list[Row]:
    """The webhook delivery rows of :func:`bridge` (see the module docstring)."""
    from .figures import alternate, median, progress  # noqa: PLC0415 -- figures imports us

    events, batch, stall = settings.webhook_events, settings.webhook_batch, settings.webhook_stall
    for hook in HOOKS:
        rig.prime(hook)
    # A priming event published twice may still be on its way: let it arrive before the
    # first burst resets the counts.
    time.sleep(PRIME_SETTLE)
    if settings.webhook_warmup:
        for hook in HOOKS:
            rig.deliver(hook, settings.webhook_warmup, batch, stall)
    rates: dict[Hook, list[float | None]] = {hook: [] for hook in HOOKS}
    lost: dict[Hook, str] = {}
    for n in range(settings.webhook_rounds):
        shown, receiver, connections = [], 0.0, 0
        for hook in alternate(list(HOOKS), n):
            if hook in lost:
                continue
            got = rig.deliver(hook, events, batch, stall)
            cpu = got["cpu"]
            receiver = max(receiver, cpu["receiver"])
            if hook.side == "crossbar":
                connections = got["connections"]
            if got["received"] < events or got["rate"] is None:
                lost[hook] = f"{events - got['received']} of {events} events lost"
                progress(f"bridge: webhooks: {hook.label}: {lost[hook]}: {got}")
                continue
            rates[hook].append(got["rate"])
            duplicates = got["count"] - got["received"]
            extra = f", {duplicates} delivered twice" if duplicates else ""
            shown.append(
                f"{hook.label} {got['rate']:,.0f} (published at {got['publish_rate']:,.0f}/s; "
                f"wampd {cpu['wampd']:.0%}, router {cpu['router']:.0%}{extra})"
            )
        progress(
            f"bridge: webhooks round {n + 1}/{settings.webhook_rounds}, {events} events: "
            f"{', '.join(shown)} (events/s; CPU in % of a core); the receiver at most "
            f"{receiver:.0%} of a core; Crossbar opened {connections} connections to it"
        )
    shown = []
    for clients in (1, max(INFLIGHTS)):
        endpoint = Endpoint(
            "receiver", "webhook", rig.lab.webhook_port, "/calibrate", {"args": [0]}, ""
        )
        answer = rig.measure(endpoint, clients, settings.bridge_seconds)
        shown.append(
            f"{answer['ops'] / answer['seconds']:,.0f} requests/s at {clients} "
            f"connection{'s' if clients > 1 else ''}"
        )
    fastest = max((median(rates[hook]) or 0.0 for hook in HOOKS), default=0.0)
    progress(
        f"bridge: the webhook receiver under the load generator: {', '.join(shown)} "
        f"(the fastest delivery: {fastest:,.0f} events/s)"
    )
    crossbar = HOOKS[-1]
    rows = []
    for hook in HOOKS[:-1]:
        missing = "; ".join(lost[h] for h in (hook, crossbar) if h in lost)
        rows.append(
            Row(
                f"bridge_webhook_eps_inflight_{hook.inflight}",
                "events/s",
                None if hook in lost else median(rates[hook]),
                None if crossbar in lost else median(rates[crossbar]),
                BASELINE,
                "higher",
                target=(">=", 1.0),
                missing=missing or "events lost",
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
