"""A program that uses wampd as a library, as autobahn users write theirs; run by tests.

``python -m tests.integration.library_host SPEC`` where SPEC is JSON::

    {"api": "runner" | "runner-deferred" | "service",
     "url": ..., "realm": ..., "component": "tests.integration.components:Hello",
     "kwargs": {...constructor keywords...}, "run": {...run() keywords...},
     "ssl_ca": "ca.pem" (optional: TLS options for ssl= / context_factory=)}

Every supervisor event is printed as a JSON line ``{"host": "event", "name": ...}``; how
the run ended is printed as ``{"host": "returned"}`` (exit 0) or ``{"host": "raised",
"error": <class name>, "message": ...}`` (exit 3).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from wampd.components import load_entry


def emit(**fields: Any) -> None:
    print(json.dumps({"host": fields.pop("kind"), **fields}, default=str), flush=True)


def on_event(event: Any) -> None:
    emit(kind="event", **event.fields())


def raised(error: BaseException) -> int:
    emit(kind="raised", error=type(error).__name__, message=str(error))
    return 3


def tls_options(spec: dict[str, Any]) -> Any:
    """``{"ssl_ca": PEM file}``: TLS options trusting that CA, as a program would make them."""
    if "ssl_ca" not in spec:
        return None
    from pathlib import Path  # noqa: PLC0415

    from twisted.internet.ssl import Certificate, optionsForClientTLS  # noqa: PLC0415

    trust = Certificate.loadPEM(Path(spec["ssl_ca"]).read_bytes())
    return optionsForClientTLS("127.0.0.1", trustRoot=trust)


def run_runner(spec: dict[str, Any]) -> int:
    import wampd  # noqa: PLC0415 -- after the reactor choice, as users do

    runner = wampd.ApplicationRunner(
        spec["url"], spec.get("realm"), ssl=tls_options(spec), **spec.get("kwargs", {})
    )
    runner.subscribe(on_event)
    make = load_entry(spec["component"])
    if spec["api"] == "runner":
        try:
            runner.run(make, **spec.get("run", {}))
        except Exception as e:
            return raised(e)
        emit(kind="returned")
        return 0
    # start_reactor=False: the program owns the reactor, as in a larger application.
    from twisted.internet import reactor as twisted_reactor  # noqa: PLC0415

    # To mypy the global reactor is a module, whose methods (declared on zope interfaces,
    # without self) do not check as calls: Any, as in harness/wamp_call.py.
    reactor: Any = twisted_reactor

    outcome: list[int] = []

    def done(result: Any) -> None:
        if hasattr(result, "value"):
            outcome.append(raised(result.value))
        else:
            emit(kind="returned")
            outcome.append(0)
        reactor.stop()

    d = runner.run(make, start_reactor=False, **spec.get("run", {}))
    assert d is not None  # with start_reactor=False, run() returns the run's Deferred
    d.addBoth(done)
    reactor.run()
    return outcome[0] if outcome else 0


def run_service(spec: dict[str, Any]) -> int:
    from twisted.application.service import MultiService  # noqa: PLC0415
    from twisted.internet import reactor as twisted_reactor  # noqa: PLC0415

    import wampd  # noqa: PLC0415

    reactor: Any = twisted_reactor  # as in run_runner
    top = MultiService()
    service = wampd.Service(
        spec["url"],
        spec.get("realm"),
        load_entry(spec["component"]),
        context_factory=tls_options(spec),
        **spec.get("kwargs", {}),
    )
    service.subscribe(on_event)
    service.setServiceParent(top)  # type: ignore[no-untyped-call]  # Twisted's is unannotated
    top.startService()

    def stop() -> Any:
        # What twistd and twist do for an application: stop it before reactor shutdown.
        d = top.stopService()
        d.addBoth(lambda _: emit(kind="returned"))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return 0


def main() -> int:
    spec = json.loads(sys.argv[1])
    if spec["api"] == "service":
        return run_service(spec)
    return run_runner(spec)


if __name__ == "__main__":
    sys.exit(main())
