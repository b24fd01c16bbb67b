"""A small paced HTTP load generator (asyncio, keep-alive) for wampd's endpoints."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

GOOD = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("HEAD", "/healthz"),
    ("GET", "/"),
]
HOSTILE_METHODS = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: Statuses by what was asked: "GET /readyz", ..., or "hostile".
    by_request: dict[str, Counter[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _request(rng: random.Random) -> tuple[bytes, bool]:
    """A request, and whether it is hostile (the server may close after it)."""
    roll = rng.random()
    if roll < 0.8:
        method, path = rng.choice(GOOD)
        return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), False
    kind = rng.choice(["path", "method", "headers", "huge"])
    if kind == "path":
        path = "/" + "".join(rng.choice("abc%/._-~09") for _ in range(rng.randint(1, 40)))
        return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), False
    if kind == "method":
        method = rng.choice(HOSTILE_METHODS)
        return f"{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(), False
    if kind == "headers":
        headers = "".join(f"X-{i}: {'v' * rng.randint(0, 200)}\r\n" for i in range(30))
        return f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(), False
    return b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", True


async def _read_response(reader: asyncio.StreamReader, head: bool) -> tuple[int, bool]:
    """The status, and whether the connection can be used again."""
    header = await reader.readuntil(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(fields.get("content-length", "0") or 0)
    if length and not head:
        await reader.readexactly(length)
    keep = fields.get("connection", "").lower() != "close" and "content-length" in fields
    return status, keep


async def _worker(port: int, schedule: asyncio.Queue[float], result: LoadResult, seed: int) -> None:
    rng = random.Random(seed)
    reader = writer = None
    while True:
        due = await schedule.get()
        if due < 0:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        raw, hostile = _request(rng)
        started = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            assert reader is not None
            status, keep = await asyncio.wait_for(
                _read_response(reader, raw.startswith(b"HEAD")), 10
            )
            result.statuses[status] += 1
            label = raw.split(b" HTTP/1.1")[0].decode("latin-1")
            if tuple(label.split(" ", 1)) not in GOOD:
                label = "hostile"
            result.by_request.setdefault(label, Counter())[status] += 1
            result.latencies.append(time.monotonic() - started)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            result.errors["expected-close" if hostile else type(e).__name__] += 1
            keep = False
        result.sent += 1
        if not keep and writer is not None:
            writer.close()
            reader = writer = None


async def _run(port: int, rate: float, seconds: float, connections: int) -> LoadResult:
    result = LoadResult()
    queue: asyncio.Queue[float] = asyncio.Queue()
    start = time.monotonic() + 0.1
    total = int(rate * seconds)
    for i in range(total):
        queue.put_nowait(start + i / rate)
    for _ in range(connections):
        queue.put_nowait(-1.0)
    began = time.monotonic()
    await asyncio.gather(*(_worker(port, queue, result, seed) for seed in range(connections)))
    result.seconds = time.monotonic() - began
    return result


def run_load(
    port: int, rate: float = 1000, seconds: float = 5, connections: int = 32
) -> LoadResult:
    """Send ``rate`` requests a second for ``seconds`` to 127.0.0.1:``port``."""
    return asyncio.run(_run(port, rate, seconds, connections))
