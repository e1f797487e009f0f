"""Task ids."""

from __future__ import annotations

import uuid

from aiocelery.wire.ids import new_id


def test_task_ids_are_version_4_uuids_and_unique() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2_000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
