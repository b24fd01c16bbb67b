"""The scrape baseline: the stock ``prometheus_client`` exporter serving wampd's series.

::

    python -m bench.exporter --port PORT --components N

Builds the same series wampd exposes for N components (:class:`wampd.metrics.Metrics` in
a registry of its own, ``*_created`` samples off as in wampd) and serves them with
``prometheus_client.start_http_server`` on 127.0.0.1:PORT -- what a program exposing the
same figures with the reference client library would do. Prints ``READY`` once listening
and runs until killed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from wampd.metrics import Metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the registry until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.exporter")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--components", type=int, required=True)
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    disable_created_metrics()
    registry = CollectorRegistry()
    Metrics(registry, [f"s{i}" for i in range(opts.components)])
    start_http_server(opts.port, addr="127.0.0.1", registry=registry)
    print("READY", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
