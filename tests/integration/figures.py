"""Figures the reliability tests measured, for docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def record_figures(section: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` under ``section`` into $WAMPD_RELIABILITY_OUT, if it is set."""
    out = os.environ.get("WAMPD_RELIABILITY_OUT")
    if not out or not figures:
        return
    path = Path(out)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[section] = figures
    path.write_text(json.dumps(merged, indent=2, sort_keys=True))
