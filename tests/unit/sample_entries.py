"""Entries for tests of entry loading (imported by name, never run against a router)."""

from autobahn.twisted.wamp import (
    Application,
    ApplicationSession,
    ApplicationSessionFactory,
    Session,
)
from autobahn.wamp.types import ComponentConfig

NOT_CALLABLE = 42


class Plain(ApplicationSession):
    pass


class Snake(Session):
    pass


class NotASession:
    pass


app = Application()


def make(config: ComponentConfig) -> Plain:
    return Plain(config)


class Namespace:
    nested = Plain


class Greeter(ApplicationSession):
    """Made by the seed's ApplicationSessionFactory below."""


class GreeterFactory(ApplicationSessionFactory):
    session = Greeter  # type: ignore[assignment]  # autobahn annotates it as an instance


factory = GreeterFactory(  # type: ignore[no-untyped-call]
    ComponentConfig(realm="ignored", extra={"greeting": "hi", "n": 1})
)
bare_factory = ApplicationSessionFactory()


class BadSessionFactory(ApplicationSessionFactory):
    session = NotASession  # type: ignore[assignment]


bad_factory = BadSessionFactory()  # type: ignore[no-untyped-call]


def no_config() -> Plain:
    """A make that takes no config: every call would raise TypeError."""
    return Plain(ComponentConfig())


def two_args(config: ComponentConfig, other: object) -> Plain:
    return Plain(config)


class CallableNeedsTwo:
    def __call__(self, config: ComponentConfig, more: int) -> Plain:
        return Plain(config)


needs_two = CallableNeedsTwo()
