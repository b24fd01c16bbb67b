"""A minimal blocking WebSocket + WAMP (JSON) client on plain sockets, for readiness probes.

No Twisted, no autobahn: it can run inside a test without a reactor, and it lets a test
control the wire exactly (send HELLO, read WELCOME, then just sit there, or see the server
drop the connection). Client frames are masked as RFC 6455 requires. 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import time
from typing import Any, Self

HOST = "127.0.0.1"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketClosed(ConnectionError):
    """The server closed the WebSocket (close frame) or the TCP connection."""


class HandshakeFailed(ConnectionError):
    """The HTTP upgrade was answered with something other than 101."""

    def __init__(self, status: int, response: str) -> None:
        super().__init__(f"WebSocket upgrade answered {status}: {response[:300]!r}")
        self.status = status
        self.response = response


class RawWebSocket:
    """One client WebSocket connection to 127.0.0.1:``port``/``path``."""

    def __init__(self, port: int, path: str = "ws", *, protocol: str | None = "wamp.2.json"):
        self.port = port
        self.path = "/" + path.lstrip("/")
        self.protocol = protocol
        self.sock: socket.socket | None = None
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._buf = b""

    # -- handshake --------------------------------------------------------------------------

    def connect(self, timeout: float = 2.0) -> int:
        """Connect and send the upgrade request; return the HTTP status.

        Does not raise on a non-101 answer (the socket is closed then); raises TimeoutError /
        OSError on network trouble.
        """
        deadline = time.monotonic() + timeout
        self.sock = socket.create_connection((HOST, self.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.protocol:
            lines.append(f"Sec-WebSocket-Protocol: {self.protocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buf:
            self._fill(deadline)
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        parts = status_line.split()
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest())
            if self.headers.get("sec-websocket-accept", "").encode() != expected:
                self.close_socket()
                raise HandshakeFailed(101, text + "\n(bad Sec-WebSocket-Accept)")
        else:
            self.close_socket()
        return self.status

    # -- frames -----------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise WebSocketClosed("server closed the TCP connection")
        self._buf += chunk

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._fill(deadline)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """Send one masked, final frame."""
        if self.sock is None:
            raise WebSocketClosed("not connected")
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv_frame(self, timeout: float) -> tuple[int, bytes]:
        """Receive one complete message ``(opcode, payload)``; answers pings on the way.

        Raises WebSocketClosed on a close frame or EOF, TimeoutError on timeout.
        """
        deadline = time.monotonic() + timeout
        message_op: int | None = None
        parts: list[bytes] = []
        while True:
            b0, b1 = self._take(2, deadline)
            fin, opcode, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2, deadline))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8, deadline))
            mask = self._take(4, deadline) if b1 & 0x80 else b""
            payload = self._take(length, deadline)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                with contextlib.suppress(OSError):
                    self.send_frame(OP_CLOSE, payload[:2])
                self.close_socket()
                raise WebSocketClosed(f"server sent close frame (code {code})")
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                message_op = opcode
            parts.append(payload)
            if fin:
                return (message_op if message_op is not None else OP_TEXT), b"".join(parts)

    # -- WAMP over JSON -----------------------------------------------------------------------

    def send_wamp(self, msg: list[Any]) -> None:
        """Send one WAMP message as a JSON text frame."""
        self.send_frame(OP_TEXT, json.dumps(msg).encode())

    def recv_wamp(self, timeout: float = 2.0) -> list[Any]:
        """Receive one WAMP message (JSON text frame)."""
        _, payload = self.recv_frame(timeout)
        msg = json.loads(payload)
        if not isinstance(msg, list):
            raise ValueError(f"not a WAMP message: {msg!r}")
        return msg

    def hello(
        self, realm: str, details: dict[str, Any] | None = None, timeout: float = 2.0
    ) -> list[Any]:
        """Send HELLO and return the router's first answer (WELCOME, ABORT or CHALLENGE)."""
        roles: dict[str, Any] = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}
        self.send_wamp([1, realm, {"roles": roles, **(details or {})}])
        return self.recv_wamp(timeout)

    # -- closing ---------------------------------------------------------------------------

    def close(self, code: int = 1000) -> None:
        """Send a close frame (best effort) and close the socket."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.send_frame(OP_CLOSE, struct.pack("!H", code))
        self.close_socket()

    def close_socket(self) -> None:
        """Close the TCP socket without a WebSocket close handshake."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def websocket_upgrade(
    port: int, path: str = "ws", *, protocol: str | None = "wamp.2.json", timeout: float = 2.0
) -> int:
    """Do one WebSocket upgrade on 127.0.0.1:``port``/``path``; return the HTTP status
    (101 on success), closing the connection cleanly afterwards."""
    with RawWebSocket(port, path, protocol=protocol) as ws:
        return ws.connect(timeout)


def wamp_hello(
    port: int,
    path: str = "ws",
    realm: str = "realm1",
    *,
    details: dict[str, Any] | None = None,
    timeout: float = 2.0,
) -> list[Any]:
    """Open a WebSocket, send HELLO and return the first answer; then leave politely
    (GOODBYE after a WELCOME) and close."""
    with RawWebSocket(port, path) as ws:
        status = ws.connect(timeout)
        if status != 101:
            raise HandshakeFailed(status, f"upgrade on /{path.lstrip('/')} refused")
        reply = ws.hello(realm, details, timeout)
        if reply and reply[0] == 2:
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                ws.send_wamp([6, {}, "wamp.close.normal"])
                ws.recv_wamp(timeout)
        return reply
