"""The ``twist wampd`` plugin: see :mod:`wampd.twist`.

This directory has no ``__init__.py`` on purpose: Twisted's plugin loader finds
``twisted/plugins`` folders on ``sys.path`` and imports the modules in them.
"""

from twisted.application.service import ServiceMaker

wampd = ServiceMaker(
    "wampd",
    "wampd.twist",
    "A resilient reconnecting WAMP client daemon (the same config as `wampd run`).",
    "wampd",
)
