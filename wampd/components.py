"""Turning a component's ``entry`` ("package.module:attribute") into a session factory.

Every form autobahn's Twisted API offers is accepted, as ``ApplicationRunner.run`` takes
them: an ``ApplicationSession`` (or ``Session``) subclass, an
``autobahn.twisted.wamp.Application`` instance, or any callable ``make(config)`` that
returns a session.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

from autobahn.wamp.protocol import ApplicationSession

from .errors import ConfigError
from .wamp import SessionFactory

__all__ = ["Entries", "EntryError", "load_components", "load_entry"]


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
    if isinstance(target, type) and not issubclass(target, ApplicationSession):
        raise EntryError(
            f'"{entry}" is a class but not a subclass of autobahn\'s ApplicationSession'
        )
    if callable(target):  # a session class, an Application (callable too) or make()
        return target
    raise EntryError(
        f'"{entry}" is a {type(target).__name__}, not a session class, an Application '
        "or a make(config) callable"
    )


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
