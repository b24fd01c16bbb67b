"""The hash-pinned locks agree with what they are made from; offline, no pip.

``scripts/lock`` makes ``requirements/wampd.lock`` (pyproject.toml's ``[project]
dependencies``; the Dockerfile installs it), ``requirements/dev.lock`` (the same plus the
``dev`` extra; ``scripts/bootstrap`` installs it into .venv) and ``requirements/crossbar.lock``
(``requirements/crossbar.in``; ``scripts/install-crossbar``). These tests fail when an input
changed without a re-lock, or a lock was edited by hand: the fix is always ``scripts/lock``.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements"
WAMPD_LOCK = REQUIREMENTS / "wampd.lock"
DEV_LOCK = REQUIREMENTS / "dev.lock"
CROSSBAR_LOCK = REQUIREMENTS / "crossbar.lock"
CROSSBAR_IN = REQUIREMENTS / "crossbar.in"
LOCKS = (WAMPD_LOCK, DEV_LOCK, CROSSBAR_LOCK)

#: How pip-compile says a pin was asked for by pyproject.toml, or by crossbar.in.
FROM_PYPROJECT = "wampd (pyproject.toml)"
FROM_CROSSBAR_IN = "-r requirements/crossbar.in"
#: The environment the locks are for (scripts/lock refuses any other).
LOCK_ENVIRONMENT = {
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
}
#: Folders whose imports must be runtime dependencies: what the image ships.
RUNTIME_SOURCES = ("wampd", "twisted")
RELOCK = "run scripts/lock (never edit a lock by hand)"


@dataclass
class Pin:
    """One entry of a lock: ``name==version``, its hashes and pip-compile's ``# via`` list."""

    requirement: Requirement
    line: int
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


@dataclass
class Lock:
    path: Path
    pins: dict[NormalizedName, Pin]
    header: list[str]
    options: list[str]
    """Lines that are pip options (``--index-url``, ``-e``, ...), not requirements."""

    def describe(self) -> str:
        return str(self.path.relative_to(ROOT))


@functools.cache
def read_lock(path: Path) -> Lock:
    """Parse a pip-compile output file (requirement lines, ``--hash`` and ``# via`` lines)."""
    pins: dict[NormalizedName, Pin] = {}
    header: list[str] = []
    options: list[str] = []
    current: Pin | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if not text:
            continue
        if not raw[0].isspace():
            current = None
            if text.startswith("#"):
                if not pins:
                    header.append(text)
            elif text.startswith("-"):
                options.append(text)
            else:
                requirement = Requirement(text.split(" --hash")[0].rstrip(" \\"))
                name = canonicalize_name(requirement.name)
                assert name not in pins, f"{path.name}:{number}: {name} is pinned twice"
                current = pins[name] = Pin(requirement, number)
                current.hashes += re.findall(r"--hash=(\S+)", text)
        elif current is not None:
            if text.startswith("--hash="):
                current.hashes.append(text.removeprefix("--hash=").rstrip(" \\"))
            elif text.startswith("# via"):
                rest = text.removeprefix("# via").strip()
                if rest:
                    current.via.append(rest)
            elif text.startswith("#"):
                current.via.append(text.lstrip("#").strip())
    return Lock(path, pins, header, options)


def _requirements(texts: list[str]) -> list[Requirement]:
    """The requirements that apply to the locks' environment (markers evaluated for it)."""
    found = [Requirement(text) for text in texts]
    return [r for r in found if r.marker is None or r.marker.evaluate(LOCK_ENVIRONMENT)]


@functools.cache
def pyproject() -> dict[str, list[Requirement]]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return {
        "runtime": _requirements(project["dependencies"]),
        "dev": _requirements(project.get("optional-dependencies", {}).get("dev", [])),
    }


def crossbar_in() -> list[Requirement]:
    lines = CROSSBAR_IN.read_text(encoding="utf-8").splitlines()
    return _requirements([line for line in lines if line.strip() and line[0] != "#"])


def names(requirements: list[Requirement]) -> set[NormalizedName]:
    return {canonicalize_name(r.name) for r in requirements}


def assert_pinned(requirements: list[Requirement], lock: Lock, source: str) -> None:
    """Each requirement is pinned in ``lock``, within its specifier, as asked for by ``source``."""
    problems = []
    for requirement in requirements:
        pin = lock.pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not pinned at all")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} is pinned as {pin.version}, outside its specifier")
        elif source not in pin.via:
            problems.append(
                f"{requirement} is pinned only as a dependency of {', '.join(pin.via)}, "
                f"not as asked for by {source}: the lock predates that requirement"
            )
    assert not problems, f"{lock.describe()} disagrees with {source}: {RELOCK}\n" + "\n".join(
        problems
    )


def test_every_runtime_dependency_is_pinned_in_the_runtime_lock() -> None:
    """Protects the image: each [project] dependency is in wampd.lock, in range, from pyproject."""
    assert_pinned(pyproject()["runtime"], read_lock(WAMPD_LOCK), FROM_PYPROJECT)


def test_every_runtime_and_dev_requirement_is_pinned_in_the_dev_lock() -> None:
    """Protects .venv: runtime and dev-extra requirements are all in dev.lock, in range."""
    wanted = pyproject()["runtime"] + pyproject()["dev"]
    assert_pinned(wanted, read_lock(DEV_LOCK), FROM_PYPROJECT)


