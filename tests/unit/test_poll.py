"""harness.poll.poll(), driven by a fake clock and a fake sleep: no real time passes."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from harness.poll import INTERVAL, PollTimeout, poll
from harness.procs import ProcError, ProcTimeout

T = TypeVar("T")


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds


def sequence(first: T, *rest: T) -> Callable[[], T]:
    """A check returning ``first``, then each of ``rest``, one per call (then the last one
    again)."""
    it: Iterator[T] = iter((first, *rest))
    last: list[T] = [first]

    def check() -> T:
        last[0] = next(it, last[0])
        return last[0]

    return check


def test_returns_the_first_truthy_value_sleeping_the_interval_in_between() -> None:
    fake = FakeTime()
    result = poll(sequence(None, 0, "", [], False, "ready"), 10, clock=fake.clock, sleep=fake.sleep)
    assert result == "ready"
    assert fake.sleeps == [INTERVAL] * 5
    assert INTERVAL == 0.05


def test_a_truthy_first_answer_returns_at_once() -> None:
    fake = FakeTime()
    described: list[int] = []

    def describe() -> str:
        described.append(1)
        return "never used"

    assert poll(lambda: 7, 5, describe=describe, clock=fake.clock, sleep=fake.sleep) == 7
    assert fake.sleeps == []
    assert described == []


def test_times_out_at_the_deadline_with_the_described_message() -> None:
    fake = FakeTime()
    calls: list[float] = []

    def check() -> bool:
        calls.append(fake.now)
        return False

    with pytest.raises(PollTimeout) as caught:
        poll(
            check,
            0.12,
            describe=lambda: "no READY line\nlog tail here",
            clock=fake.clock,
            sleep=fake.sleep,
        )
    error = caught.value
    assert isinstance(error, AssertionError)  # pytest reports it as a failure
    assert str(error) == "timed out after 0.12 s: no READY line\nlog tail here"
    assert error.timed_out is True
    # Never sleeps past the deadline: the last check is made exactly at it.
    assert fake.sleeps == pytest.approx([0.05, 0.05, 0.02])
    assert calls[-1] == pytest.approx(1000.12)
    assert error.attempts == len(calls) == 4
    assert error.elapsed == pytest.approx(0.12)


def test_a_zero_timeout_still_checks_once() -> None:
    fake = FakeTime()
    calls: list[int] = []

    def call_and_answer() -> str:
        calls.append(1)
        return "yes"

    assert poll(call_and_answer, 0, clock=fake.clock, sleep=fake.sleep)
    with pytest.raises(PollTimeout) as caught:
        poll(lambda: calls.append(1), 0, clock=fake.clock, sleep=fake.sleep)
    assert len(calls) == 2
    assert caught.value.attempts == 1
    assert fake.sleeps == []


def test_the_interval_can_be_chosen() -> None:
    fake = FakeTime()
    assert poll(sequence(None, None, 1), 60, interval=0.2, clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == [0.2, 0.2]


def test_stop_ends_the_wait_early_with_the_same_failure() -> None:
    fake = FakeTime()
    running = sequence(True, True, False)
    with pytest.raises(PollTimeout) as caught:
        poll(
            lambda: None,
            30,
            describe=lambda: "wampd exited (status 1)",
            stop=lambda: not running(),
            clock=fake.clock,
            sleep=fake.sleep,
        )
    error = caught.value
    assert error.timed_out is False
    assert error.attempts == 3
    assert str(error) == "stopped after 0.1 s (of 30 s): wampd exited (status 1)"
    assert fake.sleeps == [INTERVAL, INTERVAL]


def test_after_stop_the_check_gets_one_last_call() -> None:
    """What happened just before the process exited (its last line) still counts."""
    fake = FakeTime()
    exited = sequence(False, True)
    answers = sequence(None, "the last line")
    assert poll(answers, 30, stop=exited, clock=fake.clock, sleep=fake.sleep) == "the last line"
    assert fake.sleeps == [INTERVAL]


def test_stop_is_asked_before_each_check() -> None:
    fake = FakeTime()
    order: list[str] = []

    def stop() -> bool:
        order.append("stop")
        return False

    def check() -> bool:
        order.append("check")
        return len(order) > 4

    assert poll(check, 10, stop=stop, clock=fake.clock, sleep=fake.sleep)
    assert order == ["stop", "check", "stop", "check", "stop", "check"]


def test_without_describe_the_message_names_the_check() -> None:
    fake = FakeTime()

    def router_is_up() -> bool:
        return False

    with pytest.raises(PollTimeout, match=r"timed out after 1 s: .*router_is_up\(\) returned"):
        poll(router_is_up, 1, clock=fake.clock, sleep=fake.sleep)


def test_describe_is_called_once_when_giving_up() -> None:
    fake = FakeTime()
    described: list[float] = []

    def describe() -> str:
        described.append(fake.now)
        return "tail"

    with pytest.raises(PollTimeout):
        poll(lambda: None, 1, describe=describe, clock=fake.clock, sleep=fake.sleep)
    assert described == [pytest.approx(1001.0)]


def test_errors_of_the_check_are_not_swallowed() -> None:
    fake = FakeTime()

    def check() -> bool:
        raise ConnectionRefusedError("boom")

    with pytest.raises(ConnectionRefusedError, match="boom"):
        poll(check, 10, clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == []


def test_a_subclass_can_be_raised_instead() -> None:
    """Proc's waits raise ProcTimeout: a PollTimeout that is also a ProcError."""
    fake = FakeTime()
    with pytest.raises(ProcTimeout) as caught:
        poll(lambda: None, 1, error=ProcTimeout, clock=fake.clock, sleep=fake.sleep)
    assert isinstance(caught.value, PollTimeout)
    assert isinstance(caught.value, ProcError)
    assert isinstance(caught.value, RuntimeError)


def test_the_real_clock_and_sleep_are_the_defaults() -> None:
    parameters = inspect.signature(poll).parameters
    assert parameters["clock"].default is time.monotonic
    assert parameters["sleep"].default is time.sleep
    assert parameters["interval"].default == INTERVAL
