"""Redis key names: built in one place, one hash tag per queue so every script is single-slot."""

from __future__ import annotations

import re

from aiocelery.brokers.redis.keys import Keys


def _hash_tag(key: str) -> str:
    match = re.search(r"\{([^}]*)\}", key)
    assert match is not None, key
    return match.group(1)


def test_queue_keys_share_one_hash_tag() -> None:
    keys = Keys("app")
    queue_keys = [keys.stream("emails"), keys.delayed("emails"), keys.dead("emails"), keys.wake("emails")]
    assert {_hash_tag(k) for k in queue_keys} == {"emails"}
    assert len(set(queue_keys)) == 4
    assert all(k.startswith("app:") for k in queue_keys)


def test_task_keys_are_found_by_id_alone() -> None:
    keys = Keys("app")
    assert keys.task("abc") == "app:task:abc"
    assert keys.done("abc") == "app:done:abc"
    assert keys.done("abc") == keys.done_prefix + "abc"


def test_prefixes_keep_apps_apart() -> None:
    a, b = Keys("one"), Keys("two")
    assert a.stream("q") != b.stream("q") and a.task("i") != b.task("i") and a.done("i") != b.done("i")
