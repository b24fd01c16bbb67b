"""The outbox's store: one SQLite database in WAL mode, and every operation on it.

Everything here is synchronous and runs on one thread: the outbox's writer thread in the
daemon (:mod:`wampd.outbox`), or the ``wampd outbox`` command's own. Both can work on the
same file at once: SQLite's WAL mode lets one connection write while others read, and a
writer waits (``busy_timeout``) for another's transaction to end instead of failing.

The tables:

``messages``  what waits to be published, in ``seq`` order (``AUTOINCREMENT``: a ``seq``
              is never used twice, so the sender's cursor never sees an old one again).
``dead``      dead letters: messages the router refused for good, with the reason.
``keys``      idempotency keys (``Idempotency-Key``, a given ``msg_id``) and the ``msg_id``
              each first got, kept ``idempotency_window`` seconds.
``totals``    the count and bytes of ``messages``, kept by triggers (so they stay exact
              whoever changes the table) and read in O(1).

Each message's payload is its JSON ``{"args", "kwargs", "options"}``; its size, the one
``max_bytes`` counts, is that payload's length plus the topic's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CORRUPT",
    "Accepted",
    "DeadLetter",
    "Entry",
    "Limits",
    "Row",
    "Stats",
    "Store",
    "StoreCorrupt",
    "StoreNotOpen",
    "StoreUnavailable",
    "move_aside",
    "open_store",
]

#: The schema's version (``PRAGMA user_version``).
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    enqueued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    enqueued REAL NOT NULL,
    died REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    msg_id TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_created ON keys (created);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS messages_in AFTER INSERT ON messages BEGIN
    UPDATE totals SET messages = messages + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS messages_out AFTER DELETE ON messages BEGIN
    UPDATE totals SET messages = messages - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
"""

#: SQLite's result codes for a file that is not (or no longer) a sound database.
CORRUPT: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
#: The same as primary result codes: Python reports *extended* codes (e.g.
#: ``SQLITE_CORRUPT_SEQUENCE``, ``SQLITE_CORRUPT_INDEX``), whose low byte is the primary one.
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class StoreUnavailable(Exception):
    """The store cannot be opened or written (an unwritable path, a full disk)."""


class StoreNotOpen(StoreUnavailable):
    """The outbox has no open store (yet, or for the moment: it is being opened again)."""


class StoreCorrupt(StoreUnavailable):
    """The file is not a sound SQLite database (it failed ``PRAGMA quick_check``)."""


@dataclass(frozen=True)
class Limits:
    """What the store may hold; see ``[outbox]``."""

    max_messages: int = 1_000_000
    max_bytes: int = 1 << 30
    #: ``"reject"``: a message that does not fit is refused; ``"drop_oldest"``: the
    #: oldest messages not being sent are evicted to make room.
    when_full: str = "reject"


@dataclass(frozen=True)
class Entry:
    """A message to store: its id, topic and payload; ``key`` its idempotency key."""

    msg_id: str
    topic: str
    payload: bytes
    key: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


@dataclass(frozen=True)
class Accepted:
    """What became of one :class:`Entry`: ``"queued"``, ``"duplicate"`` (its key was
    seen: ``msg_id`` is the first one's), ``"full"`` or ``"too_large"`` (not stored)."""

    status: str
    msg_id: str


@dataclass(frozen=True)
class Stats:
    """The store's counts at the end of a transaction."""

    messages: int = 0
    bytes: int = 0
    #: When the oldest queued message was stored (None: there is none).
    oldest: float | None = None
    dead: int = 0


