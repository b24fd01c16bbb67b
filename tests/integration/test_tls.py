"""wss:// against a real Crossbar router with TLS and with client-certificate TLS (mTLS)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.crossbar import CrossbarRouter
from harness.ports import free_port
from harness.tls import Pki, make_pki

from .wampd_proc import Host, Launch


class TLSRouter:
    def __init__(self, router: CrossbarRouter, pki: Pki, tls_port: int, mtls_port: int) -> None:
        self.router, self.pki = router, pki
        self.tls_url = f"wss://127.0.0.1:{tls_port}/ws"
        self.mtls_url = f"wss://127.0.0.1:{mtls_port}/ws"


@pytest.fixture
def tls_router(
    crossbar_factory: Callable[..., CrossbarRouter], tmp_path: Path
) -> Iterator[TLSRouter]:
    """A Crossbar node with two more transports: TLS, and TLS that requires a client cert."""
    pki = make_pki(tmp_path / "pki")
    router = crossbar_factory(start=False)
    config_path = router.cbdir / "config.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    worker = config["workers"][0]
    plain = worker["transports"][0]
    tls_port, mtls_port = free_port(), free_port()
    tls = {"key": str(pki.server_key), "certificate": str(pki.server_cert)}
    for port, extra in ((tls_port, {}), (mtls_port, {"ca_certificates": [str(pki.ca_cert)]})):
        worker["transports"].append(
            {
                "type": "web",
                "endpoint": {
                    "type": "tcp",
                    "interface": "127.0.0.1",
                    "port": port,
                    "tls": {**tls, **extra},
                },
                "paths": {"ws": plain["paths"]["ws"]},
            }
        )
    config_path.write_text(json.dumps(config, indent=2))
    router.start()
    yield TLSRouter(router, pki, tls_port, mtls_port)


def test_self_signed_router_without_ca_file_is_refused_with_a_clear_error(
    tls_router: TLSRouter, launch: Launch
) -> None:
    """Without ca_file the router's certificate is not trusted: the error says so."""
    daemon = launch(tls_router.tls_url, reconnect={"max_retries": 1})
    assert daemon.wait(30) == 69
    errors = [e["error"] for e in daemon.events("connect.failed")]
    assert len(errors) == 2
    assert all("certificate" in error.lower() for error in errors), errors


def test_a_ca_that_did_not_sign_the_router_is_not_enough(
    tls_router: TLSRouter, launch: Launch
) -> None:
    """Trusting some other CA does not make the router's certificate valid."""
    daemon = launch(
        tls_router.tls_url,
        router={"ca_file": str(tls_router.pki.other_ca_cert)},
        reconnect={"max_retries": 0},
    )
    assert daemon.wait(30) == 69
    assert "certificate" in daemon.events("connect.failed")[0]["error"].lower()


def test_with_ca_file_it_joins(tls_router: TLSRouter, launch: Launch) -> None:
    """With the router's CA in ca_file, wss:// joins."""
    daemon = launch(tls_router.tls_url, router={"ca_file": str(tls_router.pki.ca_cert)})
    daemon.wait_for("session.joined")
    assert daemon.terminate() == 0


def test_client_certificate_authentication(tls_router: TLSRouter, launch: Launch) -> None:
    """A router that requires a client certificate: with cert_file/key_file wampd joins."""
    pki = tls_router.pki
    daemon = launch(
        tls_router.mtls_url,
        router={
            "ca_file": str(pki.ca_cert),
            "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key),
        },
    )
    daemon.wait_for("session.joined")
    assert daemon.terminate() == 0

    without = launch(
        tls_router.mtls_url, router={"ca_file": str(pki.ca_cert)}, reconnect={"max_retries": 0}
    )
    assert without.wait(30) == 69
    assert without.events("session.joined") == []


def test_verify_false_joins_and_warns_at_every_connect(
    tls_router: TLSRouter, launch: Launch
) -> None:
    """verify = false is allowed, and every attempt logs a warning about it."""
    daemon = launch(tls_router.tls_url, router={"verify": False})
    daemon.wait_for("session.joined")
    warnings = [e for e in daemon.events("twisted.log") if "verification is OFF" in e["message"]]
    assert len(warnings) == len(daemon.events("connect.attempt")) >= 1
    assert any("verify" in e.get("warning", "") for e in daemon.events("config.warning"))
    assert daemon.terminate() == 0


def test_drop_in_runner_and_service_take_tls_options(tls_router: TLSRouter, tmp_path: Path) -> None:
    """``ApplicationRunner(ssl=...)`` and ``Service(context_factory=...)`` take TLS client
    options as a program makes them (``optionsForClientTLS`` with the router's CA) and
    join over wss://; the runner's retry then refuses a router it cannot verify."""
    for api in ("runner", "service"):
        host = Host(
            tmp_path / api,
            {
                "api": api,
                "url": tls_router.tls_url,
                "realm": "realm1",
                "component": "tests.integration.components:Hello",
                "kwargs": {"extra": {"prefix": f"com.tls.{api}"}},
                "run": {"auto_reconnect": True},
                "ssl_ca": str(tls_router.pki.ca_cert),
            },
        )
        try:
            host.wait_event("session.joined")
            host.proc.signal(signal.SIGTERM)
            assert host.end()[0] == 0, host.describe()
        finally:
            host.stop()
    untrusted = Host(
        tmp_path / "other",
        {
            "api": "runner",
            "url": tls_router.tls_url,
            "realm": "realm1",
            "component": "tests.integration.components:Hello",
            "kwargs": {"max_retries": 0},
            "run": {"auto_reconnect": True},
            "ssl_ca": str(tls_router.pki.other_ca_cert),
        },
    )
    try:
        status, end = untrusted.end()
        assert (status, end["error"]) == (3, "RetriesExhausted"), untrusted.describe()
        assert "certificate" in end["message"].lower()
    finally:
        untrusted.stop()
