"""aiocelery's Redis client: connections, a pool, scripts, pub/sub and a thread-side client.

It imports nothing from aiocelery outside this package: it is given a ``Target`` (built from a
URL by ``aiocelery.urls``) and knows no keys, tasks or configuration.
"""
