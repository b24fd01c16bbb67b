"""The sd_notify protocol, spoken directly (no libsystemd): a datagram to ``$NOTIFY_SOCKET``.

Under ``Type=notify`` wampd sends ``READY=1`` once it has started, ``STATUS=`` with each
component's state whenever one changes (it is a consumer of the event stream), and
``STOPPING=1`` when it begins to shut down. With ``WatchdogSec=`` set, systemd passes
``WATCHDOG_USEC`` and wampd sends ``WATCHDOG=1`` at half that interval from a reactor
timer: if the reactor ever hangs, the pings stop and systemd restarts the service.
Outside systemd (no ``NOTIFY_SOCKET``) nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .events import Event, State

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    """Tells systemd how wampd is doing; see the module docstring.

    :param address: ``$NOTIFY_SOCKET``: a socket path, or ``@name`` (abstract namespace).
    :param states: each component's state now (:meth:`wampd.health.Health.states`).
    :param watchdog_usec: ``$WATCHDOG_USEC``; None or 0 when no watchdog is configured.
    """

    _log = Logger()

    def __init__(
        self,
        address: str,
        *,
        clock: Any,
        states: Callable[[], Mapping[str, State]],
        watchdog_usec: int | None = None,
    ) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._states = states
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._failed = False
        self._watchdog = LoopingCall(self.send, "WATCHDOG=1")
        self._watchdog.clock = clock
        self._interval = (watchdog_usec or 0) / 2 / 1_000_000

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, clock: Any, states: Callable[[], Mapping[str, State]]
    ) -> SystemdNotifier | None:
        """A notifier if systemd asked for one (``NOTIFY_SOCKET``), else None.

        The watchdog is used only if ``WATCHDOG_PID`` is unset or names this process.
        """
        address = environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        usec = 0
        if environ.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid()):
            with suppress(ValueError):
                usec = int(environ.get("WATCHDOG_USEC", "0"))
        return cls(address, clock=clock, states=states, watchdog_usec=usec)

    def send(self, message: str) -> None:
        """One datagram; failures are logged once and never raise."""
        try:
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                self._log.warn(
                    "cannot notify systemd at {address}: {error}",
                    address=self._address.replace("\0", "@"),
                    error=e,
                )

    def status(self) -> str:
        return ", ".join(f"{name} {state.value}" for name, state in self._states().items())

    def ready(self) -> None:
        """Started: READY=1 with the current status; start the watchdog pings."""
        self.send(f"READY=1\nSTATUS={self.status()}")
        if self._interval and not self._watchdog.running:
            self._watchdog.start(self._interval, now=True)

    def stopping(self) -> None:
        """Shutting down: STOPPING=1 (the watchdog keeps pinging until the reactor stops)."""
        self.send("STOPPING=1\nSTATUS=stopping")

    def close(self) -> None:
        if self._watchdog.running:
            self._watchdog.stop()
        self._socket.close()

    def __call__(self, event: Event) -> None:
        """A consumer of the event stream, after health: STATUS= on each state change."""
        if event.changed:
            self.send(f"STATUS={self.status()}")
