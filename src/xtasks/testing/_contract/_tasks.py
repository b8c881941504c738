"""Task state: stored states round-trip, batches of them too, and the grid anchor is set once."""

from __future__ import annotations

from dataclasses import replace

import anyio

from ..._runs import (
    TaskRecord,
    TaskState,
)
from ._support import (
    StoreFactory,
    _at,
    _check,
    _prefix,
    _replicas,
    _require,
    _require_task,
)


@_check
async def check_task_state_round_trip(make_store: StoreFactory) -> None:
    """:class:`~xtasks.abc.TaskRecord` round trips, one task independent of another.

    Verifies that each :class:`~xtasks.TaskState`, ``consecutive_failures``, ``alerting``
    and ``last_fire`` (aware UTC, or ``None``) saved through one store object loads equal
    through another; that a second ``save_task`` replaces the counters (back to zero) but
    keeps the stored state (only ``change_task_state`` changes it); and that an unknown
    task loads as ``None``.
    """
    prefix = _prefix()
    records = {
        f"{prefix}-{state}": TaskRecord(
            state=state, last_fire=_at(i), consecutive_failures=i + 1, alerting=bool(i % 2)
        )
        for i, state in enumerate(TaskState)
    }
    records[f"{prefix}-default"] = TaskRecord()
    async with _replicas(make_store, 2) as (a, b):
        for task, record in records.items():
            await a.save_task(task, record)
        for task, record in records.items():
            _require_task(f"load_task({task!r})", record, await b.load_task(task))
        for task, record in records.items():
            reset = TaskRecord(last_fire=record.last_fire)  # active, counters at zero
            await b.save_task(task, reset)
            kept = replace(reset, state=record.state)
            _require_task(f"after a second save_task of {task!r}", kept, await a.load_task(task))
        _require_task("an unknown task", None, await a.load_task(f"{prefix}-unknown"))


@_check
async def check_task_batches_and_anchor(make_store: StoreFactory) -> None:
    """``save_tasks``/``load_tasks`` agree with the single calls; the anchor is set once.

    Verifies that a batch saved through one store object loads equal, by name, through
    another (unknown names are left out), that a ``definition`` given replaces the stored
    one and ``None`` keeps it, and that a later save never moves a stored
    ``anchor``: the first replica to register a task fixes its grid for the fleet.
    """
    prefix = _prefix()
    first, later = _at(1), _at(2)
    records = {
        f"{prefix}-{i}": TaskRecord(last_fire=_at(i), consecutive_failures=i, anchor=first)
        for i in range(3)
    }
    async with _replicas(make_store, 2) as (a, b):
        await a.save_tasks(records)
        loaded = await b.load_tasks([*records, f"{prefix}-unknown"])
        if loaded.keys() != records.keys():
            raise AssertionError(
                f"load_tasks returned {sorted(loaded)}, expected {sorted(records)}"
            )
        for task, record in records.items():
            _require_task(f"load_tasks()[{task!r}]", record, loaded[task])
        task = next(iter(records))
        await b.save_task(task, TaskRecord(anchor=later, last_fire=_at(0)))
        stored = await a.load_task(task)
        if stored is None or stored.anchor != first:
            raise AssertionError(
                f"a second save_task moved the anchor of {task!r}: {first} -> "
                f"{stored.anchor if stored else None}; the first anchor must stay"
            )
        defined = f"{prefix}.f, Every(seconds=5)"
        await a.save_task(task, TaskRecord(definition=defined))
        await b.save_task(task, TaskRecord())  # no definition given: the stored one stays
        stored = await b.load_task(task)
        _require(
            stored is not None and stored.definition == defined,
            f"definition after a save_task without one: {stored}; expected {defined!r} kept",
        )
        redefined = f"{prefix}.g, on demand"
        await b.save_task(task, TaskRecord(definition=redefined))
        stored = await a.load_task(task)
        _require(
            stored is not None and stored.definition == redefined,
            f"definition after a save_task with a new one: {stored}; expected {redefined!r}",
        )


@_check
async def check_task_state_changes(make_store: StoreFactory) -> None:
    """Pause, resume and cancel made on one replica reach the others, in order.

    Verifies that ``change_task_state`` stores the state and the record as ``save_task``
    does and returns increasing numbers; that ``task_state_changes(after)`` through another
    store object reports exactly the tasks changed above ``after``, with their current
    state, and the highest number; that a later ``save_task`` (a replica saving its
    progress) does not undo a change; and that ``wait_for_changes`` returns by ``at_most``
    when no change comes (whether it wakes early on one is each backend's own test).
    """
    prefix = _prefix()
    one, two = f"{prefix}-one", f"{prefix}-two"
    async with _replicas(make_store, 2) as (a, b):
        start, _ = await b.task_state_changes(0)
        _require(
            await b.task_state_changes(start) == (start, {}),
            "task_state_changes(latest) must report nothing changed, and the same number",
        )
        await a.save_tasks({one: TaskRecord(), two: TaskRecord()})
        _require(
            (await b.task_state_changes(start))[1] == {},
            "save_task/save_tasks of new tasks must not count as state changes",
        )
        paused = TaskRecord(state=TaskState.PAUSED, last_fire=_at(5), consecutive_failures=2)
        first = await a.change_task_state(one, paused)
        _require(first > start, f"change_task_state returned {first}, not above {start}")
        _require_task(f"after change_task_state({one!r})", paused, await b.load_task(one))
        cancelled = TaskRecord(state=TaskState.CANCELLED)
        second = await b.change_task_state(two, cancelled)
        _require(second > first, f"a later change got number {second}, not above {first}")
        latest, changed = await a.task_state_changes(start)
        _require(
            (latest, changed) == (second, {one: TaskState.PAUSED, two: TaskState.CANCELLED}),
            f"task_state_changes({start}) returned {(latest, changed)}; expected "
            f"{(second, {one: 'paused', two: 'cancelled'})}",
        )
        _require(
            await a.task_state_changes(first) == (second, {two: TaskState.CANCELLED}),
            f"task_state_changes({first}) must report only the change after it",
        )
        await b.save_task(one, TaskRecord(last_fire=_at(6)))  # a replica that saw no pause
        stored = await a.load_task(one)
        _require(
            stored is not None and stored.state is TaskState.PAUSED,
            f"save_task undid a pause made by change_task_state: {stored}",
        )
        resumed = await b.change_task_state(one, TaskRecord(last_fire=_at(7)))
        _require(
            await a.task_state_changes(second) == (resumed, {one: TaskState.ACTIVE}),
            "a resume must be reported as the task's latest state",
        )
        with anyio.fail_after(5):
            await b.wait_for_changes(resumed, at_most=0.05)  # none comes: back by at_most
