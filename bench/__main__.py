"""``python -m bench``: run the figures, print the table, write ``bench-results.json``.

::

    python -m bench                      # the full run (about 18 minutes on 2 cores)
    python -m bench --smoke              # every figure with tiny counts, in seconds
    python -m bench --only storm --only scrape --only bridge
    python -m bench --out /tmp/r.json --workdir /tmp/bench

Progress goes to stderr, one line per step; the table to stdout. Every process the bench
starts is killed when it ends, also on Ctrl-C, SIGTERM or an error; the work directory
(router, host and client logs) is removed unless ``--workdir`` names one to keep.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from harness.procs import REPO_ROOT

from .figures import FIGURES, FULL, SMOKE, Settings, progress
from .procs import Lab
from .report import Row, table, write_json


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="wampd against autobahn's ApplicationRunner and Component, "
        "on one real Crossbar router.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every figure with tiny counts (seconds)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FIGURES),
        metavar="NAME",
        help=f"run only this figure (repeatable): {', '.join(FIGURES)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "bench-results.json",
        help="where to write the JSON rows (default: bench-results.json at the repo root)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the logs here (default: a temp dir)"
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the bench like Ctrl-C, through the cleanup in :func:`main`."""
    raise KeyboardInterrupt(f"signal {signum}")


def _run_lane(names: list[str], settings: Settings, lab: Lab, rows: dict[str, list[Row]]) -> None:
    """Run the named figures one after the other in ``lab``; store their rows by name."""
    for name in names:
        started = time.monotonic()
        progress(f"{name}: starting")
        rows[name] = FIGURES[name](lab, settings)
        progress(f"{name}: done in {time.monotonic() - started:.0f} s")


def run(names: list[str], smoke: bool, workdir: Path) -> list[Row]:
    """Run the named figures, lane by lane (:attr:`Settings.lanes`: the smoke run runs its
    two lanes side by side, each on a router of its own); kill everything afterwards."""
    settings = SMOKE if smoke else FULL
    lanes = [[n for n in lane if n in names] for lane in settings.lanes]
    lanes = [lane for lane in lanes if lane]
    labs = [Lab(workdir / f"lane-{i + 1}") for i in range(len(lanes))]
    rows: dict[str, list[Row]] = {}
    errors: list[BaseException] = []

    def lane_main(lane: list[str], lab: Lab) -> None:
        """Run one lane in its thread; keep its error for the main thread."""
        try:
            _run_lane(lane, settings, lab, rows)
        except BaseException as exc:
            errors.append(exc)
        finally:
            lab.close()

    if len(lanes) == 1:
        try:
            _run_lane(lanes[0], settings, labs[0], rows)
        finally:
            labs[0].close()
    else:
        threads = [
            threading.Thread(target=lane_main, args=(lane, lab), name=f"lane-{i + 1}")
            for i, (lane, lab) in enumerate(zip(lanes, labs, strict=True))
        ]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except BaseException:
            for lab in labs:
                lab.close()
            for thread in threads:
                thread.join(timeout=30)
            raise
        if errors:
            raise errors[0]
    return [row for name in names for row in rows.get(name, [])]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 0 on success, 1 if a figure failed, 130 on Ctrl-C."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    # Also when started in the background by a shell, which leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names = [name for name in FIGURES if opts.only is None or name in opts.only]
    started = time.monotonic()
    try:
        if opts.workdir is not None:
            rows = run(names, opts.smoke, opts.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="wampd-bench-") as tmp:
                rows = run(names, opts.smoke, Path(tmp))
    except KeyboardInterrupt:
        progress("interrupted; every process stopped")
        return 130
    write_json(rows, opts.out)
    mode = "smoke" if opts.smoke else "full"
    print(table(rows))
    progress(f"{mode} run of {', '.join(names)} took {time.monotonic() - started:.0f} s")
    progress(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
