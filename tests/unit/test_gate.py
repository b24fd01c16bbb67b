"""Supervisors of one router share a gate: one probe while it is down, admission after.

Real supervisors on a Clock, each with a FakeConnector of its own, and one Gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from wampd import Backoff, EventHub, Jitter, RetryPolicy, State, Supervisor
from wampd.errors import RetriesExhausted
from wampd.events import Event
from wampd.gate import Gate, Ticket
from wampd.testing import EventRecorder, FakeConnector
from wampd.tree import ComponentPlan, Plan, Tree
from wampd.wamp import WampSettings

URL = "ws://router.example:8080/ws"


@dataclass
class Fleet:
    clock: Clock
    gate: Gate
    connectors: list[FakeConnector]
    supervisors: list[Supervisor]
    recorder: EventRecorder

    def attempts(self) -> int:
        return sum(len(c.attempts) for c in self.connectors)

    def pending(self) -> list[int]:
        """Which supervisors have an attempt under way."""
        return [i for i, c in enumerate(self.connectors) if c.attempts and not c.last.settled]

    def events(self, i: int, name: str) -> list[Event]:
        return [e for e in self.recorder.named(name) if e.component == f"c{i}"]


def fleet(
    n: int,
    *,
    max_retries: int | None = None,
    rate: float = 2.0,
    burst: int = 1,
    rand: Callable[[], float] = lambda: 0.0,
) -> Fleet:
    clock, hub = Clock(), EventHub()
    recorder = EventRecorder(hub)
    gate = Gate(clock, rand, rate, burst)
    policy = RetryPolicy(
        backoff=Backoff(1.0, 8.0, 2.0, Jitter.NONE, steady_retries=0),
        max_retries=max_retries,
    )
    connectors = [FakeConnector() for _ in range(n)]
    supervisors = [
        Supervisor(f"c{i}", connector, [URL], policy=policy, clock=clock, hub=hub, gate=gate)
        for i, connector in enumerate(connectors)
    ]
    for supervisor in supervisors:
        supervisor.startService()
    return Fleet(clock, gate, connectors, supervisors, recorder)


def refuse_all(f: Fleet) -> None:
    for i in f.pending():
        f.connectors[i].refuse()


def test_start_up_is_not_gated() -> None:
    """Every supervisor's first attempt goes at once."""
    f = fleet(5)
    assert f.attempts() == 5 and f.pending() == [0, 1, 2, 3, 4]


def test_one_probe_at_a_time_while_the_router_is_down() -> None:
    """Refused: the next round has one attempt, the others wait behind it in backoff; when
    it fails, each takes the failure as its own (counted, its own next delay, no
    connect.failed of its own), and the next round again has one attempt."""
    f = fleet(5)
    refuse_all(f)
    f.clock.advance(1.0)  # every retry is due
    assert f.attempts() == 6 and f.pending() == [0]  # c0 probes; c1..c4 wait
    assert all(s.state is State.BACKOFF for s in f.supervisors[1:])
    f.connectors[0].refuse()
    for i in range(1, 5):
        assert len(f.events(i, "connect.failed")) == 1  # only its own start-up attempt
        scheduled = f.events(i, "retry.scheduled")
        assert [e.retry for e in scheduled] == [1, 2]
        assert [e.delay for e in scheduled] == [1.0, 2.0]
        assert scheduled[-1].error == "the router still refuses: connection refused"
        assert scheduled[-1].failures == 2
    f.clock.advance(2.0)
    assert f.attempts() == 7 and len(f.pending()) == 1


def test_probes_start_at_most_once_every_probe_interval() -> None:
    """A refused connect ends at once; a retry due right after it waits for the next probe
    slot (probe_interval after the last probe failed) instead of probing itself, and the
    ones that come meanwhile wait behind that probe."""
    clock = Clock()
    gate = Gate(clock, lambda: 0.0, rate=80.0, burst=5, probe_interval=0.5)
    went: list[Ticket] = []
    refused: list[str] = []
    gate.unreachable("transport lost", None)  # a link died: the router is down
    first = gate.request(went.append, refused.append)
    assert went == [first]  # the probe
    gate.unreachable("connection refused", first)  # at 0.0
    second = gate.request(went.append, refused.append)
    clock.advance(0.4)
    third = gate.request(went.append, refused.append)
    assert went == [first]
    clock.advance(0.1)  # 0.5: the next probe slot
    assert went == [first, second]
    gate.unreachable("connection refused", second)
    assert refused == ["connection refused"]  # the third waited behind the second
    assert third not in went


