"""The wire model of workflows: what a task record carries so that settling it can start what
comes next (links, errbacks, chord steps) in the same atomic step.

Pure data and pure functions: ``canvas`` compiles chains, groups and chords into these, the
worker turns them into ``WorkflowOps`` for its settlement, and the broker applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aiocelery.wire.message import WIRE_VERSION, dumps
from aiocelery.wire.records import ErrorInfo


@dataclass(frozen=True, slots=True)
class ChordRef:
    """This task is member ``index`` of chord ``id``, whose callback is task ``cb_id`` on ``cb_queue``.

    ``errbacks`` (id, queue) and ``cascade`` (id, name) name the chord's errbacks and the tasks
    that fail with it, so the member's settlement can declare every key it touches."""

    id: str
    index: int
    cb_id: str
    cb_queue: str
    cb_name: str = ""
    errbacks: tuple[tuple[str, str], ...] = ()
    cascade: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Spec:
    """A task to create later: when its parent settles (a link or errback, or a chord step)."""

    id: str
    name: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    immutable: bool = False
    delay_ms: int = 0
    wf: Wf | None = None


@dataclass(frozen=True, slots=True)
class Wf:
    """What happens after a task: ``links`` on success, ``errbacks`` on failure, chord membership."""

    links: tuple[Spec, ...] = ()
    errbacks: tuple[Spec, ...] = ()
    chord: ChordRef | None = None

    def __bool__(self) -> bool:
        return bool(self.links or self.errbacks or self.chord)

    def encode(self) -> bytes:
        """JSON bytes for the task record's ``wf`` field."""
        return dumps(_wf_json(self))

    @classmethod
    def decode(cls, data: bytes) -> Wf:
        """Parse ``encode()``'s bytes."""
        return _wf_from(orjson.loads(data))


@dataclass(frozen=True, slots=True)
class Child:
    """A task record to create in the settling step: its payload is final."""

    id: str
    name: str
    queue: str
    payload: bytes
    delay_ms: int = 0
    wf: bytes = b""


@dataclass(frozen=True, slots=True)
class ChordInit:
    """A chord's counter, created at send time: ``total`` members, then ``callback`` with the list.

    ``head``/``tail`` frame the callback's payload around the JSON list of results (built by the
    settling script without decoding them); ``errbacks`` are templates filled with the failing
    member's id and error; ``cascade`` are task ids that fail with it (the callback's chain)."""

    id: str
    total: int
    callback: Spec
    head: bytes
    tail: bytes
    errbacks: tuple[tuple[Spec, bytes, bytes], ...] = ()
    cascade: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class WorkflowOps:
    """What a settlement does besides storing the outcome."""

    children: tuple[Child, ...] = ()
    """Created and queued atomically with the outcome (links on success, errbacks on failure)."""
    cascade: tuple[tuple[str, str], ...] = ()
    """On failure: (id, name) of later steps that can never run; they fail with the same error."""
    chord: ChordRef | None = None
    """On success the result fills the chord's slot; on failure the chord fails (once)."""


Headers = Callable[[Spec], dict[str, str]]
"""Headers for a step about to be created (e.g. trace context from the running task's hooks)."""


def _no_headers(spec: Spec) -> dict[str, str]:
    return {}


def payload(spec: Spec, first: list[Any], headers: dict[str, str] | None = None) -> bytes:
    """The payload of ``spec`` with ``first`` prepended unless it is immutable."""
    args = spec.args if spec.immutable else [*first, *spec.args]
    body: dict[str, Any] = {"v": WIRE_VERSION, "args": args, "kwargs": spec.kwargs}
    if headers:
        body["headers"] = headers
    return dumps(body)


def child(spec: Spec, first: list[Any], headers: Headers = _no_headers) -> Child:
    """The Child for ``spec`` receiving ``first`` (a result, or an errback's id and error)."""
    return Child(spec.id, spec.name, spec.queue, payload(spec, first, headers(spec)), spec.delay_ms,
                 spec.wf.encode() if spec.wf else b"")


def on_success(wf: Wf, result: Any, headers: Headers = _no_headers) -> WorkflowOps:
    """Links get the result; a chord member reports it."""
    return WorkflowOps(children=tuple(child(s, [result], headers) for s in wf.links), chord=wf.chord)


def on_failure(wf: Wf, task_id: str, error: ErrorInfo, headers: Headers = _no_headers) -> WorkflowOps:
    """Errbacks get (task id, error); every later step fails; a chord member fails its chord."""
    err = error.to_json()
    return WorkflowOps(children=tuple(child(s, [task_id, err], headers) for s in wf.errbacks),
                       cascade=tuple(descendants(wf)), chord=wf.chord)


def descendants(wf: Wf) -> list[tuple[str, str]]:
    """(id, name) of every task reachable through links (and chord callbacks) from ``wf``."""
    out: list[tuple[str, str]] = []
    for spec in wf.links:
        out.append((spec.id, spec.name))
        if spec.wf:
            out += descendants(spec.wf)
            if spec.wf.chord:
                out += [(spec.wf.chord.cb_id, spec.wf.chord.cb_name), *spec.wf.chord.cascade]
    return list(dict.fromkeys(out))


def frame(spec: Spec) -> tuple[bytes, bytes]:
    """(head, tail) such that head + b"[r1,r2,...]" + tail is ``spec``'s payload with the list
    prepended (immutable: the list is dropped and head is the whole payload)."""
    if spec.immutable:
        return payload(spec, []), b""
    rest = orjson.dumps(spec.args)[1:-1]
    head = b'{"v":%d,"args":[' % WIRE_VERSION
    tail = (b"," + rest if rest else b"") + b'],"kwargs":' + orjson.dumps(spec.kwargs) + b"}"
    return head, tail


def _spec_json(s: Spec) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "queue": s.queue, "args": s.args, "kwargs": s.kwargs,
            "immutable": s.immutable, "delay_ms": s.delay_ms, "wf": _wf_json(s.wf) if s.wf else None}


def _wf_json(w: Wf) -> dict[str, Any]:
    c = w.chord
    chord = None if c is None else {"id": c.id, "index": c.index, "cb_id": c.cb_id, "cb_queue": c.cb_queue,
                                    "cb_name": c.cb_name, "errbacks": c.errbacks, "cascade": c.cascade}
    return {"links": [_spec_json(s) for s in w.links], "errbacks": [_spec_json(s) for s in w.errbacks],
            "chord": chord}


def _spec_from(d: dict[str, Any]) -> Spec:
    return Spec(d["id"], d["name"], d["queue"], list(d["args"]), dict(d["kwargs"]), bool(d["immutable"]),
                int(d["delay_ms"]), _wf_from(d["wf"]) if d.get("wf") else None)


def _wf_from(d: dict[str, Any]) -> Wf:
    c = d.get("chord")
    chord = None if c is None else ChordRef(
        c["id"], int(c["index"]), c["cb_id"], c["cb_queue"], c.get("cb_name", ""),
        tuple((a, b) for a, b in c.get("errbacks", ())), tuple((a, b) for a, b in c.get("cascade", ())))
    return Wf(tuple(_spec_from(s) for s in d.get("links", ())), tuple(_spec_from(s) for s in d.get("errbacks", ())),
              chord)
