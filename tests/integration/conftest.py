"""Fixtures for integration tests: real Crossbar routers, fake routers, silent servers.

Every test collected from ``tests/integration/`` is marked ``integration`` (deselect them
with ``-m "not integration"``). Nothing here runs for tests outside this folder.

The Crossbar binary comes from ``$WAMPD_CROSSBAR`` or the virtualenv made by
``scripts/install-crossbar``; if it is missing, the tests that need it FAIL (not skip) with
a message saying how to install it.

When a test fails, the teardown prints the tail of each router's log, so it shows up in the
"Captured stdout teardown" section of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import CrossbarRouter, crossbar_bin
from harness.fake_router import FakeRouter
from harness.silent_server import SilentServer

from .wampd_proc import FAST, HELLO, REALM, Launch, WampdProcess, write_config

_HERE = Path(__file__).resolve().parent

CrossbarFactory = Callable[..., CrossbarRouter]
FakeRouterFactory = Callable[..., FakeRouter]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this folder (only) as ``integration``."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    if _HERE in item.path.parents:
        item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


def _require_crossbar() -> None:
    """FAIL (not skip) the test with the install hint when the crossbar binary is missing."""
    try:
        crossbar_bin()
    except RuntimeError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)


def _stop_all(request: pytest.FixtureRequest, routers: list[Any]) -> None:
    """Stop every router; on test failure print their log tails first."""
    failed = _failed(request)
    errors: list[BaseException] = []
    for router in routers:
        if failed:
            print(f"\n===== {router!r}: last log lines =====\n{router.log_tail(60)}")
        try:
            router.stop()
        except BaseException as exc:
            errors.append(exc)
            router.kill()
    if errors:
        raise errors[0]


@pytest.fixture
def crossbar_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrossbarFactory]:
    """Make Crossbar routers on demand: ``crossbar_factory(port=None, *, start=True,
    realm="realm1", components=None, cryptosign=None, pings=True, rawsocket=False)``; each
    gets its own directory under ``tmp_path``. All are stopped at teardown."""
    _require_crossbar()
    routers: list[CrossbarRouter] = []

    def make(
        port: int | None = None,
        *,
        start: bool = True,
        realm: str = "realm1",
        components: list[dict[str, Any]] | None = None,
        cryptosign: Mapping[str, Sequence[str]] | None = None,
        pings: bool = True,
        rawsocket: bool = False,
    ) -> CrossbarRouter:
        router = CrossbarRouter(
            tmp_path / f"crossbar-{len(routers) + 1}",
            port,
            realm=realm,
            components=components,
            cryptosign=cryptosign,
            pings=pings,
            rawsocket=rawsocket,
        )
        routers.append(router)
        if start:
            router.start()
        return router

    yield make
    _stop_all(request, routers)


@pytest.fixture
def crossbar(crossbar_factory: CrossbarFactory) -> CrossbarRouter:
    """A started Crossbar router for this test alone (stopped at teardown); free to kill,
    pause and restart."""
    return crossbar_factory()


@pytest.fixture(scope="module")
def module_crossbar(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrossbarRouter]:
    """One Crossbar router shared by the tests of a module (saves ~4 s per test).

    Tests may pause() it if they resume() it; they must not kill or stop it.
    """
    _require_crossbar()
    router = CrossbarRouter(tmp_path_factory.mktemp("module-crossbar"))
    try:
        router.start()
        yield router
    finally:
        router.stop()


@pytest.fixture
def fake_router_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[FakeRouterFactory]:
    """Make fake routers on demand: ``fake_router_factory(port=None, *, drop_after=None,
    drop_count=None, abort_reason=None, start=True)``. All are stopped at teardown."""
    routers: list[FakeRouter] = []

    def make(
        port: int | None = None,
        *,
        drop_after: float | None = None,
        drop_count: int | None = None,
        abort_reason: str | None = None,
        misbehave: str | None = None,
        start: bool = True,
    ) -> FakeRouter:
        router = FakeRouter(
            tmp_path / f"fake-router-{len(routers) + 1}",
            port,
            drop_after=drop_after,
            drop_count=drop_count,
            abort_reason=abort_reason,
            misbehave=misbehave,
        )
        routers.append(router)
        if start:
            router.start()
        return router

    yield make
    _stop_all(request, routers)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A started SilentServer (accepts, never answers), closed at teardown."""
    with SilentServer() as server:
        yield server


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start ``wampd run`` with a generated config; killed at teardown if still running.

    ``launch(url, components=..., reconnect=..., keepalive=..., router=..., shutdown=...,
    env=..., http="127.0.0.1:PORT", bridge={...}, outbox={...})``; the HTTP listener is
    off unless ``http`` is given, the bridge unless ``bridge`` is, the outbox unless
    ``outbox`` is.
    """
    started: list[WampdProcess] = []

    def start(
        url: str | list[str],
        *,
        components: list[dict[str, Any]] | None = None,
        reconnect: dict[str, Any] | None = None,
        keepalive: dict[str, Any] | None = None,
        router: dict[str, Any] | None = None,
        shutdown: float = 5.0,
        env: dict[str, str] | None = None,
        http: str = "",
        log_level: str = "info",
        bridge: dict[str, Any] | None = None,
        outbox: dict[str, Any] | None = None,
    ) -> WampdProcess:
        n = len(started) + 1
        config = write_config(
            tmp_path / f"wampd-{n}.toml",
            {
                "router": {"url": url, "realm": REALM, **(router or {})},
                "reconnect": {**FAST, **(reconnect or {})},
                "keepalive": {"ping_interval": 5.0, "ping_timeout": 5.0, **(keepalive or {})},
                "http": {"listen": http},
                "log": {"format": "json", "level": log_level},
                "shutdown": {"timeout": shutdown},
                **({"bridge": bridge} if bridge is not None else {}),
                **({"outbox": outbox} if outbox is not None else {}),
            },
            components if components is not None else [HELLO],
        )
        daemon = WampdProcess(tmp_path / f"wampd-{n}", config, env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
