"""Redis plumbing shared by the Redis broker and backend: keys, clients, scripts, pub/sub."""
