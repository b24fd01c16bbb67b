"""wampd: a resilient reconnecting WAMP client daemon."""
