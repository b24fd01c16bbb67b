"""Entries for tests of entry loading (imported by name, never run against a router)."""

from autobahn.twisted.wamp import Application, ApplicationSession, Session
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
