"""The outbox's store (wampd/store.py): one SQLite file in WAL mode, synchronous, on
``tmp_path``; no clock but the ``now`` each call is given."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from wampd.store import (
    Entry,
    Limits,
    Store,
    StoreCorrupt,
    StoreUnavailable,
    open_store,
    payload,
)

ROOMY = Limits()


def entry(msg_id: str, *, size: int = 0, key: str | None = None, topic: str = "com.x") -> Entry:
    """An entry whose ``size`` (payload and topic) is ``size`` when given."""
    body = payload([msg_id], {}, {})
    if size:
        pad = size - len(topic) - len(payload([""], {}, {}))
        assert pad >= 0
        body = payload(["x" * pad], {}, {})
        assert len(body) + len(topic) == size
    return Entry(msg_id, topic, body, key)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "o.db")


@pytest.fixture
def store(path: str) -> Store:
    return Store(path)


def ids(store: Store) -> list[str]:
    return [row.msg_id for row in store.read(0, 1000)]


def seqs(store: Store) -> list[int]:
    return [row.seq for row in store.read(0, 1000)]


def exact_totals(store: Store) -> tuple[int, int]:
    """What the totals must say, counted the slow way."""
    n, size = store._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages").fetchone()
    return int(n), int(size)


def assert_totals(store: Store) -> None:
    stats = store.stats()
    assert (stats.messages, stats.bytes) == exact_totals(store)


# -- enqueue and read ------------------------------------------------------------------------


def test_enqueue_then_read_in_order(store: Store) -> None:
    args = payload([1, "two"], {"k": [3]}, {"exclude_me": False})
    outcome = store.enqueue(
        [entry("a"), Entry("b", "com.y", args), entry("c")], now=10.0, limits=ROOMY
    )
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [
        ("queued", "a"),
        ("queued", "b"),
        ("queued", "c"),
    ]
    rows = store.read(0, 10)
    assert [r.msg_id for r in rows] == ["a", "b", "c"]
    assert rows[0].seq < rows[1].seq < rows[2].seq
    b = rows[1]
    assert (b.topic, b.args, b.kwargs, b.options) == (
        "com.y",
        [1, "two"],
        {"k": [3]},
        {"exclude_me": False},
    )
    assert b.enqueued == 10.0 and b.size == len(args) + len("com.y")
    # after/limit page through them.
    assert [r.msg_id for r in store.read(rows[0].seq, 1)] == ["b"]
    assert store.read(rows[2].seq, 10) == []
    assert outcome.stats.messages == 3 and outcome.stats.oldest == 10.0


def test_seq_is_never_reused_after_deletes(store: Store) -> None:
    store.enqueue([entry("a"), entry("b")], 1.0, ROOMY)
    first = seqs(store)
    store.remove(first, [], 2.0)
    assert store.read(0, 10) == []
    store.enqueue([entry("c")], 3.0, ROOMY)
    (again,) = seqs(store)
    assert again > max(first)  # AUTOINCREMENT: not max(seq) + 1 of what is left (nothing)


def test_seq_is_never_reused_across_reopening(path: str, store: Store) -> None:
    store.enqueue([entry("a")], 1.0, ROOMY)
    (first,) = seqs(store)
    store.purge(dead=False, queued=True, msg_ids=None)
    store.close()
    reopened = Store(path)
    reopened.enqueue([entry("b")], 2.0, ROOMY)
    assert seqs(reopened)[0] > first


# -- idempotency keys ------------------------------------------------------------------------


def test_a_duplicate_key_gives_the_first_msg_id(store: Store) -> None:
    store.enqueue([entry("first", key="k")], 1.0, ROOMY)
    outcome = store.enqueue([entry("second", key="k"), entry("other", key="j")], 2.0, ROOMY)
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [
        ("duplicate", "first"),
        ("queued", "other"),
    ]
    assert ids(store) == ["first", "other"]


def test_a_duplicate_key_within_one_batch(store: Store) -> None:
    outcome = store.enqueue(
        [entry("a", key="k"), entry("b", key="k"), entry("c"), entry("d", key="k")], 1.0, ROOMY
    )
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [
        ("queued", "a"),
        ("duplicate", "a"),
        ("queued", "c"),
        ("duplicate", "a"),
    ]
    assert ids(store) == ["a", "c"]
    assert outcome.stats.messages == 2


def test_the_key_outlives_the_message(store: Store) -> None:
    """A repeat after the message was published is still a duplicate (within the window)."""
    store.enqueue([entry("a", key="k")], 1.0, ROOMY)
    store.remove(seqs(store), [], 2.0)
    outcome = store.enqueue([entry("b", key="k")], 3.0, ROOMY)
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [("duplicate", "a")]
    assert ids(store) == []


def test_a_refused_message_leaves_no_key(store: Store) -> None:
    limits = Limits(max_messages=1)
    store.enqueue([entry("a")], 1.0, limits)
    store.enqueue([entry("b", key="k")], 2.0, limits)  # full: not stored
    store.remove(seqs(store), [], 3.0)
    outcome = store.enqueue([entry("c", key="k")], 4.0, limits)
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [("queued", "c")]


def test_expire_forgets_keys_older_than_keys_cutoff(store: Store) -> None:
    store.enqueue([entry("old", key="k1")], 10.0, ROOMY)
    store.enqueue([entry("new", key="k2")], 20.0, ROOMY)
    store.expire(None, keys_cutoff=15.0)
    assert ids(store) == ["old", "new"]  # no cutoff: no message expires
    outcome = store.enqueue([entry("again1", key="k1"), entry("again2", key="k2")], 30.0, ROOMY)
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [
        ("queued", "again1"),
        ("duplicate", "new"),
    ]


# -- limits ----------------------------------------------------------------------------------


def test_reject_when_max_messages_is_reached(store: Store) -> None:
    limits = Limits(max_messages=2, when_full="reject")
    store.enqueue([entry("a"), entry("b")], 1.0, limits)
    outcome = store.enqueue([entry("c"), entry("d")], 2.0, limits)
    assert [(a.status, a.msg_id) for a in outcome.accepted] == [("full", "c"), ("full", "d")]
    assert outcome.evicted == []
    assert ids(store) == ["a", "b"]
    assert_totals(store)


def test_reject_when_max_bytes_would_be_passed(store: Store) -> None:
    limits = Limits(max_bytes=1000, when_full="reject")
    outcome = store.enqueue(
        [entry("a", size=600), entry("b", size=410), entry("c", size=400)], 1.0, limits
    )
    assert [a.status for a in outcome.accepted] == ["queued", "full", "queued"]
    assert ids(store) == ["a", "c"]
    assert store.stats().bytes == 1000
    assert_totals(store)


def test_a_message_larger_than_max_bytes_is_too_large(store: Store) -> None:
    for when_full in ("reject", "drop_oldest"):
        limits = Limits(max_bytes=1000, when_full=when_full)
        store.enqueue([entry(f"small-{when_full}", size=100)], 1.0, limits)
        outcome = store.enqueue([entry(f"big-{when_full}", size=1010)], 2.0, limits)
        assert [(a.status, a.msg_id) for a in outcome.accepted] == [
            ("too_large", f"big-{when_full}")
        ]
        assert outcome.evicted == []  # nothing is evicted for a message that cannot fit
    assert ids(store) == ["small-reject", "small-drop_oldest"]
    # Exactly max_bytes fits (in an empty store).
    store.purge(dead=False, queued=True, msg_ids=None)
    outcome = store.enqueue([entry("exact", size=1000)], 3.0, Limits(max_bytes=1000))
    assert outcome.accepted[0].status == "queued"


def test_drop_oldest_evicts_the_oldest_for_max_messages(store: Store) -> None:
    limits = Limits(max_messages=3, when_full="drop_oldest")
    store.enqueue([entry("a"), entry("b"), entry("c")], 1.0, limits)
    outcome = store.enqueue([entry("d"), entry("e")], 2.0, limits)
    assert [a.status for a in outcome.accepted] == ["queued", "queued"]
    assert outcome.evicted == ["a", "b"]
    assert ids(store) == ["c", "d", "e"]
    assert outcome.stats.messages == 3
    assert_totals(store)


def test_drop_oldest_evicts_as_many_as_max_bytes_needs(store: Store) -> None:
    limits = Limits(max_bytes=1000, when_full="drop_oldest")
    store.enqueue([entry("a", size=300), entry("b", size=300), entry("c", size=300)], 1.0, limits)
    outcome = store.enqueue([entry("d", size=650)], 2.0, limits)
    assert outcome.evicted == ["a", "b"]  # 900 + 650 - 1000 = 550 to free: two of 300
    assert ids(store) == ["c", "d"]
    assert store.stats().bytes == 950
    assert_totals(store)


def test_drop_oldest_never_evicts_what_is_being_sent(store: Store) -> None:
    limits = Limits(max_messages=3, when_full="drop_oldest")
    store.enqueue([entry("a"), entry("b"), entry("c")], 1.0, limits)
    _, b, _ = seqs(store)
    outcome = store.enqueue([entry("d")], 2.0, limits, sending_up_to=b)
    assert outcome.evicted == ["c"]
    assert ids(store) == ["a", "b", "d"]
    # Everything queued is being sent: nothing may go, so the new one is refused.
    d = seqs(store)[-1]
    outcome = store.enqueue([entry("e")], 3.0, limits, sending_up_to=d)
    assert [(s.status, s.msg_id) for s in outcome.accepted] == [("full", "e")]
    assert outcome.evicted == []
    assert ids(store) == ["a", "b", "d"]
    assert_totals(store)


def test_drop_oldest_with_max_bytes_keeps_what_is_being_sent(store: Store) -> None:
    limits = Limits(max_bytes=1000, when_full="drop_oldest")
    store.enqueue([entry("a", size=500), entry("b", size=200), entry("c", size=200)], 1.0, limits)
    a = seqs(store)[0]
    # 900 + 400 - 1000 = 300 to free, "a" may not go: b and c (400) are evicted.
    outcome = store.enqueue([entry("d", size=400)], 2.0, limits, sending_up_to=a)
    assert outcome.evicted == ["b", "c"]
    assert ids(store) == ["a", "d"]
    # 900 + 200 - 1000 = 100 to free, all of it being sent: full, and nothing is evicted.
    outcome = store.enqueue([entry("e", size=200)], 3.0, limits, sending_up_to=seqs(store)[-1])
    assert [s.status for s in outcome.accepted] == ["full"]
    assert outcome.evicted == [] and ids(store) == ["a", "d"]
    assert_totals(store)


# -- totals ----------------------------------------------------------------------------------


def test_totals_stay_exact_through_every_operation(path: str, store: Store) -> None:
    store.enqueue([entry(f"m{i}", size=200 + i) for i in range(10)], 1.0, ROOMY)
    assert_totals(store)
    s = seqs(store)
    store.remove(s[:2], [(s[2], "wamp.error.not_authorized")], 2.0)
    assert_totals(store)
    assert store.stats().messages == 7
    assert store.retry(None, 3.0) == 1
    assert_totals(store)
    assert store.stats().messages == 8
    store.expire(1.5, None)  # all but the retried one are older
    assert_totals(store)
    assert ids(store) == ["m2"]
    store.enqueue([entry("x", size=330)], 4.0, ROOMY)
    assert store.purge(dead=False, queued=True, msg_ids=["m2"]) == (1, 0)
    assert_totals(store)
    assert (store.stats().messages, store.stats().bytes) == (1, 330)

    # A second connection on the same file (``wampd outbox``) changes it: the triggers keep
    # the totals exact, and the first connection sees them.
    other = Store(path)
    other.enqueue([entry("y", size=400), entry("z", size=500)], 5.0, ROOMY)
    assert (store.stats().messages, store.stats().bytes) == (3, 1230)
    y = [r.seq for r in other.read(0, 10) if r.msg_id == "y"]
    other.remove(y, [], 6.0)
    other.purge(dead=False, queued=True, msg_ids=["x"])
    assert (store.stats().messages, store.stats().bytes) == (1, 500)
    assert_totals(store)
    # ...and the first's limits count what the second stored.
    outcome = store.enqueue([entry("w", size=510)], 7.0, Limits(max_bytes=1000))
    assert [a.status for a in outcome.accepted] == ["full"]
    other.close()


# -- dead letters ----------------------------------------------------------------------------


def test_remove_moves_dead_letters_with_their_reason(store: Store) -> None:
    store.enqueue([entry("a"), entry("b", size=400), entry("c")], 1.0, ROOMY)
    a, b, _ = seqs(store)
    outcome = store.remove([a], [(b, "wamp.error.not_authorized: no")], 5.0)
    # removed counts the published ones; dead_lettered the moved ones.
    assert outcome.removed == 1 and outcome.dead_lettered == 1
    assert ids(store) == ["c"]
    (dead,) = store.dead_letters(10)
    assert (dead.seq, dead.msg_id, dead.topic, dead.size) == (b, "b", "com.x", 400)
    assert (dead.enqueued, dead.died, dead.reason) == (1.0, 5.0, "wamp.error.not_authorized: no")
    assert outcome.stats.dead == 1 and outcome.stats.messages == 1
    # A seq already gone is neither removed nor dead-lettered twice.
    again = store.remove([a], [(b, "again")], 6.0)
    assert again.removed == 0 and again.dead_lettered == 0
    assert [d.reason for d in store.dead_letters(10)] == ["wamp.error.not_authorized: no"]


def test_retry_queues_dead_letters_again_at_the_end_with_new_seqs(store: Store) -> None:
    store.enqueue([entry("a"), entry("b"), entry("c"), entry("d")], 1.0, ROOMY)
    a, _, c, d = seqs(store)
    store.remove([], [(a, "x"), (c, "y")], 2.0)
    assert ids(store) == ["b", "d"]
    assert store.retry(["c"], 3.0) == 1
    assert ids(store) == ["b", "d", "c"]
    assert [x.msg_id for x in store.dead_letters(10)] == ["a"]
    assert store.retry(None, 4.0) == 1
    rows = store.read(0, 10)
    assert [r.msg_id for r in rows] == ["b", "d", "c", "a"]
    assert rows[2].seq > d and rows[3].seq > rows[2].seq
    assert rows[2].enqueued == 3.0 and rows[3].enqueued == 4.0
    assert rows[3].args == ["a"]  # the payload came back whole
    assert store.dead_letters(10) == []
    assert store.retry(None, 5.0) == 0


# -- expiry ----------------------------------------------------------------------------------


def test_expire_drops_only_messages_older_than_the_cutoff_oldest_first(store: Store) -> None:
    store.enqueue([entry("t10")], 10.0, ROOMY)
    store.enqueue([entry("t20"), entry("t20b")], 20.0, ROOMY)
    store.enqueue([entry("t30")], 30.0, ROOMY)
    outcome = store.expire(25.0, None, limit=2)
    assert outcome.expired == ["t10", "t20"]  # oldest first, at most limit
    assert ids(store) == ["t20b", "t30"]
    outcome = store.expire(25.0, None)
    assert outcome.expired == ["t20b"]
    outcome = store.expire(30.0, None)  # stored at the cutoff: not older
    assert outcome.expired == []
    assert ids(store) == ["t30"]
    assert outcome.stats.oldest == 30.0
    assert_totals(store)


def test_expire_leaves_what_the_sender_holds(store: Store) -> None:
    """Messages up to ``after`` are being sent: the sender drops those itself when they are
    too old, so an expiry never counts a message that is then published as well."""
    store.enqueue([entry("held1"), entry("held2"), entry("next")], 10.0, ROOMY)
    held = seqs(store)[1]
    outcome = store.expire(25.0, None, after=held)
    assert outcome.expired == ["next"]
    assert ids(store) == ["held1", "held2"]
    assert_totals(store)


def test_remove_counts_only_what_was_still_there(store: Store) -> None:
    store.enqueue([entry("p1"), entry("p2"), entry("x1"), entry("x2")], 1.0, ROOMY)
    p1, p2, x1, x2 = seqs(store)
    store.purge(dead=False, queued=True, msg_ids=["p2", "x2"])  # an operator was first
    outcome = store.remove([p1, p2], [], 5.0, [x1, x2])
    assert outcome.removed == 1  # p1: p2 was purged
    assert outcome.expired == ["x1"]
    assert ids(store) == [] and outcome.stats.messages == 0
    assert_totals(store)


# -- data_version ----------------------------------------------------------------------------


def test_data_version_moves_when_another_connection_writes(path: str, store: Store) -> None:
    other = Store(path)
    before = store.data_version()
    store.enqueue([entry("mine")], 1.0, ROOMY)
    assert store.data_version() == before  # its own writes do not move it
    other.enqueue([entry("theirs")], 2.0, ROOMY)
    after = store.data_version()
    assert after != before
    assert store.data_version() == after
    other.purge(dead=False, queued=True, msg_ids=None)
    assert store.data_version() != after
    other.close()


# -- corruption and unavailability ----------------------------------------------------------


def filled(path: str, n: int = 300) -> None:
    """A sound store of ``n`` messages, closed (its WAL checkpointed into the file)."""
    store = Store(path)
    store.enqueue([entry(f"m{i}", size=300) for i in range(n)], 1.0, ROOMY)
    store.close()
    assert not os.path.exists(path + "-wal")


def reopened_after_corruption(path: str, why_part: str) -> None:
    original = Path(path).read_bytes()
    told: list[tuple[str, str]] = []
    store = open_store(path, clock=lambda: 86400.0, on_corrupt=lambda m, w: told.append((m, w)))
    ((moved, why),) = told
    assert moved == f"{path}.corrupt-19700102T000000Z"
    assert why_part in why
    assert Path(moved).read_bytes() == original  # kept aside, unchanged
    assert store.stats().messages == 0 and store.read(0, 10) == []
    store.enqueue([entry("fresh")], 2.0, ROOMY)
    assert ids(store) == ["fresh"]
    store.close()


def test_open_store_moves_a_file_of_garbage_aside(path: str) -> None:
    Path(path).write_bytes(b"this is not a database\x00" * 200)
    with pytest.raises(StoreCorrupt):
        Store(path)
    assert Path(path).read_bytes() == b"this is not a database\x00" * 200
    reopened_after_corruption(path, "not a database")


def test_open_store_moves_a_database_with_damaged_pages_aside(path: str) -> None:
    filled(path)
    raw = bytearray(Path(path).read_bytes())
    page = 4096
    assert len(raw) > 12 * page
    raw[10 * page + 100 : 10 * page + 3000] = b"\x07" * 2900  # a leaf of `messages`
    Path(path).write_bytes(bytes(raw))
    reopened_after_corruption(path, "quick_check")


def test_open_store_moves_a_database_with_a_damaged_root_aside(path: str) -> None:
    filled(path)
    raw = bytearray(Path(path).read_bytes())
    raw[4096 : 3 * 4096] = b"\xff" * (2 * 4096)  # the roots of messages and sqlite_sequence
    Path(path).write_bytes(bytes(raw))
    reopened_after_corruption(path, "malformed")


def test_moving_aside_never_overwrites_an_earlier_one(path: str) -> None:
    for n in range(2):
        Path(path).write_bytes(f"garbage {n}".encode() * 100)
        open_store(path, clock=lambda: 0.0).close()
    stamp = f"{path}.corrupt-19700101T000000Z"
    assert Path(stamp).read_bytes() == b"garbage 0" * 100
    assert Path(stamp + ".2").read_bytes() == b"garbage 1" * 100


def test_a_sound_store_is_not_moved_aside(path: str) -> None:
    filled(path, 3)
    told: list[tuple[str, str]] = []
    store = open_store(path, on_corrupt=lambda m, w: told.append((m, w)))
    assert told == [] and store.stats().messages == 3
    assert [p.name for p in Path(path).parent.iterdir() if "corrupt" in p.name] == []


def test_corruption_found_later_is_store_corrupt(path: str, store: Store) -> None:
    """SQLite's *extended* corruption codes (here SQLITE_CORRUPT_SEQUENCE) are corruption
    too, not a mere unavailability."""
    store.enqueue([entry("a")], 1.0, ROOMY)
    store._db.execute("PRAGMA writable_schema = ON")
    store._db.execute(
        "UPDATE sqlite_master SET sql = 'CREATE TABLE sqlite_sequence(name)'"
        " WHERE name = 'sqlite_sequence'"
    )
    store.close()
    damaged = Store(path)
    with pytest.raises(StoreCorrupt, match="malformed"):
        damaged.enqueue([entry("b")], 2.0, ROOMY)
    damaged.close()


def test_opening_without_create_writes_nothing_and_needs_a_wampd_store(path: str) -> None:
    with pytest.raises(StoreUnavailable, match="unable to open"):
        Store(path, create=False)
    assert not os.path.exists(path)  # not created
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE t (x)")
    plain.commit()
    plain.close()
    with pytest.raises(StoreUnavailable, match="not a wampd outbox store"):
        Store(path, create=False)
    os.remove(path)
    filled(path, 2)
    store = Store(path, create=False)
    assert ids(store) == ["m0", "m1"]
    store.close()


def test_a_store_of_a_newer_schema_is_refused_and_left_as_it_is(path: str) -> None:
    filled(path, 2)
    plain = sqlite3.connect(path)
    plain.execute("PRAGMA user_version = 99")
    plain.close()
    original = Path(path).read_bytes()
    told: list[tuple[str, str]] = []

    def newer(make: Callable[[], Store]) -> None:
        with pytest.raises(StoreUnavailable, match="version 99, made by a newer wampd") as info:
            make()
        assert not isinstance(info.value, StoreCorrupt)

    newer(lambda: Store(path, create=False))
    newer(lambda: open_store(path, on_corrupt=lambda m, w: told.append((m, w))))
    assert told == [] and Path(path).read_bytes() == original


def test_seq_floor_makes_new_seqs_larger(path: str) -> None:
    store = Store(path, seq_floor=500)
    store.enqueue([entry("a"), entry("b")], 1.0, ROOMY)
    assert seqs(store) == [501, 502]
    store.close()
    store = Store(path, seq_floor=10)  # never lowers it
    store.enqueue([entry("c")], 2.0, ROOMY)
    assert seqs(store)[-1] == 503
    store.close()


def test_an_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    parent = tmp_path / "a-file"
    parent.write_text("not a folder")
    told: list[tuple[str, str]] = []
    with pytest.raises(StoreUnavailable) as info:
        open_store(str(parent / "o.db"), on_corrupt=lambda m, w: told.append((m, w)))
    assert not isinstance(info.value, StoreCorrupt)
    assert "unable to open" in str(info.value)
    assert told == [] and parent.read_text() == "not a folder"


def test_a_full_disk_is_store_unavailable_and_rolls_back(store: Store) -> None:
    store.enqueue([entry("before", size=100)], 1.0, ROOMY)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    batch = [entry("small", size=500, key="k")] + [entry(f"big{i}", size=3000) for i in range(5)]
    with pytest.raises(StoreUnavailable, match="full") as info:
        store.enqueue(batch, 2.0, ROOMY)
    assert not isinstance(info.value, StoreCorrupt)
    assert not store._db.in_transaction
    # Nothing of the batch stayed: not its first message, not its key, not in the totals.
    assert ids(store) == ["before"]
    assert_totals(store)
    assert store.stats().messages == 1
    store._db.execute(f"PRAGMA max_page_count = {pages + 100}")
    outcome = store.enqueue(batch, 3.0, ROOMY)
    assert [a.status for a in outcome.accepted] == ["queued"] * 6  # the key was not kept
    assert_totals(store)


def test_a_full_disk_on_remove_keeps_the_messages(store: Store) -> None:
    store.enqueue([entry(f"m{i}", size=2000) for i in range(4)], 1.0, ROOMY)
    s = seqs(store)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreUnavailable):
        store.remove([s[0]], [(seq, "x" * 5000) for seq in s[1:]], 2.0)
    assert ids(store) == ["m0", "m1", "m2", "m3"] and store.dead_letters(10) == []
    assert_totals(store)


def test_sqlite_errors_are_not_leaked(store: Store) -> None:
    store.close()
    with pytest.raises(StoreUnavailable):
        store.enqueue([entry("a")], 1.0, ROOMY)
    with pytest.raises(StoreUnavailable):
        store.read(0, 1)
    assert not issubclass(StoreUnavailable, sqlite3.Error)
