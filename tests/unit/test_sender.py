"""The outbox's sender (wampd/sender.py) over a real Outbox and Store (on ``tmp_path``), with
a fake session whose publications the test acknowledges or fails, and a Clock.

Store calls run at once (``run`` below), or -- where the order of what is in flight
matters -- when the test says (:class:`Manual`). No reactor runs, nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError, ProtocolError
from autobahn.wamp.types import PublishOptions
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from wampd.config import OutboxConfig
from wampd.errors import OutboxUnavailable
from wampd.outbox import Outbox
from wampd.sender import MAX_LOSSES, Sender, SenderState
from wampd.store import Entry, Limits, Row, Store, StoreCorrupt, StoreUnavailable, payload

TOPIC = "com.example.reading"


@dataclass
class Publication:
    topic: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: PublishOptions
    deferred: Deferred[Any] = field(default_factory=Deferred)

    @property
    def msg_id(self) -> str:
        value = self.options.transaction_hash
        assert isinstance(value, str)
        return value

    def ack(self) -> None:
        self.deferred.callback(None)

    def fail(self, error: str, *args: Any) -> None:
        self.deferred.errback(Failure(ApplicationError(error, *args)))


class FakeSession:
    """Records every publish; each returns a Deferred the test fires. ``raises`` maps a
    msg_id to an exception ``publish`` raises at once (as autobahn's checks do)."""

    def __init__(self) -> None:
        self.published: list[Publication] = []
        self.raises: dict[str, Exception] = {}

    def is_attached(self) -> bool:
        return True

    def publish(
        self, topic: str, *args: Any, options: PublishOptions, **kwargs: Any
    ) -> Deferred[Any]:
        exc = self.raises.get(str(options.transaction_hash))
        self.published.append(Publication(topic, args, kwargs, options))
        if exc is not None:
            raise exc
        return self.published[-1].deferred

    @property
    def ids(self) -> list[str]:
        return [p.msg_id for p in self.published]

    def pending(self) -> list[Publication]:
        return [p for p in self.published if not p.deferred.called]

    def one(self, msg_id: str) -> Publication:
        (found,) = [p for p in self.pending() if p.msg_id == msg_id]
        return found


class Manual:
    """A ``run`` whose calls wait until the test runs them, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((fn, args, d))
        return d

    @property
    def names(self) -> list[str]:
        return [fn.__name__ for fn, _, _ in self.calls]

    def step(self) -> str:
        fn, args, d = self.calls.pop(0)
        maybeDeferred(fn, *args).chainDeferred(d)
        return str(fn.__name__)

    def drain(self) -> None:
        while self.calls:
            self.step()


class Removals(Outbox):
    """The Outbox, recording every read (with whether the sender had a session to send
    over) and every removal the sender asks for."""

    reads: list[tuple[int, int, bool]]
    removals: list[tuple[list[int], list[int], list[tuple[int, str]]]]

    def read(self, after: int, limit: int) -> Deferred[list[Row]]:
        self.reads.append((after, limit, self.sender._session is not None))
        return super().read(after, limit)

    def remove(
        self, published: Sequence[int], expired: Sequence[int], dead: Sequence[tuple[int, str]]
    ) -> Deferred[Any]:
        self.removals.append((list(published), list(expired), list(dead)))
        return super().remove(published, expired, dead)


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def say(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return say

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


@dataclass
class World:
    outbox: Removals
    clock: Clock
    store: Store
    log: Log
    run: Manual | None

    @property
    def sender(self) -> Sender:
        return self.outbox.sender

    def state(self) -> SenderState:
        return self.outbox.sender.state

    def enqueue(self, *msg_ids: str, **options: Any) -> None:
        """Commit messages through the outbox (which wakes the sender)."""
        for msg_id in msg_ids:
            d = self.outbox.publish(TOPIC, msg_id, options=options, msg_id=msg_id, n=msg_id)
            if self.run is not None:
                self.run.drain()
            assert d.called

    def stored(self) -> list[str]:
        return [row.msg_id for row in self.store.read(0, 1000)]

    def dead(self) -> dict[str, str]:
        return {d.msg_id: d.reason for d in self.store.dead_letters(1000)}

    def joined(self) -> FakeSession:
        session = FakeSession()
        self.sender.joined(session)
        return session


def world(tmp_path: Path, *, manual: bool = False, window: int = 100, ttl: float = 0.0) -> World:
    clock = Clock()
    path = str(tmp_path / "o.db")
    store = Store(path)  # the test's own connection, to look
    config = OutboxConfig(path=path, max_inflight=window, ttl=ttl)
    log = Log()
    run = Manual() if manual else None
    outbox = Removals(
        config,
        clock=clock,
        run=run if run is not None else maybeDeferred,
        open_store=lambda: Store(path),
        logger=log,
        rand=lambda: 0.0,
    )
    outbox.removals, outbox.reads = [], []
    outbox.start()
    if run is not None:
        run.drain()
    assert outbox.store is not None
    return World(outbox, clock, store, log, run)


def first_seen(ids: list[str]) -> list[str]:
    seen: list[str] = []
    for msg_id in ids:
        if msg_id not in seen:
            seen.append(msg_id)
    return seen


# -- order, acknowledgement, removal -------------------------------------------------------


def test_publishes_in_seq_order_acknowledged_with_the_msg_id_as_transaction_hash(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    w.enqueue("a", "b", exclude_me=False, retain=True)
    w.enqueue("c")
    session = w.joined()
    assert session.ids == ["a", "b", "c"]
    a = session.published[0]
    assert (a.topic, a.args, a.kwargs) == (TOPIC, ("a",), {"n": "a"})
    assert a.options.acknowledge is True and a.options.transaction_hash == "a"
    assert a.options.exclude_me is False and a.options.retain is True
    c = session.published[2]
    assert c.options.acknowledge is True and c.options.exclude_me is None
    assert w.state() is SenderState.SENDING and w.sender.unacknowledged == 3


def test_a_message_is_removed_only_once_acknowledged(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("a", "b", "c")
    session = w.joined()
    assert w.stored() == ["a", "b", "c"]  # sent: not removed
    session.one("b").ack()
    assert w.stored() == ["a", "c"]
    session.one("a").ack()
    session.one("c").ack()
    assert w.stored() == [] and w.sender.unacknowledged == 0
    assert w.outbox.stats.messages == 0
    assert [p for p, _, _ in w.outbox.removals] == [[2], [1], [3]]
    assert session.ids == ["a", "b", "c"]  # nothing was sent twice


def test_at_most_window_messages_are_unacknowledged_or_unremoved(tmp_path: Path) -> None:
    w = world(tmp_path, manual=True, window=3)
    assert w.run is not None
    w.enqueue("m1", "m2", "m3", "m4", "m5")
    session = w.joined()
    w.run.drain()
    assert session.ids == ["m1", "m2", "m3"]
    session.one("m2").ack()
    # Acknowledged, its removal not yet committed: it still counts.
    assert w.run.names == ["remove"]
    assert session.ids == ["m1", "m2", "m3"]
    w.run.drain()  # the removal, then a read of one more
    assert session.ids == ["m1", "m2", "m3", "m4"]
    assert w.stored() == ["m1", "m3", "m4", "m5"]
    session.one("m1").ack()
    session.one("m3").ack()
    w.run.drain()
    assert session.ids == ["m1", "m2", "m3", "m4", "m5"]
    assert len(session.pending()) == 2


# -- sessions coming and going -------------------------------------------------------------


def test_paused_until_joined_then_no_gap_and_no_reorder(tmp_path: Path) -> None:
    w = world(tmp_path, window=2)
    w.enqueue("a", "b", "c")
    assert w.state() is SenderState.PAUSED
    w.clock.advance(5)  # the outbox's upkeep runs; still nothing to send on
    assert w.stored() == ["a", "b", "c"]
    s1 = w.joined()
    assert s1.ids == ["a", "b"]
    s1.one("a").ack()
    assert s1.ids == ["a", "b", "c"]
    w.sender.left(s1)
    assert w.state() is SenderState.PAUSED
    w.enqueue("d", "e")  # while paused: stored, not sent
    assert s1.ids == ["a", "b", "c"]
    s2 = w.joined()
    assert s2.ids == ["b", "c"]
    for msg_id in ("b", "c", "d"):
        s2.one(msg_id).ack()
    s2.one("e").ack()
    assert s2.ids == ["b", "c", "d", "e"]
    assert first_seen(s1.ids + s2.ids) == ["a", "b", "c", "d", "e"]
    assert w.stored() == []


def test_left_for_another_session_is_ignored(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("a")
    session = w.joined()
    w.sender.left(FakeSession())
    assert w.state() is SenderState.SENDING and w.sender.unacknowledged == 1
    session.one("a").ack()
    assert w.stored() == []


def test_a_lost_session_resends_from_the_first_unacknowledged_and_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2", "m3", "m4", "m5")
    s1 = w.joined()
    s1.one("m1").ack()
    s1.one("m3").ack()
    w.sender.left(s1)
    # The old session's answers, late, change nothing.
    s1.one("m2").fail("wamp.error.canceled")
    s2 = w.joined()
    assert s2.ids == ["m2", "m4", "m5"]
    s1.one("m4").ack()  # acknowledged on the old session after all: the router has it
    assert w.stored() == ["m2", "m5"]
    s2.one("m2").ack()
    s2.one("m4").ack()  # its second acknowledgement: nothing more to do
    s2.one("m5").ack()
    assert w.stored() == []
    assert w.outbox.removals[-1] == ([5], [], [])
    assert all(not dead for _, _, dead in w.outbox.removals)


def test_an_acknowledged_message_whose_removal_is_pending_is_not_resent(tmp_path: Path) -> None:
    w = world(tmp_path, manual=True)
    assert w.run is not None
    w.enqueue("m1", "m2", "m3")
    s1 = w.joined()
    w.run.drain()
    s1.one("m2").ack()
    assert w.run.names == ["remove"]  # not committed yet
    w.sender.left(s1)
    s2 = w.joined()
    w.run.drain()
    assert s2.ids == ["m1", "m3"]
    assert w.stored() == ["m1", "m3"]


def test_one_read_at_a_time_across_a_lost_session(tmp_path: Path) -> None:
    """A read of the lost session's, answered after the new one's read was asked for,
    neither starts another read nor sends anything twice."""
    w = world(tmp_path, manual=True, window=2)
    assert w.run is not None
    w.enqueue("m1")
    s1 = w.joined()
    assert w.run.names == ["read"]
    w.sender.left(s1)
    s2 = w.joined()
    assert w.run.names == ["read", "read"]
    w.run.step()  # the lost session's read: ignored
    assert w.run.names == ["read"] and s1.ids == [] and s2.ids == []
    w.run.step()
    assert s2.ids == ["m1"]
    assert w.run.names == ["read"]
    w.outbox.publish(TOPIC, "m2", msg_id="m2")
    w.outbox.publish(TOPIC, "m3", msg_id="m3")
    w.run.drain()
    assert s2.ids == ["m1", "m2"]  # the window: 2
    s2.one("m1").ack()
    w.run.drain()
    assert s2.ids == ["m1", "m2", "m3"]


# -- failures --------------------------------------------------------------------------------


def test_a_transient_error_goes_back_and_resends_after_a_backoff(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2", "m3")
    session = w.joined()
    session.one("m1").ack()
    session.one("m2").fail("wamp.error.canceled", "the router is busy")
    assert w.state() is SenderState.BACKOFF
    (retry,) = w.log.named("outbox.retry")
    assert retry["msg_id"] == "m2" and retry["delay"] == 0.5  # equal jitter, draw 0
    assert "wamp.error.canceled: the router is busy" in retry["reason"]
    session.one("m3").ack()  # of the round gone back from: m3 is published all the same
    assert w.stored() == ["m2"]
    w.clock.advance(0.49)
    assert session.ids == ["m1", "m2", "m3"]
    w.clock.advance(0.01)
    assert w.state() is SenderState.SENDING
    assert session.ids == ["m1", "m2", "m3", "m2"]
    # Again: the delay grows.
    session.one("m2").fail("wamp.error.canceled")
    assert w.log.named("outbox.retry")[-1]["delay"] == 1.0
    w.clock.advance(0.99)
    assert session.ids == ["m1", "m2", "m3", "m2"]
    w.clock.advance(0.01)
    assert session.ids == ["m1", "m2", "m3", "m2", "m2"]
    session.one("m2").ack()
    assert w.stored() == [] and w.dead() == {}


def test_a_transient_error_resends_everything_after_it_in_order(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2", "m3")
    session = w.joined()
    session.one("m1").fail("wamp.error.canceled")
    w.clock.advance(0.5)
    assert session.ids == ["m1", "m2", "m3", "m1", "m2", "m3"]
    assert first_seen(session.ids) == ["m1", "m2", "m3"]


def test_left_during_a_backoff_waits_for_the_next_join(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1")
    s1 = w.joined()
    s1.one("m1").fail("wamp.error.canceled")
    w.sender.left(s1)
    w.clock.advance(10)
    assert s1.ids == ["m1"] and w.state() is SenderState.PAUSED
    s2 = w.joined()
    assert s2.ids == ["m1"]


@pytest.mark.parametrize("error", ["wamp.error.not_authorized", "wamp.error.invalid_uri"])
def test_a_permanent_error_makes_a_dead_letter_and_the_rest_continue(
    tmp_path: Path, error: str
) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2", "m3")
    session = w.joined()
    session.one("m2").fail(error, "no")
    assert w.dead() == {"m2": f"{error}: no"}
    assert w.stored() == ["m1", "m3"]
    assert w.state() is SenderState.SENDING
    session.one("m1").ack()
    session.one("m3").ack()
    assert w.stored() == []
    assert session.ids == ["m1", "m2", "m3"]  # m2 never again
    (dead,) = w.log.named("outbox.dead_letter")
    assert dead["msg_id"] == "m2"
    w.enqueue("m4")
    assert session.ids == ["m1", "m2", "m3", "m4"]


def test_publish_raising_at_once_makes_dead_letters_each_tried_once(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2", "m3", "m4", "m5")
    session = FakeSession()
    session.raises["m2"] = ProtocolError("invalid URI")
    session.raises["m3"] = TypeError("bad option")
    w.sender.joined(session)
    assert session.ids == ["m1", "m2", "m3", "m4", "m5"]  # each exactly once
    assert w.dead() == {"m2": "ProtocolError: invalid URI", "m3": "TypeError: bad option"}
    assert len(w.log.named("outbox.dead_letter")) == 2
    assert w.stored() == ["m1", "m4", "m5"]
    for msg_id in ("m1", "m4", "m5"):
        session.one(msg_id).ack()
    assert w.stored() == [] and w.sender.unacknowledged == 0


def test_the_ack_timeout_goes_back(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2")
    session = w.joined()
    session.one("m1").ack()
    w.clock.advance(29)  # the outbox's upkeep checks every second
    assert w.state() is SenderState.SENDING and session.ids == ["m1", "m2"]
    assert w.log.named("outbox.ack_timeout") == []
    w.clock.advance(1)
    assert w.state() is SenderState.BACKOFF
    (timeout,) = w.log.named("outbox.ack_timeout")
    assert timeout["msg_id"] == "m2" and "30 s" in timeout["reason"]
    w.clock.advance(0.5)
    assert session.ids == ["m1", "m2", "m2"]
    session.published[1].ack()  # the first one's acknowledgement, late: good too
    assert w.stored() == [] and w.sender.unacknowledged == 0


def test_ttl_drops_an_expired_message_unsent(tmp_path: Path) -> None:
    w = world(tmp_path, ttl=10.0)
    assert w.outbox.store is not None
    # Stored 11 s ago (written by the store directly, so the outbox's upkeep, which would
    # expire it too, is not what drops it).
    old = Entry("old", TOPIC, payload(["old"], {}, {}))
    w.outbox.store.enqueue([old], w.clock.seconds() - 11, Limits())
    w.enqueue("fresh")
    session = w.joined()
    assert session.ids == ["fresh"]
    assert w.stored() == ["fresh"]
    assert w.outbox.removals[0] == ([], [1], [])  # removed, as expired
    assert w.log.named("outbox.expired")[0]["messages"] == 1
    assert w.dead() == {}


def test_max_losses_with_the_same_head_unacknowledged_make_it_a_dead_letter(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    w.enqueue("poison", "next")
    sessions = []
    for _ in range(MAX_LOSSES):
        session = w.joined()
        sessions.append(session)
        assert session.ids == ["poison", "next"]
        w.sender.left(session)
    assert w.state() is SenderState.PAUSED
    assert list(w.dead()) == ["poison"]
    assert "wampd.error.undeliverable" in w.dead()["poison"]
    assert w.stored() == ["next"]
    assert all(s.ids == ["poison", "next"] for s in sessions)
    # Two reads a session (the messages, then nothing more), none without a session.
    assert len(w.outbox.reads) == 2 * MAX_LOSSES
    assert all(with_session for _, _, with_session in w.outbox.reads)
    last = w.joined()
    assert last.ids == ["next"]
    last.one("next").ack()
    assert w.stored() == []


def test_an_acknowledged_head_resets_the_losses(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("m1", "m2")
    for _ in range(MAX_LOSSES - 1):
        w.sender.left(w.joined())
    session = w.joined()
    session.one("m1").ack()  # m1 got through: m2 heads now, lost once so far
    w.sender.left(session)
    for _ in range(MAX_LOSSES - 2):
        w.sender.left(w.joined())
    assert w.dead() == {}
    assert w.stored() == ["m2"]
    w.sender.left(w.joined())
    assert list(w.dead()) == ["m2"]


# -- stopping and waking ---------------------------------------------------------------------


def test_stop_fires_only_once_nothing_is_in_flight(tmp_path: Path) -> None:
    w = world(tmp_path, manual=True)
    assert w.run is not None
    w.enqueue("m1", "m2")
    session = w.joined()
    w.run.drain()
    stopped = w.sender.stop()
    assert w.state() is SenderState.STOPPED
    assert not stopped.called
    session.one("m1").ack()
    w.run.drain()
    assert not stopped.called
    session.one("m2").ack()
    assert not stopped.called  # acknowledged, its removal not committed yet
    w.run.drain()
    assert stopped.called and w.stored() == []
    w.enqueue("m3")
    w.sender.wake()
    w.run.drain()
    assert session.ids == ["m1", "m2"]  # stopped: nothing more is sent


def test_stop_when_idle_fires_at_once_and_a_lost_session_ends_the_wait(tmp_path: Path) -> None:
    w = world(tmp_path)
    assert w.sender.stop().called
    (tmp_path / "other").mkdir()
    w2 = world(tmp_path / "other")
    w2.enqueue("m1")
    session = w2.joined()
    stopped = w2.sender.stop()
    assert not stopped.called
    w2.sender.left(session)  # it will be sent again after a restart
    assert stopped.called and w2.stored() == ["m1"]


def test_wake_sends_what_was_stored_since(tmp_path: Path) -> None:
    w = world(tmp_path)
    session = w.joined()
    assert session.ids == []  # caught up
    assert w.outbox.store is not None
    # Stored behind the outbox's back: nothing is sent until the sender is woken.
    w.outbox.store.enqueue([Entry("m1", TOPIC, payload(["m1"], {}, {}))], 0.0, Limits())
    assert session.ids == []
    w.sender.wake()
    assert session.ids == ["m1"]
    w.enqueue("m2")  # through the outbox, whose commit wakes it
    assert session.ids == ["m1", "m2"]


# -- the outbox around the sender: upkeep, a store found corrupt, stopping --------------------


def test_the_upkeep_never_expires_a_message_being_sent(tmp_path: Path) -> None:
    """ttl: what the sender holds is its to drop (or publish); the upkeep expires only
    what it has not read, so no message is counted both expired and published."""
    w = world(tmp_path, window=2, ttl=10.0)
    w.enqueue("a", "b", "c")
    session = w.joined()
    assert session.ids == ["a", "b"]  # c waits: the window is full
    w.clock.advance(11)  # the upkeep runs: all three are older than the ttl
    assert [e["first"] for e in w.log.named("outbox.expired")] == ["c"]
    assert w.stored() == ["a", "b"]
    session.one("a").ack()
    session.one("b").ack()
    assert w.stored() == []
    assert [p for p, _, _ in w.outbox.removals] == [[1], [2]]
    assert [x for _, x, _ in w.outbox.removals] == [[], []]


def test_a_store_found_corrupt_while_running_is_moved_aside_and_replaced(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    w.enqueue("a")
    session = w.joined()
    old = w.outbox.store
    assert old is not None

    def corrupt(*args: Any) -> Any:
        raise StoreCorrupt(f"{old.path}: database disk image is malformed")

    old.enqueue = corrupt  # type: ignore[method-assign,assignment]
    refused = w.outbox.publish(TOPIC, "b")
    failures: list[Failure] = []
    refused.addErrback(failures.append)
    assert failures and failures[0].check(OutboxUnavailable)
    (told,) = w.log.named("outbox.store_corrupt")
    assert "malformed" in told["error"] and told["moved_to"].startswith(old.path + ".corrupt-")
    assert w.outbox.store is not None and w.outbox.store is not old
    assert len(w.log.named("outbox.opened")) == 2  # the fresh store
    # The store moved aside keeps what it held, for an operator to look at.
    aside = Store(told["moved_to"], create=False)
    assert [row.msg_id for row in aside.read(0, 10)] == ["a"]
    aside.close()
    # a's acknowledgement, late, is for the old store: it removes nothing of the new one,
    # whose seqs start after every seq the sender saw.
    w.enqueue("c")
    assert session.ids == ["a", "c"]
    assert [row.seq for row in w.outbox.store.read(0, 10)] == [2]
    session.one("a").ack()
    assert [row.msg_id for row in w.outbox.store.read(0, 10)] == ["c"]
    session.one("c").ack()
    assert w.outbox.store.read(0, 10) == []


def test_stop_waits_for_the_commits_under_way_then_closes(tmp_path: Path) -> None:
    w = world(tmp_path, manual=True)
    assert w.run is not None
    first = w.outbox.publish(TOPIC, "m1", msg_id="m1")
    second = w.outbox.publish(TOPIC, "m2", msg_id="m2")  # waits for the next commit
    stopped = w.outbox.stop()
    late = w.outbox.publish(TOPIC, "m3")
    failures: list[Failure] = []
    late.addErrback(failures.append)
    assert failures and failures[0].check(OutboxUnavailable)
    assert w.run.names == ["enqueue"]
    w.run.drain()
    assert first.called and second.called and stopped.called
    assert w.stored() == ["m1", "m2"]
    assert w.outbox.store is None


def test_a_removal_failing_after_stop_is_not_retried(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.enqueue("a")
    session = w.joined()
    stopped = w.sender.stop()
    store = w.outbox.store
    assert store is not None

    def unwritable(*args: Any) -> Any:
        raise StoreUnavailable(f"{store.path}: database or disk is full")

    store.remove = unwritable  # type: ignore[method-assign,assignment]
    session.one("a").ack()
    assert stopped.called  # no more tries: a is sent again after a restart
    assert w.clock.getDelayedCalls() == [w.outbox._timer]  # only the outbox's upkeep
    assert w.stored() == ["a"]


def test_a_session_joined_before_the_store_is_open_waits_for_it_quietly(tmp_path: Path) -> None:
    """The outbox's session may join before its store is open: no retry, no backoff --
    the sender sends as soon as the store is open."""
    path = str(tmp_path / "o.db")
    seed = Store(path)
    seed.enqueue([Entry("m1", TOPIC, payload(["m1"], {}, {}))], 0.0, Limits())
    seed.close()
    run, log, clock = Manual(), Log(), Clock()
    outbox = Outbox(
        OutboxConfig(path=path), clock=clock, run=run, open_store=lambda: Store(path), logger=log
    )
    outbox.start()
    session = FakeSession()
    outbox.sender.joined(session)
    assert session.ids == [] and outbox.sender.state is SenderState.SENDING
    run.drain()  # the store opens: the sender is woken
    run.drain()  # its read
    assert session.ids == ["m1"]
    assert log.named("outbox.retry") == [] and clock.getDelayedCalls() == [outbox._timer]
