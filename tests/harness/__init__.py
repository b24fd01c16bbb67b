"""Integration-test harness for wampd: real and fake routers, probes and process helpers.

Modules (import them directly; this package imports nothing, to stay cheap):

- ``ports``: ``free_port()``, ``wait_for_port()``, ``wait_port_closed()`` (127.0.0.1 only).
- ``procs``: ``Proc``, a subprocess in its own session with its output in a file; group
  kill, deadlines, JSON-lines output; nothing survives the test process.
- ``crossbar``: ``CrossbarRouter``, one real Crossbar.io node (install it with
  ``scripts/install-crossbar``); start/stop/kill/restart/pause/resume.
- ``fake_router``: ``FakeRouter``, a tiny WAMP router that records what clients send and can
  drop connections or ABORT on cue.
- ``wamp_call``: a one-shot WAMP client script plus ``call()`` / ``call_until_ok()``.
- ``silent_server``: ``SilentServer``, accepts TCP connections and never answers.
- ``wsprobe``: a minimal blocking WebSocket/WAMP-JSON client for readiness checks.
"""
