"""An example component for wampd, written exactly as autobahn's docs show.

It registers ``com.example.hello`` and publishes a heartbeat on
``com.example.heartbeat`` every few seconds. wampd makes a fresh session for every
(re)join, so the registration comes back after any outage.
"""

from autobahn.twisted.util import sleep
from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks


class Hello(ApplicationSession):
    @inlineCallbacks
    def onJoin(self, details):
        greeting = self.config.extra.get("greeting", "hello")

        def hello(name="world"):
            return f"{greeting}, {name}"

        yield self.register(hello, "com.example.hello")
        self.log.info("registered com.example.hello in session {id}", id=details.session)

        beat = 0
        while self.is_attached():
            beat += 1
            yield self.publish("com.example.heartbeat", beat)
            yield sleep(self.config.extra.get("heartbeat", 5))
