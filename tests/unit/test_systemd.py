"""The sd_notify protocol, received on a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from wampd.events import State, names
from wampd.health import Health
from wampd.systemd import SystemdNotifier

from .fakes import event


def notifier_for(
    path: str, components: list[str], clock: Clock | None = None, **kw: int
) -> tuple[SystemdNotifier, Health]:
    """A notifier that reads each component's state from a Health, as in the tree."""
    health = Health(components)
    notifier = SystemdNotifier(path, clock=clock or Clock(), states=health.states, **kw)
    return notifier, health


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_status_and_stopping(systemd: tuple[str, socket.socket]) -> None:
    """READY=1 with the status at start, STATUS= on every state change, STOPPING=1."""
    path, sock = systemd
    notifier, health = notifier_for(path, ["a", "b"])
    notifier.ready()
    for happened in (
        event(
            names.SESSION_JOINED,
            State.CONNECTING,
            State.JOINED,
            component="a",
            time=0.0,
        ),
        event(
            names.COMPONENT_ERROR,
            State.JOINED,
            State.JOINED,
            component="a",
            time=0.0,
        ),
    ):
        health(happened)
        notifier(happened)
    notifier.stopping()
    assert received(sock) == [
        "READY=1\nSTATUS=a idle, b idle",
        "STATUS=a joined, b idle",
        "STOPPING=1\nSTATUS=stopping",
    ]
    notifier.close()


def test_watchdog_pings_at_half_the_interval(systemd: tuple[str, socket.socket]) -> None:
    """WATCHDOG=1 every WATCHDOG_USEC / 2, driven by the reactor's clock."""
    path, sock = systemd
    clock = Clock()
    notifier, _ = notifier_for(path, ["a"], clock, watchdog_usec=2_000_000)
    notifier.ready()
    assert received(sock) == ["READY=1\nSTATUS=a idle", "WATCHDOG=1"]
    clock.advance(0.999)
    assert received(sock) == []
    clock.advance(0.001)
    assert received(sock) == ["WATCHDOG=1"]
    clock.pump([1.0, 1.0, 1.0])
    assert received(sock) == ["WATCHDOG=1"] * 3
    notifier.close()
    clock.advance(10)
    assert clock.getDelayedCalls() == []


def test_from_environ(systemd: tuple[str, socket.socket]) -> None:
    """No NOTIFY_SOCKET: no notifier; a watchdog only for this process's WATCHDOG_PID."""
    path, sock = systemd
    states = Health(["a"]).states
    assert SystemdNotifier.from_environ({}, clock=Clock(), states=states) is None
    clock = Clock()
    other = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"},
        clock=clock,
        states=states,
    )
    assert other is not None
    other.ready()
    assert received(sock) == ["READY=1\nSTATUS=a idle"]  # no WATCHDOG=1: not our pid
    mine = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())},
        clock=clock,
        states=states,
    )
    assert mine is not None
    mine.ready()
    assert "WATCHDOG=1" in received(sock)
    other.close()
    mine.close()


def test_abstract_socket_address() -> None:
    """An @name address is the abstract namespace."""
    name = f"wampd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    notifier, _ = notifier_for("@" + name, ["a"])
    notifier.stopping()
    assert received(sock) == ["STOPPING=1\nSTATUS=stopping"]
    notifier.close()
    sock.close()


def test_a_missing_socket_never_raises(tmp_path: Path) -> None:
    """If systemd's socket is gone, sending fails quietly, and that is logged once."""
    notifier, _ = notifier_for(str(tmp_path / "gone.sock"), ["a"])
    logged: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if "cannot notify systemd" in str(event.get("log_format")):
            logged.append(event)

    # A function provides ILogObserver; mypy cannot see zope's interface declarations.
    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        notifier.ready()
        notifier.stopping()
        notifier.send("STATUS=again")
    finally:
        globalLogPublisher.removeObserver(observer)
        notifier.close()
    assert len(logged) == 1
