"""Workflows: ``chain``, ``group`` and ``chord`` of signatures, awaitable and exactly once.

A canvas is compiled, before anything is sent, into the tasks to start now and, on each task
record, what comes next (``workflow.Wf``): links with pre-assigned ids, errbacks, chord
membership. Settling a task then starts its successors in the same atomic step that stores
its result; a chord counts its members in O(1) each and the step that sees the last member
finish enqueues the callback. No mutex, no scan, no polling task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from aiocelery.exceptions import CanvasError
from aiocelery.tasks.result import AsyncResult, GroupResult
from aiocelery.tasks.signature import Signature
from aiocelery.wire.ids import new_id
from aiocelery.wire.message import TaskMessage, check_lossless
from aiocelery.wire.workflow import ChordInit, ChordRef, Spec, Wf, descendants, frame

if TYPE_CHECKING:
    from aiocelery.app import App

Canvas = Union[Signature, "chain", "group", "chord"]
Cont = list[Spec] | ChordRef | None


class chain:  # noqa: N801 - Celery's name
    """Run tasks one after another, each getting the previous result first (unless immutable)."""

    def __init__(self, *tasks: Canvas) -> None:
        if not tasks:
            raise CanvasError("chain() needs at least one task")
        self.tasks: tuple[Canvas, ...] = tuple(t for n in tasks for t in (n.tasks if isinstance(n, chain) else (n,)))
        self.errbacks: tuple[Signature, ...] = ()

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    def link_error(self, errback: Signature) -> chain:
        """``errback(task_id, error)`` runs when any step fails for good."""
        copy = chain(*self.tasks)
        copy.errbacks = (*self.errbacks, errback)
        return copy

    async def apply_async(self, app: App | None = None) -> AsyncResult[Any] | GroupResult:
        """Send it; the handle's ``get()`` awaits the last step's result or raises the failing step's error."""
        return await _apply(self, app)


class group:  # noqa: N801 - Celery's name
    """Run tasks in parallel; in a chain, the next step gets the list of their results."""

    def __init__(self, *tasks: Canvas | Iterable[Canvas]) -> None:
        flat: list[Canvas] = []
        for t in tasks:
            flat += [t] if isinstance(t, Signature | chain | group | chord) else list(t)
        self.tasks: tuple[Canvas, ...] = tuple(flat)

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    async def apply_async(self, app: App | None = None) -> GroupResult:
        """Send every member in one pipelined round trip; returns a GroupResult."""
        result = await _apply(self, app)
        assert isinstance(result, GroupResult)
        return result


class chord:  # noqa: N801 - Celery's name
    """Run ``header`` in parallel, then ``body`` once with the list of results, exactly once."""

    def __init__(self, header: group | Iterable[Canvas], body: Canvas) -> None:
        self.header = header if isinstance(header, group) else group(*header)
        self.body = body
        self.errbacks: tuple[Signature, ...] = ()

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    def link_error(self, errback: Signature) -> chord:
        """``errback(member_id, error)`` runs once when the first member fails."""
        copy = chord(self.header, self.body)
        copy.errbacks = (*self.errbacks, errback)
        return copy

    async def apply_async(self, app: App | None = None) -> AsyncResult[Any] | GroupResult:
        """Send the header; the handle's ``get()`` awaits the body's result."""
        return await _apply(self, app)


@dataclass(slots=True)
class Plan:
    """A compiled canvas: tasks to start now, and chord counters to open first."""

    entries: list[Spec] = field(default_factory=list)
    chords: list[ChordInit] = field(default_factory=list)

    @property
    def later(self) -> list[Spec]:
        """Every step after the first ones (links and chord callbacks): they get placeholders."""
        out: list[Spec] = []
        todo = [s for e in self.entries if e.wf for s in e.wf.links] + [c.callback for c in self.chords]
        seen: set[str] = set()
        while todo:
            spec = todo.pop()
            if spec.id in seen:
                continue
            seen.add(spec.id)
            out.append(spec)
            if spec.wf:
                todo += spec.wf.links
        return out


Result = str | list[str]


