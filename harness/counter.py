"""A subscriber that runs inside the test router (a Crossbar router component), so it is
subscribed before any client can connect, and stays so across wampd's outages.

It appends one JSON line per event to ``extra["path"]``: the event's ``msg_id`` (the
publication's ``transaction_hash``, where wampd's outbox puts it) and its args. Tests
count distinct ``msg_id``s and check their order from that file.

Router config (see :func:`harness.crossbar.router_config`'s ``components``)::

    {"type": "class", "classname": "harness.counter.Counter", "realm": "realm1",
     "role": "anonymous", "extra": {"path": "/tmp/.../events.jsonl",
     "topic": "com.example.outbox"}}
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import SubscribeOptions


class Counter(ApplicationSession):
    def onJoin(self, details: Any) -> Any:
        extra = self.config.extra or {}
        self._out = open(extra["path"], "a", buffering=1)  # noqa: SIM115 -- for the session's life
        options = SubscribeOptions(match="prefix", details_arg="details")
        return self.subscribe(self._event, extra.get("topic", "com.example"), options=options)

    def _event(self, *args: Any, details: Any, **kwargs: Any) -> None:
        line = {"msg_id": details.transaction_hash, "topic": details.topic, "args": list(args)}
        self._out.write(json.dumps(line) + "\n")


def read_events(path: str) -> list[dict[str, Any]]:
    """The events written so far."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []
