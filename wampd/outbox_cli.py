"""The ``wampd outbox`` command: look into the durable outbox's store, and act on it.

::

    wampd outbox status [--json] [--config FILE]
    wampd outbox list [--dead] [--limit N] [--json] [--config FILE]
    wampd outbox retry (--all | --msg-id ID [--msg-id ID ...]) [--config FILE]
    wampd outbox purge [--dead] [--queued] [--msg-id ID ...] [--config FILE]

It opens the store that the configuration's ``[outbox] path`` names, and may do so while
the daemon runs on it: the store is SQLite in WAL mode, where one connection writes while
others read, and a writer waits for another's transaction to end (see :mod:`wampd.store`).
The daemon notices what ``retry`` and ``purge`` changed. The command never creates,
deletes, recreates or moves the file: a missing store is reported, a corrupt one too
(``wampd run`` moves a corrupt store aside when it opens it).

Exit statuses: 0 done; 1 the store is missing, cannot be opened or read, or is corrupt;
2 bad usage, a bad configuration, or an ``[outbox]`` without a ``path`` (the outbox is off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .config import OutboxConfig, config_path, load_config
from .errors import EXIT_CONFIG, EXIT_OK, ConfigError
from .store import Store, StoreCorrupt, StoreUnavailable

__all__ = ["EXIT_STORE", "add_parser", "run"]

#: The store is missing, cannot be opened or read, or is corrupt.
EXIT_STORE: Final = 1

_PROG: Final = "wampd outbox"


def _now() -> float:
    """The wall clock that ages are measured with (the store's times are ``time.time()``)."""
    return time.time()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``outbox`` and its actions to the ``wampd`` command's subparsers."""
    help_text = "inspect the durable outbox's store, retry its dead letters, or purge it"
    outbox = commands.add_parser(
        "outbox",
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + "; works beside a running daemon.",
    )
    _config_option(outbox)
    actions = outbox.add_subparsers(dest="action", metavar="ACTION", required=True)

    status = actions.add_parser(
        "status",
        help="messages and bytes queued, the oldest's age, dead letters, size on disk",
        description="Say what the store holds: its path, messages and bytes queued, the "
        "oldest message's age in seconds, dead letters, and the file's size on disk "
        "(database and WAL).",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _config_option(status)

    listing = actions.add_parser(
        "list",
        help="queued messages oldest first (or the dead letters, with --dead)",
        description="List the queued messages oldest first: seq, msg_id, topic, age in "
        "seconds and size; with --dead, the dead letters: seq, msg_id, topic, when each "
        "died (UTC) and why.",
    )
    listing.add_argument("--dead", action="store_true", help="list the dead letters")
    listing.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="at most N (default: 20)"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object a line")
    _config_option(listing)

    retry = actions.add_parser(
        "retry",
        help="queue dead letters again (--all, or --msg-id ID ...)",
        description="Queue dead letters again, after what is queued now; the daemon sends "
        "them as it sends any other message.",
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument(
        "--msg-id",
        action="append",
        metavar="ID",
        dest="msg_ids",
        help="the dead letter(s) of this msg_id (repeatable)",
    )
    _config_option(retry)

    purge = actions.add_parser(
        "purge",
        help="delete dead letters (--dead), queued messages (--queued), or --msg-id ID ...",
        description="Delete for good: --dead the dead letters, --queued the queued "
        "messages, --msg-id ID only those of that msg_id (repeatable; from both tables, "
        "or from those --dead and --queued name). At least one is required.",
    )
    purge.add_argument("--dead", action="store_true", help="the dead letters")
    purge.add_argument("--queued", action="store_true", help="the queued messages")
    purge.add_argument(
        "--msg-id",
        action="append",
        metavar="ID",
        dest="msg_ids",
        help="only the messages of this msg_id (repeatable)",
    )
    _config_option(purge)
    purge.set_defaults(purge_parser=purge)  # for its usage error


def _config_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before the action or after it, the one given is kept.
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the TOML configuration file (default: $WAMPD_CONFIG)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``wampd outbox ACTION`` as parsed into ``args``; the exit status (a usage
    error raises ``SystemExit(2)``, as argparse's own do)."""
    if args.action == "purge" and not (args.dead or args.queued or args.msg_ids):
        args.purge_parser.error("purge needs at least one of --dead, --queued, --msg-id ID")
    outbox = _outbox_config(getattr(args, "config", None), environ)
    if isinstance(outbox, int):
        return outbox
    disk = _disk(outbox.path)  # before opening: the files as the daemon left them
    # A write (retry, purge) checks the file first; a look does not need to.
    store = _open(outbox, check=args.action in ("retry", "purge"))
    if isinstance(store, int):
        return store
    try:
        return _act(store, args, disk)
    except StoreCorrupt as exc:
        return _corrupt(exc)
    except StoreUnavailable as exc:
        return _fail(f"the store failed: {exc}")
    finally:
        store.close()


def _open(outbox: OutboxConfig, *, check: bool) -> Store | int:
    """The store, never created here; an exit status after saying why it cannot be had."""
    path = outbox.path
    if not os.path.exists(path):
        return _fail(
            f"no store at {path}: wampd makes it when it runs with this [outbox] path "
            "(nothing was created)"
        )
    try:
        return Store(path, sync=outbox.sync, check=check, create=False)
    except StoreCorrupt as exc:
        return _corrupt(exc)
    except StoreUnavailable as exc:
        return _fail(f"cannot open the store: {exc}")


def _act(store: Store, args: argparse.Namespace, disk: tuple[int, int]) -> int:
    if args.action == "status":
        return _status(store, disk, as_json=args.json)
    if args.action == "list":
        return _list(store, dead=args.dead, limit=args.limit, as_json=args.json)
    if args.action == "retry":
        count = store.retry(None if args.all else _unique(args.msg_ids), _now())
        print(f"queued {_many(count, 'dead letter')} again")
    else:
        queued, dead = _purge(store, args)
        print(f"deleted {_many(queued, 'queued message')} and {_many(dead, 'dead letter')}")
    return EXIT_OK


def _outbox_config(path: str | None, environ: Mapping[str, str]) -> OutboxConfig | int:
    """The ``[outbox]`` section; an exit status after saying what is wrong."""
    try:
        # Component entries are not imported: the outbox needs none of them.
        config = load_config(path, environ=environ)
    except ConfigError as e:
        for problem in e.problems:
            print(f"wampd: config error: {_one_line(problem)}", file=sys.stderr)
        return EXIT_CONFIG
    if not config.outbox.enabled:
        source = config.source or config_path(path, environ)
        print(f"{_PROG}: [outbox] has no path in {source}: the outbox is off", file=sys.stderr)
        return EXIT_CONFIG
    return config.outbox


def _status(store: Store, disk: tuple[int, int], *, as_json: bool) -> int:
    stats = store.stats()
    age = None if stats.oldest is None else max(0.0, _now() - stats.oldest)
    db_bytes, wal_bytes = disk
    if as_json:
        document = {
            "path": store.path,
            "messages": stats.messages,
            "bytes": stats.bytes,
            "oldest": stats.oldest,
            "oldest_age_seconds": None if age is None else round(age, 3),
            "dead_letters": stats.dead,
            "file_bytes": db_bytes + wal_bytes,
            "db_bytes": db_bytes,
            "wal_bytes": wal_bytes,
        }
        print(json.dumps(document))
        return EXIT_OK
    lines = [
        ("path", _one_line(store.path)),
        ("messages", str(stats.messages)),
        ("bytes", str(stats.bytes)),
        ("oldest age s", "-" if age is None else f"{age:.1f}"),
        ("dead letters", str(stats.dead)),
        ("file bytes", f"{db_bytes + wal_bytes} (db {db_bytes}, wal {wal_bytes})"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    return EXIT_OK


def _list(store: Store, *, dead: bool, limit: int, as_json: bool) -> int:
    if dead:
        letters = store.dead_letters(limit)
        records: list[dict[str, Any]] = [
            {
                "seq": d.seq,
                "msg_id": d.msg_id,
                "topic": d.topic,
                "size": d.size,
                "enqueued": d.enqueued,
                "died": d.died,
                "reason": d.reason,
            }
            for d in letters
        ]
        header = ("SEQ", "MSG_ID", "TOPIC", "DIED", "REASON")
        table: list[tuple[object, ...]] = [
            (d.seq, d.msg_id, d.topic, _utc(d.died), d.reason) for d in letters
        ]
        what = "dead letter"
    else:
        try:
            rows = store.queued(limit)
        except (ValueError, KeyError) as exc:  # a payload that is not the store's JSON
            return _fail(f"{store.path}: a queued message cannot be read: {exc!r}")
        now = _now()
        ages = [max(0.0, now - row.enqueued) for row in rows]
        records = [
            {
                "seq": row.seq,
                "msg_id": row.msg_id,
                "topic": row.topic,
                "enqueued": row.enqueued,
                "age_seconds": round(age, 3),
                "size": row.size,
            }
            for row, age in zip(rows, ages, strict=True)
        ]
        header = ("SEQ", "MSG_ID", "TOPIC", "AGE_S", "SIZE")
        table = [
            (row.seq, row.msg_id, row.topic, f"{age:.1f}", row.size)
            for row, age in zip(rows, ages, strict=True)
        ]
        what = "queued message"
    if as_json:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return EXIT_OK
    if not table:
        print(f"no {what}s")
        return EXIT_OK
    _print_table(header, table)
    stats = store.stats()
    total = stats.dead if dead else stats.messages
    if total > len(table):
        print(f"({len(table)} of {total} {what}s shown; --limit N for more)")
    return EXIT_OK


def _purge(store: Store, args: argparse.Namespace) -> tuple[int, int]:
    ids = None if args.msg_ids is None else _unique(args.msg_ids)
    dead, queued = args.dead, args.queued
    if ids is not None and not (dead or queued):
        dead = queued = True  # --msg-id alone: from both tables
    return store.purge(dead=dead, queued=queued, msg_ids=ids)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header)] + [[_one_line(str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        # The last column is not padded: no trailing spaces.
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*padded, row[-1]]))


def _disk(path: str) -> tuple[int, int]:
    """The bytes of the database file and of its WAL (0 when there is none)."""
    sizes = []
    for name in (path, path + "-wal"):
        size = 0
        with contextlib.suppress(OSError):
            size = os.path.getsize(name)
        sizes.append(size)
    return sizes[0], sizes[1]


def _unique(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _many(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _corrupt(exc: StoreCorrupt) -> int:
    return _fail(f"the store is corrupt: {exc} (wampd run moves it aside when it opens it)")


def _fail(message: str) -> int:
    print(f"{_PROG}: {_one_line(message)}", file=sys.stderr)
    return EXIT_STORE


def _one_line(text: str) -> str:
    """``text`` with every non-printable character escaped: one line (as the CLI's)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
