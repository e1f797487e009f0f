"""The worker runtime: fetch, execute, settle."""
