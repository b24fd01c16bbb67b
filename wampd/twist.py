"""``twist wampd --config FILE``: the daemon as a Twisted application plugin.

The plugin (``twisted/plugins/wampd_plugin.py``) points ``twist`` here. It runs the same
:class:`~wampd.daemon.Daemon` as ``wampd run`` -- same configuration, metrics, health
endpoints and sd_notify -- but Twisted owns the reactor, the signals and the log
observers: wampd's log lines go to ``twisted.logger`` (namespace ``wampd``), so
``twist --log-format`` and ``--log-file`` apply to them.

Exit statuses are ``wampd run``'s: 2 for a bad configuration (reported before the
reactor starts), 69 when retries ran out, 78 on a fatal router rejection.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import Any

from prometheus_client import disable_created_metrics
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.python import usage

from .cli import load
from .config import Config
from .daemon import Daemon, secrets
from .embed import default_reactor
from .errors import EXIT_CONFIG, EXIT_OK
from .logs import twisted_logger

__all__ = ["DaemonService", "Options", "makeService"]


class Options(usage.Options):
    """``twist wampd`` options."""

    synopsis = "[--config FILE]"
    longdesc = "Run wampd: keep every configured WAMP component joined to its router."
    optParameters = [  # noqa: RUF012 -- Twisted's usage API reads this class attribute
        ["config", "c", None, "the TOML configuration file (default: $WAMPD_CONFIG)"],
    ]

    def postOptions(self) -> None:
        """Load and check the configuration now: problems end the process with status 2,
        one line each, before any reactor runs."""
        loaded = load(self["config"], os.environ)
        if loaded is None:
            raise SystemExit(EXIT_CONFIG)
        self["wampd_config"], self["wampd_factories"] = loaded


class DaemonService(MultiService):
    """The daemon's service tree, with Twisted owning the reactor, signals and logs."""

    def __init__(self, config: Config, factories: dict[str, Any], reactor: Any = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if reactor is None:
            reactor = default_reactor()
        self._reactor = reactor
        self.config = config
        self._log = twisted_logger(secrets=secrets(config))
        self.daemon = Daemon(
            config,
            factories,
            reactor=reactor,
            logger=self._log,
            stop_reactor=self._stop_reactor,
            environ=os.environ,
        )

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        try:
            self.daemon.startService()
        except CannotListenError as e:
            self._log.error(
                "http.listen_failed", listen=self.config.http.listen, error=str(e.socketError)
            )
            self._reactor.callWhenRunning(
                self.daemon.request_stop, "http.listen failed", EXIT_CONFIG
            )

    def stopService(self) -> Deferred[None]:
        """Every component leaves (within ``shutdown.timeout``); then remember the exit
        status for the end of the process."""
        super().stopService()  # type: ignore[no-untyped-call]
        stopping = self.daemon.shutdown()
        stopping.addBoth(self._stopped)
        return stopping

    def _stopped(self, result: Any) -> Any:
        if self.daemon.exit_code != EXIT_OK:
            _exit_with(self.daemon.exit_code)
        return result

    def _stop_reactor(self) -> None:
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()


def _exit_with(code: int) -> None:
    """``twist`` always exits 0 after the reactor stops; make this process exit ``code``.

    Runs last at interpreter exit, after the log files are flushed.
    """

    def end() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)

    atexit.register(end)


def makeService(options: Options) -> DaemonService:
    """The service ``twist wampd`` runs."""
    disable_created_metrics()  # the series ``wampd run`` exports: no *_created samples
    return DaemonService(options["wampd_config"], options["wampd_factories"])
