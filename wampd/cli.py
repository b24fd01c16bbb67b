"""The ``wampd`` command: ``run``, ``check-config``, ``config-schema``, ``probe``, ``outbox``
(:mod:`wampd.outbox_cli`), ``keygen``, ``--version``.

Exit statuses: 0 clean stop, 1 internal error, 2 bad configuration or usage, 69 retries
exhausted, 78 fatal router rejection (see :mod:`wampd.errors`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import outbox_cli
from ._version import __version__
from .components import Entries
from .config import Config, config_path, json_schema, load_config, redacted, to_toml
from .errors import EXIT_CONFIG, EXIT_INTERNAL, EXIT_OK, ConfigError
from .keys import generate, write_key_pair
from .wamp import SessionFactory

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = ["load", "main"]

#: The daemon's own liveness endpoint at the default ``[http] listen``.
DEFAULT_PROBE_URL = "http://127.0.0.1:9100/healthz"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 with one line, as config errors do
        self.print_usage(sys.stderr)
        print(f"wampd: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wampd",
        description="A resilient reconnecting WAMP client daemon.",
    )
    parser.add_argument("--version", action="version", version=f"wampd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in (
        ("run", "run the daemon"),
        (
            "check-config",
            "validate the configuration and print it, every default filled in and secrets "
            "masked, as a file it could be loaded from",
        ),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help="the TOML configuration file (default: $WAMPD_CONFIG)",
        )
        if name == "check-config":
            command.add_argument(
                "--format",
                choices=("toml", "json"),
                default="toml",
                help="how to print it (default: toml)",
            )
    commands.add_parser(
        "config-schema",
        help="print the JSON Schema of the configuration file (for editors and CI checks)",
        description="Print the JSON Schema of wampd.toml; the package ships it too, as "
        "wampd/wampd.schema.json.",
    )
    probe = commands.add_parser(
        "probe",
        help="GET a health endpoint: exit 0 when it answers 2xx, else 1 (for HEALTHCHECK)",
        description="GET a health endpoint: exit 0 when it answers 2xx, else 1.",
    )
    probe.add_argument(
        "url",
        nargs="?",
        default=None,
        help=f"the URL to GET (default: $WAMPD_PROBE_URL, else {DEFAULT_PROBE_URL})",
    )
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    outbox_cli.add_parser(commands)
    keygen = commands.add_parser(
        "keygen",
        help="write a new cryptosign key pair; print its public key (for Crossbar's "
        "authorized_keys)",
        description='Write a new Ed25519 key for [router.auth] method = "cryptosign": the '
        "private key to FILE (mode 0600, never overwriting), the public key to FILE.pub; "
        "print the public key in hex, as Crossbar's authorized_keys take it.",
    )
    keygen.add_argument("file", metavar="FILE", help="where to write the private key")
    keygen.add_argument("--comment", default="", help="a note written into both files")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    _open_standard_fds()
    sys.exit(run_cli(sys.argv[1:] if argv is None else argv, os.environ))


def _open_standard_fds() -> None:
    """Point standard input, output and error at ``/dev/null`` where they are closed (as
    some init systems start daemons), so no socket the daemon opens can take their
    numbers. ``sys.stdout`` stays ``None`` then, and log lines are counted as dropped."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def run_cli(argv: Sequence[str], environ: Mapping[str, str]) -> int:  # noqa: PLR0911
    """Parse ``argv``, run the command, return the exit status."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_usage(sys.stderr)
        print(
            "wampd: error: a command is required "
            "(run, check-config, config-schema, probe, outbox, keygen)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.command == "config-schema":
        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    if args.command == "probe":
        url = args.url or environ.get("WAMPD_PROBE_URL") or DEFAULT_PROBE_URL
        return _probe(url, args.timeout)
    if args.command == "outbox":
        return outbox_cli.run(args, environ)
    if args.command == "keygen":
        return _keygen(args.file, args.comment)
    loaded = load(args.config, environ)
    if loaded is None:
        return EXIT_CONFIG
    config, factories = loaded
    if args.command == "check-config":
        for warning in config.warnings:
            print(f"wampd: config warning: {_one_line(warning)}", file=sys.stderr)
        print(_effective(config, args.format), end="")
        return EXIT_OK
    return _run_reporting_bugs(config, factories, environ)


def _keygen(path: str, comment: str) -> int:
    """``wampd keygen``: the public key on stdout (alone, for scripts), what was written on
    stderr. Never overwrites a file; never prints the private key."""
    try:
        public = write_key_pair(path, generate(), comment=comment)
    except (FileExistsError, OSError) as exc:
        print(f"wampd: keygen: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    print(public)
    print(
        f"wampd: wrote the private key to {path} (mode 0600) and the public key to "
        f'{path}.pub; give Crossbar the public key: "authorized_keys": ["{public}"]',
        file=sys.stderr,
    )
    return EXIT_OK


def _run_reporting_bugs(
    config: Config, factories: Mapping[str, Any], environ: Mapping[str, str]
) -> int:
    """:func:`_run`; an exception out of it is a bug in wampd: status 1, with its traceback."""
    try:
        return _run(config, factories, environ)
    except Exception:
        print("wampd: internal error (please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


def load(
    path: str | None, environ: Mapping[str, str]
) -> tuple[Config, dict[str, SessionFactory]] | None:
    """The configuration and its components' session factories; ``None`` after printing
    every problem to stderr, one line each (for ``wampd run``, ``check-config`` and
    ``twist wampd``)."""
    entries = Entries(_search_path(config_path(path, environ)))
    try:
        config = load_config(path, environ=environ, check_entry=entries)
    except ConfigError as e:
        for problem in e.problems:
            _config_error(problem)
        return None
    return config, entries.factories


def _config_error(problem: str) -> None:
    """Say a configuration problem (``key: what is wrong``) on stderr, in one line."""
    print(f"wampd: config error: {_one_line(problem)}", file=sys.stderr)


def _effective(config: Config, format: str) -> str:
    """What ``check-config`` prints: the effective configuration as TOML or JSON."""
    if format == "json":
        return json.dumps(redacted(config), indent=2) + "\n"
    header = (
        f"# wampd {__version__}: the effective configuration"
        + (f" of {config.source}" if config.source else "")
        + ",\n# every default filled in; secrets and sensitive-looking values are shown as ***.\n"
    )
    return header + to_toml(config)


def _probe(url: str, timeout: float) -> int:
    """GET ``url``: 0 for a 2xx answer, 1 for anything else (one line on stderr saying why)."""
    if not url.startswith(("http://", "https://")):
        print(f"wampd: error: probe needs an http:// or https:// URL, got {url!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError) as e:
        print(f"wampd: probe {url}: {e}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return EXIT_OK
    print(f"wampd: probe {url}: HTTP {status}", file=sys.stderr)
    return 1


def _one_line(text: str) -> str:
    """``text`` with every non-printable character escaped: one problem, one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _search_path(path: str | os.PathLike[str] | None) -> list[str]:
    """Where entries are imported from: the config file's folder, then the cwd."""
    folders = [os.getcwd()]
    if path is not None:
        folders.insert(0, str(Path(path).resolve().parent))
    return folders


