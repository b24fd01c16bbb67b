"""wampd's /publish and /call against Crossbar's own HTTP bridge on the same router: the
same requests get the same statuses and the same bodies (exact where they are
deterministic, the same shape where they carry ids); an existing client library written
for Crossbar's bridge works against wampd unchanged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import random
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import crossbarhttp  # type: ignore[import-untyped]
import pytest

from harness.crossbar import BRIDGE_KEY, BRIDGE_SECRET, CrossbarRouter
from harness.poll import poll
from harness.ports import free_port

from .test_bridge import RECORDER, ready
from .wampd_proc import Launch

Answer = tuple[int, bytes]


def send(
    port: int,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    content_type: str | None = "application/json",
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {} if content_type is None else {"Content-Type": content_type}
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def signed(path: str, body: bytes, *, secret: str = BRIDGE_SECRET, age: float = 0.0) -> str:
    """``path`` with Crossbar's signature in its query string (as its docs build it)."""
    stamp = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seq, nonce = "1", str(random.randint(0, 2**53))
    mac = hmac.new(secret.encode(), None, hashlib.sha256)
    for part in (BRIDGE_KEY, stamp, seq, nonce):
        mac.update(part.encode())
    mac.update(body)
    sig = base64.urlsafe_b64encode(mac.digest()).decode()
    query = {"key": BRIDGE_KEY, "timestamp": stamp, "seq": seq, "nonce": nonce, "signature": sig}
    return f"{path}?{urlencode(query)}"


@pytest.fixture
def both(crossbar: CrossbarRouter, launch: Launch, tmp_path: Path) -> tuple[int, int, int]:
    """Crossbar's port, an unsigned wampd bridge's and a signed one's (same key and
    secret as Crossbar's signed paths); the Recorder callee is on the router."""
    secret = tmp_path / "signing"
    secret.write_text(BRIDGE_SECRET + "\n")
    secret.chmod(0o600)
    plain, signing = free_port(), free_port()
    first = launch(crossbar.url(), components=[RECORDER], bridge={"listen": f"127.0.0.1:{plain}"})
    second = launch(
        crossbar.url(),
        components=[],
        bridge={
            "listen": f"127.0.0.1:{signing}",
            "signing": {"key": BRIDGE_KEY, "secret_file": str(secret)},
        },
    )
    for port, daemon in ((plain, first), (signing, second)):
        poll(partial(is_ready, port), 30, describe=daemon.describe)
    first.wait_for("session.joined", component="recorder")
    return crossbar.port, plain, signing


def is_ready(port: int) -> bool | None:
    return ready(port) == 200 or None


PUBLISH = json.dumps({"topic": "com.example.bridge.topic", "args": [1]}).encode()

#: Requests whose answers are deterministic: Crossbar's and wampd's must be identical.
SAME_BYTES = [
    ("GET", b"", "application/json"),
    ("DELETE", b"", "application/json"),
    ("POST", PUBLISH, "text/plain"),
    ("POST", PUBLISH, "application/json; charset=latin1"),
    ("POST", b"{not json", "application/json"),
    ("POST", b"", "application/json"),
    ("POST", b"[1, 2]", "application/json"),
    ("POST", b'{"args": []}', "application/json"),
    ("POST", b"\xff\xfe", "application/json"),
]


def test_denials_are_byte_for_byte_crossbars(both: tuple[int, int, int]) -> None:
    cb, wampd, _ = both
    for method, body, content_type in SAME_BYTES:
        for path in ("/publish", "/call"):
            theirs = send(cb, path, body, method=method, content_type=content_type)
            ours = send(wampd, path, body, method=method, content_type=content_type)
            assert theirs[0] in (400, 405), (path, method, body, theirs)
            assert ours == theirs, (path, method, body, content_type)


def test_publish_and_call_answer_as_crossbar(both: tuple[int, int, int]) -> None:
    cb, wampd, _ = both
    for port in (cb, wampd):
        status, body = send(port, "/publish", PUBLISH)
        assert status == 200 and list(json.loads(body)) == ["id"], body
        assert b" " not in body and not body.endswith(b"\n")  # compact, as Crossbar
        for content_type in (None, "Application/JSON; Charset=UTF-8"):  # none is accepted
            assert send(port, "/publish", PUBLISH, content_type=content_type)[0] == 200
    calls = [
        {"procedure": "com.example.bridge.add", "args": [2, 3]},
        {"procedure": "com.example.bridge.fail"},
        {"procedure": "com.example.bridge.nope"},
        {"procedure": "com.example.bridge.add", "args": [2, 3], "kwargs": None},
    ]
    for request in calls:
        raw = json.dumps(request).encode()
        assert send(wampd, "/call", raw) == send(cb, "/call", raw), request
    assert send(wampd, "/call", json.dumps(calls[0]).encode()) == (200, b'{"args":[5]}')
    status, body = send(wampd, "/call", json.dumps(calls[1]).encode())
    assert (status, json.loads(body)) == (
        200,
        {"error": "com.example.error.minus_one", "args": ["minus one"], "kwargs": {"code": 7}},
    )
    for port in (cb, wampd):  # a CORS preflight: 200, nothing in it
        assert send(port, "/publish", method="OPTIONS") == (200, b"")


def test_signed_requests_as_crossbar_and_replays_refused(both: tuple[int, int, int]) -> None:
    cb, _, wampd = both
    cases = {
        "good": (signed("{}", PUBLISH), 200),
        "wrong secret": (signed("{}", PUBLISH, secret="not-it"), 401),
        "expired": (signed("{}", PUBLISH, age=3600), 400),
        "unsigned": ("{}", 400),
    }
    for name, (template, status) in cases.items():
        theirs = send(cb, template.format("/publish-signed"), PUBLISH)
        ours = send(wampd, template.format("/publish"), PUBLISH)
        assert theirs[0] == ours[0] == status, (name, theirs, ours)
        if status != 200:
            assert ours[1] == theirs[1], name
    # The same signed request twice: Crossbar takes it again, wampd refuses the replay.
    query = signed("", PUBLISH)
    assert send(cb, "/publish-signed" + query, PUBLISH)[0] == 200
    assert send(cb, "/publish-signed" + query, PUBLISH)[0] == 200
    assert send(wampd, "/publish" + query, PUBLISH)[0] == 200
    status, body = send(wampd, "/publish" + query, PUBLISH)
    assert status == 401 and b"replayed" in body


def test_a_crossbar_bridge_client_library_works_unchanged(both: tuple[int, int, int]) -> None:
    """crossbarhttprequests, pointed at wampd instead of Crossbar (its signed mode does not
    run on Python 3 at all, against either)."""
    _, wampd, _ = both
    client: Any = crossbarhttp.Client(f"http://127.0.0.1:{wampd}/")
    assert isinstance(client.publish("com.example.bridge.topic", 1, k="v"), int)
    assert client.call("com.example.bridge.add", 2, 3) == 5
    with pytest.raises(crossbarhttp.ClientNoCalleeRegistered):
        client.call("com.example.bridge.nope")
    with pytest.raises(crossbarhttp.ClientCallRuntimeError, match="minus one"):
        client.call("com.example.bridge.fail")
