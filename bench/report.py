"""Rows, the table on stdout, and ``bench-results.json``.

Every figure is one :class:`Row`: wampd's value, the baseline's, ``ratio = wampd /
baseline`` and which direction is better. A value that was not measured because the host
never got there (a dead router never noticed, a procedure not answering again in time) is
``None`` -- ``null`` in the JSON file, with the row's ``missing`` text in the table -- and
so is the ratio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Better = Literal["higher", "lower"]


def _round(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits (None stays None)."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@dataclass(frozen=True)
class Row:
    """One figure: wampd against one baseline."""

    name: str
    unit: str
    wampd: float | None
    baseline: float | None
    baseline_name: str
    better: Better
    #: The issue's target for the ratio, e.g. (">=", 0.97); None: no target.
    target: tuple[str, float] | None = None
    #: The target bounds wampd's value (in ``unit``) instead of the ratio.
    absolute: bool = False
    #: What the table prints for a value that is None.
    missing: str = "not detected"

    @property
    def values(self) -> tuple[float | None, float | None]:
        """wampd's and the baseline's value, rounded as written to the JSON file."""
        return _round(self.wampd), _round(self.baseline)

    @property
    def ratio(self) -> float | None:
        """wampd / baseline (of the rounded values), None if either is None or 0."""
        wampd, baseline = self.values
        if wampd is None or baseline is None or baseline == 0:
            return None
        return _round(wampd / baseline)

    @property
    def target_met(self) -> bool | None:
        """Whether the ratio (or wampd's value, for an ``absolute`` target) meets the
        target (None: no target, or nothing to compare)."""
        measured = self.values[0] if self.absolute else self.ratio
        if self.target is None or measured is None:
            return None
        op, bound = self.target
        return measured >= bound if op == ">=" else measured <= bound

    def as_json(self) -> dict[str, Any]:
        """The row as written to ``bench-results.json``."""
        wampd, baseline = self.values
        return {
            "name": self.name,
            "unit": self.unit,
            "wampd": wampd,
            "baseline": baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "better": self.better,
        }


def _cell(value: float | None, missing: str) -> str:
    """A value as the table shows it."""
    if value is None:
        return missing
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (what ``python -m bench`` prints)."""
    header = ["figure", "unit", "wampd", "baseline", "baseline is", "ratio", "better", "target"]
    lines = [header]
    for row in rows:
        wampd, baseline = row.values
        target = ""
        if row.target is not None:
            met = row.target_met
            mark = "" if met is None else (" met" if met else " MISSED")
            unit = f" {row.unit}" if row.absolute else "x"
            target = f"{row.target[0]} {row.target[1]:g}{unit}{mark}"
        lines.append(
            [
                row.name,
                row.unit,
                _cell(wampd, row.missing),
                _cell(baseline, row.missing),
                row.baseline_name,
                "-" if row.ratio is None else f"{row.ratio:.3g}",
                row.better,
                target,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        )
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def write_json(rows: list[Row], path: Path) -> None:
    """Write the rows to ``path`` as a JSON list."""
    path.write_text(json.dumps([row.as_json() for row in rows], indent=2) + "\n")