@dataclass(frozen=True)
class Row:
    """A queued message as the sender reads it."""

    seq: int
    msg_id: str
    topic: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    enqueued: float
    size: int


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as ``wampd outbox list --dead`` shows it."""

    seq: int
    msg_id: str
    topic: str
    size: int
    enqueued: float
    died: float
    reason: str


@dataclass
class Outcome:
    """What one writer transaction did, for the reactor to account for."""

    stats: Stats
    #: Seconds the transaction took, its commit included.
    seconds: float = 0.0
    accepted: list[Accepted] = field(default_factory=list)
    #: msg_ids evicted (``drop_oldest``) and expired (``ttl``).
    evicted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    removed: int = 0
    dead_lettered: int = 0


def payload(args: Sequence[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> bytes:
    """A message's stored payload (compact JSON; raises ``TypeError``/``ValueError`` for a
    value JSON cannot hold)."""
    return json.dumps(
        {"args": list(args), "kwargs": kwargs, "options": options},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()


def open_store(
    path: str,
    *,
    sync: str = "normal",
    clock: Callable[[], float] = time.time,
    on_corrupt: Callable[[str, str], None] | None = None,
) -> Store:
    """Open (creating it if need be) the store at ``path``.

    A file that is not a sound database is moved aside to ``PATH.corrupt-<UTC time>``
    (its ``-wal`` and ``-shm`` files with it; never deleted), ``on_corrupt(moved_to,
    why)`` is told, and a fresh store is made in its place. Raises
    :class:`StoreUnavailable` when the path cannot be opened or written.
    """
    try:
        return Store(path, sync=sync)
    except StoreCorrupt as exc:
        moved = move_aside(path, clock())
        if on_corrupt is not None:
            on_corrupt(moved, str(exc))
        return Store(path, sync=sync)


def move_aside(path: str, now: float) -> str:
    """Rename ``path`` (and its WAL files) to ``path.corrupt-<UTC time>``; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target, n = f"{path}.corrupt-{stamp}", 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}.{n}"
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(path + suffix, target + suffix)
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, target)
    return target


def _failure(exc: sqlite3.Error, path: str) -> StoreUnavailable:
    name = getattr(exc, "sqlite_errorname", "")
    code = getattr(exc, "sqlite_errorcode", None)
    corrupt = name in CORRUPT or (isinstance(code, int) and code & 0xFF in _CORRUPT_CODES)
    kind = StoreCorrupt if corrupt else StoreUnavailable
    return kind(f"{path}: {exc}")