def _raise_open_files_limit(most: int = 65536) -> None:
    """The soft limit on open files up to the hard one (at most ``most``): the bridge's
    connections from the app, its webhooks' and callbacks' to it, are each a descriptor,
    and a 1,024 soft limit is soon reached under load."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = most if hard == resource.RLIM_INFINITY else min(hard, most)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _quiet_garbage_collector() -> None:
    """Everything imported and built so far -- Twisted, autobahn, the components, the
    service tree -- is there for the process's life: move it out of the collector's sight
    (``gc.freeze``), and collect the young generation less often. A full collection then
    walks the objects made since start only, instead of pausing the reactor for a few
    milliseconds each time (seen in the bridge's p99 latency), and cycles are still
    collected."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 100)


def _run(config: Config, factories: Mapping[str, Any], environ: Mapping[str, str]) -> int:
    """``wampd run``: the daemon's service tree under :func:`twisted.internet.task.react`,
    with wampd's own signal handlers and sd_notify; returns the exit status."""
    from prometheus_client import disable_created_metrics
    from twisted.internet.defer import Deferred
    from twisted.internet.error import CannotListenError
    from twisted.internet.task import react

    from .daemon import Daemon, secrets
    from .logs import log_to_stdout

    # Only the documented series: no *_created samples next to counters and histograms.
    disable_created_metrics()
    _raise_open_files_limit()
    logger, output = log_to_stdout(config.log.level, config.log.format, secrets(config))

    def main(reactor: Any) -> Deferred[None]:
        daemon = Daemon(
            config,
            factories,
            reactor=reactor,
            logger=logger,
            stop_reactor=reactor.stop,
            environ=environ,
            log_lines_dropped=lambda: output.dropped,
        )
        _quiet_garbage_collector()

        def on_signal(signum: int, frame: Any) -> None:
            reactor.callFromThread(daemon.signalled, signal.Signals(signum).name)

        def started() -> None:
            # Replace Twisted's handlers so the log says which signal stopped the daemon,
            # and a second one can end the stop at once.
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            try:
                daemon.startService()
            except CannotListenError as e:
                _config_error(
                    f"http.listen: cannot listen on {config.http.listen}: {e.socketError}"
                )
                daemon.request_stop("http.listen failed", EXIT_CONFIG)

        def end(_: None) -> None:
            if daemon.exit_code != EXIT_OK:
                raise SystemExit(daemon.exit_code)  # react's way to exit with a status

        # The shutdown trigger's Deferred must not fail; the one react waits for may.
        stopped: Deferred[None] = Deferred()
        reactor.callWhenRunning(started)
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: daemon.shutdown().addCallback(stopped.callback)
        )
        return stopped.addCallback(end)

    try:
        react(main)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_INTERNAL
    return EXIT_OK
