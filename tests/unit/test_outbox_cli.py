"""``wampd outbox``, run in-process against a real store in ``tmp_path``."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wampd import outbox_cli
from wampd.cli import run_cli
from wampd.store import Entry, Limits, Store, payload

#: The wall clock as the command sees it (``outbox_cli._now``).
NOW = 1_000_000.0

CONFIG = """
[router]
url = "ws://127.0.0.1:8080/ws"
realm = "realm1"

[[component]]
name = "app"
entry = "no_such_module_anywhere:App"  # never imported by wampd outbox

[outbox]
path = "{path}"
"""


@dataclass
class Result:
    status: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@dataclass
class Outbox:
    """A configuration file whose ``[outbox] path`` is ``store``, and the way to run
    ``wampd outbox`` on it."""

    config: str
    store: str
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str, environ: dict[str, str] | None = None) -> Result:
        self.capsys.readouterr()
        given = ["--config", self.config] if environ is None else []
        status = run_cli(["outbox", *argv, *given], environ or {})
        captured = self.capsys.readouterr()
        return Result(status, captured.out, captured.err)

    def usage_error(self, *argv: str) -> str:
        """Run a bad command line: exit status 2; what it said on stderr."""
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            run_cli(["outbox", *argv, "--config", self.config], {})
        assert info.value.code == 2
        return self.capsys.readouterr().err

    def open(self) -> Store:
        return Store(self.store)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_cli, "_now", lambda: NOW)


@pytest.fixture
def outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Outbox:
    config = tmp_path / "wampd.toml"
    config.write_text(CONFIG.format(path="outbox.db"))  # relative: to the config's folder
    return Outbox(str(config), str(tmp_path / "outbox.db"), capsys)


def entry(msg_id: str, topic: str = "com.example.reading") -> Entry:
    return Entry(msg_id, topic, payload([msg_id], {"unit": "C"}, {}))


@pytest.fixture
def filled(outbox: Outbox) -> Iterator[Outbox]:
    """Five messages stored at NOW - 100 (m1 .. m5, seq 1 .. 5), then m2 and m4 dead
    letters at NOW - 10: m1, m3, m5 queued."""
    store = outbox.open()
    store.enqueue([entry(f"m{i}") for i in range(1, 6)], NOW - 100, Limits())
    store.remove([], [(2, "wamp.error.not_authorized"), (4, "wamp.error.invalid_uri")], NOW - 10)
    store.close()
    yield outbox


def state(outbox: Outbox) -> tuple[list[str], list[str]]:
    """The msg_ids queued and dead, oldest first."""
    store = outbox.open()
    try:
        return (
            [row.msg_id for row in store.queued(100)],
            [dead.msg_id for dead in store.dead_letters(100)],
        )
    finally:
        store.close()


SIZE = entry("m1").size


# -- status ------------------------------------------------------------------------------------


def test_status_says_what_the_store_holds(filled: Outbox) -> None:
    db, wal = os.path.getsize(filled.store), 0
    if os.path.exists(filled.store + "-wal"):
        wal = os.path.getsize(filled.store + "-wal")
    result = filled("status")
    assert result.status == 0, result.err
    fields = dict(line.split(None, 1) for line in _relabelled(result.lines()))
    assert fields == {
        "path": filled.store,
        "messages": "3",
        "bytes": str(3 * SIZE),
        "oldest_age_s": "100.0",
        "dead_letters": "2",
        "file_bytes": f"{db + wal} (db {db}, wal {wal})",
    }
    # The values are aligned in one column.
    assert (
        len(
            {line.index(value) for line, value in zip(result.lines(), fields.values(), strict=True)}
        )
        == 1
    )


def _relabelled(lines: list[str]) -> list[str]:
    """Status lines with their two-word labels joined by ``_``, to split them."""
    labels = ("oldest age s", "dead letters", "file bytes")
    out = []
    for line in lines:
        label = next((label for label in labels if line.startswith(label)), "")
        out.append(label.replace(" ", "_") + line[len(label) :])
    return out


def test_status_json(filled: Outbox) -> None:
    result = filled("status", "--json")
    assert result.status == 0
    (document,) = result.records()
    assert document["path"] == filled.store
    assert (document["messages"], document["bytes"], document["dead_letters"]) == (3, 3 * SIZE, 2)
    assert (document["oldest"], document["oldest_age_seconds"]) == (NOW - 100, 100.0)
    assert document["db_bytes"] == os.path.getsize(filled.store)
    assert document["file_bytes"] == document["db_bytes"] + document["wal_bytes"]


def test_status_of_an_empty_store(outbox: Outbox) -> None:
    outbox.open().close()
    result = outbox("status", "--json")
    (document,) = result.records()
    assert (document["messages"], document["oldest"], document["oldest_age_seconds"]) == (
        0,
        None,
        None,
    )
    assert "oldest age s  -" in outbox("status").out


# -- list --------------------------------------------------------------------------------------


def test_list_shows_the_queued_messages_oldest_first(filled: Outbox) -> None:
    result = filled("list")
    assert result.status == 0
    header, *rows = result.lines()
    assert header.split() == ["SEQ", "MSG_ID", "TOPIC", "AGE_S", "SIZE"]
    assert [row.split() for row in rows] == [
        [str(seq), f"m{seq}", "com.example.reading", "100.0", str(SIZE)] for seq in (1, 3, 5)
    ]
    # Columns line up under their headers.
    assert {row.index("com.example") for row in rows} == {header.index("TOPIC")}


def test_list_limit_says_how_many_more_there_are(filled: Outbox) -> None:
    result = filled("list", "--limit", "2")
    assert [line.split()[1] for line in result.lines()[1:3]] == ["m1", "m3"]
    assert result.lines()[3] == "(2 of 3 queued messages shown; --limit N for more)"
    assert len(result.lines()) == 4


def test_list_json_is_one_object_a_line(filled: Outbox) -> None:
    result = filled("list", "--json", "--limit", "2")
    assert result.records() == [
        {
            "seq": seq,
            "msg_id": f"m{seq}",
            "topic": "com.example.reading",
            "enqueued": NOW - 100,
            "age_seconds": 100.0,
            "size": SIZE,
        }
        for seq in (1, 3)
    ]


def test_list_dead_shows_the_dead_letters_and_why(filled: Outbox) -> None:
    result = filled("list", "--dead")
    assert result.status == 0
    header, *rows = result.lines()
    assert header.split() == ["SEQ", "MSG_ID", "TOPIC", "DIED", "REASON"]
    died = "1970-01-12T13:46:30Z"  # NOW - 10, in UTC
    assert [row.split() for row in rows] == [
        ["2", "m2", "com.example.reading", died, "wamp.error.not_authorized"],
        ["4", "m4", "com.example.reading", died, "wamp.error.invalid_uri"],
    ]
    records = filled("list", "--dead", "--json").records()
    assert [(r["seq"], r["reason"], r["died"]) for r in records] == [
        (2, "wamp.error.not_authorized", NOW - 10),
        (4, "wamp.error.invalid_uri", NOW - 10),
    ]


def test_list_keeps_one_row_a_line_whatever_the_text(outbox: Outbox) -> None:
    """A reason (the router's message) or a msg_id with a newline stays on its row."""
    store = outbox.open()
    store.enqueue([entry("a\nb")], NOW, Limits())
    store.remove([], [(1, "wamp.error.runtime_error: bad\nthing")], NOW)
    store.close()
    lines = outbox("list", "--dead").lines()
    assert len(lines) == 2
    assert lines[1].split() == [
        "1",
        "a\\nb",
        "com.example.reading",
        "1970-01-12T13:46:40Z",
        "wamp.error.runtime_error:",
        "bad\\nthing",
    ]
    # JSON keeps the text as it is.
    (record,) = outbox("list", "--dead", "--json").records()
    assert (record["msg_id"], record["reason"]) == ("a\nb", "wamp.error.runtime_error: bad\nthing")


def test_list_of_nothing(outbox: Outbox) -> None:
    outbox.open().close()
    assert outbox("list").lines() == ["no queued messages"]
    assert outbox("list", "--dead").lines() == ["no dead letters"]
    assert outbox("list", "--json").out == ""


def test_list_limit_must_be_positive(outbox: Outbox) -> None:
    assert "--limit: must be at least 1" in outbox.usage_error("list", "--limit", "0")
    assert "--limit: must be a whole number" in outbox.usage_error("list", "--limit", "all")


# -- retry -------------------------------------------------------------------------------------


def test_retry_all_queues_every_dead_letter_again_after_the_queue(filled: Outbox) -> None:
    result = filled("retry", "--all")
    assert (result.status, result.out) == (0, "queued 2 dead letters again\n")
    assert state(filled) == (["m1", "m3", "m5", "m2", "m4"], [])
    records = filled("list", "--json").records()
    assert [r["seq"] for r in records] == [1, 3, 5, 6, 7]  # new seqs, after the queue
    assert [r["age_seconds"] for r in records][-2:] == [0.0, 0.0]  # stored again now


def test_retry_msg_ids(filled: Outbox) -> None:
    result = filled("retry", "--msg-id", "m4", "--msg-id", "m4", "--msg-id", "nope")
    assert (result.status, result.out) == (0, "queued 1 dead letter again\n")
    assert state(filled) == (["m1", "m3", "m5", "m4"], ["m2"])


def test_retry_needs_all_or_msg_ids_but_not_both(filled: Outbox) -> None:
    err = filled.usage_error("retry")
    assert "one of the arguments --all --msg-id is required" in err
    assert "usage: wampd outbox retry" in err
    err = filled.usage_error("retry", "--all", "--msg-id", "m2")
    assert "--msg-id: not allowed with argument --all" in err
    assert state(filled) == (["m1", "m3", "m5"], ["m2", "m4"])


# -- purge -------------------------------------------------------------------------------------


def test_purge_dead(filled: Outbox) -> None:
    result = filled("purge", "--dead")
    assert (result.status, result.out) == (0, "deleted 0 queued messages and 2 dead letters\n")
    assert state(filled) == (["m1", "m3", "m5"], [])


def test_purge_queued(filled: Outbox) -> None:
    result = filled("purge", "--queued")
    assert result.out == "deleted 3 queued messages and 0 dead letters\n"
    assert state(filled) == ([], ["m2", "m4"])
    assert filled("status", "--json").records()[0]["bytes"] == 0


def test_purge_msg_ids_from_both_tables(filled: Outbox) -> None:
    result = filled("purge", "--msg-id", "m2", "--msg-id", "m3")
    assert result.out == "deleted 1 queued message and 1 dead letter\n"
    assert state(filled) == (["m1", "m5"], ["m4"])


def test_purge_msg_ids_from_one_table(filled: Outbox) -> None:
    """--msg-id with --dead (or --queued) deletes those msg_ids from that table only."""
    result = filled("purge", "--dead", "--msg-id", "m1", "--msg-id", "m4")
    assert result.out == "deleted 0 queued messages and 1 dead letter\n"
    assert state(filled) == (["m1", "m3", "m5"], ["m2"])


def test_purge_everything(filled: Outbox) -> None:
    result = filled("purge", "--dead", "--queued")
    assert result.out == "deleted 3 queued messages and 2 dead letters\n"
    assert state(filled) == ([], [])


def test_purge_needs_something_to_delete(filled: Outbox) -> None:
    err = filled.usage_error("purge")
    assert "purge needs at least one of --dead, --queued, --msg-id ID" in err
    assert "usage: wampd outbox purge" in err
    assert state(filled) == (["m1", "m3", "m5"], ["m2", "m4"])


def test_an_action_is_required(outbox: Outbox) -> None:
    assert "required: ACTION" in outbox.usage_error()
    assert "invalid choice: 'frobnicate'" in outbox.usage_error("frobnicate")


# -- beside a running daemon ---------------------------------------------------------------------


def test_works_while_the_daemon_holds_the_store_open(filled: Outbox) -> None:
    """A live daemon's connection, in the middle of a read transaction, does not stop the
    command; the daemon sees the change once its transaction ends (data_version moves:
    that is how the outbox notices)."""
    daemon = filled.open()
    version = daemon.data_version()
    daemon.enqueue([entry("m6")], NOW - 1, Limits())  # the daemon has written: a WAL
    db = daemon._db
    db.execute("BEGIN")
    assert db.execute("SELECT count(*) FROM dead").fetchone()[0] == 2  # the snapshot
    try:
        wal = os.path.getsize(filled.store + "-wal")
        assert wal > 0
        document = filled("status", "--json").records()[0]
        assert (document["messages"], document["dead_letters"]) == (4, 2)
        assert (document["wal_bytes"], document["file_bytes"]) == (
            wal,
            os.path.getsize(filled.store) + wal,
        )
        assert [r["msg_id"] for r in filled("list", "--json").records()] == [
            "m1",
            "m3",
            "m5",
            "m6",
        ]
        assert filled("retry", "--msg-id", "m2").status == 0
        assert filled("purge", "--msg-id", "m6").out == (
            "deleted 1 queued message and 0 dead letters\n"
        )
        # The daemon's snapshot is untouched until its transaction ends...
        assert db.execute("SELECT count(*) FROM dead").fetchone()[0] == 2
    finally:
        db.execute("COMMIT")
    # ...then it sees what the command did.
    assert daemon.data_version() != version
    assert daemon.stats().dead == 1
    assert [row.msg_id for row in daemon.read(0, 10)] == ["m1", "m3", "m5", "m2"]
    daemon.close()


# -- what is wrong -------------------------------------------------------------------------------


def test_a_missing_store_is_reported_not_created(outbox: Outbox) -> None:
    for argv in (["status"], ["list"], ["retry", "--all"], ["purge", "--dead"]):
        result = outbox(*argv)
        assert result.status == 1
        assert result.out == ""
        assert f"wampd outbox: no store at {outbox.store}" in result.err
    for suffix in ("", "-wal", "-shm"):
        assert not os.path.exists(outbox.store + suffix)


def test_a_corrupt_store_is_reported_and_left_alone(outbox: Outbox) -> None:
    garbage = b"this is not a database, " * 100
    Path(outbox.store).write_bytes(garbage)
    for argv in (["status"], ["list", "--dead"], ["retry", "--all"], ["purge", "--queued"]):
        result = outbox(*argv)
        assert result.status == 1
        assert f"wampd outbox: the store is corrupt: {outbox.store}: " in result.err
        assert "file is not a database" in result.err
    assert Path(outbox.store).read_bytes() == garbage
    assert sorted(os.listdir(Path(outbox.store).parent)) == ["outbox.db", "wampd.toml"]


def test_another_database_or_a_newer_store_is_reported_and_left_alone(outbox: Outbox) -> None:
    """The command writes no schema: a file that is not wampd's store (or is a newer
    wampd's) is refused, byte for byte as it was."""
    plain = sqlite3.connect(outbox.store)
    plain.execute("CREATE TABLE notes (x)")
    plain.commit()
    plain.close()
    for expected, version in (("not a wampd outbox store", 0), ("made by a newer wampd", 7)):
        plain = sqlite3.connect(outbox.store)
        plain.execute(f"PRAGMA user_version = {version}")
        plain.close()
        before = Path(outbox.store).read_bytes()
        for argv in (["status"], ["list"], ["retry", "--all"], ["purge", "--queued"]):
            result = outbox(*argv)
            assert result.status == 1, argv
            assert expected in result.err
        assert Path(outbox.store).read_bytes() == before


def test_the_outbox_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "wampd.toml"
    config.write_text(CONFIG.replace('path = "{path}"', ""))
    assert run_cli(["outbox", "status", "--config", str(config)], {}) == 2
    assert capsys.readouterr().err == (
        f"wampd outbox: [outbox] has no path in {config}: the outbox is off\n"
    )
    config.write_text(CONFIG.replace('[outbox]\npath = "{path}"', ""))
    assert run_cli(["outbox", "list", "--config", str(config)], {}) == 2
    assert "the outbox is off" in capsys.readouterr().err


def test_a_bad_config_says_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "wampd.toml"
    config.write_text(
        CONFIG.format(path="o.db").replace('realm = "realm1"', 'realm = "realm1"\nbogus = 1')
        + "max_messages = 0\n"
    )
    assert run_cli(["outbox", "status", "--config", str(config)], {}) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert all(line.startswith("wampd: config error: ") for line in err)
    assert any("router.bogus" in line for line in err)
    assert any("outbox.max_messages" in line for line in err)
    assert not (tmp_path / "o.db").exists()


def test_no_config_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["outbox", "status"], {}) == 2
    assert "WAMPD_CONFIG" in capsys.readouterr().err


def test_config_from_the_environment_or_before_the_action(filled: Outbox) -> None:
    result = filled("status", "--json", environ={"WAMPD_CONFIG": filled.config})
    assert (result.status, result.records()[0]["messages"]) == (0, 3)
    filled.capsys.readouterr()
    assert run_cli(["outbox", "-c", filled.config, "list", "--dead", "--json"], {}) == 0
    assert len(filled.capsys.readouterr().out.splitlines()) == 2