class Store:
    """One connection to the store; every method is one transaction.

    Raises :class:`StoreCorrupt` when the file is not a sound database, and
    :class:`StoreUnavailable` when it cannot be opened or written.
    """

    def __init__(
        self,
        path: str,
        *,
        sync: str = "normal",
        check: bool = True,
        create: bool = True,
        seq_floor: int = 0,
    ) -> None:
        """Open the store at ``path``: ``check`` runs ``PRAGMA quick_check`` first;
        ``create=False`` opens only an existing wampd store and writes no schema (``wampd
        outbox``); ``seq_floor`` makes every new message's ``seq`` larger than it (a store
        made anew while the sender still holds the old one's numbers)."""
        self.path = path
        try:
            if create:
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            else:
                uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw"
                self._db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
        except sqlite3.Error as exc:
            raise _failure(exc, path) from None
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            if check:
                verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise StoreCorrupt(f"{path}: PRAGMA quick_check says {verdict!r}")
            self._check_version(create)
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreUnavailable(f"{path}: cannot use WAL mode (journal mode {mode!r})")
            self._db.execute("PRAGMA synchronous = " + ("FULL" if sync == "full" else "NORMAL"))
            if create:
                with self._transaction():
                    self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if seq_floor:
                self._raise_seq(seq_floor)
        except sqlite3.Error as exc:
            self._db.close()
            raise _failure(exc, path) from None
        except StoreUnavailable:
            self._db.close()
            raise

    def _check_version(self, create: bool) -> None:
        """Refuse a store of a newer schema, and (``create=False``) a file that is not a
        wampd store at all."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"{self.path}: the store's schema is version {version}, made by a newer "
                f"wampd; this one knows version {SCHEMA_VERSION} and leaves the file as it is"
            )
        if not create and version != SCHEMA_VERSION:
            raise StoreUnavailable(f"{self.path}: not a wampd outbox store (schema version 0)")

    def _raise_seq(self, floor: int) -> None:
        with self._transaction():
            self._db.execute("BEGIN IMMEDIATE")
            changed = self._db.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'messages'", (floor,)
            ).rowcount
            if not changed:
                self._db.execute("INSERT INTO sqlite_sequence VALUES ('messages', ?)", (floor,))
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (checkpointing the WAL when it is the last one)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        """Roll back on any error; SQLite's errors become :class:`StoreUnavailable`."""
        try:
            yield
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            raise _failure(exc, self.path) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            raise

    def _timed(self, work: Callable[[Outcome], None]) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome(Stats())
        with self._transaction():
            self._db.execute("BEGIN IMMEDIATE")
            work(outcome)
            outcome.stats = self._stats()
            self._db.execute("COMMIT")
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _count(self) -> int:
        return int(self._db.execute("SELECT messages FROM totals WHERE id = 0").fetchone()[0])

    def _stats(self) -> Stats:
        db = self._db
        messages, size = db.execute("SELECT messages, bytes FROM totals WHERE id = 0").fetchone()
        first = db.execute("SELECT enqueued FROM messages ORDER BY seq LIMIT 1").fetchone()
        (dead,) = db.execute("SELECT count(*) FROM dead").fetchone()
        return Stats(messages, size, None if first is None else first[0], dead)

    # -- the daemon's operations ----------------------------------------------------------------

    def stats(self) -> Stats:
        """The counts now (read in one transaction, so they agree with each other)."""
        with self._transaction():
            self._db.execute("BEGIN")
            stats = self._stats()
            self._db.execute("COMMIT")
        return stats

    def enqueue(
        self, entries: Iterable[Entry], now: float, limits: Limits, sending_up_to: int = 0
    ) -> Outcome:
        """Store ``entries`` in one transaction, within ``limits``; ``sending_up_to`` is the
        last ``seq`` the sender has read (``drop_oldest`` never evicts those)."""

        def work(outcome: Outcome) -> None:
            db = self._db
            count, size = db.execute("SELECT messages, bytes FROM totals WHERE id = 0").fetchone()
            for entry in entries:
                if entry.key is not None:
                    seen = db.execute("SELECT msg_id FROM keys WHERE key = ?", (entry.key,))
                    first = seen.fetchone()
                    if first is not None:
                        outcome.accepted.append(Accepted("duplicate", first[0]))
                        continue
                esize = entry.size
                if esize > limits.max_bytes:
                    outcome.accepted.append(Accepted("too_large", entry.msg_id))
                    continue
                if count + 1 > limits.max_messages or size + esize > limits.max_bytes:
                    if limits.when_full != "drop_oldest":
                        outcome.accepted.append(Accepted("full", entry.msg_id))
                        continue
                    freed = self._evict(
                        count + 1 - limits.max_messages,
                        size + esize - limits.max_bytes,
                        sending_up_to,
                        outcome.evicted,
                    )
                    count, size = count - freed[0], size - freed[1]
                    if count + 1 > limits.max_messages or size + esize > limits.max_bytes:
                        # Everything left is being sent: nothing to evict yet.
                        outcome.accepted.append(Accepted("full", entry.msg_id))
                        continue
                db.execute(
                    "INSERT INTO messages (msg_id, topic, payload, size, enqueued)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (entry.msg_id, entry.topic, entry.payload, esize, now),
                )
                if entry.key is not None:
                    db.execute(
                        "INSERT INTO keys (key, msg_id, created) VALUES (?, ?, ?)",
                        (entry.key, entry.msg_id, now),
                    )
                count, size = count + 1, size + esize
                outcome.accepted.append(Accepted("queued", entry.msg_id))

        return self._timed(work)

    def _evict(self, messages: int, size: int, after: int, evicted: list[str]) -> tuple[int, int]:
        """Delete the oldest messages after ``after`` until ``messages`` and ``size`` are
        freed; the messages and bytes freed."""
        freed_n = freed_b = 0
        rows = self._db.execute(
            "SELECT seq, msg_id, size FROM messages WHERE seq > ? ORDER BY seq", (after,)
        )
        gone: list[tuple[int]] = []
        for seq, msg_id, msize in rows:
            if freed_n >= messages and freed_b >= size:
                break
            gone.append((seq,))
            evicted.append(msg_id)
            freed_n, freed_b = freed_n + 1, freed_b + msize
        rows.close()
        self._db.executemany("DELETE FROM messages WHERE seq = ?", gone)
        return freed_n, freed_b

    def read(self, after: int, limit: int) -> list[Row]:
        """Up to ``limit`` queued messages after ``seq`` ``after``, in order."""
        with self._transaction():
            rows = self._db.execute(
                "SELECT seq, msg_id, topic, payload, enqueued, size FROM messages"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        out = []
        for seq, msg_id, topic, raw, enqueued, size in rows:
            body = json.loads(raw)
            out.append(
                Row(
                    seq,
                    msg_id,
                    topic,
                    body["args"],
                    body["kwargs"],
                    body["options"],
                    enqueued,
                    size,
                )
            )
        return out

    def remove(
        self,
        published: Sequence[int],
        dead: Sequence[tuple[int, str]],
        now: float,
        expired: Sequence[int] = (),
    ) -> Outcome:
        """Remove the ``published`` messages and the ``expired`` ones (sent too late);
        move the ``dead`` ones, ``(seq, reason)``, to the dead letters. The outcome counts
        only what was still there (``wampd outbox purge`` may have been first):
        ``removed`` the published, ``expired`` the expired ones' msg_ids."""

        def work(outcome: Outcome) -> None:
            db = self._db
            if dead:
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO dead"
                    " SELECT seq, msg_id, topic, payload, size, enqueued, ?, ? FROM messages"
                    " WHERE seq = ?",
                    [(now, reason, seq) for seq, reason in dead],
                )
                outcome.dead_lettered = db.total_changes - before
                db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s, _ in dead])
            before = self._count()
            db.executemany("DELETE FROM messages WHERE seq = ?", [(seq,) for seq in published])
            outcome.removed = before - self._count()
            for seq in expired:
                row = db.execute("DELETE FROM messages WHERE seq = ? RETURNING msg_id", (seq,))
                outcome.expired.extend(msg_id for (msg_id,) in row.fetchall())

        return self._timed(work)

    def expire(
        self,
        cutoff: float | None,
        keys_cutoff: float | None,
        *,
        after: int = 0,
        limit: int = 10_000,
    ) -> Outcome:
        """Drop (oldest first, at most ``limit``) the messages after ``seq`` ``after``
        (the sender holds those up to it, and drops them itself when they are too old)
        stored before ``cutoff``; forget the idempotency keys made before ``keys_cutoff``."""

        def work(outcome: Outcome) -> None:
            db = self._db
            rows: list[Any] = []
            if cutoff is not None:
                rows = db.execute(
                    "SELECT seq, msg_id, enqueued FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, limit),
                ).fetchall()
            gone = []
            for seq, msg_id, enqueued in rows:
                if enqueued >= cutoff:
                    break
                gone.append((seq,))
                outcome.expired.append(msg_id)
            db.executemany("DELETE FROM messages WHERE seq = ?", gone)
            if keys_cutoff is not None:
                db.execute(
                    "DELETE FROM keys WHERE key IN"
                    " (SELECT key FROM keys WHERE created < ? LIMIT ?)",
                    (keys_cutoff, limit),
                )

        return self._timed(work)

    def data_version(self) -> int:
        """Changes by *other* connections move this (``PRAGMA data_version``)."""
        with self._transaction():
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- the operators' (``wampd outbox``) ----------------------------------------------------

    def queued(self, limit: int, offset: int = 0) -> list[Row]:
        """The queued messages, oldest first."""
        return self.read(self._nth_seq(offset), limit) if offset else self.read(0, limit)

    def _nth_seq(self, offset: int) -> int:
        with self._transaction():
            row = self._db.execute(
                "SELECT seq FROM messages ORDER BY seq LIMIT 1 OFFSET ?", (offset - 1,)
            ).fetchone()
        return 1 << 62 if row is None else int(row[0])

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The dead letters, oldest first."""
        with self._transaction():
            rows = self._db.execute(
                "SELECT seq, msg_id, topic, size, enqueued, died, reason FROM dead"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def retry(self, msg_ids: Sequence[str] | None, now: float) -> int:
        """Queue dead letters again (all, or those of ``msg_ids``), after what is queued;
        how many were."""

        def work(outcome: Outcome) -> None:
            db = self._db
            where, params = _selection(msg_ids)
            before = self._count()
            db.execute(
                "INSERT INTO messages (msg_id, topic, payload, size, enqueued)"
                f" SELECT msg_id, topic, payload, size, ? FROM dead {where} ORDER BY seq",
                (now, *params),
            )
            outcome.removed = self._count() - before
            db.execute(f"DELETE FROM dead {where}", params)

        return self._timed(work).removed

    def purge(self, *, dead: bool, queued: bool, msg_ids: Sequence[str] | None) -> tuple[int, int]:
        """Delete dead letters and/or queued messages (all, or those of ``msg_ids``);
        ``(queued deleted, dead letters deleted)``."""
        counts = [0, 0]

        def work(outcome: Outcome) -> None:
            db = self._db
            where, params = _selection(msg_ids)
            if queued:
                before = self._count()
                db.execute(f"DELETE FROM messages {where}", params)
                counts[0] = before - self._count()
            if dead:
                counts[1] = db.execute(f"DELETE FROM dead {where}", params).rowcount

        self._timed(work)
        return counts[0], counts[1]


def _selection(msg_ids: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    if msg_ids is None:
        return "", ()
    marks = ", ".join("?" * len(msg_ids))
    return f"WHERE msg_id IN ({marks})", tuple(msg_ids)