def test_when_the_probe_joins_the_others_follow_at_the_admission_rate() -> None:
    """After a join, a burst of 1 goes at once and then one every 1/rate s, in the order the
    random source picks from the waiting ones."""
    picks = iter([0.99, 0.0, 0.99, 0.0])  # the last waiting, the first, the last, ...
    f = fleet(5, rate=2.0, burst=1, rand=lambda: next(picks, 0.0))
    refuse_all(f)
    f.clock.advance(1.0)
    f.connectors[0].join()  # the probe joins: c1..c4 are admitted
    started: list[tuple[float, int]] = []
    seen = {0}
    for _ in range(6):
        for i in f.pending():
            if i not in seen:
                seen.add(i)
                started.append((f.clock.seconds(), i))
        f.clock.advance(0.5)
    assert started == [(1.0, 4), (1.5, 1), (2.0, 3), (2.5, 2)]


def test_sleepers_backing_off_from_a_down_router_wake_when_it_answers() -> None:
    """Supervisors whose delays grew while the router was down need not sleep them out once
    a probe joins: they are admitted with the waiting ones (and their timers cancelled)."""
    f = fleet(3, burst=5)
    refuse_all(f)
    f.clock.advance(1.0)  # c0 probes, c1 and c2 wait behind it
    f.connectors[0].refuse()  # all three back off 2 s more
    f.clock.advance(2.0)  # one probes again, the others wait behind it
    assert len(f.pending()) == 1
    refuse_all(f)  # all back off 4 s
    f.clock.advance(0.5)
    assert f.pending() == []  # sleeping out their 4 s
    # The router answers someone: a supervisor that starts over (start-up is never held).
    f.supervisors[0].stopService()
    f.supervisors[0].startService()
    f.connectors[0].join()
    assert f.pending() == [1, 2]  # woken at once, not 3.5 s later
    f.connectors[1].join()
    f.connectors[2].join()
    made = f.attempts()
    f.clock.advance(10.0)
    assert all(s.state is State.JOINED for s in f.supervisors)
    assert f.attempts() == made  # their backoff timers were cancelled


def test_a_sleeper_let_out_early_goes_once() -> None:
    """A parked ticket the router's answer let out, still waiting for a token when its own
    delay is over, is admitted once, not twice."""
    clock = Clock()
    gate = Gate(clock, lambda: 0.0, rate=1.0, burst=1, probe_interval=0.5)
    went: list[Ticket] = []
    first = gate.park(went.append, lambda error: None)
    second = gate.park(went.append, lambda error: None)
    gate.answered()  # both let out: one token now, the next in 1 s
    assert went == [first]
    gate.due(second)  # its own delay is over while it waits for the token
    gate.due(first)  # and a spent one
    clock.advance(1.0)
    clock.advance(5.0)
    assert went == [first, second]


def test_a_component_failing_on_its_own_keeps_its_backoff() -> None:
    """An ABORT (the router is up and said no to this session) is not the router being
    down: that supervisor sleeps its full delay even when another one joins."""
    f = fleet(2, burst=5)
    f.connectors[0].abort("wamp.error.not_authorized")  # transient here (not fatal)
    f.connectors[1].join()
    assert f.pending() == []
    f.clock.advance(1.0)
    assert f.pending() == [0]


def test_an_abort_opens_the_gate_too() -> None:
    """A router that answers, even with an ABORT, is up: the waiting ones are admitted."""
    f = fleet(3, burst=5)
    refuse_all(f)
    f.clock.advance(1.0)
    f.connectors[0].abort("wamp.error.no_such_realm")
    assert f.pending() == [1, 2]