def test_crossbar_lock_pins_what_crossbar_in_asks_for() -> None:
    """Protects the router's venv: crossbar.lock was compiled from today's crossbar.in."""
    assert_pinned(crossbar_in(), read_lock(CROSSBAR_LOCK), FROM_CROSSBAR_IN)


def test_the_dev_lock_has_the_runtime_locks_versions() -> None:
    """Protects "tests run what ships": every wampd.lock pin has the same version in dev.lock."""
    dev = read_lock(DEV_LOCK).pins
    differ = {
        name: (pin.version, dev[name].version if name in dev else None)
        for name, pin in read_lock(WAMPD_LOCK).pins.items()
        if name not in dev or dev[name].version != pin.version
    }
    assert not differ, f"(wampd.lock, dev.lock) versions differ: {differ}; {RELOCK}"


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_every_pin_is_exact_and_hashed(path: Path) -> None:
    """Protects --require-hashes installs: each entry is name==version with sha256 hashes."""
    lock = read_lock(path)
    assert lock.pins, f"{lock.describe()} pins nothing"
    problems = []
    for name, pin in lock.pins.items():
        specs = list(pin.requirement.specifier)
        if (
            pin.requirement.url
            or len(specs) != 1
            or specs[0].operator != "=="
            or "*" in str(specs[0])
        ):
            problems.append(f"line {pin.line}: {pin.requirement} is not pinned with ==")
        if not pin.hashes or not all(h.startswith("sha256:") for h in pin.hashes):
            problems.append(f"line {pin.line}: {name} has no --hash=sha256:... ({pin.hashes})")
    assert not problems, f"{lock.describe()}: {RELOCK}\n" + "\n".join(problems)


def test_nothing_is_pinned_for_a_requirement_pyproject_no_longer_has() -> None:
    """Protects against stale locks: a pin "via wampd (pyproject.toml)" is still declared there."""
    declared = {
        WAMPD_LOCK: names(pyproject()["runtime"]),
        DEV_LOCK: names(pyproject()["runtime"] + pyproject()["dev"]),
    }
    stale = [
        f"{read_lock(path).describe()}: {name} (line {pin.line})"
        for path, wanted in declared.items()
        for name, pin in read_lock(path).pins.items()
        if FROM_PYPROJECT in pin.via and name not in wanted
    ]
    crossbar = read_lock(CROSSBAR_LOCK)
    stale += [
        f"{crossbar.describe()}: {name} (line {pin.line})"
        for name, pin in crossbar.pins.items()
        if FROM_CROSSBAR_IN in pin.via and name not in names(crossbar_in())
    ]
    assert not stale, f"pinned as asked for by an input that no longer asks: {stale}; {RELOCK}"


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_locks_are_made_by_scripts_lock_for_python_311(path: Path) -> None:
    """Protects the lock's provenance: pip-compile on Python 3.11, via scripts/lock."""
    header = "\n".join(read_lock(path).header)
    assert "autogenerated by pip-compile with Python 3.11" in header, header
    assert "scripts/lock" in header, header


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_locks_name_no_index_and_no_local_path(path: Path) -> None:
    """Protects portability: no --index-url/--find-links/-e line, no path of this machine."""
    lock = read_lock(path)
    assert not lock.options, f"{lock.describe()} has pip options {lock.options}; {RELOCK}"
    text = path.read_text(encoding="utf-8")
    for local in ("file://", "/tmp/", "/opt/", "/root/", "/work/"):
        assert local not in text, f"{lock.describe()} names a local path ({local}); {RELOCK}"


def test_runtime_lock_has_no_setuptools() -> None:
    """Protects the image: the Dockerfile uninstalls setuptools, so nothing may need it."""
    assert "setuptools" not in read_lock(WAMPD_LOCK).pins


# -- imports --------------------------------------------------------------------------------


def _python_files() -> Iterator[Path]:
    """The project's Python files: everything outside hidden folders (.venv, .git, caches)."""
    for folder, subfolders, files in os.walk(ROOT):
        # Pruned, not filtered: the virtualenvs alone hold thousands of files.
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and d not in ("build", "dist")
        )
        yield from (Path(folder, f) for f in sorted(files) if f.endswith(".py"))


def _first_party(path: Path) -> set[str]:
    """Top-level names that are the project's own: root packages and modules, and siblings."""
    root = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    root |= {p.stem for p in ROOT.glob("*.py")}
    return root | {p.stem for p in path.parent.glob("*.py")} | {"__future__"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_third_party_import_is_declared() -> None:
    """Protects pyproject.toml's completeness: whatever the code imports directly is declared.

    wampd/ and twisted/ (what the image ships) may import only runtime dependencies; tests,
    harness, bench and examples runtime or dev ones. (A package that only arrives as another
    one's dependency, as automat came with Twisted, can go away with it.)
    """
    providers = importlib.metadata.packages_distributions()
    runtime = names(pyproject()["runtime"])
    everything = runtime | names(pyproject()["dev"])
    problems = set()
    for path in _python_files():
        relative = path.relative_to(ROOT)
        declared = runtime if relative.parts[0] in RUNTIME_SOURCES else everything
        extra = "" if declared is runtime else " or the dev extra"
        for module in sorted(_imports(path) - _first_party(path) - sys.stdlib_module_names):
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists:
                problems.add(f"{relative}: imports {module}, which no installed package provides")
            elif not dists & declared:
                problems.add(
                    f"{relative}: imports {module} ({', '.join(sorted(dists))}), not declared "
                    f"in [project] dependencies{extra}"
                )
    assert not problems, "\n".join(sorted(problems))
