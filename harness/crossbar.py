"""Run one real Crossbar.io router node per `CrossbarRouter`, on 127.0.0.1, for tests.

Crossbar (EUPL-1.2) is only ever run as a separate process from its own virtualenv, made by
``scripts/install-crossbar``. The node is a controller process plus a router worker child,
both in one process group of their own. "Ready" means WAMP-ready: the port accepts and a
WebSocket upgrade on ``/ws`` is answered with 101.

Observed with crossbar 26.10.1: the port accepts 2.5-5 s after start (import time dominates);
SIGTERM stops the node in ~0.4 s with exit status 1; after SIGKILL of the controller the
worker is gone within ~50 ms. At ``--loglevel warn`` the router worker still prints a NumPy /
bjdata import traceback when bjdata was compiled against NumPy 1.x (harmless: UBJSON is just
disabled); :meth:`CrossbarRouter.log_tail` hides that block.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from harness.poll import INTERVAL, poll
from harness.ports import HOST, free_port, port_open, wait_port_closed
from harness.procs import (
    REPO_ROOT,
    Proc,
    ProcessHost,
    proc_state,
    read_tail,
    signal_pids,
    wait_pids_gone,
)
from harness.wsprobe import websocket_upgrade

CROSSBAR_VERSION = "26.10.1"
SHUTDOWN_AFTER = 600
"""``--shutdownafter`` safety net: a node outliving its test run exits by itself."""

AGENT_AUTHID = "agent"
AGENT_TICKET = "tkt-7Hq2x-agent"
CRA_AUTHID = "cra-agent"
CRA_SECRET = "cra-9Zx4w-key"
#: Crossbar's HTTP bridge services on the web transport: each holds a session.
BRIDGE_SERVICES = 4
#: The key and secret of the signed HTTP bridge paths (``/publish-signed``, ``/call-signed``).
BRIDGE_KEY = "bridge-key"
BRIDGE_SECRET = "bridge-9Qw3e-secret"

_NOISE_START = "A module that was compiled using NumPy 1.x"
_NOISE_END = "AttributeError: _ARRAY_API not found"


def crossbar_bin() -> Path:
    """Path of the crossbar executable: ``$WAMPD_CROSSBAR``, else
    ``${WAMPD_CROSSBAR_VENV:-<repo>/.venv-crossbar}/bin/crossbar``.

    Raises RuntimeError telling the user to run ``scripts/install-crossbar`` if missing.
    """
    explicit = os.environ.get("WAMPD_CROSSBAR")
    if explicit:
        path = Path(explicit)
        source = f"WAMPD_CROSSBAR={explicit}"
    else:
        venv = Path(os.environ.get("WAMPD_CROSSBAR_VENV") or REPO_ROOT / ".venv-crossbar")
        path = venv / "bin" / "crossbar"
        source = f"the Crossbar virtualenv {venv}"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"Crossbar router not found: {path} (from {source}) is not an executable file. "
            f"Run scripts/install-crossbar to create {REPO_ROOT / '.venv-crossbar'} "
            "(or set WAMPD_CROSSBAR_VENV to choose its location), or point WAMPD_CROSSBAR at "
            f"an existing crossbar=={CROSSBAR_VERSION} executable."
        )
    return path


def router_config(  # noqa: PLR0917 -- the harness's own, called by CrossbarRouter only
    port: int,
    realm: str = "realm1",
    components: list[dict[str, Any]] | None = None,
    cryptosign: Mapping[str, Sequence[str]] | None = None,
    pings: bool = True,
    rawsocket: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The node configuration: one router worker (running ``components``, router components
    such as Crossbar's ``MessageForwarder``, if given), ``realm`` with roles ``anonymous`` and
    ``agent``, a web transport on 127.0.0.1:``port`` with ``/ws`` (anonymous), ``/auth``
    (ticket auth: principal ``agent``, ticket ``secret``, role ``agent``) and ``/cra``
    (WAMP-CRA: user ``cra-agent``, secret ``cra-secret``, role ``agent``), and Crossbar's own
    HTTP bridge: ``/publish`` and ``/call`` (role ``anonymous``), ``/publish-signed`` and
    ``/call-signed`` (the same, requests signed with :data:`BRIDGE_KEY` and
    :data:`BRIDGE_SECRET`); with ``cryptosign`` (authid -> public keys in hex), also
    ``/cryptosign``: WAMP-cryptosign with those static principals, role ``agent``."""
    bridge = {"realm": realm, "role": "anonymous"}
    signed = {"options": {"key": BRIDGE_KEY, "secret": BRIDGE_SECRET}}
    allow_all = {"call": True, "register": True, "publish": True, "subscribe": True}
    serializers = ["json", "msgpack", "cbor"]
    # The router pings its clients too, so the session of a client whose link died
    # without a FIN (and the registrations it holds) is cleaned up within seconds, as a
    # production router should be configured to do.
    # (``pings=False``: a router that never notices a link that died without a FIN, and
    # keeps its session and registrations -- what wampd's force_reregister is for.)
    options = {"auto_ping_interval": 1000, "auto_ping_timeout": 2000} if pings else {}
    config: dict[str, Any] = {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "realms": [
                    {
                        "name": realm,
                        "roles": [
                            {
                                "name": "anonymous",
                                "permissions": [
                                    {
                                        "uri": "",
                                        "match": "prefix",
                                        "allow": allow_all,
                                        "disclose": {"caller": False, "publisher": False},
                                        "cache": True,
                                    }
                                ],
                            },
                            {
                                "name": "agent",
                                "permissions": [
                                    {
                                        "uri": "",
                                        "match": "prefix",
                                        "allow": allow_all,
                                        "disclose": {"caller": True, "publisher": True},
                                        "cache": True,
                                    }
                                ],
                            },
                        ],
                    }
                ],
                "transports": [
                    {
                        "type": "web",
                        "endpoint": {"type": "tcp", "interface": HOST, "port": port},
                        "paths": {
                            "ws": {
                                "type": "websocket",
                                "serializers": serializers,
                                # permessage-deflate for the clients that offer it
                                # (wampd's [router] compression): others are unaffected.
                                "options": {**options, "compression": {"deflate": {}}},
                            },
                            "auth": {
                                "type": "websocket",
                                "serializers": serializers,
                                "options": options,
                                "auth": {
                                    "ticket": {
                                        "type": "static",
                                        "principals": {
                                            AGENT_AUTHID: {
                                                "ticket": AGENT_TICKET,
                                                "role": "agent",
                                            }
                                        },
                                    }
                                },
                            },
                            "publish": {"type": "publisher", **bridge},
                            "call": {"type": "caller", **bridge},
                            "publish-signed": {"type": "publisher", **bridge, **signed},
                            "call-signed": {"type": "caller", **bridge, **signed},
                            "cra": {
                                "type": "websocket",
                                "serializers": serializers,
                                "options": options,
                                "auth": {
                                    "wampcra": {
                                        "type": "static",
                                        "users": {
                                            CRA_AUTHID: {"secret": CRA_SECRET, "role": "agent"}
                                        },
                                    }
                                },
                            },
                        },
                    }
                ],
            }
        ],
    }
    if rawsocket is not None:
        # RawSocket (anonymous) on a TCP port and on a Unix socket.
        rs_port, unix_path = rawsocket
        for endpoint in (
            {"type": "tcp", "interface": HOST, "port": rs_port},
            {"type": "unix", "path": unix_path},
        ):
            config["workers"][0]["transports"].append(
                {"type": "rawsocket", "endpoint": endpoint, "serializers": serializers}
            )
    if cryptosign:
        principals = {
            authid: {"realm": realm, "role": "agent", "authorized_keys": list(keys)}
            for authid, keys in cryptosign.items()
        }
        paths = config["workers"][0]["transports"][0]["paths"]
        paths["cryptosign"] = {
            "type": "websocket",
            "serializers": serializers,
            "options": options,
            "auth": {"cryptosign": {"type": "static", "principals": principals}},
        }
    if components:
        config["workers"][0]["components"] = list(components)
        # Router components of the harness's own (harness.counter) import from the repo.
        config["workers"][0]["options"] = {"pythonpath": [str(REPO_ROOT)]}
    return config