def test_a_shared_router_that_never_returns_spends_every_budget() -> None:
    """max_retries holds for each supervisor, probe or not: each gives up with
    RetriesExhausted after its own budget, having made fewer attempts than retries."""
    f = fleet(4, max_retries=3)
    outcomes = [s.whenFinished() for s in f.supervisors]
    errors: list[BaseException] = []

    def failed(failure: Failure) -> None:
        assert failure.value is not None
        errors.append(failure.value)

    for d in outcomes:
        d.addErrback(failed)
    refuse_all(f)
    for _ in range(20):
        f.clock.advance(8.0)
        refuse_all(f)
    assert all(s.state is State.FAILED for s in f.supervisors)
    assert len(errors) == 4 and all(isinstance(e, RetriesExhausted) for e in errors)
    assert [e.retries for e in errors if isinstance(e, RetriesExhausted)] == [3, 3, 3, 3]
    assert f.attempts() == 4 + 3  # start-up, then one probe per round
    for i in range(4):
        assert len(f.events(i, "retries.exhausted")) == 1


def test_stop_while_waiting_behind_the_probe() -> None:
    """A supervisor stopped while it waits leaves the queue (the probe's failure does not
    reach it); a probe stopped mid-attempt hands the probe to the next one."""
    f = fleet(3)
    refuse_all(f)
    f.clock.advance(1.0)
    assert f.pending() == [0]
    f.supervisors[1].stopService()
    assert f.supervisors[1].state is State.STOPPED
    f.supervisors[0].stopService()  # the probe's attempt is cancelled
    assert f.connectors[0].last.cancelled
    assert f.pending() == [2]  # c2 probes now
    before = len(f.recorder.events)
    f.connectors[2].refuse()
    assert all(e.component == "c2" for e in f.recorder.events[before:])
    assert f.supervisors[1].state is State.STOPPED
    assert f.clock.getDelayedCalls() != []  # c2's own retry
    f.supervisors[2].stopService()
    assert f.clock.getDelayedCalls() == []


def test_a_stopped_attempt_says_nothing_of_the_router() -> None:
    """Cancelling an attempt (a stop) does not mark the router down for the others."""
    f = fleet(2)
    f.supervisors[0].stopService()
    assert f.connectors[0].last.cancelled
    assert not f.gate.down
    f.connectors[1].abort("wamp.error.no_such_realm")  # answered: still up
    assert not f.gate.down


def test_a_lost_link_marks_the_router_down() -> None:
    """Sessions that lose their links together (the router died): the first retry due
    probes, the others wait behind it."""
    f = fleet(3)
    links = [c.join() for c in f.connectors]
    for link in links:
        link.lose()
    f.clock.advance(1.0)
    assert f.pending() == [0]


def test_a_bad_gate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0, burst >= 1 and probe_interval >= 0"):
        Gate(Clock(), lambda: 0.0, 0.0, 1)


def plan(name: str, urls: tuple[str, ...], realm: str | None) -> ComponentPlan:
    return ComponentPlan(
        name=name,
        make=lambda config: None,
        urls=urls,
        wamp=WampSettings(realm=realm),
        policy=RetryPolicy(),
    )


def test_only_components_of_one_router_and_realm_share_a_gate() -> None:
    """Same URL list and realm: one gate; another realm or another URL list: not that one;
    a component alone on its router: no gate (nothing to share)."""
    other = ("ws://elsewhere.example:8080/ws",)
    tree = Tree(
        Plan(
            components=(
                plan("a", (URL,), "realm1"),
                plan("b", (URL,), "realm1"),
                plan("c", (URL,), "realm2"),
                plan("d", other, "realm1"),
                plan("e", other, "realm1"),
            ),
            metrics=False,
        ),
        reactor=Clock(),
        logger=None,
    )
    gates = {name: s._core.gate for name, s in tree.supervisors.items()}
    assert gates["a"] is not None and gates["a"] is gates["b"]
    assert gates["c"] is None
    assert gates["d"] is not None and gates["d"] is gates["e"] and gates["d"] is not gates["a"]