class _Compiler:
    def __init__(self, app: App) -> None:
        self.app = app
        self.plan = Plan()

    def node(self, n: Canvas, cont: Cont, errbacks: tuple[Signature, ...] = ()) -> tuple[list[Spec], Result]:
        """(the specs that start ``n``, the id(s) holding its result)."""
        if isinstance(n, Signature):
            spec = self.task(n, cont, errbacks)
            return [spec], spec.id
        if isinstance(n, chain):
            return self.chain(n, cont, (*errbacks, *n.errbacks))
        if isinstance(n, group):
            return self.group(n, cont, errbacks, ())
        body, result = self.node(n.body, cont, errbacks)
        entries, _ = self.group(n.header, body, errbacks, n.errbacks)
        return entries, result

    def chain(self, c: chain, cont: Cont, errbacks: tuple[Signature, ...]) -> tuple[list[Spec], Result]:
        entries, result = self.node(c.tasks[-1], cont, errbacks)
        for step in reversed(c.tasks[:-1]):
            entries, _ = self.node(step, entries, errbacks)
        return entries, result

    def group(self, g: group, cont: Cont, errbacks: tuple[Signature, ...],
              chord_errbacks: tuple[Signature, ...]) -> tuple[list[Spec], Result]:
        if isinstance(cont, ChordRef):
            raise CanvasError("a group cannot be a chord member by itself; wrap it in a chord")
        if cont is None:
            entries: list[Spec] = []
            results: list[str] = []
            for member in g.tasks:
                specs, result = self.node(member, None, errbacks)
                if not isinstance(result, str):
                    raise CanvasError("a group inside a group has no single result; use a chord")
                entries += specs
                results.append(result)
            return entries, results
        if len(cont) != 1:
            raise CanvasError("a group can be followed by one task (its chord callback), not by another group")
        if not g.tasks:
            raise CanvasError("a chord needs at least one header task")
        callback = cont[0]
        chord_id = f"chord-{new_id()}"
        head, tail = frame(callback)
        templates = tuple((spec, *frame(spec)) for spec in (self.task(e, None, ()) for e in chord_errbacks))
        cascade = tuple(descendants(callback.wf)) if callback.wf else ()
        self.plan.chords.append(ChordInit(chord_id, len(g.tasks), callback, head, tail, templates, cascade))
        entries = []
        for i, member in enumerate(g.tasks):
            ref = ChordRef(chord_id, i, callback.id, callback.queue, callback.name,
                           tuple((t[0].id, t[0].queue) for t in templates), cascade)
            specs, _ = self.node(member, ref, errbacks)
            entries += specs
        return entries, callback.id

    def task(self, sig: Signature, cont: Cont, errbacks: tuple[Signature, ...]) -> Spec:
        args, kwargs = sig.resolved()
        task_id = sig.task_id or new_id()
        queue = self.app._queue_for(sig.name, sig.queue, task_id)
        check_lossless(args, TaskMessage(task_id, sig.name), "args")
        check_lossless(kwargs, TaskMessage(task_id, sig.name), "kwargs")
        links = [*(cont if isinstance(cont, list) else ()), *(self.task(s, None, ()) for s in sig.links)]
        backs = tuple(self.task(s, None, ()) for s in (*sig.errbacks, *errbacks))
        wf = Wf(tuple(links), backs, cont if isinstance(cont, ChordRef) else None)
        delay_ms = int((sig.countdown or 0) * 1000)
        return Spec(task_id, sig.name, queue, list(args), kwargs, sig.immutable, delay_ms, wf or None)


def compile_canvas(app: App, canvas: Canvas) -> tuple[Plan, AsyncResult[Any] | GroupResult]:
    """The plan to send ``canvas`` and the handle of its final result."""
    compiler = _Compiler(app)
    compiler.plan.entries, result = compiler.node(canvas, None)
    if isinstance(result, list):
        return compiler.plan, GroupResult([app.AsyncResult(i) for i in result])
    return compiler.plan, app.AsyncResult(result)


async def _apply(canvas: Canvas, app: App | None) -> AsyncResult[Any] | GroupResult:
    app = app or _find_app(canvas)
    plan, handle = compile_canvas(app, canvas)
    await app._send_plan(plan)
    return handle


def _find_app(canvas: Canvas) -> App:
    for sig in _signatures(canvas):
        if sig.app is not None:
            return sig.app  # type: ignore[no-any-return]
    raise CanvasError("this workflow has no task made with task.s(); pass the app: apply_async(app)")


def _signatures(canvas: Canvas) -> list[Signature]:
    if isinstance(canvas, Signature):
        return [canvas]
    if isinstance(canvas, chord):
        return [*_signatures(canvas.header), *_signatures(canvas.body)]
    return [s for t in canvas.tasks for s in _signatures(t)]