def strip_noise(lines: list[str]) -> list[str]:
    """Drop the known-harmless NumPy/bjdata import traceback block from log lines."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if _NOISE_START in line:
            skipping = True
            # The block starts with an empty log line just before this one.
            if out and out[-1].rstrip().endswith("]"):
                out.pop()
            continue
        if skipping:
            if _NOISE_END in line:
                skipping = False
            continue
        out.append(line)
    return out


class CrossbarRouter(ProcessHost):
    """One Crossbar node on 127.0.0.1:``port`` with its cbdir in ``workdir/.crossbar``.

    The log (stdout and stderr, appended across restarts) is ``workdir/crossbar.log``.
    """

    _what = "crossbar router"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        realm: str = "realm1",
        components: list[dict[str, Any]] | None = None,
        cryptosign: Mapping[str, Sequence[str]] | None = None,
        pings: bool = True,
        rawsocket: bool = False,
    ) -> None:
        """A node (not started yet); ``components`` run in its router worker, ``cryptosign``
        principals are on ``/cryptosign``, ``rawsocket`` adds RawSocket on
        :meth:`rs_url` and :meth:`rs_unix_url` (see :func:`router_config`)."""
        self.workdir = Path(workdir)
        self.port: int = port if port is not None else free_port()
        #: RawSocket's TCP port and Unix socket (a short path: sun_path has 108 bytes).
        self.rs_port = free_port() if rawsocket else 0
        self.unix_socket = (
            str(Path(tempfile.mkdtemp(prefix="wampd-rs-")) / "router.sock") if rawsocket else ""
        )
        self.realm = realm
        self.cbdir = self.workdir / ".crossbar"
        self.log_path = self.workdir / "crossbar.log"
        self.cbdir.mkdir(parents=True, exist_ok=True)
        config = router_config(
            self.port,
            realm,
            components,
            cryptosign,
            pings,
            (self.rs_port, self.unix_socket) if rawsocket else None,
        )
        (self.cbdir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        #: Sessions the node holds of its own once started: one per HTTP bridge service
        #: (publisher, caller, and their signed variants) and one per component.
        self.own_sessions = BRIDGE_SERVICES + len(components or ())
        super().__init__()
        self._paused = False
        self.startup_seconds: float | None = None
        """How long the last start() took until WAMP-ready."""

    # -- addresses ---------------------------------------------------------------------------

    def url(self, path: str = "ws") -> str:
        """``ws://127.0.0.1:<port>/<path>``."""
        return f"ws://{HOST}:{self.port}/{path.lstrip('/')}"

    def rs_url(self) -> str:
        """``rs://127.0.0.1:<rs_port>`` (with ``rawsocket``)."""
        assert self.rs_port, "a router made without rawsocket=True"
        return f"rs://{HOST}:{self.rs_port}"

    def rs_unix_url(self) -> str:
        """``rs+unix:///.../router.sock`` (with ``rawsocket``)."""
        assert self.unix_socket, "a router made without rawsocket=True"
        return f"rs+unix://{self.unix_socket}"

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return self._paused and self.running

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> Self:
        """Start the node and wait until it is WAMP-ready; return self.

        Raises PollTimeout (with the log tail) if the node exits, or does not get ready
        within ``timeout`` seconds; the node is killed in that case.
        """
        if self.running:
            raise RuntimeError(f"crossbar router on port {self.port} is already running")
        binary = crossbar_bin()
        self._remove_stale_pidfile()
        self._append_log(f"==== harness: starting crossbar on {HOST}:{self.port} ====")
        argv = [
            str(binary),
            "start",
            "--cbdir",
            str(self.cbdir),
            "--loglevel",
            "warn",
            "--shutdownafter",
            str(SHUTDOWN_AFTER),
        ]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = Proc(
            argv, stdout_path=self.log_path, env=env, cwd=self.workdir, name="crossbar"
        )
        self._proc.start()
        self._paused = False
        try:
            self._wait_ready(timeout)
        except BaseException:
            self._proc.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        t0 = time.monotonic()
        last_error = "port not accepting yet"

        def ready() -> bool:
            nonlocal last_error
            if not port_open(self.port, timeout=0.5):
                return False
            try:
                status = websocket_upgrade(self.port, "ws", timeout=2.0)
            except OSError as exc:  # includes TimeoutError / WebSocketClosed
                last_error = f"WebSocket upgrade on /ws failed: {exc!r}"
                return False
            if status != 101:
                last_error = f"WebSocket upgrade on /ws answered HTTP {status}"
                return False
            return True

        def describe() -> str:
            if not proc.running:
                return (
                    f"crossbar exited with status {proc.returncode} before it was ready "
                    f"(port {self.port})\n{self._describe()}"
                )
            return f"crossbar on port {self.port} not WAMP-ready ({last_error})\n{self._describe()}"

        poll(ready, timeout, describe=describe, stop=lambda: not proc.running)
        self.startup_seconds = time.monotonic() - t0

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the controller, wait up to ``timeout`` s, then SIGKILL the whole process
        group (and any descendant). Idempotent."""
        if self._proc is None:
            return
        workers = self._proc.descendants()
        self._proc.stop(timeout=timeout)
        signal_pids(workers, signal.SIGKILL)
        wait_pids_gone(workers, timeout=5.0)
        self._paused = False

    def kill(self, timeout: float = 10.0) -> None:
        """Crash the node: SIGKILL the controller and all its worker children at once, then
        wait until the port is closed and the workers are gone."""
        if self._proc is None or not self._proc.running:
            return
        workers = self._proc.descendants()
        signal_pids([self._proc.pid, *workers], signal.SIGKILL)
        self._proc.kill()
        self._paused = False
        left = wait_pids_gone(workers, timeout=timeout)
        if left:
            raise RuntimeError(f"crossbar worker(s) {left} survived SIGKILL\n{self._describe()}")
        wait_port_closed(self.port, timeout=timeout, describe=self._describe)

    def restart(self, timeout: float = 30) -> Self:
        """Stop the node if running, then start it again on the same port and cbdir."""
        self.stop()
        return self.start(timeout=timeout)

    def pause(self) -> None:
        """Hang the node: SIGSTOP the controller and all its descendants. The port still
        accepts TCP connections (kernel backlog) but nothing is answered."""
        if self._proc is None or not self._proc.running:
            raise RuntimeError("cannot pause: crossbar router is not running")
        pids = [self._proc.pid, *self._proc.descendants()]
        signal_pids(pids, signal.SIGSTOP)
        self._paused = True
        poll(
            lambda: all(proc_state(p) in ("T", "t", None) for p in pids),
            5.0,
            describe=lambda: f"crossbar processes {pids} did not stop\n{self._describe()}",
            interval=INTERVAL / 5,
        )

    def resume(self) -> None:
        """Undo pause(): SIGCONT the descendants, then the controller."""
        if self._proc is None or not self._proc.running:
            self._paused = False
            return
        signal_pids([*self._proc.descendants(), self._proc.pid], signal.SIGCONT)
        self._paused = False

    def _remove_stale_pidfile(self) -> None:
        """Delete a ``node.pid`` left behind by a killed node of ours.

        Crossbar refuses to start while node.pid names any live process whose title looks
        like a crossbar controller, which a recycled PID (another test's node) can do after
        a SIGKILL. Only called while our own node is not running; the workdir is ours.
        """
        (self.cbdir / "node.pid").unlink(missing_ok=True)

    # -- logs ------------------------------------------------------------------------------

    def log_tail(self, n: int = 50, *, raw: bool = False) -> str:
        """The last ``n`` lines of crossbar.log, without the harmless NumPy traceback block
        unless ``raw``."""
        text = read_tail(self.log_path, 100_000)
        lines = text.splitlines()
        if not raw:
            lines = strip_noise(lines)
        return "\n".join(lines[-n:])

    def _describe(self, n: int = 40) -> str:
        return f"--- last lines of {self.log_path} ---\n{self.log_tail(n)}"

    def _append_log(self, line: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as fh:
            fh.write(line + "\n")

    # -- context manager ---------------------------------------------------------------------

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc else None
        return f"<CrossbarRouter port={self.port} pid={pid} running={self.running}>"
