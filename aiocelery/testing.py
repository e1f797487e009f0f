"""Test helpers for applications built on aiocelery.

``VirtualClock`` makes countdowns, retries and periodic fire times happen the moment a test
advances it, on ``memory://``::

    clock = VirtualClock()
    app = App(Config(broker="memory://"), clock=clock)
    ...
    clock.advance(3600)   # an hour of timers fire now
"""

from aiocelery.timing.clock import VirtualClock as VirtualClock

__all__ = ["VirtualClock"]
