"""Hostile input at the bridge, against the real router: malformed and oversized bodies,
missing and wrong tokens, slowloris, a thousand connections at once. Each gets its 4xx
where one is due and never a 5xx from wampd itself; the daemon's sessions never notice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import free_port

from .test_bridge import RECORDER, post, ready
from .test_observability import sample, scrape
from .wampd_proc import Launch, WampdProcess

TOKEN = "h0stile-t0ken"


def start(
    launch: Launch, crossbar: CrossbarRouter, tmp_path: Path
) -> tuple[WampdProcess, int, int]:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    port, http = free_port(), free_port()
    daemon = launch(
        crossbar.url(),
        components=[RECORDER],
        http=f"127.0.0.1:{http}",
        bridge={"listen": f"127.0.0.1:{port}", "token_file": str(token)},
    )
    poll(lambda: ready(port) == 200 or None, 30, describe=daemon.describe)
    daemon.wait_for("session.joined", component="recorder")
    return daemon, port, http


def raw(port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0) -> bytes:
    """Send ``head`` (and ``body``), return all the server sends until it closes or goes
    quiet; a reset counts as the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        if body:
            with contextlib.suppress(OSError):
                sock.sendall(body)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks) and b"Content-Length: 0" in chunks[0]:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def sessions_untouched(daemon: WampdProcess, http: int) -> None:
    samples = scrape(http)
    for component in ("recorder", "bridge"):
        assert sample(samples, "wampd_session_up", component=component) == 1
        assert sample(samples, "wampd_session_joins_total", component=component) == 1
    assert not daemon.events("session.left")
    assert not daemon.events("wampd.error.internal")


def test_bad_bodies_and_tokens_are_4xx_that_name_the_problem(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    daemon, port, http = start(launch, crossbar, tmp_path)
    cases: list[tuple[Any, str | None, int, str]] = [
        ({"topic": "com.example.t"}, None, 401, "wampd.error.unauthorized"),
        ({"topic": "com.example.t"}, "wrong", 401, "wampd.error.unauthorized"),
        ([1, 2], TOKEN, 400, "wamp.error.invalid_argument"),
        ({"topic": 7}, TOKEN, 400, "wamp.error.invalid_argument"),
        ({"topic": "com.example.t", "args": "x"}, TOKEN, 400, "wamp.error.invalid_argument"),
        ({"topic": "com.example.t", "kwargs": [1]}, TOKEN, 400, "wamp.error.invalid_argument"),
        ({"topic": "com..t"}, TOKEN, 400, "wamp.error.invalid_uri"),
        ({"topic": "com.example.t", "options": {"retain": "x"}}, TOKEN, 400, ""),
        ({"procedure": None}, TOKEN, 400, "wamp.error.invalid_argument"),
    ]
    for body, token, status, error in cases:
        path = "/v1/call" if "procedure" in body else "/v1/publish"
        got, answer, _ = post(port, path, body, token)
        assert got == status, (body, answer)
        assert set(answer) == {"error", "args", "kwargs"} and answer["args"], answer
        assert not error or answer["error"] == error, answer
        assert TOKEN not in json.dumps(answer)
    head = (
        b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 9\r\n\r\n"
    )
    assert raw(port, head, b"{not json").startswith(b"HTTP/1.1 400 ")
    assert raw(port, head, b"\xff\xfe\x00{}\x00\x00\x00\x00").startswith(b"HTTP/1.1 400 ")
    sessions_untouched(daemon, http)


def test_a_10_mb_body_is_refused_unread(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """By its Content-Length, before a byte of it is sent; chunked, as soon as it is over
    max_body. Both a 413 naming the limit, the connection closed."""
    daemon, port, http = start(launch, crossbar, tmp_path)
    size = 10 * 1024 * 1024
    started = time.monotonic()
    answer = raw(
        port,
        b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % size,
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"wampd.error.body_too_large" in answer and b"1048576" in answer
    assert time.monotonic() - started < 5
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    answer = raw(
        port,
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        chunk * (size // 65536),
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"Request too long." in answer
    samples = scrape(http)
    assert sample(samples, "wampd_bridge_requests_total", route="/v1/publish", code="413") == 1
    assert sample(samples, "wampd_bridge_requests_total", route="/publish", code="413") == 1
    sessions_untouched(daemon, http)


def test_slowloris_is_cut_off_and_does_not_stall_others(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    """200 connections trickling their headers in: requests on other connections go
    through meanwhile; each slow one gets a 408 within the header deadline."""
    daemon, port, http = start(launch, crossbar, tmp_path)
    slow = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    try:
        for _ in range(12):  # a header line a second: never done, never idle
            started = time.monotonic()
            assert post(port, "/v1/publish", {"topic": "com.example.t"}, TOKEN)[0] == 200
            assert time.monotonic() - started < 1.0
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-A: b\r\n")
            time.sleep(1.0)
        answers = []
        for sock in slow:
            try:
                answers.append(sock.recv(200))
            except OSError:
                answers.append(b"")
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), set(answers)
    finally:
        for sock in slow:
            sock.close()
    sessions_untouched(daemon, http)


def test_a_thousand_connections_at_once(
    crossbar: CrossbarRouter, launch: Launch, tmp_path: Path
) -> None:
    daemon, port, http = start(launch, crossbar, tmp_path)
    body = json.dumps({"topic": "com.example.t", "args": [1]}).encode()
    request = (
        b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 60)
            return int(line.split()[1]) if line else 0
        finally:
            writer.close()

    async def all_of_them() -> list[int | BaseException]:
        return await asyncio.gather(*(one() for _ in range(1000)), return_exceptions=True)

    statuses = asyncio.run(all_of_them())
    errors = [s for s in statuses if not isinstance(s, int)]
    assert not errors, errors[:5]
    assert statuses.count(200) == 1000, {s: statuses.count(s) for s in set(statuses)}
    sessions_untouched(daemon, http)
