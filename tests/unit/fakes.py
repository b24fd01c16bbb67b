"""Fakes for deterministic supervisor tests: a connector whose attempts the test settles.

They are wampd's public test doubles (:mod:`wampd.testing`), under the names the unit tests
have always used; the unit tests import them from here.
"""

from __future__ import annotations

from wampd.testing import EventRecorder as Recorder
from wampd.testing import FakeAttempt, FakeConnector, FakeLink

__all__ = ["FakeAttempt", "FakeConnector", "FakeLink", "Recorder"]
