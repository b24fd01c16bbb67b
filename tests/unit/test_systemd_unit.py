"""deploy/systemd/wampd.service: valid for systemd, and consistent with wampd."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wampd.config import ShutdownConfig
from wampd.errors import EXIT_CONFIG, EXIT_FATAL

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "wampd.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


@pytest.mark.tool("systemd-analyze")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing (with ExecStart pointing at this wampd)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian package systemd) is needed to verify the unit"
    wampd = Path(sys.executable).parent / "wampd"
    unit = tmp_path / "wampd.service"
    unit.write_text(UNIT.read_text().replace("/opt/wampd/bin/wampd", str(wampd)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_unit_matches_wampds_behaviour() -> None:
    """notify + watchdog, no restart on 2 or 78, stop timeout above shutdown.timeout."""
    s = service()
    assert s["Type"] == "notify"
    assert s["WatchdogSec"].endswith("s") and int(s["WatchdogSec"][:-1]) > 0
    assert s["Restart"] == "on-failure"
    assert set(s["RestartPreventExitStatus"].split()) == {str(EXIT_CONFIG), str(EXIT_FATAL)}
    assert int(s["TimeoutStopSec"].rstrip("s")) > ShutdownConfig().timeout
    for hardening in ("DynamicUser", "NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[hardening] == "yes", hardening
    assert s["ProtectSystem"] == "strict"
