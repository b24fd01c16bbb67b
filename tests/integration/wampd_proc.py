"""Running ``wampd run``, or a program using wampd as a library
(``tests/integration/library_host.py``), as a subprocess, and reading its JSON lines."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.poll import poll
from harness.procs import REPO_ROOT, Proc, harness_env, python_module
from harness.tomlgen import toml_string, toml_value

POLL = 0.05
REALM = "realm1"
HELLO = {"name": "hello", "entry": "tests.integration.components:Hello"}
FAST = {
    "initial_delay": 0.2,
    "max_delay": 1.0,
    "growth": 2.0,
    "jitter": "none",
    # The delays grow from the first retry on (0.2, 0.4, 0.8, ...), as the tests spell out.
    "steady_retries": 0,
}


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

        def enough() -> tuple[list[dict[str, Any]]] | None:
            found = self.events(name, **match)
            return (found,) if len(found) >= count else None

        def describe() -> str:
            saw = len(self.events(name, **match))
            if not self.proc.running:
                return (
                    f"wampd exited ({self.proc.returncode}) before {count} x {name} {match}; "
                    f"saw {saw}\n{self.describe()}"
                )
            return f"no {count} x {name} {match}; saw {saw}\n{self.describe()}"

        (found,) = poll(
            enough, timeout, describe=describe, stop=lambda: not self.proc.running, interval=POLL
        )
        return found

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


class Host:
    """One run of ``library_host`` with a JSON spec; its stdout parsed as JSON lines."""

    def __init__(self, tmp_path: Path, spec: dict[str, Any], name: str = "host") -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(
            python_module("tests.integration.library_host", json.dumps(spec)),
            stdout_path=tmp_path / f"{name}.out",
            stderr_path=tmp_path / f"{name}.err",
            env=harness_env(),
            cwd=REPO_ROOT,
            name=name,
        ).start()

    def lines(self) -> list[dict[str, Any]]:
        return self.proc.json_lines()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.lines()
            if e.get("host") == "event" and (name is None or e["name"] == name)
        ]

    def wait_event(self, name: str, count: int = 1, timeout: float = 15) -> dict[str, Any]:
        """Wait until ``count`` events called ``name`` were printed; return the last."""

        def nth() -> dict[str, Any] | None:
            found = self.events(name)
            return found[count - 1] if len(found) >= count else None

        return poll(
            nth,
            timeout,
            describe=lambda: f"{count} x {name} not seen\n{self.describe()}",
            stop=lambda: not self.proc.running,
        )

    def end(self, timeout: float = 15) -> tuple[int, dict[str, Any]]:
        """Wait for the exit: the status and the ``returned``/``raised`` line."""
        status = self.proc.wait(timeout)
        ends = [line for line in self.lines() if line.get("host") in ("returned", "raised")]
        assert len(ends) == 1, self.describe()
        return status, ends[0]

    def describe(self) -> str:
        return self.proc.describe() + "\nstderr:\n" + _tail(self.proc.stderr_path)

    def stop(self) -> None:
        self.proc.kill()


def _tail(path: Path | None) -> str:
    return path.read_text()[-3000:] if path is not None and path.exists() else ""
