"""Structural types for the parts of Twisted that wampd uses.

Twisted describes the reactor with zope interfaces, which mypy cannot check without a
plugin; these Protocols say the same thing, and the reactor and
``twisted.internet.task.Clock`` both satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "DelayedCall"]


class DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...
