"""The ``tool`` marker: unit tests that run an external tool FAIL when it is missing.

``@pytest.mark.tool("promtool")`` says a test needs that tool (one of :data:`TOOLS`). Before
such a test runs, the tool is looked for; when it is missing the test FAILS -- never skips --
with how to install it. ``scripts/bootstrap`` installs every one of them (Debian's
``prometheus``, ``systemd`` and ``openssh-client`` packages as root; ``kubernetes-validate`` is in
``requirements/dev.lock``). A test module that cannot even be imported because a tool's
Python package is missing becomes one failing test carrying the marker.

On a machine without them, leave them out explicitly -- pytest counts them as deselected::

    make check PYTEST_ARGS='-m "not tool"'

CI never does: there (``CI`` set) deselecting a ``tool`` test with ``-m`` fails the run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DESELECT_HINT = """To leave such tests out on purpose (never in CI): pytest -m "not tool", \
or make check PYTEST_ARGS='-m "not tool"'."""


@dataclass(frozen=True)
class Tool:
    """An external tool: an executable on PATH or an importable Python package."""

    install: str
    executable: str | None = None
    module: str | None = None

    def present(self) -> bool:
        if self.executable is not None:
            return shutil.which(self.executable) is not None
        assert self.module is not None
        try:
            return importlib.util.find_spec(self.module) is not None
        except ImportError:  # a parent package or an import hook refuses it: not usable
            return False


TOOLS = {
    "promtool": Tool(
        executable="promtool",
        install="install Debian's prometheus package (apt-get install prometheus; "
        "scripts/bootstrap does it when run as root)",
    ),
    "systemd-analyze": Tool(
        executable="systemd-analyze",
        install="install Debian's systemd package (apt-get install systemd; "
        "scripts/bootstrap does it when run as root)",
    ),
    "ssh-keygen": Tool(
        executable="ssh-keygen",
        install="install Debian's openssh-client package (apt-get install openssh-client; "
        "scripts/bootstrap does it when run as root)",
    ),
    "kubernetes-validate": Tool(
        module="kubernetes_validate",
        install="it is pinned in requirements/dev.lock: run scripts/bootstrap (or "
        "<venv>/bin/pip install --require-hashes -r requirements/dev.lock)",
    ),
}

_MODULE_TOOLS = {tool.module: name for name, tool in TOOLS.items() if tool.module}
_DESELECTED_TOOL_TESTS = pytest.StashKey[list[str]]()


def _tool_names(item: pytest.Item) -> list[str]:
    names = []
    for mark in item.iter_markers("tool"):
        if len(mark.args) != 1 or mark.args[0] not in TOOLS or mark.kwargs:
            pytest.fail(
                f"{item.nodeid}: @pytest.mark.tool takes one tool name, one of "
                f"{', '.join(sorted(TOOLS))}; got {mark}",
                pytrace=False,
            )
        names.append(mark.args[0])
    return names


def missing_tool_message(name: str) -> str:
    return f"{name} is missing: {TOOLS[name].install}.\n{DESELECT_HINT}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Fail (in the call phase, so it is reported as FAILED) a test whose tool is missing."""
    for name in _tool_names(item):
        if not TOOLS[name].present():
            pytest.fail(missing_tool_message(name), pytrace=False)


class MissingToolModule(pytest.Item):
    """Stands for a test module whose import failed because a tool's package is missing."""

    def __init__(self, *, tool: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tool = tool
        self.add_marker(pytest.mark.tool(tool))

    def runtest(self) -> None:
        pytest.fail(missing_tool_message(self.tool), pytrace=False)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}: needs {self.tool}"


class ToolAwareModule(pytest.Module):
    """A test module; if importing it fails for want of a tool's package, one failing test."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        try:
            return super().collect()
        except self.CollectError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ModuleNotFoundError) or not cause.name:
                raise
            tool = _MODULE_TOOLS.get(cause.name.split(".")[0])
            if tool is None:
                raise
            return [MissingToolModule.from_parent(self, name=f"needs-{tool}", tool=tool)]


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return ToolAwareModule.from_parent(parent, path=module_path)


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("tool") is not None:
            item.config.stash.setdefault(_DESELECTED_TOOL_TESTS, []).append(item.nodeid)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _ci_deselected(config: pytest.Config) -> list[str]:
    """The ``tool`` tests that ``-m`` left out of a CI run (none outside CI)."""
    deselected = config.stash.get(_DESELECTED_TOOL_TESTS, [])
    return deselected if _in_ci() and config.option.markexpr else []


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In CI, a run that deselected ``tool`` tests with ``-m`` fails: CI never leaves them out."""
    if _ci_deselected(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deselected = _ci_deselected(terminalreporter.config)
    if deselected:
        terminalreporter.write_line(
            f"tests/unit: FAILED: CI is set and -m {terminalreporter.config.option.markexpr!r} "
            f"left out {len(deselected)} test(s) that run external tools ({deselected[0]}, "
            "...): CI must run them (scripts/bootstrap installs the tools)",
            red=True,
        )
