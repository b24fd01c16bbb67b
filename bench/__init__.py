"""Benchmarks: wampd against autobahn's own runners, on the same real Crossbar router.

``python -m bench`` (or ``scripts/bench``, ``make bench``) starts a Crossbar router on a free
127.0.0.1 port and measures wampd against the runners people would otherwise use --
autobahn's ``ApplicationRunner`` and ``Component`` -- in the same run, alternating the two
sides so the machine's drift hits both. It prints a table and writes ``bench-results.json``:
one row per figure with wampd's value, the baseline's, ``ratio = wampd / baseline`` and
which direction is better. ``--smoke`` runs every figure with tiny counts in seconds; the
test suite runs that (``tests/integration/test_bench_smoke.py``). What each figure means is
in ``docs/BENCHMARKS.md``.

Modules:

- :mod:`bench.components`: the component every host runs (an echo procedure, a counter, a
  subscription);
- :mod:`bench.hosts`: the host programs (wampd behind a connection counter,
  ``ApplicationRunner``, ``Component``), run as subprocesses that report JSON-lines events;
- :mod:`bench.client`: the load client and the prober (subprocesses);
- :mod:`bench.exporter`: the stock ``prometheus_client`` exporter, the scrape baseline;
- :mod:`bench.procs`: starting and reading the hosts from the bench;
- :mod:`bench.figures`: the figures (the eighth, the sidecar bridge against Crossbar's
  HTTP bridge, with its load generator, in :mod:`bench.bridge`);
- :mod:`bench.report`: rows, the table and the JSON file.
"""
