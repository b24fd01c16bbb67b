"""Running ``wampd run`` as a subprocess, and reading its JSON log events."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.procs import REPO_ROOT, Proc, harness_env
from tests.harness.tomlgen import toml_string, toml_value

POLL = 0.05
REALM = "realm1"
HELLO = {"name": "hello", "entry": "tests.integration.components:Hello"}
FAST = {"initial_delay": 0.2, "max_delay": 1.0, "growth": 2.0, "jitter": "none"}


def write_config(
    path: Path, sections: dict[str, dict[str, Any]], components: list[dict[str, Any]]
) -> Path:
    """A wampd TOML file from plain dicts; nested dicts under a section become sub-tables."""
    lines: list[str] = []
    for section, values in sections.items():
        flat = {k: v for k, v in values.items() if not (isinstance(v, dict) and k == "auth")}
        lines.append(f"[{section}]")
        lines += [f"{toml_string(key)} = {toml_value(value)}" for key, value in flat.items()]
        if "auth" in values:
            lines.append(f"[{section}.auth]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values["auth"].items()]
        lines.append("")
    for component in components:
        lines.append("[[component]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in component.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class WampdProcess:
    """``python -m wampd run --config FILE`` in the repo root, logging JSON to a file."""

    def __init__(self, workdir: Path, config: Path, env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(
            [sys.executable, "-m", "wampd", "run", "--config", str(config)],
            stdout_path=workdir / "wampd.out",
            stderr_path=workdir / "wampd.err",
            env=harness_env(env),
            cwd=REPO_ROOT,
            name="wampd",
        )

    def start(self) -> WampdProcess:
        self.proc.start()
        return self

    def events(self, name: str | None = None, **match: Any) -> list[dict[str, Any]]:
        found = []
        for line in self.proc.json_lines():
            if name is not None and line.get("event") != name:
                continue
            if all(line.get(k) == v for k, v in match.items()):
                found.append(line)
        return found

    def wait_for(
        self, name: str, count: int = 1, timeout: float = 30.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` events called ``name`` (with ``match`` fields) were logged."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name, **match)
            if len(found) >= count:
                return found
            if not self.proc.running:
                raise AssertionError(
                    f"wampd exited ({self.proc.returncode}) before {count} x {name} {match}; "
                    f"saw {len(found)}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {count} x {name} {match} within {timeout} s; saw {len(found)}\n"
                    f"{self.describe()}"
                )
            time.sleep(POLL)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit status."""
        self.proc.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        path = self.proc.stderr_path
        return path.read_text() if path and path.exists() else ""

    def describe(self) -> str:
        return f"{self.proc.describe(80)}\n--- stderr ---\n{self.stderr()[-4000:]}"

    def stop(self) -> None:
        if self.proc.running:
            self.proc.kill()


Launch = Callable[..., WampdProcess]
