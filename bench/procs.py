"""Starting, reading and stopping the bench's processes: the router, hosts, clients.

Everything runs on 127.0.0.1, on ports taken with :func:`harness.ports.free_port`.
Processes are :class:`harness.procs.Proc` (own process group, SIGKILLed with the bench
however it dies); :class:`Lab` remembers each one and kills what is left on exit. Waits
are :func:`harness.poll.poll`: a host or client that exits, or does not answer in time,
fails them with :class:`harness.poll.PollTimeout` and its log tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.crossbar import CrossbarRouter
from harness.poll import poll
from harness.ports import HOST, free_port, port_open
from harness.procs import REPO_ROOT, Proc, harness_env, parse_json_lines
from tests.integration.wampd_proc import write_config

REALM = "realm1"
POLL = 0.02
ENTRY = "bench.components:BenchComponent"

#: Crossbar's webhook forwarder (``crossbar.bridge.rest.MessageForwarder``, a component of
#: every lab's router) POSTs each event of this topic to this path of the lab's webhook
#: port, where :mod:`bench.bridge`'s receiver listens while it measures.
CROSSBAR_HOOK_TOPIC = "bench.webhook.crossbar"
CROSSBAR_HOOK_PATH = "/crossbar"

#: Display names of the hosts.
NAMES = {
    "wampd": "wampd",
    "runner": "ApplicationRunner",
    "component": "Component",
}


class BenchError(RuntimeError):
    """A bench process misbehaved; the message says which and shows its log."""


@dataclass(frozen=True)
class HostEvent:
    """One thing a host reported: ``attempt``, ``joined``, ``left`` (or ``disconnected``)."""

    kind: str
    t: float
    session: str = ""


@dataclass(frozen=True)
class HostOptions:
    """How a host deviates from its defaults (the smoke run shortens timers)."""

    #: wampd: config sections to add, as ``(section, ((key, value), ...))`` pairs.
    wampd_sections: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    #: ApplicationRunner: WebSocket ping interval = timeout (s); None: its hard-coded 10/5.
    runner_ping: float | None = None
    #: ApplicationRunner and Component: (initial, max) retry delay; None: their defaults.
    retry: tuple[float, float] | None = None


#: wampd's log events that are host events.
_WAMPD_EVENTS = {"session.joined": "joined", "session.left": "left"}


class JsonLines:
    """Reads a growing file of JSON lines incrementally: each call parses only what was
    appended since the last one (a storm's log has thousands of lines, polled often)."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` from its start."""
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_objects(self) -> list[dict[str, Any]]:
        """The JSON objects of the complete lines appended since the last call."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return parse_json_lines(b"\n".join(lines).decode("utf-8", errors="replace"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (s)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stamp(text: str) -> float:
    """Unix time of an ISO-8601 timestamp from wampd's log."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Host:
    """One host process: wampd, ApplicationRunner or Component, with ``sessions`` sessions.

    Session ``i`` is called ``s<i>`` and serves ``<prefix>.s<i>.echo`` and ``.count`` and
    subscribes to ``.topic``; ``prefix`` is unique per host, so hosts never clash on the
    router, not even with the stale sessions of killed ones.
    """

    def __init__(
        self,
        lab: Lab,
        kind: str,
        *,
        sessions: int = 1,
        options: HostOptions | None = None,
        http: bool = False,
        bridge: bool = False,
        subscriptions: list[dict[str, Any]] | None = None,
        outbox: dict[str, Any] | None = None,
        router_url: str | None = None,
    ) -> None:
        """Prepare (not start) a host of ``kind`` with ``sessions`` sessions (wampd with
        ``bridge``: also its sidecar bridge, on :attr:`bridge_port`, with ``subscriptions``
        as its ``[[bridge.subscription]]`` tables; ``sessions`` may then be 0). wampd with
        ``outbox``: that ``[outbox]`` table (its durable outbox). ``router_url``: the
        router wampd connects to instead of the lab's (one where nothing listens, say)."""
        self.lab = lab
        self.kind = kind
        self.sessions = sessions
        self.options = options or HostOptions()
        self.serial = lab.next_serial()
        self.name = NAMES[kind]
        self.prefix = f"bench.{kind}{self.serial}"
        self.workdir = lab.workdir / f"{kind}-{self.serial}"
        self.workdir.mkdir(parents=True)
        self.events_path = self.workdir / "events.jsonl"
        self.http_port: int | None = free_port() if kind == "wampd" else None
        self.bridge_port: int | None = free_port() if kind == "wampd" and bridge else None
        self.http = http
        self.subscriptions = list(subscriptions or [])
        self.outbox = dict(outbox) if outbox is not None else None
        self.router_url = router_url
        self._events: list[HostEvent] = []
        #: Every JSON line wampd has logged so far (see :meth:`log_events`).
        self._log: list[dict[str, Any]] = []
        self._events_file = JsonLines(self.events_path)
        #: wampd logs its joins and leaves itself (JSON lines on stdout).
        self._log_file = JsonLines(self.workdir / "stdout.log") if kind == "wampd" else None
        self.proc = Proc(
            self._argv(),
            stdout_path=self.workdir / "stdout.log",
            stderr_path=self.workdir / "stderr.log",
            env=harness_env(),
            cwd=REPO_ROOT,
            name=f"{kind}-{self.serial}",
        )

    def _argv(self) -> list[str]:
        """The host's command line."""
        host = [sys.executable, "-m", "bench.hosts", self.kind, "--events", str(self.events_path)]
        if self.kind == "wampd":
            return [*host, "--", "run", "--config", str(self._wampd_config())]
        argv = [*host, "--url", self.lab.router.url(), "--realm", REALM, "--prefix", self.prefix]
        argv += ["--sessions", str(self.sessions)]
        if self.kind == "runner" and self.options.runner_ping is not None:
            argv += ["--ping", str(self.options.runner_ping)]
        if self.options.retry is not None:
            argv += ["--retry", *(str(x) for x in self.options.retry)]
        return argv

    def _wampd_config(self) -> Path:
        """wampd's defaults, except the router, a free HTTP port (and bridge port), and the
        smoke overrides."""
        sections: dict[str, dict[str, Any]] = {
            "router": {"url": self.router_url or self.lab.router.url(), "realm": REALM},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "log": {"format": "json", "level": "info"},
        }
        if self.bridge_port is not None:
            sections["bridge"] = {"listen": f"127.0.0.1:{self.bridge_port}"}
            if self.subscriptions:
                sections["bridge"]["subscription"] = self.subscriptions
        if self.outbox is not None:
            sections["outbox"] = dict(self.outbox)
        for section, items in self.options.wampd_sections:
            sections[section] = dict(items)
        components = [
            {"name": f"s{i}", "entry": ENTRY, "extra": {"prefix": f"{self.prefix}.s{i}"}}
            for i in range(self.sessions)
        ]
        return write_config(self.workdir / "wampd.toml", sections, components)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Host:
        """Start the process; return self."""
        self.lab.track(self.proc)
        self.proc.start()
        return self

    def kill(self) -> None:
        """SIGKILL the host (its sessions die with their connections)."""
        self.proc.kill()

    @property
    def pid(self) -> int:
        """The host's process id."""
        return self.proc.pid

    def rss_mib(self) -> float:
        """Resident set size of the host process (MiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"no VmRSS for {self.name} (pid {self.pid})")

    def cpu_seconds(self) -> float:
        """User + system CPU time the host process has used so far (s)."""
        return cpu_seconds(self.pid)

    def procedure(self, i: int = 0, what: str = "echo") -> str:
        """The URI of session ``i``'s procedure (or topic) ``what``."""
        return f"{self.prefix}.s{i}.{what}"

    # -- events ---------------------------------------------------------------------------

    def events(self, kind: str | None = None, after: float = 0.0) -> list[HostEvent]:
        """The host's events so far, oldest first (``kind``: only those; ``after``: only
        later than that Unix time). ``left`` includes ``disconnected``."""
        for obj in self._events_file.new_objects():
            name = str(obj.get("event"))
            self._events.append(
                HostEvent(
                    "left" if name == "disconnected" else name,
                    float(obj["t"]),
                    str(obj.get("session", "")),
                )
            )
        self._read_log()
        self._events.sort(key=lambda e: e.t)
        return [e for e in self._events if (kind is None or e.kind == kind) and e.t > after]

    def _read_log(self) -> None:
        """Take in what wampd logged since the last look (its joins and leaves are host
        events)."""
        if self._log_file is None:
            return
        for obj in self._log_file.new_objects():
            self._log.append(obj)
            mapped = _WAMPD_EVENTS.get(str(obj.get("event")))
            if mapped is not None:
                self._events.append(
                    HostEvent(mapped, _stamp(obj["timestamp"]), str(obj.get("component", "")))
                )

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """wampd's log lines (JSON objects) of ``event`` so far, oldest first."""
        self._read_log()
        return [obj for obj in self._log if obj.get("event") == event]

    def wait_logged(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until wampd has logged ``event``; the first such line."""
        return poll(
            lambda: next(iter(self.log_events(event)), None),
            timeout,
            describe=lambda: f"{self.name}: no {event!r} logged\n{self.describe()}",
            stop=lambda: not self.proc.running,
            interval=POLL,
        )

    def first_per_session(self, kind: str, after: float) -> dict[str, float]:
        """For each session, the time of its first ``kind`` event after ``after``."""
        first: dict[str, float] = {}
        for event in self.events(kind, after):
            first.setdefault(event.session, event.t)
        return first

    def wait_joined(self, after: float = 0.0, timeout: float = 60.0) -> float:
        """Wait until every session has joined after ``after``; return the last join time."""

        def all_joined() -> float | None:
            joined = self.first_per_session("joined", after)
            return max(joined.values()) if len(joined) >= self.sessions else None

        def describe() -> str:
            joined = len(self.first_per_session("joined", after))
            return f"{self.name}: {joined}/{self.sessions} sessions joined\n{self.describe()}"

        return poll(
            all_joined,
            timeout,
            describe=describe,
            stop=lambda: not self.proc.running,
            interval=POLL * 5,
        )

    def describe(self) -> str:
        """The host's command and log tails, for error messages."""
        return self.proc.describe(30)


class ClientProc:
    """The load client or the prober (:mod:`bench.client`), or another program fed commands
    through a file it follows (``--commands FILE``), answering JSON lines on its stdout."""

    def __init__(self, lab: Lab, mode: str, *, argv: list[str] | None = None) -> None:
        """Prepare (not start) a client in ``mode`` ``load`` or ``probe``; or, with
        ``argv``, that command (``mode`` then only names it)."""
        self.lab = lab
        self.mode = mode
        serial = lab.next_serial()
        workdir = lab.workdir / f"{mode}-{serial}"
        workdir.mkdir(parents=True)
        self.commands = workdir / "commands.jsonl"
        self.commands.touch()
        if argv is None:
            argv = [sys.executable, "-m", "bench.client", mode, "--url", lab.router.url()]
            argv += ["--realm", REALM]
        argv = [*argv, "--commands", str(self.commands)]
        self.proc = Proc(
            argv,
            stdout_path=workdir / "stdout.log",
            stderr_path=workdir / "stderr.log",
            env=harness_env(),
            cwd=REPO_ROOT,
            name=f"{mode}-{serial}",
        )

    def start(self) -> ClientProc:
        """Start the client; return self."""
        self.lab.track(self.proc)
        self.proc.start()
        return self

    def send(self, cmd: dict[str, Any]) -> None:
        """Append one command."""
        with self.commands.open("a") as fh:
            fh.write(json.dumps(cmd) + "\n")

    def answers(self, op: str) -> list[dict[str, Any]]:
        """Every answer ``op`` so far."""
        return [obj for obj in self.proc.json_lines() if obj.get("op") == op]

    def wait(self, op: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until there are ``count`` answers ``op``; return them all."""

        def enough() -> list[Any] | None:
            found = self.answers(op)
            return found if len(found) >= count else None

        return poll(
            enough,
            timeout,
            describe=lambda: f"{self.mode} client: no {count} x {op!r}\n{self.proc.describe(30)}",
            stop=lambda: not self.proc.running,
            interval=POLL,
        )

    def run(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a workload and wait for its answer."""
        before = len(self.answers(str(cmd["op"])))
        self.send(cmd)
        answer = self.wait(str(cmd["op"]), before + 1, timeout)[before]
        if "failed" in answer:
            raise BenchError(f"{cmd} failed in the load client: {answer['failed']}")
        return answer

    def kill(self) -> None:
        """Stop the client."""
        self.proc.kill()


class Lab:
    """The bench's workspace: a directory, one router, and every process started."""

    def __init__(self, workdir: Path) -> None:
        """A lab in ``workdir`` with a router (not started yet) of its own."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._webhook = reserve_port()
        #: Where the router's webhook forwarder POSTs :data:`CROSSBAR_HOOK_TOPIC`'s events.
        self.webhook_port: int = self._webhook.getsockname()[1]
        self.router = CrossbarRouter(workdir / "router", components=[forwarder(self.webhook_port)])
        self._procs: list[Proc] = []
        self._serial = 0
        #: Seconds from starting the router to its port accepting, at the last start.
        self.boot_seconds = 4.0

    def next_serial(self) -> int:
        """A number unique within this lab (names, prefixes, folders)."""
        self._serial += 1
        return self._serial

    def track(self, proc: Proc) -> None:
        """Remember ``proc`` so :meth:`close` kills it."""
        self._procs.append(proc)

    def ensure_router(self) -> None:
        """Start the router unless it runs (a paused router is resumed)."""
        if self.router.paused:
            self.router.resume()
        if not self.router.running:
            self.start_router()

    def kill_router(self) -> float:
        """``kill -9`` the router; return the Unix time just before."""
        t = time.time()
        self.router.kill()
        return t

    def start_router(self) -> float:
        """Start the router; return the Unix time its port first accepted (polled every
        10 ms, while :meth:`CrossbarRouter.start` waits until it is WAMP-ready)."""
        opened: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            """Poll the port every 10 ms; note when it first accepts."""
            while not stop.is_set():
                if port_open(self.router.port, timeout=0.2):
                    opened.append(time.time())
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        started = time.time()
        watcher.start()
        try:
            self.router.start()
        finally:
            stop.set()
            watcher.join(timeout=2)
        if not opened:
            opened.append(time.time())
        self.boot_seconds = opened[0] - started
        return opened[0]

    def close(self) -> None:
        """Kill every process this lab started, the router last."""
        for proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                proc.kill()
        with contextlib.suppress(Exception):
            self.router.resume()
        with contextlib.suppress(Exception):
            self.router.stop(timeout=3)
        self._webhook.close()


def reserve_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 with ``SO_REUSEPORT``, never listening:
    while it is open no other socket can bind or connect from that port, except one that
    also sets ``SO_REUSEPORT`` (a server of ours, which then gets every connection)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, 0))
    return sock


def forwarder(port: int) -> dict[str, Any]:
    """Crossbar's webhook forwarder, as a router component: each event of
    :data:`CROSSBAR_HOOK_TOPIC` POSTed as ``{"args", "kwargs"}`` to :data:`CROSSBAR_HOOK_PATH`
    on 127.0.0.1:``port``. No ``expectedcode``: with one, a single unexpected status would
    stop its forwarding for good (as a refused connection does: the receiver must listen
    before the first event)."""
    url = f"http://{HOST}:{port}{CROSSBAR_HOOK_PATH}"
    return {
        "type": "class",
        "classname": "crossbar.bridge.rest.MessageForwarder",
        "realm": REALM,
        "role": "anonymous",
        "extra": {"subscriptions": [{"url": url, "topic": CROSSBAR_HOOK_TOPIC}], "method": "POST"},
    }
