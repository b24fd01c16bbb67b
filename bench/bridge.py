"""Figure 8: the sidecar bridge -- wampd's ``/v1/publish`` and ``/v1/call`` against
Crossbar's own HTTP bridge (``/publish``, ``/call``) on the same router.

::

    python -m bench.bridge load --commands FILE   # the HTTP load generator (asyncio)
    python -m bench.bridge trivial --port PORT    # a trivial HTTP server, to calibrate it

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
sending its next request as soon as the last one is answered, for ``seconds``; it answers
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

Webhook delivery (wampd's ``[[bridge.subscription]]`` against Crossbar's webhook
forwarding) belongs here too: it will get a receiver process and rows of its own after
the request rows in :func:`bridge`, on the same :class:`Rig`.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.poll import poll
from harness.ports import HOST, free_port
from harness.procs import REPO_ROOT, Proc, harness_env

from .procs import BenchError, ClientProc, Host, Lab
from .report import Better, Row

if TYPE_CHECKING:
    from .figures import Settings

PAYLOAD = "bench-payload-16"
BASELINE = "crossbar-bridge"
SIDES = ("wampd", "crossbar")
ROUTES = ("publish", "call")
COMMAND_POLL = 0.01
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

    def __init__(self, request: bytes, expect: bytes, end: float) -> None:
        self.request = request
        self.expect = expect
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
        if status == 200 and sample.expect in body:
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


def request_bytes(port: int, path: str, body: dict[str, Any]) -> bytes:
    """A keep-alive ``POST path`` with a JSON body, as raw bytes."""
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def run_load(cmd: dict[str, Any]) -> dict[str, Any]:
    """One sample: ``clients`` connections POSTing ``body`` to ``path`` for ``seconds``."""
    loop = asyncio.get_running_loop()
    port, clients, seconds = int(cmd["port"]), int(cmd["clients"]), float(cmd["seconds"])
    request = request_bytes(port, str(cmd["path"]), cmd["body"])
    conns: list[_Client] = []
    for _ in range(clients):
        _transport, conn = await loop.create_connection(lambda: _Client(loop), HOST, port)
        conns.append(conn)
    cpu0, start = time.process_time(), time.perf_counter()
    sample = _Sample(request, str(cmd["expect"]).encode(), start + seconds)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``load`` or ``trivial`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bridge")
    modes = parser.add_subparsers(dest="mode", required=True)
    load = modes.add_parser("load", help="the HTTP load generator, following --commands")
    load.add_argument("--commands", required=True)
    trivial = modes.add_parser("trivial", help="a trivial HTTP server (calibration)")
    trivial.add_argument("--port", type=int, required=True)
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if opts.mode == "load":
        asyncio.run(follow(opts.commands))
    else:
        asyncio.run(serve_trivial(opts.port))
    return 0


# -- the bench's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One side's route: where to POST what, and what a good answer contains."""

    side: str
    route: str
    port: int
    path: str
    body: dict[str, Any]
    expect: str

    def answers(self) -> bool:
        """True if one request on a fresh connection is answered well."""
        try:
            status, body = post(self.port, self.path, self.body)
        except OSError:
            return False
        return status == 200 and self.expect.encode() in body

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
            "clients": clients,
            "seconds": seconds,
        }


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """POST a JSON body on a fresh connection; the status and the body."""
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
    """The figure's processes: wampd's bridge, the callee, the load generator, and the
    trivial server -- started together, killed together."""

    def __init__(self, lab: Lab, settings: Settings) -> None:
        """Prepare the processes (the lab's router must run)."""
        self.lab = lab
        self.wampd = Host(lab, "wampd", sessions=0, options=settings.options, bridge=True)
        self.callee = Host(lab, "runner", options=settings.options)
        module = [sys.executable, "-m", "bench.bridge", "load"]
        self.load = ClientProc(lab, "http-load", argv=module)
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
        answers through both bridges."""
        self.lab.track(self.trivial)
        self.trivial.start()
        self.load.start()
        self.callee.start()
        self.wampd.start()
        port = self.wampd.bridge_port
        assert port is not None
        self.load.wait("ready", 1, 60)
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

    def kill(self) -> None:
        """Kill every process of the rig."""
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
        return _request_rows(rig, settings)
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


if __name__ == "__main__":
    sys.exit(main())
