"""wampd's test harness: real and fake routers, probes, process helpers, one way to wait.

Used by the integration tests (``tests/``) and the benchmarks (``bench/``); it lives at the
repository root and is not part of the wheel. Run from the repository root (or with it on
``PYTHONPATH``, which :func:`harness.procs.harness_env` arranges for child processes).

Modules (import them directly; this package imports nothing, to stay cheap):

- ``poll``: ``poll()``, the one wait loop (a check, a timeout, a ``stop`` predicate, a
  ``describe`` callable for the message), failing with ``PollTimeout`` (an AssertionError).
- ``ports``: ``free_port()``, ``wait_for_port()``, ``wait_port_closed()`` (127.0.0.1 only).
- ``procs``: ``Proc``, a subprocess in its own session with its output in a file; group
  kill, waits, JSON-lines output; nothing survives the test process.
- ``crossbar``: ``CrossbarRouter``, one real Crossbar.io node (install it with
  ``scripts/install-crossbar``); start/stop/kill/restart/pause/resume.
- ``fake_router``: ``FakeRouter``, a tiny WAMP router that records what clients send and can
  drop connections or ABORT on cue.
- ``fault_proxy``: ``FaultProxy``, a TCP proxy that blackholes, resets, delays or refuses.
- ``wamp_call``: a one-shot WAMP client script plus ``call()`` / ``call_until_ok()``.
- ``silent_server``: ``SilentServer``, accepts TCP connections and never answers.
- ``connect_proxy``: ``ConnectProxy``, an HTTP CONNECT proxy that records its requests.
- ``wsprobe``: a minimal blocking WebSocket/WAMP-JSON client for readiness checks.
- ``http_load``: ``run_load()``, a paced HTTP load generator.
- ``tls``: ``make_pki()``, throw-away certificates; ``tomlgen``: writing TOML values.
"""
