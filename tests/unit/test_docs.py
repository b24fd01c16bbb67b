"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from wampd import errors
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
