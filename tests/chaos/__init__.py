"""Chaos tests: real worker processes, real redis-servers, killed and partitioned on purpose."""
