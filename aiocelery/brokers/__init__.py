"""Brokers: where tasks wait and how workers take them (``memory`` and ``redis``)."""
