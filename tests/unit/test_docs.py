"""Documentation that must not drift from the code."""

from __future__ import annotations

import dataclasses
import pydoc
import re
from pathlib import Path

from wampd import errors
from wampd.embed import HostSettings
from wampd.supervisor import _Machine

ROOT = Path(__file__).resolve().parents[2]


def test_state_diagram_lists_exactly_the_machines_state_changes() -> None:
    """docs/supervisor.md shows every state-changing transition of the machine, no more."""
    text = (ROOT / "docs" / "supervisor.md").read_text()
    drawn = set(re.findall(r"^\s+(\w+) --> (\w+) : (\w+)$", text, re.MULTILINE))
    automaton = _Machine.__automat_automaton__  # type: ignore[attr-defined]
    real = {
        (old.name, new.name, symbol)
        for old, symbol, new, _ in automaton.allTransitions()
        if old.name != new.name
    }
    assert drawn == real


def test_readme_documents_the_exit_statuses_the_code_uses() -> None:
    """The README's exit-status table matches wampd.errors."""
    text = (ROOT / "README.md").read_text()
    for name in ("EXIT_OK", "EXIT_INTERNAL", "EXIT_CONFIG", "EXIT_RETRIES_EXHAUSTED", "EXIT_FATAL"):
        assert re.search(rf"^\| {getattr(errors, name)} \|", text, re.MULTILINE), name


def test_readme_lists_every_keyword_the_runner_adds() -> None:
    """The README section "Coming from ApplicationRunner" lists each wampd keyword once."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Coming from ApplicationRunner", 1)[1].split("\n## ", 1)[0]
    table = section.split("| keyword | default |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", table, re.MULTILINE))
    names = {name for pair in listed for name in pair if name}
    assert names == {f.name for f in dataclasses.fields(HostSettings)}


def test_help_wampd_documents_the_public_names_most_important_first() -> None:
    """``help(wampd)`` / ``pydoc wampd``: the description names every public name, the
    drop-ins and their errors first, and each one is documented in full below it (the
    lazily imported ApplicationRunner and Service included)."""
    import wampd  # noqa: PLC0415

    # typeshed leaves out pydoc.plaintext (the TextDoc that help() uses, without bold).
    text = pydoc.render_doc(wampd, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    description = text.split("\nDESCRIPTION\n", 1)[1].split("\nPACKAGE CONTENTS\n", 1)[0]
    first = ["ApplicationRunner", "Service", "RetriesExhausted", "FatalRouterError"]
    positions = [description.index(f"\n    {name}") for name in first]
    assert positions == sorted(positions)
    for name in wampd.__all__:
        if name != "__version__":
            assert re.search(rf"\b{name}\b", description), name
    for name in ("ApplicationRunner", "Service", "RetriesExhausted", "FatalRouterError"):
        assert f"class {name}(" in text, name
    assert "__getattr__" not in text.split("\nCLASSES\n", 1)[0]


def test_the_readme_module_map_matches_the_files() -> None:
    """README's Development section names every module of wampd/ (private ones aside) and
    no module that is not there."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Development\n", 1)[1].split("```", 2)[1]
    listed = set(re.findall(r"^  (\w+)\.py\b", section, re.MULTILINE))
    modules = {p.stem for p in (ROOT / "wampd").glob("*.py") if not p.stem.startswith("_")}
    assert listed == modules
    for folder in re.findall(r"^([\w/]+/)\s", section, re.MULTILINE):
        assert (ROOT / folder).is_dir(), folder
