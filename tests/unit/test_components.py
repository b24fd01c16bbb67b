"""Loading a component's entry into a session factory."""

from __future__ import annotations

import pytest
from autobahn.wamp.types import ComponentConfig

from wampd.components import EntryError, load_components, load_entry
from wampd.errors import ConfigError

from . import sample_entries as sample


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("tests.unit.sample_entries:Plain", sample.Plain),
        ("tests.unit.sample_entries:Snake", sample.Snake),
        ("tests.unit.sample_entries:app", sample.app),
        ("tests.unit.sample_entries:make", sample.make),
        ("tests.unit.sample_entries:Namespace.nested", sample.Plain),
    ],
)
def test_every_documented_form_loads(entry: str, expected: object) -> None:
    """ApplicationSession/Session subclasses, Application and make() are all accepted."""
    assert load_entry(entry) is expected


def test_loaded_factories_make_sessions() -> None:
    """Each loaded form makes a session from a ComponentConfig."""
    config = ComponentConfig(realm="realm1", extra={})
    for entry in ("Plain", "Snake", "app", "make"):
        session = load_entry(f"tests.unit.sample_entries:{entry}")(config)
        assert session.config.realm == "realm1"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_colon_here", "is not of the form"),
        ("no.such.module:X", 'cannot import "no.such.module"'),
        ("tests.unit.sample_entries:Missing", 'has no attribute "Missing"'),
        (
            "tests.unit.sample_entries:NotASession",
            "not a subclass of autobahn's ApplicationSession",
        ),
        ("tests.unit.sample_entries:NOT_CALLABLE", "is a int, not a session class"),
        ("tests.unit.broken_entry:X", "raised RuntimeError: this module is broken on purpose"),
        ("tests.unit.sample_entries:no_config", r"cannot be called with a session's config"),
        ("tests.unit.sample_entries:two_args", r"missing a required argument: 'other'"),
        ("tests.unit.sample_entries:needs_two", r"signature is \(config: .*, more: int\)"),
        ("tests.unit.sample_entries:bad_factory", "session .* is not an ApplicationSession"),
    ],
)
def test_bad_entries_say_why(entry: str, message: str) -> None:
    """An entry that cannot make sessions raises EntryError with a clear reason."""
    with pytest.raises(EntryError, match=message):
        load_entry(entry)


def test_all_bad_entries_are_reported_together() -> None:
    """load_components names every bad entry by its key, in one ConfigError."""
    with pytest.raises(ConfigError) as info:
        load_components(
            [("a", "tests.unit.sample_entries:Plain"), ("b", "nope:X"), ("c", "nope2:Y")]
        )
    assert [p.split(":")[0] for p in info.value.problems] == [
        "component[1].entry",
        "component[2].entry",
    ]


def test_an_application_session_factory_makes_its_session_with_its_extra() -> None:
    """The seed's ApplicationSessionFactory: its session class, its config.extra (the
    component's own extra wins a clash), wampd's realm."""
    make = load_entry("tests.unit.sample_entries:factory")
    session = make(ComponentConfig(realm="realm-of-wampd", extra={"n": 2}, shared={"k": 1}))
    assert type(session) is sample.Greeter
    assert session.config.realm == "realm-of-wampd"
    assert session.config.extra == {"greeting": "hi", "n": 2}
    assert session.config.shared == {"k": 1}
    assert session.factory is sample.factory  # type: ignore[attr-defined]  # as its __call__ does
    again = make(ComponentConfig(realm="r", extra={}))
    assert again is not session and again.config.extra == {"greeting": "hi", "n": 1}
    bare = load_entry("tests.unit.sample_entries:bare_factory")(ComponentConfig(realm="r"))
    assert type(bare).__name__ == "ApplicationSession" and bare.config.realm == "r"
