"""Keys and arguments of the workflow part of settle.lua, and of chord_open.lua.

The order of keys here is the order settle.lua consumes them in: 3 per child, 1 per cascaded
task, then for a chord 4 (chord, callback hash, stream, delayed), 1 per chord-cascaded task and
3 per chord errback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from aiocelery.brokers.redis.keys import Keys
from aiocelery.wire.workflow import Child, ChordInit, Spec, WorkflowOps


def workflow_call(keys: Keys, ops: WorkflowOps, error: bytes) -> tuple[list[str], bytes]:
    """(extra KEYS, ARGV[15]) for settling with ``ops``."""
    out: list[str] = []
    for c in ops.children:
        out += _task_keys(keys, c.id, c.queue)
    out += [keys.task(task_id) for task_id, _ in ops.cascade]
    chord: dict[str, Any] | None = None
    if ops.chord is not None:
        ref = ops.chord
        out += [keys.chord(ref.id), *_task_keys(keys, ref.cb_id, ref.cb_queue)]
        out += [keys.task(task_id) for task_id, _ in ref.cascade]
        for task_id, queue in ref.errbacks:
            out += _task_keys(keys, task_id, queue)
        chord = {"index": ref.index, "cb_id": ref.cb_id, "cb_name": ref.cb_name,
                 "cascade": [list(p) for p in ref.cascade]}
    body = {"children": [_child(c) for c in ops.children], "cascade": [list(p) for p in ops.cascade],
            "chord": chord, "error": (error or b"{}").decode()}
    return out, orjson.dumps(body)


def prepare_call(keys: Keys, chords: Sequence[ChordInit], later: Sequence[Spec],
                 ttl_ms: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of chord_open.lua (prepare): chord counters and placeholders for ``later``."""
    args: list[Any] = [len(chords), ttl_ms, ""]
    for c in chords:
        errbacks = [_template(spec, head, tail) for spec, head, tail in c.errbacks]
        args += [c.total, orjson.dumps(_template(c.callback, c.head, c.tail)), orjson.dumps(errbacks),
                 orjson.dumps([list(p) for p in c.cascade])]
    for spec in later:
        args += [spec.name, spec.queue]
    return [*(keys.chord(c.id) for c in chords), *(keys.task(s.id) for s in later)], args


def _task_keys(keys: Keys, task_id: str, queue: str) -> list[str]:
    return [keys.task(task_id), keys.stream(queue), keys.delayed(queue)]


def _child(c: Child) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "queue": c.queue, "payload": c.payload.decode(), "delay_ms": c.delay_ms,
            "wf": c.wf.decode()}


def _template(spec: Spec, head: bytes, tail: bytes) -> dict[str, Any]:
    return {"id": spec.id, "name": spec.name, "queue": spec.queue, "head": head.decode(), "tail": tail.decode(),
            "immutable": spec.immutable, "delay_ms": spec.delay_ms,
            "wf": spec.wf.encode().decode() if spec.wf else ""}
