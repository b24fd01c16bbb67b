"""Turning a component's ``entry`` ("package.module:attribute") into a session factory.

Every form autobahn's Twisted API offers is accepted, as ``ApplicationRunner.run`` takes
them: an ``ApplicationSession`` (or ``Session``) subclass, an
``autobahn.twisted.wamp.Application`` instance, an ``ApplicationSessionFactory`` instance
(its ``session`` class, with its ``config.extra``), or any callable ``make(config)`` that
returns a session. An entry that cannot be called with a config is refused when it is
loaded (with the configuration), not found out by every attempt.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autobahn.wamp.protocol import ApplicationSession, ApplicationSessionFactory
from autobahn.wamp.types import ComponentConfig

from .errors import ConfigError
from .wamp import SessionFactory

__all__ = ["Entries", "EntryError", "as_session_factory", "load_components", "load_entry"]


class EntryError(Exception):
    """An entry that cannot be turned into a session factory; the message says why."""


def load_entry(entry: str) -> SessionFactory:
    """Import ``entry`` and check that it can make sessions."""
    module_name, sep, attribute = entry.partition(":")
    if not sep or not module_name or not attribute:
        raise EntryError(f'"{entry}" is not of the form "package.module:attribute"')
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as e:
        raise EntryError(f'cannot import "{module_name}": {e}') from e
    except Exception as e:  # the module itself raised while being imported
        raise EntryError(f'importing "{module_name}" raised {type(e).__name__}: {e}') from e
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise EntryError(f'"{module_name}" has no attribute "{attribute}"') from None
    try:
        return as_session_factory(target)
    except EntryError as e:
        raise EntryError(f'"{entry}" {e}') from None


def as_session_factory(target: object) -> SessionFactory:
    """``target`` as a ``make(config)`` for sessions; raises :class:`EntryError` (its text
    to follow the entry's name) for what cannot make sessions."""
    if isinstance(target, ApplicationSessionFactory):
        return _from_session_factory(target)
    if isinstance(target, type) and not issubclass(target, ApplicationSession):
        raise EntryError("is a class but not a subclass of autobahn's ApplicationSession")
    if not callable(target):
        raise EntryError(
            f"is a {type(target).__name__}, not a session class, an Application, an "
            "ApplicationSessionFactory or a make(config) callable"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without one: found out when called
        return target
    try:
        signature.bind(ComponentConfig())
    except TypeError as e:
        raise EntryError(
            f"cannot be called with a session's config, as make(config): {e} "
            f"(its signature is {signature})"
        ) from None
    return target


def _from_session_factory(factory: ApplicationSessionFactory) -> SessionFactory:
    """The seed's ``ApplicationSessionFactory`` (whose ``__call__`` takes no config): its
    ``session`` class, made with wampd's config and the factory's ``config.extra`` (keys
    of the component's own extra win). The realm is wampd's: autobahn fills ``realm1`` in
    for a factory made without a config, so its realm cannot tell a choice."""
    session_class = factory.session
    if not (isinstance(session_class, type) and issubclass(session_class, ApplicationSession)):
        raise EntryError(
            f"is an ApplicationSessionFactory whose session ({session_class!r}) is not an "
            "ApplicationSession subclass"
        )
    base = getattr(factory.config, "extra", None)

    def make_factory_session(config: ComponentConfig) -> Any:
        extra = config.extra
        if isinstance(base, dict) and isinstance(extra, dict):
            extra = {**base, **extra}
        elif not extra:
            extra = base
        made = ComponentConfig(
            realm=config.realm,
            extra=extra,
            keyring=config.keyring,
            controller=config.controller,
            shared=config.shared,
            runner=config.runner,
        )
        session = session_class(made)
        session.factory = factory  # type: ignore[attr-defined]  # as its own __call__ does
        return session

    make_factory_session.__qualname__ = f"{type(factory).__name__}.session"
    return make_factory_session


class Entries:
    """Loads entries as the configuration names them, keeping each component's factory.

    Pass it to :func:`wampd.config.load_config` as ``check_entry``: a bad entry is then one
    more problem in the same report as all the others.

    :param search: folders to put at the front of ``sys.path`` (once each) for importing
        entries: the config file's, the cwd.
    """

    def __init__(self, search: Iterable[str | Path] = ()) -> None:
        for folder in reversed([str(Path(f).resolve()) for f in search]):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        #: The session factory of each component whose entry loaded, by name.
        self.factories: dict[str, SessionFactory] = {}

    def __call__(self, name: str, entry: str) -> str | None:
        """Load ``entry`` for component ``name``; the problem, or None."""
        try:
            self.factories[name] = load_entry(entry)
        except EntryError as e:
            return f"{e} (component {name!r})"
        return None


def load_components(
    specs: Iterable[tuple[str, str]], search: Iterable[str | Path] = ()
) -> dict[str, SessionFactory]:
    """Load every ``(name, entry)``; all failures are reported together.

    :param search: as for :class:`Entries`.
    :raises ConfigError: one problem per entry that cannot be loaded, naming its key.
    """
    entries = Entries(search)
    problems = [
        f"component[{index}].entry: {why}"
        for index, (name, entry) in enumerate(specs)
        if (why := entries(name, entry)) is not None
    ]
    if problems:
        raise ConfigError(problems)
    return entries.factories
