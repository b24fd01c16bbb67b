"""The event vocabulary: names with their levels, and the fields emitters may pass."""

from __future__ import annotations

import dataclasses
import typing

from wampd.events import Event, EventFields, EventName


def test_event_fields_are_exactly_the_events_optional_fields() -> None:
    """``EventFields`` (what the supervisor's typed ``emit`` accepts) lists every optional
    field of ``Event`` and nothing else, with the same types."""
    required = {"name", "component", "previous", "state", "time", "failures"}
    optional = {f.name: f.type for f in dataclasses.fields(Event) if f.name not in required}
    assert set(EventFields.__annotations__) == set(optional)
    hints = typing.get_type_hints(EventFields)
    event_hints = typing.get_type_hints(Event)
    assert {k: hints[k] for k in optional} == {k: event_hints[k] for k in optional}


def test_each_event_name_carries_its_documented_level() -> None:
    """Failures inside a state warn, giving up and component errors are errors, the rest
    is info (the README's log table)."""
    warn = {EventName.CONNECT_FAILED, EventName.SESSION_LEFT, EventName.KEEPALIVE_TIMEOUT}
    error = {EventName.RETRIES_EXHAUSTED, EventName.FATAL_ERROR, EventName.COMPONENT_ERROR}
    for name in EventName:
        expected = "warn" if name in warn else "error" if name in error else "info"
        assert name.level == expected, name
    # A str, as logs and JSON show it (compared as a str: mypy holds an enum literal and a
    # str literal never equal, though a StrEnum member is one).
    joined: str = EventName.SESSION_JOINED
    assert joined == "session.joined"
