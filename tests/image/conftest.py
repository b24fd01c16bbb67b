"""Collection rules and fixtures for the container image tests.

Tests marked ``image`` need root, buildah and an image built from the Dockerfile
(``$WAMPD_IMAGE``, default ``localhost/wampd:test``). They are DESELECTED -- counted in the
summary as "deselected", with a line saying how to run them -- unless ``WAMPD_IMAGE_TESTS=1``;
``scripts/test-image`` builds the image and sets it. The other tests of this folder (hadolint
on the Dockerfile) always run.

The Crossbar router fixtures are the integration tests' own, re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import crossbar, crossbar_factory

__all__ = ["crossbar", "crossbar_factory"]

ENABLE_ENV = "WAMPD_IMAGE_TESTS"
_HERE = Path(__file__).resolve().parent
_DESELECTED = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"image: needs root, buildah and the built container image (run scripts/test-image; "
        f"deselected unless {ENABLE_ENV}=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect this folder's ``image`` tests unless WAMPD_IMAGE_TESTS=1."""
    if os.environ.get(ENABLE_ENV) == "1":
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        mine = _HERE in item.path.parents
        (drop if mine and item.get_closest_marker("image") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        config.stash[_DESELECTED] = len(drop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deselected = terminalreporter.config.stash.get(_DESELECTED, 0)
    if deselected:
        terminalreporter.write_line(
            f"tests/image: {deselected} container image test(s) deselected; "
            f"scripts/test-image builds the image and runs them ({ENABLE_ENV}=1)"
        )
