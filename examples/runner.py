"""hello.py's component in a program of its own, with wampd's drop-in ApplicationRunner.

    python examples/runner.py [ws://127.0.0.1:8080/ws [127.0.0.1:9101]]

This is the program autobahn's docs show, with one import changed. It keeps the session
joined through router restarts (retrying at most 10 times per outage), serves
/metrics and /healthz (on 127.0.0.1:9101 unless told otherwise), prints each event it
cares about, and exits with status 69 if the router stays away too long.
"""

import sys

from hello import Hello

from wampd import ApplicationRunner, RetriesExhausted


def on_event(event):
    if event.name in ("session.joined", "retry.scheduled", "retries.exhausted"):
        print(f"{event.name}: {event.component} is {event.state}", flush=True)


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"
    listen = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:9101"
    runner = ApplicationRunner(
        url,
        "realm1",
        extra={"greeting": "hello", "heartbeat": 5},
        max_retries=10,
        max_retry_delay=10,
        http_listen=listen,
    )
    runner.subscribe(on_event)
    try:
        runner.run(Hello, auto_reconnect=True)
    except RetriesExhausted as e:
        print(f"giving up: {e}", file=sys.stderr)
        sys.exit(69)
