"""WAMP components for the integration tests, written the way autobahn's docs show them.

One of each entry form wampd accepts: an ``ApplicationSession`` subclass, a ``Session``
subclass, an ``autobahn.twisted.wamp.Application`` with decorators, and a ``make``
factory. Each registers a procedure a plain client can call.
"""

import json
from collections.abc import Generator
from typing import Any

from autobahn.twisted.wamp import (
    Application,
    ApplicationSession,
    ApplicationSessionFactory,
    Session,
)
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import Challenge, CloseDetails, ComponentConfig, SessionDetails
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater


class Hello(ApplicationSession):
    """The classic form: override onJoin, register in it."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        prefix = self.config.extra.get("prefix", "com.example")
        yield self.register(lambda name="world": f"hello, {name}", f"{prefix}.hello")
        yield self.register(lambda: details.session, f"{prefix}.session_id")


class Snake(Session):
    """The snake_case API: on_join, on_leave, on_connect, on_disconnect."""

    @inlineCallbacks
    def on_join(self, details: SessionDetails) -> Generator[Any, Any, None]:
        yield self.register(lambda a, b: a + b, "com.example.snake.add")

    def on_leave(self, details: CloseDetails) -> None:
        self.disconnect()


app = Application("com.example.app")


@app.register("com.example.app.echo")  # type: ignore[untyped-decorator]  # autobahn's is unannotated
def echo(value: Any) -> Any:
    return value


@app.signal("onjoined")  # type: ignore[untyped-decorator]  # autobahn's is unannotated
def _joined() -> None:
    assert app.session is not None  # set when the app made the session, before it joined
    app.session.publish("com.example.app.joined")


def make(config: ComponentConfig) -> Hello:
    """A make(config) factory, as ApplicationRunner.run takes."""
    return Hello(
        ComponentConfig(realm=config.realm, extra={**(config.extra or {}), "prefix": "com.made"})
    )


class Greeter(ApplicationSession):
    """Made by the seed's ApplicationSessionFactory below: its greeting comes from the
    factory's ``config.extra``."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        greeting = self.config.extra["greeting"]
        yield self.register(lambda name: f"{greeting}, {name}", "com.factory.greet")


class GreeterFactory(ApplicationSessionFactory):
    session = Greeter  # type: ignore[assignment]  # autobahn annotates it as an instance


#: The seed's form: ``ApplicationSessionFactory`` with its ``session`` and a config.
greeter_factory = GreeterFactory(  # type: ignore[no-untyped-call]
    ComponentConfig(realm="realm1", extra={"greeting": "howdy"})
)


class WhoAmI(ApplicationSession):
    """Serves ``<prefix>.whoami``: how the router authenticated this session."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        prefix = self.config.extra.get("prefix", "com.example")
        who = [details.authid, details.authrole, details.authmethod]
        yield self.register(lambda: who, f"{prefix}.whoami")


class Broken(ApplicationSession):
    """Tries to register a procedure another component already holds: onJoin raises."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        yield self.register(lambda: "mine", "com.example.hello")


class LeavesAtOnce(ApplicationSession):
    """A component that is done as soon as it has joined."""

    def onJoin(self, details: SessionDetails) -> None:
        self.leave()


class Printer(ApplicationSession):
    """Prints on join: the text must reach the daemon's stdout."""

    def onJoin(self, details: SessionDetails) -> None:
        print("printed by a component", flush=True)


class WrongTicket(ApplicationSession):
    """Asks for ticket authentication and answers with a ticket the router rejects."""

    def onConnect(self) -> None:
        self.join(self.config.realm, authmethods=["ticket"], authid="agent")

    def onChallenge(self, challenge: Challenge) -> str:
        return "not-the-ticket"


class ReportsLeave(Hello):
    """Hello, printing each leave's reason as a JSON line (did the router answer GOODBYE?)."""

    def onLeave(self, details: CloseDetails) -> None:
        print(json.dumps({"left": details.reason}), flush=True)
        super().onLeave(details)


class Recorder(ApplicationSession):
    """Subscribes to ``com.example.bridge.topic`` and tells what it received through
    ``com.example.bridge.seen``; ``com.example.bridge.fail`` raises an application error,
    ``com.example.bridge.slow`` answers after ``extra["slow"]`` seconds."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        seen: list[dict[str, Any]] = []

        def fail() -> None:
            raise ApplicationError("com.example.error.minus_one", "minus one", code=7)

        yield self.subscribe(
            lambda *args, **kwargs: seen.append({"args": list(args), "kwargs": kwargs}),
            "com.example.bridge.topic",
        )
        yield self.register(lambda: seen, "com.example.bridge.seen")
        yield self.register(lambda a, b: a + b, "com.example.bridge.add")
        yield self.register(fail, "com.example.bridge.fail")
        slow = float(self.config.extra.get("slow", 5.0))
        yield self.register(
            lambda: deferLater(reactor, slow, lambda: "late"), "com.example.bridge.slow"
        )


class Telemetry(ApplicationSession):
    """Publishes ``extra["n"]`` readings through wampd's outbox on join (the one changed
    line against autobahn's ``self.publish``), and registers ``com.example.telemetry.ids``
    to tell the msg_ids it got."""

    @inlineCallbacks
    def onJoin(self, details: SessionDetails) -> Generator[Any, Any, None]:
        ids = []
        for n in range(int(self.config.extra.get("n", 3))):
            # yield self.publish("com.example.outbox.telemetry", n)
            msg_id = yield self.config.shared["wampd.outbox"].publish(
                "com.example.outbox.telemetry", n
            )
            ids.append(msg_id)
        yield self.register(lambda: ids, "com.example.telemetry.ids")
