"""A Redis client on hiredis: connections, a pooled command client, script batching, pub/sub, and a
synchronous client for threads. It knows Redis, not aiocelery: nothing here imports the rest of the package."""
